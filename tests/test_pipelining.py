"""HTTP/1.1 pipelining in otel-bridge's transport: a span batch's envelopes go out several
per write once the ingest has answered a pipelined probe; servers that do not answer
pipelined requests (gunicorn's threaded worker, here for real under Bugsink) get one
request at a time, and no envelope is lost or sent twice either way. Real sockets on
127.0.0.1, sentry-sdk's client and otel-bridge's transport."""

from __future__ import annotations

import logging
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sentry_sdk
from sentry_sdk.envelope import Envelope

from otel_bridge.transport import PIPELINE_DEPTH_OPTION, BridgeTransport
from tests.envelopes import transaction_envelope as _envelope
from tests.rig.bugsink import Bugsink
from tests.rig.ingest import decode_body, parse_envelope
from tests.rig.raw_http import TcpServer, split_requests


def _response(status: int, headers: dict[str, str], body: bytes = b'{}') -> bytes:
    lines = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class PipelineServer(TcpServer):
    """An ingest on 127.0.0.1 with a configurable attitude to pipelined requests.

    - ``largest_read`` records the most requests that arrived in one read: more than one
      were written before the first of them was answered, i.e. pipelined;
    - ``swallow``: of the requests that arrive in one read, only the first is answered and
      the rest wait until more bytes come, as in gunicorn's threaded worker;
    - ``close_after``/``drop_after``: the n-th POST (1-based, over all connections) is the
      connection's last, answered with ``Connection: close`` / answered, then cut silently;
    - ``statuses``: the status and headers of the n-th POST.
    """

    def __init__(
        self,
        *,
        swallow: bool = False,
        close_after: int = 0,
        drop_after: int = 0,
        statuses: dict[int, tuple[int, dict[str, str]]] | None = None,
        idle: float = 3.0,
    ) -> None:
        self.swallow = swallow
        self.close_after = close_after
        self.drop_after = drop_after
        self.statuses = statuses or {}
        self.idle = idle
        self.posts: list[tuple[int, bytes]] = []  # (connection, body)
        self.options = 0
        self.largest_read = 0
        super().__init__()

    @property
    def dsn(self) -> str:
        return f"http://key@127.0.0.1:{self.port}/1"

    def transactions(self) -> list[str]:
        names: list[str] = []
        for _, request in self.posts:
            head, _, body = request.partition(b"\r\n\r\n")
            encoding = next(
                (line.partition(b":")[2].strip().decode() for line in head.split(b"\r\n")
                 if line.lower().startswith(b"content-encoding:")),
                None,
            )
            envelope = parse_envelope(decode_body(body, encoding))
            names += [item.json["transaction"] for item in envelope.items_of("transaction")]
        return names

    def serve(self, conn: socket.socket, index: int) -> None:
        conn.settimeout(self.idle)  # a kept-alive connection's idle limit
        buffer = b""
        while True:
            try:
                data = conn.recv(1 << 20)
            except OSError:
                return
            if not data:
                return
            requests, buffer = split_requests(buffer + data)
            self.largest_read = max(self.largest_read, len(requests))
            if self.swallow and len(requests) > 1:
                buffer = b"".join(requests[1:]) + buffer
                requests = requests[:1]
            for request in requests:
                if request.startswith(b"OPTIONS "):
                    with self._lock:
                        self.options += 1
                    conn.sendall(_response(200, {}, b""))
                    continue
                with self._lock:
                    self.posts.append((index, request))
                    number = len(self.posts)
                status, headers = self.statuses.get(number, (200, {}))
                last = number in (self.close_after, self.drop_after)
                if number == self.close_after:
                    headers = {**headers, "Connection": "close"}
                conn.sendall(_response(status, headers))
                if last:
                    return


