"""Pure parts of propagation, the DSC and sampling, against a real in-process SDK."""

from __future__ import annotations

import random
import re

import pytest
from opentelemetry import baggage, context, trace
from opentelemetry.sdk.trace import ReadableSpan
from sentry_sdk.tracing_utils import _generate_sample_rand

from otel_bridge.config import BridgeConfig
from otel_bridge.dsc import (
    ATTR_DSC,
    ATTR_SAMPLE_RAND,
    ATTR_SAMPLE_RATE,
    backfill_incoming,
    build_dsc,
    consistent_rand_rate,
    current_dsc,
    dsc_for_finished_root,
    generate_sample_rand,
    head_sample_rand,
    parse_dsc,
)
from otel_bridge.propagation.baggage import (
    MAX_BYTES,
    MAX_MEMBERS,
    merge_baggage,
    parse_baggage,
    serialize_baggage,
    split_dsc,
)
from otel_bridge.propagation.sentry_trace import (
    SentryTrace,
    format_sentry_trace,
    parse_sentry_trace,
)
from otel_bridge.propagation.traceparent import parse_traceparent
from otel_bridge.sampling import build_sampler, parse_rules
from tests.propagation_helpers import rig

TRACE = "771a43a4192642f0b136d5159a501700"
SPAN = "b0e6f15b45c36b12"
OTHER_TRACE = "0af7651916cd43dd8448eb211c80319c"


def test_sentry_trace_parses_the_three_forms() -> None:
    expected = SentryTrace(int(TRACE, 16), int(SPAN, 16), True)
    assert parse_sentry_trace(f"{TRACE}-{SPAN}-1") == expected
    assert parse_sentry_trace(f"{TRACE}-{SPAN}-0").sampled is False  # type: ignore[union-attr]
    assert parse_sentry_trace(f" {TRACE}-{SPAN}\t").sampled is None  # type: ignore[union-attr]


def test_a_sentry_trace_sent_twice_and_folded_by_the_server_is_read_from_its_first_value() -> None:
    # wsgiref, gunicorn and Django join a repeated header with commas; sentry-sdk reads the
    # first non-empty value. The whole trace was dropped.
    from opentelemetry.instrumentation.wsgi import wsgi_getter

    from otel_bridge.propagation.propagator import SentryBridgePropagator

    folded = f"{TRACE}-{SPAN}-1,{OTHER_TRACE}-{SPAN}-0"
    assert parse_sentry_trace(folded) == SentryTrace(int(TRACE, 16), int(SPAN, 16), True)
    deferred = SentryTrace(int(TRACE, 16), int(SPAN, 16), None)
    assert parse_sentry_trace(f" , {TRACE}-{SPAN}") == deferred
    ctx = SentryBridgePropagator().extract({"HTTP_SENTRY_TRACE": folded}, getter=wsgi_getter)
    assert trace.get_current_span(ctx).get_span_context().trace_id == int(TRACE, 16)
    assert parse_sentry_trace(f"{TRACE}-{SPAN}-1," * 200) is None  # no endless splitting


@pytest.mark.parametrize(
    "value",
    [
        "-", "", TRACE, f"{TRACE}-", f"{TRACE.upper()}-{SPAN}-1", f"{TRACE}-{SPAN}-2",
        f"{'0' * 32}-{SPAN}-1", f"{TRACE}-{'0' * 16}-1", f"{TRACE}-{SPAN}-1-1",
        f"{TRACE}-{SPAN}-1\n", f"{TRACE[:-1]}-{SPAN}", None, 42, f"{TRACE}-{SPAN}" + " " * 200,
    ],
)
def test_malformed_sentry_trace_is_none(value: object) -> None:
    assert parse_sentry_trace(value) is None


def test_sentry_trace_round_trips() -> None:
    for sampled in (True, False, None):
        header = format_sentry_trace(int(TRACE, 16), int(SPAN, 16), sampled)
        assert parse_sentry_trace(header) == SentryTrace(int(TRACE, 16), int(SPAN, 16), sampled)
    assert format_sentry_trace(1, 2, True) == f"{1:032x}-{2:016x}-1"


