"""The transport's HTTP/1.1 exchange: parsing of what ingests answer, request heads, and the
exchange over real sockets on 127.0.0.1 against a server that answers in each framing."""

from __future__ import annotations

import contextlib
import http.client
import io
import os
import resource
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from otel_bridge.http1 import host_header, read_response, request_head
from otel_bridge.transport import KeptAliveConnection
from tests.rig.raw_http import TcpServer, split_requests


def _read(raw: bytes) -> tuple[int, dict[str, str], bytes, bool]:
    response = read_response(io.BufferedReader(io.BytesIO(raw)))
    return response.status, dict(response.headers), response.data, response.will_close


def test_content_length_body_and_case_insensitive_headers() -> None:
    raw = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 9\r\n"
           b"X-Sentry-Rate-Limits: 60:transaction:key\r\n\r\n{\"id\":1}\n" + b"NEXT")
    reader = io.BufferedReader(io.BytesIO(raw))
    response = read_response(reader)
    assert (response.status, response.data, response.will_close) == (200, b'{"id":1}\n', False)
    assert response.headers.get("x-sentry-rate-limits") == "60:transaction:key"
    assert response.headers.get("X-SENTRY-RATE-LIMITS") == "60:transaction:key"
    assert "Content-Type" in response.headers
    assert response.headers.get("Retry-After") is None
    assert reader.read() == b"NEXT"  # not a byte of the next response was taken


def test_repeated_headers_are_joined_as_one_list() -> None:
    raw = (b"HTTP/1.1 429 Too Many Requests\r\nX-Sentry-Rate-Limits: 60:transaction:key\r\n"
           b"x-sentry-rate-limits: 10:error:key\r\nContent-Length: 0\r\n\r\n")
    status, headers, data, _ = _read(raw)
    assert status == 429 and data == b""
    assert headers["x-sentry-rate-limits"] == "60:transaction:key, 10:error:key"


def test_a_folded_header_line_continues_the_field_before_it() -> None:
    raw = (b"HTTP/1.1 429 Too Many Requests\r\nX-Sentry-Rate-Limits: 60:transaction:key,\r\n"
           b" 60:error:key\r\nRetry-After: 60\r\nContent-Length: 0\r\n\r\n")
    headers = _read(raw)[1]
    assert headers["x-sentry-rate-limits"] == "60:transaction:key, 60:error:key"
    assert set(headers) == {"x-sentry-rate-limits", "retry-after", "content-length"}


def test_chunked_body_with_extensions_and_trailers() -> None:
    raw = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"4;name=x\r\n{\"id\r\n5\r\n\":42}\r\n0\r\nX-Trailer: t\r\n\r\n")
    assert _read(raw)[2] == b'{"id":42}'