@pytest.fixture
def make_transport(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    # A hung exchange fails the test in seconds rather than sentry-sdk's 30.
    monkeypatch.setattr(BridgeTransport, "TIMEOUT", 5.0)
    clients: list[sentry_sdk.Client] = []

    def make(dsn: str, depth: int = 4, **options: Any) -> BridgeTransport:
        experiments: Any = {PIPELINE_DEPTH_OPTION: depth}
        client = sentry_sdk.Client(
            dsn=dsn, transport=BridgeTransport,  # type: ignore[arg-type]
            _experiments=experiments, **options,
        )
        clients.append(client)
        transport = client.transport
        assert isinstance(transport, BridgeTransport)
        return transport

    yield make
    for client in clients:
        client.close(timeout=2)


@pytest.fixture
def servers() -> Iterator[Any]:
    started: list[PipelineServer] = []

    def start(**behaviour: Any) -> PipelineServer:
        started.append(PipelineServer(**behaviour))
        return started[-1]

    yield start
    for server in started:
        server.stop()


def _names(prefix: str, count: int) -> list[str]:
    return [f"{prefix} {n}" for n in range(count)]


def test_a_batch_goes_out_pipelined_after_one_probe(servers: Any, make_transport: Any) -> None:
    server = servers()
    transport = make_transport(server.dsn, depth=4)
    assert transport.capture_envelopes([_envelope(name) for name in _names("batch", 9)])
    transport.flush(timeout=10)

    assert server.transactions() == _names("batch", 9)  # in order, each once
    assert server.options == 1  # the probe, behind the first envelope
    assert server.connections == 1
    # Windows of four arrived whole: written before any of them was answered.
    assert server.largest_read == 4
    assert transport._connection is not None
    assert transport._connection.pipelining == "proven"


def test_a_server_that_ignores_pipelined_requests_gets_one_at_a_time(
    servers: Any, make_transport: Any, caplog: pytest.LogCaptureFixture
) -> None:
    server = servers(swallow=True)
    transport = make_transport(server.dsn, depth=4)
    with caplog.at_level(logging.INFO, logger="otel_bridge.transport"):
        assert transport.capture_envelopes([_envelope(name) for name in _names("one", 6)])
        transport.flush(timeout=15)
        assert transport.capture_envelopes([_envelope(name) for name in _names("two", 3)])
        transport.flush(timeout=15)

    assert server.transactions() == _names("one", 6) + _names("two", 3)
    assert transport._connection is not None
    assert transport._connection.pipelining == "off"
    # The unanswered probe cost one connection; everything after went over a second one.
    assert server.connections == 2
    assert {conn for conn, _ in server.posts[1:]} == {2}
    notices = [r for r in caplog.records if "did not answer a pipelined request" in r.message]
    assert len(notices) == 1


def test_real_gunicorn_under_bugsink_is_detected_and_loses_nothing(
    bugsink: Bugsink, make_transport: Any
) -> None:
    # gunicorn's gthread worker answers the first of pipelined requests and then waits for
    # bytes it has already read: the probe must find that out, not lose envelopes to it.
    transport = make_transport(bugsink.dsn, depth=8)
    marker = uuid.uuid4().hex
    envelopes = []
    for n in range(5):
        event_id = uuid.uuid4().hex
        envelope = Envelope(headers={"event_id": event_id})
        envelope.add_event({
            "event_id": event_id, "level": "error", "platform": "python",
            "message": f"pipelining {marker} {n}",
            "exception": {"values": [{"type": "PipelineCheck", "value": f"{marker} {n}"}]},
        })
        envelopes.append(envelope)
    assert transport.capture_envelopes(envelopes)
    transport.flush(timeout=30)

    stored = bugsink.wait_for_events(
        lambda event: marker in (event.exception_value or ""), count=5, timeout=30
    )
    assert sorted(event.exception_value or "" for event in stored) == [
        f"{marker} {n}" for n in range(5)
    ]
    assert transport._connection is not None
    assert transport._connection.pipelining == "off"


@pytest.mark.parametrize("ending", ["close_after", "drop_after"])
def test_requests_behind_the_last_answer_are_sent_again_on_a_new_connection(
    ending: str, servers: Any, make_transport: Any
) -> None:
    # POST 3 (in the first pipelined window) is the connection's last: answered with
    # "Connection: close" (the server processed nothing after it), or answered and then cut.
    # The rest of that window goes again, on a second connection, each envelope once.
    server = servers(**{ending: 3})
    transport = make_transport(server.dsn, depth=4)
    assert transport.capture_envelopes([_envelope(name) for name in _names("e", 8)])
    transport.flush(timeout=10)

    assert server.transactions() == _names("e", 8)
    assert server.connections == 2
    assert transport._connection is not None
    assert transport._connection.pipelining == "proven"


def test_a_rate_limit_in_a_window_stops_the_next_window(
    servers: Any, make_transport: Any
) -> None:
    # The first window is e0 alone (with the probe), then windows of four: e1-e4 pipelined,
    # of which POST 2 (e1) is rate-limited. e2-e4 were already on the wire; e5-e8 are not
    # sent, and counted.
    server = servers(statuses={2: (429, {"Retry-After": "60"})})
    transport = make_transport(server.dsn, depth=4)
    envelopes = [_envelope(name) for name in _names("e", 9)]
    assert transport.capture_envelopes(envelopes)
    transport._worker.flush(timeout=10)  # not transport.flush: its client report is limited

    assert server.transactions() == _names("e", 5)
    report = transport._fetch_pending_client_report(force=True)  # sentry-sdk's bookkeeping
    assert report is not None
    discarded = report.payload.json["discarded_events"]  # type: ignore[index]
    assert {"reason": "ratelimit_backoff", "category": "transaction", "quantity": 4} in discarded


def test_depth_one_never_pipelines_or_probes(servers: Any, make_transport: Any) -> None:
    server = servers(swallow=True)  # would hang on anything pipelined
    transport = make_transport(server.dsn, depth=1)
    assert transport.capture_envelopes([_envelope(name) for name in _names("e", 5)])
    transport.flush(timeout=10)

    assert server.transactions() == _names("e", 5)
    assert server.options == 0
    assert server.connections == 1