def test_traceparent_versions() -> None:
    assert parse_traceparent(f"00-{TRACE}-{SPAN}-01").sampled  # type: ignore[union-attr]
    assert not parse_traceparent(f"00-{TRACE}-{SPAN}-00").sampled  # type: ignore[union-attr]
    assert parse_traceparent(f"ff-{TRACE}-{SPAN}-01") is None
    assert parse_traceparent(f"00-{TRACE}-{SPAN}-01-extra") is None
    assert parse_traceparent(f"01-{TRACE}-{SPAN}-01-extra") is not None
    assert parse_traceparent(f"00-{'0' * 32}-{SPAN}-01") is None


def test_baggage_parse_decodes_skips_and_keeps_last() -> None:
    entries = parse_baggage(
        ["a=1, b = hello%20world ;prop=x", "bad member,=novalue,c=1,a=2, d=\"q\",sentry-x=y"]
    )
    assert entries == [("b", "hello world"), ("c", "1"), ("a", "2"), ("sentry-x", "y")]
    assert split_dsc(entries) == ({"x": "y"}, [("b", "hello world"), ("c", "1"), ("a", "2")])


def test_a_member_cut_by_the_input_bound_is_not_read_shortened() -> None:
    # Malformed members (skipped) fill the first 64 KiB; the last member straddles the bound.
    header = ";" * 65_520 + ",kept=1,tenant=acme-corporation"
    assert len(header) > 65_536 > header.rindex("tenant")
    assert parse_baggage(header) == [("kept", "1")]


def test_merge_puts_dsc_first_and_each_key_once() -> None:
    header = merge_baggage(
        {"trace_id": TRACE, "transaction": "GET /a b,c"},
        [("sentry-trace_id", "forged"), ("user", "1"), ("user", "2"), ("k", "v=w")],
    )
    assert header == (
        f"sentry-trace_id={TRACE},sentry-transaction=GET%20/a%20b%2Cc,user=1,k=v=w"
    )
    keys = [member.split("=", 1)[0] for member in header.split(",")]
    assert len(keys) == len(set(keys))
    assert dict(parse_baggage(header))["sentry-transaction"] == "GET /a b,c"


def test_serialize_keeps_w3c_limits_and_the_dsc() -> None:
    dsc = {"trace_id": TRACE, "sample_rand": "0.5"}
    many = [(f"k{i}", "v") for i in range(500)]
    header = merge_baggage(dsc, many)
    assert header is not None
    assert len(header.split(",")) == MAX_MEMBERS
    assert header.startswith(f"sentry-trace_id={TRACE},sentry-sample_rand=0.5,")

    big = [(f"big{i}", "x" * 3000) for i in range(10)]
    header = merge_baggage(dsc, big)
    assert header is not None and len(header.encode()) <= MAX_BYTES
    assert "sentry-trace_id" in header
    assert serialize_baggage([("bad key", "v"), ("ok", "é")]) == "ok=%C3%A9"
    assert serialize_baggage([]) is None


def test_sample_rand_matches_sentry_sdk() -> None:
    for trace_id in (TRACE, OTHER_TRACE):
        for interval in ((0.0, 1.0), (0.0, 0.25), (0.25, 1.0)):
            assert generate_sample_rand(int(trace_id, 16), *interval) == _generate_sample_rand(
                trace_id, interval=interval
            )
    assert generate_sample_rand(1, 0.5, 0.5) is None


def test_an_unsampled_back_fill_never_falls_under_a_rate_of_more_than_six_decimals() -> None:
    rate = 0.9999985  # 6 decimals leave one value at or over it: 0.999999
    ours = {generate_sample_rand(trace_id, rate, 1.0) for trace_id in range(1, 200)}
    assert ours == {0.999999}
    # sentry-sdk's truncated bound also draws 0.999998, under the rate, for an unsampled trace.
    sdk = {_generate_sample_rand(f"{t:032x}", interval=(rate, 1.0)) for t in range(1, 200)}
    assert sdk == {0.999998, 0.999999}


