"""A Sentry-compatible ingest that records envelopes, on 127.0.0.1.

Standalone on purpose (stdlib, plus ``brotli`` when installed): the demo
(``samples/demo.py``) uses it without depending on the test suite, and the test rig
(``tests/rig/ingest.py``) re-exports it.

    with RecordingIngest() as ingest:
        sentry_sdk.init(dsn=ingest.dsn)
        ...
        [event] = ingest.wait_for_items("event", 1)

Run ``python samples/local_ingest.py --port 9000`` to print every received item as one
JSON line.

Written by hand because no package offers it: sentry-sdk only sends envelopes, and
Sentry's relay is a Rust binary.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import gzip
import json
import re
import signal
import socket
import ssl
import sys
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, TypeVar

try:
    import brotli
except ImportError:  # sentry-sdk then compresses with gzip, so br is never sent
    brotli = None

__all__ = [
    "Envelope",
    "IngestResponse",
    "Item",
    "RecordingIngest",
    "decode_body",
    "parse_envelope",
]

T = TypeVar("T")

_ENVELOPE_PATH = re.compile(r"^/api/(?P<project>[^/]+)/(?P<kind>envelope|store)/?$")


@dataclass(frozen=True)
class Item:
    """One envelope item: its header (``type``, ``length``, ...) and raw payload."""

    headers: dict[str, Any]
    payload: bytes

    @property
    def type(self) -> str:
        """The item type: ``event``, ``transaction``, ``log``, ``check_in``, ..."""
        return str(self.headers.get("type", ""))

    @property
    def json(self) -> Any:
        """The payload parsed as JSON (raises ``ValueError`` if it is not JSON)."""
        return json.loads(self.payload)


@dataclass(frozen=True)
class Envelope:
    """One received envelope with the HTTP facts around it.

    ``status`` is what the ingest answered; only envelopes answered with 2xx count as
    accepted (``RecordingIngest.envelopes``).
    """

    headers: dict[str, Any]
    items: list[Item]
    path: str = ""
    project_id: str = ""
    auth: str | None = None
    content_encoding: str | None = None
    request_headers: dict[str, str] = field(default_factory=dict)
    status: int = 200

    def items_of(self, item_type: str) -> list[Item]:
        """The items of one type, in envelope order."""
        return [item for item in self.items if item.type == item_type]


@dataclass(frozen=True)
class IngestResponse:
    """How the ingest answers: status, extra headers, delay before answering (s)."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


