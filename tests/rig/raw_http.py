"""Bare HTTP/1.1 servers on 127.0.0.1 for transport tests that need a server to misbehave
on purpose (answer pipelined requests or not, close mid-window, speak unasked): a thread
per connection, the requests split by hand, every thread joined by ``stop()``."""

from __future__ import annotations

import contextlib
import socket
import threading


def split_requests(buffer: bytes) -> tuple[list[bytes], bytes]:
    """The complete requests (head and body) at the start of ``buffer``, and the rest."""
    requests: list[bytes] = []
    while b"\r\n\r\n" in buffer:
        head, _, rest = buffer.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if len(rest) < length:
            break
        requests.append(head + b"\r\n\r\n" + rest[:length])
        buffer = rest[length:]
    return requests, buffer


class TcpServer:
    """Accepts connections on 127.0.0.1 and serves each with :meth:`serve` in a thread of
    its own. Subclasses set their own attributes before calling ``__init__``: the first
    connection may be served before it returns."""

    def __init__(self) -> None:
        self.connections = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def serve(self, conn: socket.socket, index: int) -> None:
        """Serve connection number ``index`` (1-based); it is closed afterwards."""
        raise NotImplementedError

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                index = self.connections
            thread = threading.Thread(target=self._serve, args=(conn, index), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket, index: int) -> None:
        with contextlib.suppress(OSError), conn:
            self.serve(conn, index)

    def stop(self) -> None:
        self._listener.close()
        # Closing the listener does not wake a thread blocked in accept(): a connection does.
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
            pass
        self._accepting.join(timeout=5)
        for thread in self._threads:
            thread.join(timeout=5)