def test_head_sample_rand_is_uniform_over_the_ids_random_bits() -> None:
    assert head_sample_rand(0) == 0.0
    assert head_sample_rand((1 << 128) - 1) == 0.999999  # never 1.0
    assert head_sample_rand(1 << 56) == 0.0  # the bits above the low 56 are not read
    assert head_sample_rand(1 << 55) == 0.5
    draws = [head_sample_rand(random.getrandbits(128)) for _ in range(20_000)]
    assert all(0.0 <= d < 1.0 and d == round(d, 6) for d in draws)
    tenths = [sum(1 for d in draws if k / 10 <= d < (k + 1) / 10) for k in range(10)]
    assert min(tenths) > 1_700 and max(tenths) < 2_300, tenths


@pytest.mark.parametrize("rate", [0.25, 0.5])
def test_a_new_trace_is_sampled_by_the_sample_rand_it_propagates(rate: float) -> None:
    decisions = []
    with rig(rate=rate) as r:
        for _ in range(200):
            with r.tracer.start_as_current_span("job") as root:
                values = _values(r.inject()["baggage"])
            trace_id = root.get_span_context().trace_id
            rand = float(values["sentry-sample_rand"])
            assert rand == head_sample_rand(trace_id)
            assert (values["sentry-sampled"] == "true") == (rand < rate)
            decisions.append(rand < rate)
    assert 0.1 < sum(decisions) / len(decisions) < rate + 0.15


@pytest.mark.parametrize("sampled", [True, False])
@pytest.mark.parametrize("rate", [0.0, 0.1, 0.5, 1.0])
@pytest.mark.parametrize("rand", [None, 0.0, 0.05, 0.5, 0.999999])
def test_consistent_rand_rate_invariant(sampled: bool, rate: float, rand: float | None) -> None:
    new_rand, new_rate = consistent_rand_rate(int(TRACE, 16), sampled, rand, rate)
    assert (new_rand < new_rate) == sampled
    assert 0.0 <= new_rand < 1.0
    if rand is not None and (rand < rate) == sampled:
        assert (new_rand, new_rate) == (rand, rate)


def test_build_dsc_leaves_out_url_transactions_and_unknowns() -> None:
    common = {"sample_rand": 0.25, "sample_rate": 0.5, "sampled": True}
    dsc = build_dsc(1, public_key="pk", release=None, environment="prod", transaction="GET /x",
                    transaction_source="url", **common)  # type: ignore[arg-type]
    assert dsc == {"trace_id": f"{1:032x}", "sample_rate": "0.5", "sample_rand": "0.250000",
                   "sampled": "true", "public_key": "pk", "environment": "prod"}
    dsc = build_dsc(1, public_key=None, release="r", environment=None, transaction="GET x/",
                    transaction_source="route", **common)  # type: ignore[arg-type]
    assert dsc["transaction"] == "GET x/" and dsc["release"] == "r"


def test_backfill_incoming_only_adds_a_missing_sample_rand() -> None:
    incoming = {"trace_id": TRACE, "sample_rate": "0.25", "foo": "bar"}
    filled = backfill_incoming(incoming, int(TRACE, 16), True)
    assert float(filled.pop("sample_rand")) < 0.25
    assert filled == incoming
    kept = {"trace_id": TRACE, "sample_rand": "0.900000"}
    assert backfill_incoming(kept, int(TRACE, 16), True) == kept


def test_rules_parse_and_report_problems() -> None:
    rules, problems = parse_rules(["/health.*=0", "GET /a=b/.*=0.5", "nope", "x=2", "(=1"])
    parsed = [(r.pattern.pattern, r.rate) for r in rules]
    assert parsed == [("/health.*", 0.0), ("GET /a=b/.*", 0.5)]
    assert len(problems) == 3


# -- sampling + DSC through a real TracerProvider --------------------------------------


def _values(header: str) -> dict[str, str]:
    return dict(parse_baggage(header))