def test_interim_responses_are_skipped() -> None:
    raw = (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
           b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    status, headers, data, _ = _read(raw)
    assert (status, data) == (200, b"ok") and "link" not in headers


@pytest.mark.parametrize(
    ("raw", "will_close"),
    [
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", True),
        (b"HTTP/1.1 200 OK\r\nConnection: Keep-Alive, Close\r\nContent-Length: 0\r\n\r\n", True),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", True),
        (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", False),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", False),
    ],
)
def test_when_the_connection_closes(raw: bytes, will_close: bool) -> None:
    assert _read(raw)[3] is will_close


def test_a_body_without_length_runs_to_the_end_of_the_connection() -> None:
    assert _read(b"HTTP/1.1 200 OK\r\n\r\nall of it")[2:] == (b"all of it", True)


def test_no_body_for_204_and_304() -> None:
    assert _read(b"HTTP/1.1 204 No Content\r\n\r\nNEXT")[2] == b""
    assert _read(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n")[2] == b""


_CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"", http.client.RemoteDisconnected),
        (b"SSH-2.0-OpenSSH\r\n\r\n", http.client.BadStatusLine),
        (b"HTTP/1.1 abc OK\r\n\r\n", http.client.BadStatusLine),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", http.client.IncompleteRead),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\nab", http.client.HTTPException),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", http.client.HTTPException),
        (b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\n", http.client.HTTPException),
        (b"HTTP/1.1 2\xb2 OK\r\n\r\n", http.client.BadStatusLine),
        (_CHUNKED + b"-1\r\n", http.client.HTTPException),
        (_CHUNKED + b"ff\r\nab", http.client.IncompleteRead),
        (b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70000 + b"\r\n\r\n", http.client.LineTooLong),
        (b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 101 + b"\r\n", http.client.HTTPException),
        (b"HTTP/1.1 100 Continue\r\n\r\n" * 12, http.client.HTTPException),
    ],
)
def test_broken_responses_raise_http_client_errors(raw: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        _read(raw)


def test_request_head_is_one_block_with_host_and_length_of_its_own() -> None:
    head = request_head(
        "POST", "/api/1/envelope/", "127.0.0.1:9000",
        {"Content-Type": "application/x-sentry-envelope", "content-length": "999", "HOST": "x"},
        1234,
    )
    assert head == (
        b"POST /api/1/envelope/ HTTP/1.1\r\nHost: 127.0.0.1:9000\r\nContent-Length: 1234\r\n"
        b"Content-Type: application/x-sentry-envelope\r\n\r\n"
    )


@pytest.mark.parametrize(
    "headers", [{"X-Sentry-Auth": "Sentry key\r\nX-Injected: 1"}, {"X\nY": "v"}, {"X": "a\0b"}]
)
def test_request_head_refuses_values_that_would_split_the_request(
    headers: dict[str, str],
) -> None:
    with pytest.raises(ValueError, match="CR, LF or NUL"):
        request_head("POST", "/", "h", headers, 0)


def test_host_header() -> None:
    assert host_header("127.0.0.1", 9000, 80) == "127.0.0.1:9000"
    assert host_header("sentry.example", 443, 443) == "sentry.example"
    assert host_header("sentry.example", None, 443) == "sentry.example"
    assert host_header("::1", 8080, 80) == "[::1]:8080"
    assert host_header("bücher.example", None, 80) == "xn--bcher-kva.example"


class _ScriptedServer:
    """Answers each request on 127.0.0.1 with the next scripted response, then closes the
    connection if the script says so; records the requests it read."""

    def __init__(self, script: list[tuple[bytes, bool]]) -> None:
        self.script = list(script)
        self.requests: list[bytes] = []
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while self.script:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            with conn, conn.makefile("rb") as reader:
                while self.script:
                    head = b""
                    while not head.endswith(b"\r\n\r\n"):
                        line = reader.readline()
                        if not line:
                            break
                        head += line
                    if not head:
                        break
                    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                    self.requests.append(head + reader.read(length))
                    response, close = self.script.pop(0)
                    conn.sendall(response)
                    if close:
                        break

    def stop(self) -> None:
        self.script.clear()
        # Closing the listener does not wake a thread blocked in accept(): a connection does.
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
            pass
        self._thread.join(timeout=5)
        self._listener.close()


Scripted = Callable[..., tuple[_ScriptedServer, KeptAliveConnection]]


@pytest.fixture
def scripted() -> Iterator[Scripted]:
    """A scripted server and a transport connection to it; both closed after the test."""
    made: list[tuple[_ScriptedServer, KeptAliveConnection]] = []

    def make(
        script: list[tuple[bytes, bool]], timeout: float = 5.0
    ) -> tuple[_ScriptedServer, KeptAliveConnection]:
        server = _ScriptedServer(script)
        made.append((server, KeptAliveConnection("http", "127.0.0.1", server.port, timeout)))
        return made[-1]

    yield make
    for server, connection in made:
        connection.close()
        server.stop()


def test_exchanges_over_one_socket_in_every_framing(scripted: Scripted) -> None:
    server, connection = scripted([
        (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none", False),
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
         b"3\r\ntwo\r\n0\r\n\r\n", False),
        (b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 60\r\nConnection: close\r\n"
         b"Content-Length: 0\r\n\r\n", True),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfour", False),
    ])
    answers = [
        connection.post("/api/1/envelope/", f"body {n}".encode(), {"X-N": str(n)})
        for n in range(4)
    ]
    assert [(a.status, a.data) for a in answers] == [
        (200, b"one"), (200, b"two"), (429, b""), (200, b"four")
    ]
    assert answers[2].headers.get("retry-after") == "60"
    # The first three on one connection; "Connection: close" made the fourth open another.
    assert server.connections == 2
    assert [r.split(b"\r\n\r\n", 1)[1] for r in server.requests] == [
        b"body 0", b"body 1", b"body 2", b"body 3"
    ]
    assert server.requests[0].startswith(
        f"POST /api/1/envelope/ HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n".encode()
    )


def test_a_connection_whose_descriptor_is_past_1023_is_still_reused(scripted: Scripted) -> None:
    """A busy server holds many descriptors; the check made before reusing a connection must
    not take a high one for a closed connection (select() refuses those)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if max(soft, hard if hard != resource.RLIM_INFINITY else 4096) < 1200:
        pytest.skip("this machine allows fewer than 1,200 open files")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    fillers = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        ok = (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", False)
        server, connection = scripted([ok, ok, ok])
        for body in (b"one", b"two", b"three"):
            assert connection.post("/", body, {}).status == 200
        assert connection._socket is not None and connection._socket.fileno() > 1023
        assert server.connections == 1
    finally:
        for descriptor in fillers:
            os.close(descriptor)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_server_that_closes_without_answering_is_an_error_on_a_fresh_connection(
    scripted: Scripted,
) -> None:
    # Closing a kept-alive connection earns one retry; a fresh one that ends without any
    # answer is the ingest's failure, raised for sentry-sdk to count as a network error.
    server, connection = scripted([(b"", True), (b"", True)])
    with pytest.raises(http.client.RemoteDisconnected):
        connection.post("/", b"x", {})
    assert server.connections == 1


def test_an_ingest_that_stops_answering_times_out_without_a_second_attempt(
    scripted: Scripted,
) -> None:
    # The request may have reached the ingest: sending it again could store it twice.
    server, connection = scripted(
        [(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", False), (b"", False)], timeout=0.5
    )
    assert connection.post("/", b"first", {}).status == 200
    with pytest.raises(TimeoutError, match="did not answer in time"):
        connection.post("/", b"second", {})
    assert server.connections == 1
    assert [r.split(b"\r\n\r\n", 1)[1] for r in server.requests] == [b"first", b"second"]


class _HandlerServer(TcpServer):
    """Runs ``handle(server, connection)`` for each connection; ``bodies`` records the
    request bodies it processed."""

    def __init__(self, handle: Callable[[_HandlerServer, socket.socket], None]) -> None:
        self.bodies: list[bytes] = []
        self._handle = handle
        super().__init__()

    def serve(self, conn: socket.socket, index: int) -> None:
        self._handle(self, conn)


def _read_request(conn: socket.socket, buffered: bytes) -> tuple[bytes | None, bytes, bytes]:
    """(method line, body) of the next request and the bytes after it; None at the end."""
    while True:
        requests, _ = split_requests(buffered)
        if requests:
            request = requests[0]
            head, _, body = request.partition(b"\r\n\r\n")
            return head.split(b"\r\n", 1)[0], body, buffered[len(request):]
        data = conn.recv(65536)
        if not data:
            return None, b"", b""
        buffered += data


def test_answers_sent_before_a_connection_reset_mid_window_are_kept() -> None:
    """A server that takes three requests per connection (as nginx's keepalive_requests)
    closes while a large pipelined window is still being written: the write fails, but the
    answers it sent first are read, and only the rest go again. Nothing is lost; an answer
    the reset sometimes takes with it (Linux may drop what was not yet read) has its request
    sent again, never the whole window."""

    def three_per_connection(server: _HandlerServer, conn: socket.socket) -> None:
        buffered = b""
        for count in range(1, 4):
            method, body, buffered = _read_request(conn, buffered)
            if method is None:
                return
            if method.startswith(b"POST"):
                server.bodies.append(body[:6])
            closing = b"Connection: close\r\n" if count == 3 else b""
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n" + closing + b"\r\n{}")
        # Closed with the rest of the window unread: the kernel answers it with a reset.

    server = _HandlerServer(three_per_connection)
    connection = KeptAliveConnection("http", "127.0.0.1", server.port, 5.0, pipeline_depth=16)
    try:
        assert connection.post("/e/", b"env-00", {}).status == 200  # and the probe
        assert connection.pipelining == "proven"
        bodies: list[tuple[bytes, dict[str, str]]] = [
            (f"env-{n:02d}".encode() + b"x" * 500_000, {}) for n in range(1, 17)
        ]
        exchange = connection.post_many("/e/", bodies)
        assert exchange.error is None
        assert [response.status for response in exchange.responses] == [200] * 16
    finally:
        connection.close()
        server.stop()
    expected = [f"env-{n:02d}".encode() for n in range(17)]
    assert sorted(set(server.bodies)) == expected
    resent = len(server.bodies) - len(expected)
    assert resent <= 16 // 3, server.bodies  # at most one per connection the server reset


def test_a_kept_alive_connection_the_server_spoke_on_unasked_is_not_reused() -> None:
    """Some servers send a 408 on an idle kept-alive connection before closing it: read as
    the next envelope's answer, it would have that envelope dropped as refused."""

    def times_out_when_idle(server: _HandlerServer, conn: socket.socket) -> None:
        buffered = b""
        conn.settimeout(0.2)
        while True:
            try:
                method, body, buffered = _read_request(conn, buffered)
            except TimeoutError:
                conn.sendall(b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n"
                             b"Content-Length: 0\r\n\r\n")
                return
            if method is None:
                return
            server.bodies.append(body)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")

    server = _HandlerServer(times_out_when_idle)
    connection = KeptAliveConnection("http", "127.0.0.1", server.port, 5.0)
    try:
        assert connection.post("/e/", b"first", {}).status == 200
        deadline = time.monotonic() + 5
        while not _readable(connection) and time.monotonic() < deadline:
            time.sleep(0.05)  # until the server has spoken its 408
        assert connection.post("/e/", b"second", {}).status == 200
    finally:
        connection.close()
        server.stop()
    assert server.bodies == [b"first", b"second"]


def _readable(connection: KeptAliveConnection) -> bool:
    sock = connection._socket
    return sock is not None and bool(select.select([sock], [], [], 0)[0])
