"""What the memory benchmark's accounting rests on: every transaction the server makes is
known (the readiness check's too), and the sink tells requests' transactions from
follow-ups. Real processes: the sink and the benchmark's server."""

from __future__ import annotations

import http.client
import json

import sentry_sdk

from bench.procs import Server, Sink


def _post_transaction(port: int, name: str, parent_span_id: str | None) -> int:
    trace = {"trace_id": "a" * 32, "span_id": "b" * 16, "parent_span_id": parent_span_id}
    event = json.dumps(
        {"type": "transaction", "transaction": name, "contexts": {"trace": trace}}
    ).encode()
    body = (
        b'{"event_id":"' + b"c" * 32 + b'"}\n'
        + json.dumps({"type": "transaction", "length": len(event)}).encode() + b"\n"
        + event + b"\n"
    )
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("POST", "/api/1/envelope/", body)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def test_the_sink_counts_transactions_with_a_parent_span_as_follow_ups(bench_sink: Sink) -> None:
    bench_sink.mode("normal", reset=True)
    assert _post_transaction(bench_sink.port, "GET orders/", None) == 200
    assert _post_transaction(bench_sink.port, "SELECT", "d" * 16) == 200
    assert _post_transaction(bench_sink.port, "SELECT", "e" * 16) == 200
    stats = bench_sink.stats()
    assert stats["transactions"] == {"GET orders/": 1, "SELECT": 2}
    assert stats["follow_ups"] == {"SELECT": 2}
    bench_sink.mode("normal", reset=True)
    assert bench_sink.stats()["follow_ups"] == {}


def test_every_transaction_of_an_idle_server_is_its_readiness_check(bench_sink: Sink) -> None:
    # The readiness check is sent from this process: a sentry-sdk client another test left
    # here would add trace headers to it, as the benchmark's runner never does.
    sentry_sdk.get_global_scope().set_client(None)
    bench_sink.mode("normal", reset=True)
    server = Server("bridge", bench_sink.dsn)
    try:
        exited = server.terminate()
    finally:
        server.close()
    assert exited.returncode in (0, 143)
    assert server.readiness_requests >= 1
    stats = bench_sink.stats()
    assert stats["transactions"] == {"GET health/": server.readiness_requests}
    assert stats["follow_ups"] == {}