def test_head_service_creates_and_freezes_a_complete_dsc() -> None:
    with rig(rate=1.0) as r, r.tracer.start_as_current_span(
        "GET orders/", kind=trace.SpanKind.SERVER, attributes={"http.method": "GET"}
    ) as root:
        root.set_attribute("http.route", "orders/")
        with r.tracer.start_as_current_span("child"):
            headers = r.inject()
        root.set_attribute("http.route", "changed/")
        again = r.inject()
    sc = root.get_span_context()
    assert headers["traceparent"] != again["traceparent"]  # different current span
    assert headers["sentry-trace"].startswith(f"{sc.trace_id:032x}-")
    assert headers["sentry-trace"].endswith("-1")
    dsc = _values(headers["baggage"])
    assert dsc == _values(again["baggage"])  # frozen on first use
    assert dsc["sentry-trace_id"] == f"{sc.trace_id:032x}"
    assert dsc["sentry-public_key"] == "pk123"
    assert dsc["sentry-release"] == "shop@1.0"
    assert dsc["sentry-environment"] == "test"
    assert dsc["sentry-sampled"] == "true"
    assert dsc["sentry-sample_rate"] == "1.0"
    assert re.fullmatch(r"0\.\d{6}", dsc["sentry-sample_rand"])
    assert dsc["sentry-transaction"] == "GET orders/"

    finished = {s.name: s for s in r.exporter.get_finished_spans()}["GET orders/"]
    assert (finished.attributes or {})[ATTR_SAMPLE_RATE] == 1.0
    rebuilt = dsc_for_finished_root(finished, public_key="other", release=None,
                                    environment=None, transaction="x", transaction_source="route")
    assert {f"sentry-{k}": v for k, v in rebuilt.items()} == dsc


def test_a_child_outliving_its_root_injects_the_name_the_root_ended_with() -> None:
    """Nothing asked for the DSC while the request ran: the root's final name (its route is
    set after it started, as Django's middleware does) is what a late child propagates."""
    with rig(rate=1.0) as r:
        root = r.tracer.start_span(
            "GET", kind=trace.SpanKind.SERVER, attributes={"http.method": "GET"}
        )
        late = r.tracer.start_span("cleanup", trace.set_span_in_context(root))
        root.set_attribute("http.route", "orders/<int:id>/")
        root.end()
        with trace.use_span(late, end_on_exit=True):
            dsc = _values(r.inject()["baggage"])
    assert dsc["sentry-transaction"] == "GET orders/<int:id>/"
    assert dsc["sentry-trace_id"] == f"{root.get_span_context().trace_id:032x}"


def test_a_slow_request_keeps_its_dsc_while_quicker_traces_are_forgotten() -> None:
    """The tracker forgets the oldest traces past its bound, but not one whose root is still
    open: derived again, its DSC (another sample_rand, no transaction name) would not be the
    one its transaction is sent with."""
    with rig(rate=1.0, max_traces=2) as r:
        with r.tracer.start_as_current_span(
            "GET slow/", kind=trace.SpanKind.SERVER, attributes={"http.method": "GET"}
        ) as slow:
            for index in range(5):  # quicker requests meanwhile, each its own trace
                with r.tracer.start_as_current_span(
                    f"GET quick{index}/", context.Context(), kind=trace.SpanKind.SERVER
                ):
                    pass
            outgoing = _values(r.inject()["baggage"])
        finished = {s.name: s for s in r.exporter.get_finished_spans()}["GET slow/"]
        remembered = len(r.tracker._traces)
    sent = dsc_for_finished_root(finished, public_key="pk123", release="shop@1.0",
                                 environment="test", transaction="GET slow/",
                                 transaction_source="custom")
    assert outgoing == {f"sentry-{k}": v for k, v in sent.items()}
    assert outgoing["sentry-trace_id"] == f"{slow.get_span_context().trace_id:032x}"
    assert remembered <= 2  # still bounded


def test_the_first_local_root_to_end_names_the_trace() -> None:
    """Two requests of one trace (an upstream without baggage called this service twice):
    the DSC is the one the first to end would have frozen, also while the second runs."""
    with rig(rate=1.0) as r:
        upstream = r.extract({"traceparent": f"00-{TRACE}-{SPAN}-01"})
        first = r.tracer.start_span("GET", upstream, kind=trace.SpanKind.SERVER,
                                    attributes={"http.method": "GET", "http.route": "a/"})
        second = r.tracer.start_span("GET", upstream, kind=trace.SpanKind.SERVER,
                                     attributes={"http.method": "GET", "http.route": "b/"})
        first.end()
        with trace.use_span(second, end_on_exit=True):
            during = _values(r.inject()["baggage"])
        after = r.tracker.dsc_for(second.get_span_context(), None)
    assert during["sentry-transaction"] == "GET a/"
    assert after["transaction"] == "GET a/"


