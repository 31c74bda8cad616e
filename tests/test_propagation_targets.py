"""SENTRY_TRACE_PROPAGATION_TARGETS with the real contrib HTTP client instrumentations
(requests, urllib, urllib3, httpx) calling a real server on 127.0.0.1: a matching URL gets
``traceparent``, ``sentry-trace`` and one ``baggage``; any other URL gets none of them."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import requests
import urllib3
from opentelemetry import baggage, context, propagate
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.requests import RequestsInstrumentor
from opentelemetry.instrumentation.urllib import URLLibInstrumentor
from opentelemetry.instrumentation.urllib3 import URLLib3Instrumentor

from otel_bridge.config import BridgeConfig
from otel_bridge.propagation.baggage import parse_baggage
from otel_bridge.propagation.sentry_trace import parse_sentry_trace
from otel_bridge.propagation.setup import build_global_propagator
from otel_bridge.propagation.traceparent import parse_traceparent
from tests.header_server import HeaderServer
from tests.propagation_helpers import Rig, rig

TRACE_HEADERS = ("traceparent", "sentry-trace", "baggage")


def _requests(url: str) -> None:
    requests.get(url, timeout=10).raise_for_status()


def _urllib(url: str) -> None:
    with urllib.request.urlopen(url, timeout=10) as response:
        response.read()


def _urllib3(url: str) -> None:
    http = urllib3.PoolManager()
    try:
        assert http.request("GET", url, timeout=10).status == 200
    finally:
        http.clear()


def _httpx(url: str) -> None:
    with httpx.Client() as client:
        client.get(url, timeout=10).raise_for_status()


CLIENTS: dict[str, Callable[[str], None]] = {
    "requests": _requests,
    "urllib": _urllib,
    "urllib3": _urllib3,
    "httpx": _httpx,
}


@pytest.fixture
def servers() -> Iterator[tuple[HeaderServer, HeaderServer]]:
    with HeaderServer() as traced, HeaderServer() as third_party:
        yield traced, third_party


def _instrumented(r: Rig, targets: tuple[str, ...] | None, environ: dict[str, str] | None = None):
    previous = propagate.get_global_textmap()
    propagate.set_global_textmap(
        build_global_propagator(BridgeConfig(trace_propagation_targets=targets), environ or {})
    )
    instrumentors: list[Any] = [
        RequestsInstrumentor(),
        URLLibInstrumentor(),
        URLLib3Instrumentor(),
        HTTPXClientInstrumentor(),
    ]
    for instrumentor in instrumentors:
        instrumentor.instrument(tracer_provider=r.provider)

    def undo() -> None:
        for instrumentor in instrumentors:
            instrumentor.uninstrument()
        propagate.set_global_textmap(previous)

    return undo


def _assert_trace_headers(headers: dict[str, list[str]], trace_id: int, sampled: bool) -> None:
    for name in TRACE_HEADERS:
        assert len(headers.get(name, [])) == 1, (name, headers)
    sentry = parse_sentry_trace(headers["sentry-trace"][0])
    parent = parse_traceparent(headers["traceparent"][0])
    assert sentry is not None and parent is not None
    assert sentry.trace_id == parent.trace_id == trace_id
    assert sentry.span_id == parent.span_id
    assert sentry.sampled is parent.sampled is sampled
    values = dict(parse_baggage(headers["baggage"][0]))
    assert values["sentry-trace_id"] == f"{trace_id:032x}"
    assert values["sentry-sampled"] == ("true" if sampled else "false")
    assert values["user"] == "42"


@pytest.mark.parametrize("client", sorted(CLIENTS))
@pytest.mark.parametrize("rate", [1.0, 0.0])
def test_targets_gate_every_trace_header(
    client: str, rate: float, servers: tuple[HeaderServer, HeaderServer]
) -> None:
    traced, third_party = servers
    port = traced.base_url.rsplit(":", 1)[1]
    targets = (rf"127\.0\.0\.1:{port}",)
    with rig(rate=rate, record_unsampled_clients=True) as r:
        undo = _instrumented(r, targets)
        token = context.attach(baggage.set_baggage("user", "42"))
        try:
            with r.tracer.start_as_current_span("job") as root:
                CLIENTS[client](traced.base_url + "/in/")
                CLIENTS[client](third_party.base_url + "/out/?q=1")
        finally:
            context.detach(token)
            undo()
    trace_id = root.get_span_context().trace_id
    _assert_trace_headers(traced.last(), trace_id, sampled=rate == 1.0)
    assert not set(TRACE_HEADERS) & set(third_party.last()), third_party.last()
    if rate == 1.0:
        # the header's parent span is the client span the instrumentation recorded
        client_spans = [s for s in r.exporter.get_finished_spans() if s.parent is not None]
        sent = parse_sentry_trace(traced.last()["sentry-trace"][0])
        assert sent is not None
        assert sent.span_id in {s.context.span_id for s in client_spans}


@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_without_targets_every_url_gets_headers(
    client: str, servers: tuple[HeaderServer, HeaderServer]
) -> None:
    _, third_party = servers
    with rig() as r:
        undo = _instrumented(r, None)
        token = context.attach(baggage.set_baggage("user", "42"))
        try:
            with r.tracer.start_as_current_span("job") as root:
                CLIENTS[client](third_party.base_url + "/anything/")
        finally:
            context.detach(token)
            undo()
    _assert_trace_headers(third_party.last(), root.get_span_context().trace_id, sampled=True)


def test_user_listed_baggage_still_yields_one_header(
    servers: tuple[HeaderServer, HeaderServer],
) -> None:
    traced, _ = servers
    environ = {"OTEL_PROPAGATORS": "baggage,tracecontext,otel_bridge,sentry"}
    with rig() as r:
        undo = _instrumented(r, None, environ)
        token = context.attach(baggage.set_baggage("user", "42"))
        try:
            with r.tracer.start_as_current_span("job") as root:
                _requests(traced.base_url + "/x/")
        finally:
            context.detach(token)
            undo()
    _assert_trace_headers(traced.last(), root.get_span_context().trace_id, sampled=True)


@pytest.mark.parametrize("rate", [1.0, 0.0])
def test_a_hand_written_inject_under_a_server_span_with_a_url_is_not_gated(rate: float) -> None:
    # The ASGI instrumentation (and WSGI without RAW_URI) puts the incoming URL on the SERVER
    # span. It was matched against the targets, so a message sent from a request handler
    # lost its headers (sampled) or kept them (unsampled) by where the request came from.
    from opentelemetry import trace

    propagator = build_global_propagator(
        BridgeConfig(trace_propagation_targets=(r"^https://api\.internal/",)), {}
    )
    with rig(rate=rate, record_unsampled_clients=True) as r, r.tracer.start_as_current_span(
        "GET /orders", kind=trace.SpanKind.SERVER,
        attributes={"http.url": "https://shop.example.com/orders"},
    ):
        headers: dict[str, str] = {}
        propagator.inject(headers)
        with r.tracer.start_as_current_span(
            "GET", kind=trace.SpanKind.CLIENT,
            attributes={"http.url": "https://weather.example.com/today"},
        ):
            to_third_party: dict[str, str] = {}
            propagator.inject(to_third_party)
    assert set(TRACE_HEADERS) <= set(headers)
    assert to_third_party == {}
