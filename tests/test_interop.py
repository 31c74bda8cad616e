"""A bridged Django service in a chain of real peers, each its own process on 127.0.0.1:
plain sentry-sdk services upstream and downstream, a W3C-only OpenTelemetry service, and an
unsampled upstream. Asserts the headers each hop receives and what the ingest receives."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
import requests

from otel_bridge.propagation.baggage import parse_baggage
from otel_bridge.propagation.sentry_trace import parse_sentry_trace
from otel_bridge.propagation.traceparent import parse_traceparent
from tests.rig import REPO_ROOT, InstrumentedServer, RecordingIngest, start_shop

SHOP_KEY = "shopkey"
PEER_KEY = "peerkey"
TRACE = "771a43a4192642f0b136d5159a501700"
CLIENT_SPAN = "b0e6f15b45c36b12"

Peer = Callable[..., InstrumentedServer]


@pytest.fixture
def peer() -> Iterator[Peer]:
    started: list[InstrumentedServer] = []

    def start(mode: str, env: dict[str, str] | None = None) -> InstrumentedServer:
        server = InstrumentedServer(
            ["python", "-m", "tests.peers.peer", mode, "{port}"],
            env={"PYTHONPATH": str(REPO_ROOT), **(env or {})},
            cwd=REPO_ROOT,
            ready_path=None,
            instrument=False,
        )
        started.append(server)
        server.start()
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def shop(ingest: RecordingIngest) -> Iterator[InstrumentedServer]:
    server = start_shop(
        {"SENTRY_DSN": ingest.make_dsn(1, SHOP_KEY), "SENTRY_TRACES_SAMPLE_RATE": "1.0",
         "SENTRY_RELEASE": "shop@2"}
    )
    try:
        yield server
    finally:
        server.stop()


def call(server: InstrumentedServer, url: str) -> str:
    return server.url("/call/?" + urlencode({"url": url}))


def transactions(ingest: RecordingIngest, trace_id: str) -> list[tuple[dict[str, Any], Any]]:
    """(envelope trace header, transaction event) of every transaction of one trace."""
    return [
        (env.headers.get("trace", {}), item.json)
        for env in ingest.envelopes
        for item in env.items_of("transaction")
        if item.json["contexts"]["trace"]["trace_id"] == trace_id
    ]


def wait_count(
    ingest: RecordingIngest, trace_id: str, count: int
) -> list[tuple[dict[str, Any], Any]]:
    def enough(_: RecordingIngest) -> list[tuple[dict[str, Any], Any]] | None:
        found = transactions(ingest, trace_id)
        return found if len(found) >= count else None

    return ingest.wait_for(enough, timeout=30)


def one(headers: dict[str, list[str]], name: str) -> str:
    """The single value of a header (WSGI joins repeated headers with ",": for baggage a
    repeated key shows that two headers were sent)."""
    values = headers.get(name, [])
    assert len(values) == 1, (name, headers)
    if name == "baggage":
        keys = [member.split("=", 1)[0].strip() for member in values[0].split(",")]
        assert len(keys) == len(set(keys)), values
    return values[0]


def client_span_ids(event: dict[str, Any]) -> set[str]:
    return {s["span_id"] for s in event.get("spans", []) if s.get("op") == "http.client"}


def test_sentry_sdk_upstream_and_downstream(
    ingest: RecordingIngest, shop: InstrumentedServer, peer: Peer
) -> None:
    upstream = peer("sentry", {"SENTRY_DSN": ingest.make_dsn(2, PEER_KEY)})
    downstream = peer("sentry", {"SENTRY_DSN": ingest.make_dsn(3, "downkey")})
    url = call(upstream, call(shop, downstream.url("/echo-headers/")))
    answer = requests.get(url, timeout=60).json()
    received = answer["body"]["body"]["headers"]  # what the sentry-sdk downstream got

    sentry = parse_sentry_trace(one(received, "sentry-trace"))
    parent = parse_traceparent(one(received, "traceparent"))
    assert sentry is not None and parent is not None
    assert (sentry.trace_id, sentry.span_id, sentry.sampled) == (
        parent.trace_id, parent.span_id, True
    )
    trace_id = f"{sentry.trace_id:032x}"
    dsc = {k[7:]: v for k, v in parse_baggage(one(received, "baggage")) if k[:7] == "sentry-"}
    # the head (upstream sentry-sdk) made the DSC; the bridge forwarded it frozen
    assert dsc["public_key"] == PEER_KEY and dsc["release"] == "peer@1"
    assert dsc["trace_id"] == trace_id

    found = wait_count(ingest, trace_id, 3)
    shop_header, shop_event = next(
        (h, e) for h, e in found if e["transaction"].startswith("GET call")
    )
    up_events = [e for h, e in found if e is not shop_event and e["release"] == "peer@1"]
    # shop's parent is the upstream's outgoing http.client span
    up_client_spans = set().union(*(client_span_ids(e) for e in up_events))
    assert shop_event["contexts"]["trace"]["parent_span_id"] in up_client_spans
    # the downstream's parent is the shop's outgoing client span
    parents = {e["contexts"]["trace"].get("parent_span_id") for e in up_events}
    assert f"{sentry.span_id:016x}" in parents
    assert f"{sentry.span_id:016x}" in client_span_ids(shop_event), shop_event.get("spans")
    # DSC in every envelope header: the frozen upstream one, never the shop's own
    assert shop_header == dsc
    assert all(header == dsc for header, _ in found)


def test_w3c_only_upstream_then_sentry_sdk_downstream(
    ingest: RecordingIngest, shop: InstrumentedServer, peer: Peer
) -> None:
    w3c = peer("w3c")
    downstream = peer("sentry", {"SENTRY_DSN": ingest.make_dsn(3, "downkey")})
    url = call(w3c, call(shop, downstream.url("/echo-headers/")))
    headers = {"traceparent": f"00-{TRACE}-{CLIENT_SPAN}-01", "baggage": "tenant=acme"}
    answer = requests.get(url, headers=headers, timeout=60).json()
    received = answer["body"]["body"]["headers"]

    sentry = parse_sentry_trace(one(received, "sentry-trace"))
    assert sentry is not None and f"{sentry.trace_id:032x}" == TRACE and sentry.sampled
    baggage = dict(parse_baggage(one(received, "baggage")))
    assert baggage["tenant"] == "acme"  # third-party baggage made it through every hop
    # the bridge started the DSC for this trace: complete and consistent
    assert baggage["sentry-trace_id"] == TRACE
    assert baggage["sentry-public_key"] == SHOP_KEY
    assert baggage["sentry-release"] == "shop@2"
    assert baggage["sentry-sampled"] == "true"
    assert float(baggage["sentry-sample_rand"]) < float(baggage["sentry-sample_rate"])

    found = wait_count(ingest, TRACE, 2)
    shop_header, shop_event = next(
        (h, e) for h, e in found if e["transaction"].startswith("GET call")
    )
    parent_id = shop_event["contexts"]["trace"]["parent_span_id"]
    assert parent_id and parent_id != CLIENT_SPAN  # the W3C peer's own client span
    assert f"{sentry.span_id:016x}" in client_span_ids(shop_event)
    assert shop_header == {k[7:]: v for k, v in baggage.items() if k.startswith("sentry-")}
    down = [e for h, e in found if e is not shop_event]
    assert down and down[0]["contexts"]["trace"]["parent_span_id"] == f"{sentry.span_id:016x}"


def test_unsampled_upstream_sends_no_transaction_and_propagates_unsampled(
    ingest: RecordingIngest, shop: InstrumentedServer, peer: Peer
) -> None:
    downstream = peer("sentry", {"SENTRY_DSN": ingest.make_dsn(3, "downkey")})
    incoming = {
        "sentry-trace": f"{TRACE}-{CLIENT_SPAN}-0",
        "baggage": f"sentry-trace_id={TRACE},sentry-sampled=false,sentry-sample_rate=0.1,"
                   "sentry-public_key=up,sentry-sample_rand=0.5",
    }
    answer = requests.get(call(shop, downstream.url("/echo-headers/")), headers=incoming,
                          timeout=60).json()
    received = answer["body"]["headers"]
    assert one(received, "sentry-trace").startswith(TRACE)
    assert one(received, "sentry-trace").endswith("-0")
    parent = parse_traceparent(one(received, "traceparent"))
    assert parent is not None and not parent.sampled
    assert dict(parse_baggage(one(received, "baggage"))) == {
        "sentry-trace_id": TRACE, "sentry-sampled": "false", "sentry-sample_rate": "0.1",
        "sentry-public_key": "up", "sentry-sample_rand": "0.5",
    }
    # a sampled request afterwards: once its transactions arrived, the unsampled one
    # would have too
    marker = requests.get(call(shop, downstream.url("/echo-headers/")), timeout=60).json()
    marker_trace = one(marker["body"]["headers"], "sentry-trace")[:32]
    wait_count(ingest, marker_trace, 2)
    assert transactions(ingest, TRACE) == []


def test_w3c_only_downstream_gets_one_traceparent_and_one_baggage(
    ingest: RecordingIngest, shop: InstrumentedServer, peer: Peer
) -> None:
    w3c = peer("w3c")
    answer = requests.get(call(shop, w3c.url("/echo-headers/")),
                          headers={"baggage": "tenant=acme"}, timeout=60).json()
    received = answer["body"]["headers"]
    parent = parse_traceparent(one(received, "traceparent"))
    sentry = parse_sentry_trace(one(received, "sentry-trace"))
    assert parent is not None and sentry is not None and parent.sampled
    assert (parent.trace_id, parent.span_id) == (sentry.trace_id, sentry.span_id)
    baggage = dict(parse_baggage(one(received, "baggage")))
    assert baggage["tenant"] == "acme"
    assert baggage["sentry-trace_id"] == f"{parent.trace_id:032x}"
    ((header, event),) = wait_count(ingest, f"{parent.trace_id:032x}", 1)
    assert event["contexts"]["trace"].get("parent_span_id") is None
    assert header == {k[7:]: v for k, v in baggage.items() if k.startswith("sentry-")}


def test_sampling_rules_from_the_environment_drop_health_checks(
    ingest: RecordingIngest,
) -> None:
    shop = start_shop({"SENTRY_DSN": ingest.make_dsn(1, SHOP_KEY),
                       "OTEL_BRIDGE_SAMPLING_RULES": "/health/?=0"})
    try:
        assert requests.get(shop.url("/health/"), timeout=30).status_code == 200
        marker = requests.get(shop.url("/echo-headers/"), timeout=30)
        assert marker.status_code == 200
        ingest.wait_for(
            lambda i: [e for e in i.events("transaction") if "echo-headers" in e["transaction"]],
            timeout=30,
        )
    finally:
        shop.stop()
    names = [event["transaction"] for event in ingest.events("transaction")]
    assert not [name for name in names if "health" in name], names