def test_unfrozen_root_rebuilds_dsc_from_attributes() -> None:
    with rig(rate=0.999999) as r, r.tracer.start_as_current_span("job"):
        pass
    (span,) = r.exporter.get_finished_spans()
    assert ATTR_DSC not in (span.attributes or {})
    dsc = dsc_for_finished_root(span, public_key="pk", release="1", environment="e",
                                transaction="job", transaction_source="task")
    rand = (span.attributes or {})[ATTR_SAMPLE_RAND]
    assert isinstance(rand, float) and dsc["sample_rand"] == f"{rand:.6f}"
    assert dsc["transaction"] == "job" and dsc["sampled"] == "true"
    assert float(dsc["sample_rand"]) < float(dsc["sample_rate"])


def test_rate_zero_drops_and_still_propagates_unsampled() -> None:
    with rig(rate=0.0) as r, r.tracer.start_as_current_span("root") as root:
        assert not root.is_recording()
        headers = r.inject()
    assert headers["sentry-trace"].endswith("-0")
    assert not parse_traceparent(headers["traceparent"]).sampled  # type: ignore[union-attr]
    dsc = _values(headers["baggage"])
    assert dsc["sentry-sampled"] == "false"
    assert float(dsc["sentry-sample_rand"]) >= float(dsc["sentry-sample_rate"])
    assert r.exporter.get_finished_spans() == ()


def _served(
    headers: dict[str, str], rate: float, **rig_options: object
) -> tuple[trace.Span, dict[str, str], tuple[ReadableSpan, ...]]:
    """A SERVER span continuing ``headers``, the headers it would send on, and what was
    exported."""
    with rig(rate=rate, **rig_options) as r:  # type: ignore[arg-type]
        token = context.attach(r.extract(headers))
        try:
            with r.tracer.start_as_current_span("server", kind=trace.SpanKind.SERVER) as span:
                out = r.inject()
        finally:
            context.detach(token)
    return span, out, r.exporter.get_finished_spans()


@pytest.mark.parametrize("rate", [1.0, 0.3])
def test_a_deferred_trace_forwards_the_sample_rand_sentry_sdk_draws_and_decides_with(
    rate: float,
) -> None:
    # A sentry-sdk service outside a transaction sends sentry-trace without a flag and a DSC
    # with a sample_rate and no sample_rand: every receiver must draw the same value from
    # [0, 1), decide with it and forward it. It was drawn again from this service's own
    # decision's range (0.235654 instead of 0.471308 at rate 1.0).
    from sentry_sdk.tracing_utils import PropagationContext

    headers = {
        "sentry-trace": f"{TRACE}-{SPAN}",
        "baggage": f"sentry-trace_id={TRACE},sentry-public_key=key,sentry-sample_rate=0.5",
    }
    incoming = PropagationContext.from_incoming_data(headers).baggage
    assert incoming is not None
    expected = incoming.sentry_items["sample_rand"]
    span, out, _ = _served(headers, rate)
    assert _values(out["baggage"])["sentry-sample_rand"] == expected
    assert span.get_span_context().trace_flags.sampled is (float(expected) < rate)
    if rate == 1.0:
        assert span.attributes[ATTR_SAMPLE_RAND] == float(expected)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("headers", "rate", "sampled"),
    [
        ({"sentry-trace": f"{TRACE}-{SPAN}-0"}, 1.0, False),
        ({"sentry-trace": f"{TRACE}-{SPAN}-1"}, 0.0, True),
        ({"traceparent": f"00-{TRACE}-{SPAN}-00"}, 1.0, False),
        ({"traceparent": f"00-{TRACE}-{SPAN}-01"}, 0.0, True),
        # deferred: sample_rand from baggage against our rate
        ({"sentry-trace": f"{TRACE}-{SPAN}", "baggage": "sentry-sample_rand=0.2"}, 0.5, True),
        ({"sentry-trace": f"{TRACE}-{SPAN}", "baggage": "sentry-sample_rand=0.7"}, 0.5, False),
        # deferred flag but the frozen DSC says what the sender decided
        ({"sentry-trace": f"{TRACE}-{SPAN}", "baggage": "sentry-sampled=true"}, 0.0, True),
    ],
)
def test_upstream_decision_is_honoured(headers: dict[str, str], rate: float, sampled: bool) -> None:
    span, out, exported = _served(headers, rate)
    assert span.get_span_context().trace_id == int(TRACE, 16)
    assert span.get_span_context().trace_flags.sampled is sampled
    assert out["sentry-trace"].endswith("-1" if sampled else "-0")
    assert parse_traceparent(out["traceparent"]).sampled is sampled  # type: ignore[union-attr]
    dsc = _values(out["baggage"])
    if "sentry-sample_rate" in dsc:
        assert (float(dsc["sentry-sample_rand"]) < float(dsc["sentry-sample_rate"])) == sampled
    assert len(exported) == (1 if sampled else 0)
    if sampled:
        assert exported[0].parent.span_id == int(SPAN, 16)  # type: ignore[union-attr]