def decode_body(body: bytes, content_encoding: str | None) -> bytes:
    """Undo ``Content-Encoding`` (gzip, deflate, br; identity if absent)."""
    encoding = (content_encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        try:
            return zlib.decompress(body)
        except zlib.error:  # some clients send raw deflate without the zlib wrapper
            return zlib.decompress(body, -zlib.MAX_WBITS)
    if encoding == "br":
        if brotli is None:
            raise ValueError("Content-Encoding br received but brotli is not installed")
        return bytes(brotli.decompress(body))
    raise ValueError(f"unsupported Content-Encoding {content_encoding!r}")


def parse_envelope(data: bytes) -> Envelope:
    """Parse Sentry's envelope format into headers and items.

    Format: a JSON header line, then per item a JSON item-header line and a payload
    that is either ``length`` bytes (plus an optional newline) or runs to the next
    newline / end of data.
    """
    header_line, sep, rest = data.partition(b"\n")
    headers = json.loads(header_line) if header_line.strip() else {}
    items: list[Item] = []
    pos = 0 if sep else len(rest)
    while pos < len(rest):
        end = rest.find(b"\n", pos)
        line = rest[pos:] if end < 0 else rest[pos:end]
        pos = len(rest) if end < 0 else end + 1
        if not line.strip():
            continue
        item_headers = json.loads(line)
        length = item_headers.get("length")
        if length is not None:
            payload = rest[pos : pos + int(length)]
            pos += int(length)
            if rest[pos : pos + 1] == b"\n":
                pos += 1
        else:
            end = rest.find(b"\n", pos)
            payload = rest[pos:] if end < 0 else rest[pos:end]
            pos = len(rest) if end < 0 else end + 1
        items.append(Item(headers=item_headers, payload=payload))
    return Envelope(headers=headers, items=items)


def _store_as_envelope(data: bytes) -> Envelope:
    """The legacy ``/store/`` endpoint carries one bare event: present it as an envelope."""
    event = json.loads(data)
    item = Item(headers={"type": event.get("type", "event")}, payload=data)
    return Envelope(headers={"event_id": event.get("event_id")}, items=[item])


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    ingest: RecordingIngest

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def get_request(self) -> tuple[socket.socket, Any]:
        connection, address = super().get_request()
        with self._connections_lock:
            self._connections.add(connection)
            self.ingest.connections_accepted += 1
        return connection, address

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Cut keep-alive connections too: "ingest down" must fail for every client,
        not only for new connections."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests print on failure
        pass

    def do_POST(self) -> None:
        match = _ENVELOPE_PATH.match(self.path.split("?", 1)[0])
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if match is None:
            self._answer(404, {}, b'{"detail":"not an ingest path"}')
            return
        ingest = self.server.ingest
        response = ingest.current_response()
        try:
            data = decode_body(body, self.headers.get("Content-Encoding"))
            is_store = match["kind"] == "store"
            parsed = _store_as_envelope(data) if is_store else parse_envelope(data)
        except (ValueError, OSError, EOFError, zlib.error) as exc:
            ingest._record_error(f"{self.path}: {exc!r}")
            self._answer(400, {}, json.dumps({"detail": str(exc)}).encode())
            return
        envelope = Envelope(
            headers=parsed.headers,
            items=parsed.items,
            path=self.path,
            project_id=match["project"],
            auth=self.headers.get("X-Sentry-Auth"),
            content_encoding=self.headers.get("Content-Encoding"),
            request_headers=dict(self.headers.items()),
            status=response.status,
        )
        if response.delay:
            time.sleep(response.delay)
        ingest._record(envelope)
        event_id = parsed.headers.get("event_id")
        self._answer(response.status, response.headers, json.dumps({"id": event_id}).encode())

    def do_OPTIONS(self) -> None:
        # A CORS preflight, answered as Relay does; otel-bridge's transport sends one behind
        # its first envelope to learn whether pipelined requests are answered.
        self.server.ingest.options_requests += 1
        self._answer(200, {
            "Access-Control-Allow-Origin": "*",
            "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
            "Access-Control-Allow-Headers": "Content-Type, X-Sentry-Auth, Content-Encoding",
        }, b"")

    def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # client gave up (e.g. its timeout)
            pass


class RecordingIngest:
    """Sentry-compatible HTTP ingest on 127.0.0.1 that records what it receives.

    Use as a context manager (or ``start()``/``close()``). ``port=0`` picks a free port
    on first start; ``stop()`` then ``start()`` reuses the same port, so a client sees
    connection refused in between. ``on_envelope`` is called (on the server thread)
    for every received envelope.
    """

    def __init__(
        self,
        port: int = 0,
        on_envelope: Callable[[Envelope], None] | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._port = port
        self._tls = tls
        self.connections_accepted = 0
        self.options_requests = 0
        self._on_envelope = on_envelope
        self._cond = threading.Condition()
        self._received: list[Envelope] = []
        self._errors: list[str] = []
        self._response = IngestResponse()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> RecordingIngest:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        """Listen (again) on the port; a no-op if already running."""
        if self._server is not None:
            return
        server = _Server(("127.0.0.1", self._port), _Handler)
        server.ingest = self
        if self._tls is not None:
            server.socket = self._tls.wrap_socket(server.socket, server_side=True)
        self._port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True,
            name=f"recording-ingest-{self._port}",
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop listening (clients get connection refused); recorded data is kept."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)

    close = stop

    @property
    def running(self) -> bool:
        return self._server is not None

    # addresses -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError("RecordingIngest has not been started")
        return self._port

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:PORT`` (``https`` with ``tls``)."""
        return f"{self._scheme}://127.0.0.1:{self.port}"

    @property
    def _scheme(self) -> str:
        return "https" if self._tls is not None else "http"

    @property
    def dsn(self) -> str:
        """DSN for project 42 with public key ``publickey``."""
        return self.make_dsn()

    def make_dsn(self, project_id: int | str = 42, public_key: str = "publickey") -> str:
        """``http://<public_key>@127.0.0.1:PORT/<project_id>``."""
        return f"{self._scheme}://{public_key}@127.0.0.1:{self.port}/{project_id}"

    # behaviour ---------------------------------------------------------------------------

    def respond_with(
        self, status: int = 200, headers: dict[str, str] | None = None, delay: float = 0.0
    ) -> None:
        """Answer every following request this way, e.g. ``respond_with(429,
        {"Retry-After": "60", "X-Sentry-Rate-Limits": "60:transaction:key"})``,
        ``respond_with(500)``, ``respond_with(200, delay=5.0)``."""
        with self._cond:
            self._response = IngestResponse(status, dict(headers or {}), delay)

    def current_response(self) -> IngestResponse:
        with self._cond:
            return self._response

    # recorded data -------------------------------------------------------------------

    def _record(self, envelope: Envelope) -> None:
        with self._cond:
            self._received.append(envelope)
            self._cond.notify_all()
        if self._on_envelope is not None:
            self._on_envelope(envelope)

    def _record_error(self, message: str) -> None:
        with self._cond:
            self._errors.append(message)
            self._cond.notify_all()

    def clear(self) -> None:
        """Forget everything received so far."""
        with self._cond:
            self._received.clear()
            self._errors.clear()

    @property
    def received(self) -> list[Envelope]:
        """Every envelope that reached the server, including rejected ones."""
        with self._cond:
            return list(self._received)

    @property
    def envelopes(self) -> list[Envelope]:
        """Accepted envelopes (answered with 2xx), in arrival order."""
        return [env for env in self.received if 200 <= env.status < 300]

    @property
    def errors(self) -> list[str]:
        """Requests that could not be decoded or parsed."""
        with self._cond:
            return list(self._errors)

    def items(self, item_type: str | None = None) -> list[Item]:
        """Items of accepted envelopes, optionally only of one type."""
        return [
            item
            for env in self.envelopes
            for item in env.items
            if item_type is None or item.type == item_type
        ]

    def events(self, item_type: str = "event") -> list[Any]:
        """Parsed JSON payloads of accepted items of a type ("event", "transaction",
        "log", "check_in", "client_report", ...)."""
        return [item.json for item in self.items(item_type)]

    # waiting ---------------------------------------------------------------------------

    def wait_for(
        self, predicate: Callable[[RecordingIngest], T | None], timeout: float = 10.0
    ) -> T:
        """Wait until ``predicate(self)`` is truthy and return its value.

        Raises ``AssertionError`` with a dump of everything received on timeout.
        """
        deadline = time.monotonic() + timeout
        while True:
            value = predicate(self)
            if value:
                return value
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {predicate!r}\n{self.dump()}"
                )
            with self._cond:
                # bounded wait: a notification between the check and here is not lost for long
                self._cond.wait(min(remaining, 0.2))

    def wait_for_items(self, item_type: str, count: int = 1, timeout: float = 10.0) -> list[Any]:
        """Wait until at least ``count`` accepted items of ``item_type`` arrived and
        return all their JSON payloads."""

        def enough(ingest: RecordingIngest) -> list[Any] | None:
            found = ingest.events(item_type)
            return found if len(found) >= count else None

        enough.__qualname__ = f"at least {count} {item_type!r} item(s)"
        return self.wait_for(enough, timeout)

    def dump(self) -> str:
        """Human-readable summary of everything received (for assertion messages)."""
        lines = [f"RecordingIngest on port {self._port}: {len(self.received)} envelope(s)"]
        for index, env in enumerate(self.received):
            lines.append(
                f"  #{index} {env.path} status={env.status} encoding={env.content_encoding}"
                f" headers={json.dumps(env.headers)[:300]}"
            )
            for item in env.items:
                lines.append(f"      {item.type}: {_preview(item)}")
        lines.extend(f"  decode error: {err}" for err in self.errors)
        return "\n".join(lines)


def _preview(item: Item, limit: int = 300) -> str:
    try:
        payload = item.json
    except ValueError:
        return f"<{len(item.payload)} bytes>"
    if isinstance(payload, dict):
        keys = ("transaction", "message", "exception", "contexts", "status", "items")
        short = {key: payload[key] for key in keys if key in payload}
        return json.dumps(short, default=str)[:limit]
    return json.dumps(payload, default=str)[:limit]


def item_as_json_line(envelope: Envelope, item: Item) -> str:
    """One JSON line describing an item (used by the CLI)."""
    try:
        payload: Any = item.json
    except ValueError:
        payload = {"base64": base64.b64encode(item.payload).decode()}
    return json.dumps(
        {
            "project": envelope.project_id,
            "type": item.type,
            "envelope_headers": envelope.headers,
            "item_headers": item.headers,
            "payload": payload,
        },
        default=str,
    )


def main(argv: list[str] | None = None) -> int:
    """CLI: print each received item as one JSON line until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free)")
    args = parser.parse_args(argv)

    def show(envelope: Envelope) -> None:
        for item in envelope.items:
            print(item_as_json_line(envelope, item), flush=True)

    def terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    with RecordingIngest(port=args.port, on_envelope=show) as ingest:
        print(f"# listening; SENTRY_DSN={ingest.dsn}", file=sys.stderr, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)
    return 0


if __name__ == "__main__":
    sys.exit(main())