def test_incoming_dsc_is_forwarded_unchanged_with_backfilled_rand() -> None:
    incoming = (
        f"sentry-trace_id={TRACE},sentry-sample_rate=0.25,sentry-public_key=up,sentry-x=1,other=3"
    )
    headers = {"sentry-trace": f"{TRACE}-{SPAN}-1", "baggage": incoming}
    with rig(rate=1.0) as r:
        token = context.attach(r.extract(headers))
        try:
            assert baggage.get_all() == {"other": "3"}
            with r.tracer.start_as_current_span("server") as span:
                out = r.inject()
                assert current_dsc() == parse_dsc(out["baggage"])
        finally:
            context.detach(token)
    values = _values(out["baggage"])
    rand = float(values.pop("sentry-sample_rand"))
    assert rand < 0.25
    assert values == {"sentry-trace_id": TRACE, "sentry-sample_rate": "0.25",
                      "sentry-public_key": "up", "sentry-x": "1", "other": "3"}
    (finished,) = r.exporter.get_finished_spans()
    assert span.get_span_context().span_id == finished.context.span_id
    header = dsc_for_finished_root(finished, public_key="pk123", release=None, environment=None,
                                   transaction=None, transaction_source=None)
    assert header["public_key"] == "up" and float(header["sample_rand"]) == rand


def test_w3c_only_upstream_gets_a_consistent_new_dsc() -> None:
    with rig(rate=0.1) as r:
        token = context.attach(r.extract({"traceparent": f"00-{TRACE}-{SPAN}-01"}))
        try:
            with r.tracer.start_as_current_span("server"):
                out = r.inject()
        finally:
            context.detach(token)
    values = _values(out["baggage"])
    assert values["sentry-trace_id"] == TRACE
    assert values["sentry-sampled"] == "true"
    assert float(values["sentry-sample_rand"]) < 0.1 == float(values["sentry-sample_rate"])


def test_disagreeing_ids_prefer_traceparent_and_drop_the_foreign_dsc() -> None:
    with rig() as r:
        ctx = r.extract({
            "traceparent": f"00-{TRACE}-{SPAN}-01",
            "sentry-trace": f"{OTHER_TRACE}-{SPAN}-0",
            "baggage": f"sentry-trace_id={OTHER_TRACE},sentry-public_key=x",
        })
        with r.tracer.start_as_current_span("s", context=ctx) as span:
            out = r.inject()
    assert span.get_span_context().trace_id == int(TRACE, 16)
    assert span.get_span_context().trace_flags.sampled
    values = _values(out["baggage"])
    assert values["sentry-trace_id"] == TRACE and values["sentry-public_key"] == "pk123"


def test_malformed_headers_start_a_new_trace_and_keep_third_party_baggage() -> None:
    with rig() as r:
        ctx = r.extract({"sentry-trace": "-", "traceparent": "garbage", "baggage": "a=1,,;;,=="})
        assert baggage.get_all(ctx) == {"a": "1"}
        token = context.attach(ctx)
        try:
            with r.tracer.start_as_current_span("s") as span:
                out = r.inject()
        finally:
            context.detach(token)
    assert span.parent is None  # type: ignore[attr-defined]
    assert _values(out["baggage"])["a"] == "1"


def test_children_follow_their_local_parent() -> None:
    with rig(rate=1.0) as r, r.tracer.start_as_current_span("root"), \
            r.tracer.start_as_current_span("child") as child:
        assert child.is_recording()
    with rig(rate=0.0) as r, r.tracer.start_as_current_span("root"), \
            r.tracer.start_as_current_span("child") as child:
        assert not child.is_recording()


def test_rules_drop_health_checks_by_path_and_rerate_by_name() -> None:
    config = BridgeConfig(traces_sample_rate=1.0, sampling_rules=("/health.*=0", "GET api/.*=0.0"))
    rules = build_sampler(config)._rules
    with rig(rules=rules) as r:
        with r.tracer.start_as_current_span(
            "GET health/", attributes={"url.path": "/health/", "http.request.method": "GET"}
        ) as health:
            assert not health.is_recording()
        with r.tracer.start_as_current_span("GET api/items/") as api:
            assert not api.is_recording()
        with r.tracer.start_as_current_span(
            "GET x/", attributes={"http.url": "http://h:1/health/?q=1"}
        ) as old_semconv:
            assert not old_semconv.is_recording()
        with r.tracer.start_as_current_span("GET shop/") as shop:
            assert shop.is_recording()
        # rules do not override an upstream decision
        ctx = r.extract({"sentry-trace": f"{TRACE}-{SPAN}-1"})
        with r.tracer.start_as_current_span("GET health/", context=ctx,
                                            attributes={"url.path": "/health/"}) as upstream:
            assert upstream.is_recording()


def test_record_unsampled_clients_records_without_sampling() -> None:
    with rig(rate=0.0, record_unsampled_clients=True) as r, r.tracer.start_as_current_span(
        "root"
    ), r.tracer.start_as_current_span(
        "GET", kind=trace.SpanKind.CLIENT, attributes={"url.full": "http://x/"}
    ) as client:
            assert client.is_recording()
            assert not client.get_span_context().trace_flags.sampled
            out = r.inject()
    assert out["sentry-trace"].endswith("-0")
    assert r.exporter.get_finished_spans() == ()


def test_sampler_keeps_the_callers_attributes() -> None:
    with rig() as r, r.tracer.start_as_current_span("root", attributes={"a": 1}) as root, \
            r.tracer.start_as_current_span("child", attributes={"b": 2}) as child:
        assert root.attributes["a"] == 1  # type: ignore[attr-defined]
        assert ATTR_SAMPLE_RAND in root.attributes  # type: ignore[attr-defined]
        assert child.attributes == {"b": 2}  # type: ignore[attr-defined]


def test_sampler_entry_point_loads_through_the_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry.sdk._configuration import _import_sampler

    from otel_bridge.sampling import BridgeSampler

    monkeypatch.setenv("SENTRY_TRACES_SAMPLE_RATE", "0.25")
    sampler = _import_sampler("otel_bridge")
    assert isinstance(sampler, BridgeSampler)
    assert "rate=0.25" in sampler.get_description()


def test_forgotten_traces_get_the_same_dsc_again() -> None:
    from otel_bridge.dsc import LocalRootTracker

    tracker = LocalRootTracker(public_key="pk", release=None, environment=None,
                               sample_rate=0.5, max_traces=2)
    contexts = [
        trace.SpanContext(t, 1, is_remote=False, trace_flags=trace.TraceFlags(1))
        for t in (11, 12, 13)
    ]
    first = tracker.dsc_for(contexts[0], None)
    tracker.dsc_for(contexts[1], None)
    tracker.dsc_for(contexts[2], None)  # the first trace is forgotten now
    assert len(tracker._traces) == 2
    again = tracker.dsc_for(contexts[0], None)
    assert again == first
    assert float(first["sample_rand"]) < float(first["sample_rate"])


def test_ended_traces_are_remembered_outside_the_garbage_collector() -> None:
    """Thousands of remembered traces must not be scanned by every full collection of the
    application's heap (nor bring the next one forward as they are promoted): what the
    tracker keeps of a trace whose roots ended is plain tuples, which CPython stops
    tracking. The DSC it serves afterwards is still the one the request propagated."""
    import gc

    with rig(rate=0.5) as r:
        propagated: dict[int, str] = {}
        for _ in range(200):
            with r.tracer.start_as_current_span("GET /orders/", kind=trace.SpanKind.SERVER) as root:
                propagated[root.get_span_context().trace_id] = r.inject()["baggage"]
        sampled_upstream = r.extract({"traceparent": f"00-{'ab' * 16}-{'cd' * 8}-01"})
        open_trace = r.tracer.start_span("job", sampled_upstream, kind=trace.SpanKind.CONSUMER)
        assert open_trace.is_recording()
        # A tuple is untracked once the tuples it holds are; a full collection visits the
        # young generations before the middle one, so the second one finishes the job.
        gc.collect()
        gc.collect()

        remembered = dict(r.tracker._traces)
        assert len(remembered) == 201
        open_id = open_trace.get_span_context().trace_id
        assert gc.is_tracked(remembered.pop(open_id))  # an open root's entry holds the span
        assert [v for v in remembered.values() if gc.is_tracked(v)] == []
        sampled = {t for t, baggage in propagated.items() if "sentry-sampled=true" in baggage}
        assert 0 < len(sampled) < 200  # both kinds of trace are remembered

        for trace_id, baggage in propagated.items():
            late = trace.SpanContext(trace_id, 7, is_remote=False,
                                     trace_flags=trace.TraceFlags(int(trace_id in sampled)))
            with trace.use_span(trace.NonRecordingSpan(late)):
                assert r.inject()["baggage"] == baggage
        open_trace.end()


@pytest.mark.parametrize(
    ("ours", "theirs", "strict", "continued"),
    [
        ("1", "999", False, False),  # another organization's trace: never continued
        ("1", "1", False, True),
        ("1", None, False, True),  # one side unknown: continued unless strict
        (None, "999", False, True),
        ("1", None, True, False),
        (None, "999", True, False),
        (None, None, True, True),
        ("1", "1", True, True),
    ],
)
def test_a_trace_of_another_organization_is_not_continued(
    ours: str | None, theirs: str | None, strict: bool, continued: bool
) -> None:
    # sentry-sdk's _should_continue_trace (strict_trace_continuation): the foreign trace id,
    # its DSC and its sampling decision were all carried into this organization's data.
    dsc = f"sentry-trace_id={TRACE},sentry-public_key=theirs,sentry-sample_rand=0.9"
    if theirs is not None:
        dsc += f",sentry-org_id={theirs}"
    headers = {
        "traceparent": f"00-{TRACE}-{SPAN}-00",  # the tracecontext propagator reads it first
        "sentry-trace": f"{TRACE}-{SPAN}-0",
        "baggage": f"{dsc},user=42",
    }
    span, out, _ = _served(headers, 1.0, org_id=ours, strict_trace_continuation=strict)
    forwarded = _values(out["baggage"])
    assert forwarded["user"] == "42"  # the application's own baggage goes on either way
    if continued:
        assert span.get_span_context().trace_id == int(TRACE, 16)
        assert span.get_span_context().trace_flags.sampled is False
        assert forwarded["sentry-public_key"] == "theirs"
    else:
        assert span.get_span_context().trace_id != int(TRACE, 16)
        assert span.parent is None  # type: ignore[attr-defined]
        assert span.get_span_context().trace_flags.sampled is True  # decided here, at 1.0
        assert forwarded["sentry-public_key"] == "pk123"
        assert forwarded.get("sentry-org_id") == ours


def test_the_head_dsc_names_the_organization() -> None:
    with rig(org_id="17") as r, r.tracer.start_as_current_span("job"):
        assert _values(r.inject()["baggage"])["sentry-org_id"] == "17"
    with rig() as r, r.tracer.start_as_current_span("job"):
        assert "sentry-org_id" not in _values(r.inject()["baggage"])


def test_the_organization_comes_from_sentry_org_id_else_the_dsn() -> None:
    from otel_bridge.config import load_config

    dsn = "https://key@o4504.ingest.us.sentry.io/42"
    assert load_config({"SENTRY_DSN": dsn}).effective_org_id() == "4504"
    assert load_config({"SENTRY_DSN": dsn, "SENTRY_ORG_ID": "7"}).effective_org_id() == "7"
    assert load_config({"SENTRY_DSN": "http://key@127.0.0.1:9000/1"}).effective_org_id() is None
    assert load_config({}).effective_org_id() is None
    assert load_config({"SENTRY_STRICT_TRACE_CONTINUATION": "true"}).strict_trace_continuation
