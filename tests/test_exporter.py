"""The `sentry` exporter in-process: real SDK spans, real sentry-sdk, a real HTTP ingest."""

from __future__ import annotations

import gc
import logging
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
import sentry_sdk
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind
from opentelemetry.util.types import Attributes

from otel_bridge.config import load_config
from otel_bridge.dsc import LocalRootTracker, set_active_tracker
from otel_bridge.pipeline.exporter import SentrySpanExporter
from otel_bridge.runtime import Runtime, set_runtime
from otel_bridge.sampling import build_sampler
from otel_bridge.scrub import ScrubbingSpanExporter
from otel_bridge.sentry_client import start_sentry
from tests.rig.ingest import RecordingIngest

RESOURCE = Resource.create({"service.name": "exporter-test", "service.version": "9.9.9"})


class Pipeline:
    def __init__(self, ingest: RecordingIngest, **env: str) -> None:
        config = load_config({"SENTRY_DSN": ingest.dsn, **env})
        self.runtime = Runtime(config)
        set_runtime(self.runtime)
        start_sentry(self.runtime, RESOURCE)
        tracker = LocalRootTracker.from_runtime(self.runtime, RESOURCE)
        self.exporter = SentrySpanExporter(runtime=self.runtime)
        self.provider = TracerProvider(
            resource=RESOURCE, sampler=build_sampler(config, tracker=tracker)
        )
        self.provider.add_span_processor(tracker)
        # As the configurator wires it: the pipeline sees scrubbed copies of the spans.
        self.runtime.spans_scrubbed = True
        self.provider.add_span_processor(
            SimpleSpanProcessor(ScrubbingSpanExporter(self.exporter, self.runtime.scrubber))
        )
        self.tracer = self.provider.get_tracer("test")

    def close(self) -> None:
        self.provider.shutdown()
        sentry_sdk.get_client().close(timeout=5)
        set_active_tracker(None)


@pytest.fixture
def pipeline_factory(ingest: RecordingIngest) -> Iterator[type[Pipeline]]:
    made: list[Pipeline] = []

    class Made(Pipeline):
        def __init__(self, ingest: RecordingIngest, **env: str) -> None:
            super().__init__(ingest, **env)
            made.append(self)

    yield Made
    for pipeline in made:
        pipeline.close()
    # No client left behind for other tests; init(dsn=None) would leave one that still
    # adds sentry-trace and baggage to every http.client request of this process.
    sentry_sdk.get_global_scope().set_client(None)
    for scope in (
        sentry_sdk.get_global_scope(),
        sentry_sdk.get_isolation_scope(),
        sentry_sdk.get_current_scope(),
    ):
        scope.clear()


def _fail(message: str) -> None:
    raise ValueError(message)


def test_exception_on_a_server_span_becomes_one_linked_error(
    ingest: RecordingIngest, pipeline_factory: type[Pipeline]
) -> None:
    pipeline = pipeline_factory(ingest)
    with pipeline.tracer.start_as_current_span("GET /pay", kind=SpanKind.SERVER) as span:
        span.add_event("cart loaded", {"items": 3})
        try:
            _fail("card declined")
        except ValueError as exc:
            span.record_exception(exc)
            span.set_status(trace.Status(trace.StatusCode.ERROR))
    [error] = ingest.wait_for_items("event", 1)
    [transaction] = ingest.wait_for_items("transaction", 1)
    [exception] = error["exception"]["values"]
    assert (exception["type"], exception["value"]) == ("ValueError", "card declined")
    assert exception["mechanism"] == {"type": "otel", "handled": False}
    assert [f["function"] for f in exception["stacktrace"]["frames"]][-1] == "_fail"
    assert error["contexts"]["trace"]["trace_id"] == transaction["contexts"]["trace"]["trace_id"]
    assert error["contexts"]["trace"]["span_id"] == transaction["contexts"]["trace"]["span_id"]
    assert error["release"] == "9.9.9"
    assert [c["message"] for c in error["breadcrumbs"]["values"]] == ["cart loaded"]
    [envelope] = [e for e in ingest.envelopes if e.headers.get("event_id") == error["event_id"]]
    assert envelope.headers["trace"]["trace_id"] == error["contexts"]["trace"]["trace_id"]


def _captured_and_recorded(pipeline: Pipeline, span_name: str, message: str) -> None:
    """One exception seen twice: by sentry-sdk, and on a failed SERVER span."""
    with pipeline.tracer.start_as_current_span(span_name, kind=SpanKind.SERVER) as span:
        try:
            _fail(message)
        except ValueError as exc:
            sentry_sdk.capture_exception(exc)
            span.record_exception(exc)
            span.set_status(trace.Status(trace.StatusCode.ERROR))


def test_an_exception_sentry_sdk_captured_is_not_reported_again(
    ingest: RecordingIngest, pipeline_factory: type[Pipeline]
) -> None:
    pipeline = pipeline_factory(ingest)
    _captured_and_recorded(pipeline, "GET /pay", "card declined")
    ingest.wait_for_items("transaction", 1)
    errors = ingest.events("event")
    assert len(errors) == 1
    assert errors[0]["exception"]["values"][0]["mechanism"]["type"] != "otel"


def test_an_exception_with_a_secret_in_its_message_is_reported_once(
    ingest: RecordingIngest, pipeline_factory: type[Pipeline]
) -> None:
    pipeline = pipeline_factory(ingest)
    secret = "hunter" + "2"  # not as one literal: source lines travel as context_line
    _captured_and_recorded(pipeline, "POST /login", "login failed password=" + secret)
    ingest.wait_for_items("transaction", 1)
    errors = ingest.events("event")
    assert len(errors) == 1, errors
    assert secret not in str(errors)


@pytest.mark.parametrize(("mode", "expected"), [("server", 0), ("all", 1), ("none", 0)])
def test_span_error_modes(
    ingest: RecordingIngest, pipeline_factory: type[Pipeline], mode: str, expected: int
) -> None:
    pipeline = pipeline_factory(ingest, OTEL_BRIDGE_SPAN_ERRORS=mode)
    with pipeline.tracer.start_as_current_span("job"), \
            pipeline.tracer.start_as_current_span("step") as step:
        step.record_exception(KeyError("sku"))
    ingest.wait_for_items("transaction", 1)
    assert len(ingest.events("event")) == expected


def test_unsampled_traces_send_nothing(
    ingest: RecordingIngest, pipeline_factory: type[Pipeline]
) -> None:
    pipeline = pipeline_factory(ingest, SENTRY_TRACES_SAMPLE_RATE="0")
    with pipeline.tracer.start_as_current_span("GET /", kind=SpanKind.SERVER):
        pass
    with pipeline.tracer.start_as_current_span("marker"):
        sentry_sdk.capture_message("still sent")  # errors are not sampled by traces
    ingest.wait_for_items("event", 1)
    assert ingest.events("transaction") == []


def test_without_sentry_the_exporter_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runtime = Runtime(load_config({}))
    exporter = SentrySpanExporter(runtime=runtime, transport_source=lambda: None)
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with caplog.at_level(logging.ERROR, logger="otel_bridge"):
        for _ in range(3):
            with tracer.start_as_current_span("work"):
                pass
    provider.shutdown()
    assert exporter.lost_transactions == 3
    assert len([r for r in caplog.records if "sentry-sdk is not started" in r.message]) == 1


def test_spans_of_a_root_that_never_ends_are_dropped_and_reported(
    ingest: RecordingIngest, pipeline_factory: type[Pipeline]
) -> None:
    pipeline = pipeline_factory(ingest, OTEL_BRIDGE_PENDING_SPAN_TTL="0.05")
    root = pipeline.tracer.start_span("never-ends")
    context = trace.set_span_in_context(root)
    for _ in range(5):
        pipeline.tracer.start_span("child", context=context).end()
    import time

    time.sleep(0.1)
    with pipeline.tracer.start_as_current_span("later"):
        pass  # an export call runs the expiry
    ingest.wait_for_items("transaction", 1)
    assert pipeline.exporter._assembler.pending_count == 0
    assert _reported_lost(ingest, "buffer_overflow", "span") == 5


def test_a_transaction_carries_at_most_a_thousand_spans_and_counts_the_rest(
    ingest: RecordingIngest, pipeline_factory: type[Pipeline]
) -> None:
    # 3,000 queries made a 1.9 MB transaction, which Sentry refuses whole (1 MB): as
    # sentry-sdk's span recorder, the first 1,000 to start are kept and the rest counted.
    pipeline = pipeline_factory(ingest)
    with pipeline.tracer.start_as_current_span("GET /report", kind=SpanKind.SERVER):
        for n in range(1_005):
            with pipeline.tracer.start_as_current_span(f"SELECT {n}", kind=SpanKind.CLIENT):
                pass
    (transaction,) = ingest.wait_for_items("transaction", 1)
    assert len(transaction["spans"]) == 1_000
    assert {span["description"] for span in transaction["spans"]} == {
        f"SELECT {n}" for n in range(1_000)
    }
    assert _reported_lost(ingest, "buffer_overflow", "span") == 5


def test_a_follow_up_travels_with_the_dsc_its_root_was_sent_with(
    ingest: RecordingIngest, pipeline_factory: type[Pipeline]
) -> None:
    # A child ending after its root is sent alone; its envelope's DSC was made from the
    # child (sample_rate 1.0, another sample_rand, its own name): the trace's is frozen.
    pipeline = pipeline_factory(ingest, SENTRY_TRACES_SAMPLE_RATE="0.5")
    while True:  # a sampled trace
        root = pipeline.tracer.start_span(
            "GET /x", kind=SpanKind.SERVER,
            attributes={"http.request.method": "GET", "http.route": "/x"},
        )
        if root.get_span_context().trace_flags.sampled:
            break
        root.end()
    late = pipeline.tracer.start_span("late.job", context=trace.set_span_in_context(root))
    root.end()
    late.end()
    ingest.wait_for_items("transaction", 2)
    headers = {
        item.json["transaction"]: envelope.headers["trace"]
        for envelope in ingest.envelopes for item in envelope.items
        if item.type == "transaction"
    }
    assert headers["late.job"] == headers["GET /x"]
    assert headers["GET /x"]["sample_rate"] == "0.5"
    assert headers["GET /x"]["transaction"] == "GET /x"


def test_a_transaction_that_fails_to_convert_loses_only_itself_and_is_reported(
    ingest: RecordingIngest, pipeline_factory: type[Pipeline], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Converting one transaction of a batch raised (a span no rule foresaw): the whole batch,
    # up to 128 transactions, was lost with no client report.
    from otel_bridge.pipeline import exporter as exporter_module

    real = exporter_module.transaction_event  # type: ignore[attr-defined]

    def failing_for_one(root: ReadableSpan, *args: Any, **kwargs: Any) -> Any:
        if root.name == "poison":
            raise TypeError("a span no mapping foresaw")
        return real(root, *args, **kwargs)

    monkeypatch.setattr(exporter_module, "transaction_event", failing_for_one)
    pipeline = pipeline_factory(ingest)
    spans: list[ReadableSpan] = []

    class Collect(SpanProcessor):
        def on_end(self, span: ReadableSpan) -> None:
            spans.append(span)

    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(Collect())
    tracer = provider.get_tracer("test")
    for name in ("first", "poison", "last"):
        with (
            tracer.start_as_current_span(name, kind=SpanKind.SERVER),
            tracer.start_as_current_span("child"),
        ):
            pass
    pipeline.exporter.export(spans)  # one batch, as the batch processor hands it over
    transactions = ingest.wait_for_items("transaction", 2)
    assert sorted(t["transaction"] for t in transactions) == ["first", "last"]
    sentry_sdk.flush(5)
    reports = ingest.wait_for_items("client_report", 1)
    lost = {
        (entry["reason"], entry["category"]): entry["quantity"]
        for report in reports for entry in report.get("discarded_events", [])
    }
    assert lost == {("internal_sdk_error", "transaction"): 1, ("internal_sdk_error", "span"): 2}


def _reported_lost(ingest: RecordingIngest, reason: str, category: str) -> int:
    """What the client reports that reached the ingest count as lost, for one reason."""
    sentry_sdk.flush(5)
    reports = ingest.wait_for_items("client_report", 1)
    return sum(
        entry["quantity"] for report in reports for entry in report.get("discarded_events", [])
        if entry["reason"] == reason and entry["category"] == category
    )


class _Worker:
    def __init__(self) -> None:
        self.is_full = True

    def full(self) -> bool:
        return self.is_full


class _QueueOnly:
    """Only the piece of sentry-sdk's transport the pacer reads: its worker queue."""

    def __init__(self) -> None:
        self._worker = _Worker()


def test_pacer_stops_waiting_on_a_stalled_ingest_and_resumes_when_it_drains() -> None:
    from otel_bridge.pipeline.exporter import TransportPacer

    now = [0.0]

    def clock() -> float:
        now[0] += 0.5  # every look at the clock moves time on
        return now[0]

    transport = _QueueOnly()
    pacer = TransportPacer(clock, stall_after=10.0, short_wait=0.05)
    assert pacer.wait_for_room(transport, deadline=100.0) is False  # type: ignore[arg-type]
    assert pacer.stalled
    assert now[0] >= 10.0  # it did wait, once
    before = now[0]
    assert pacer.wait_for_room(transport, deadline=100.0) is False  # type: ignore[arg-type]
    assert now[0] == before  # stalled: no more waiting
    transport._worker.is_full = False
    assert pacer.wait_for_room(transport, deadline=100.0) is True  # type: ignore[arg-type]
    assert not pacer.stalled
    # Full again soon after a stall: only a short wait, the ingest is not to be trusted yet.
    transport._worker.is_full = True
    before = now[0]
    assert pacer.wait_for_room(transport, deadline=100.0) is False  # type: ignore[arg-type]
    assert now[0] - before <= 2.0


class _SlowButMoving:
    """otel-bridge's transport as the pacer sees it: no room for a while, but envelopes
    keep finishing (a slow ingest, not a stalled one)."""

    def __init__(self, room_after: int) -> None:
        self.finished = 0
        self.room_after = room_after

    def has_room(self, count: int) -> bool:
        return self.finished >= self.room_after

    def finished_envelopes(self) -> int:
        self.finished += 1
        return self.finished


def test_pacer_keeps_waiting_while_the_ingest_makes_progress() -> None:
    from otel_bridge.pipeline.exporter import TransportPacer

    now = [0.0]

    def clock() -> float:
        now[0] += 0.5
        return now[0]

    transport = _SlowButMoving(room_after=100)  # ~25 s of clock: far past stall_after
    pacer = TransportPacer(clock, stall_after=2.0)
    assert pacer.wait_for_room(transport, deadline=1000.0, count=5) is True  # type: ignore[arg-type]
    assert not pacer.stalled
    assert now[0] > 2.0 * 5

    stuck = _SlowButMoving(room_after=10**9)
    stuck.finished_envelopes = lambda: 0  # type: ignore[method-assign]
    assert pacer.wait_for_room(stuck, deadline=1000.0) is False  # type: ignore[arg-type]
    assert pacer.stalled


def test_loss_counts_survive_an_outage_and_arrive_when_the_ingest_is_back(
    ingest: RecordingIngest, pipeline_factory: type[Pipeline]
) -> None:
    pipeline_factory(ingest)
    ingest.respond_with(500)
    for index in range(3):
        sentry_sdk.capture_message(f"lost {index}")
    sentry_sdk.flush(5)  # sends the loss report too: it is refused like the rest
    ingest.respond_with(200)
    sentry_sdk.flush(5)
    reports = [
        envelope.items_of("client_report")[0].json
        for envelope in ingest.envelopes
        if envelope.items_of("client_report")
    ]
    lost_errors = sum(
        entry["quantity"]
        for report in reports
        for entry in report["discarded_events"]
        if entry["category"] == "error"
    )
    assert lost_errors == 3, reports


def test_no_span_is_kept_alive_by_the_exporter_after_its_batch(
    ingest: RecordingIngest, pipeline_factory: type[Pipeline]
) -> None:
    # Nothing the exporter keeps while it maps a batch (attributes, assembled transactions,
    # envelopes) may keep a span alive after its export.
    pipeline = pipeline_factory(ingest)
    kept: list[weakref.ref[Any]] = []

    class Watch(SpanProcessor):
        def on_end(self, span: ReadableSpan) -> None:
            kept.append(weakref.ref(span))

    pipeline.provider.add_span_processor(Watch())
    with pipeline.tracer.start_as_current_span("GET /orders", kind=SpanKind.SERVER):
        for query in range(3):
            with pipeline.tracer.start_as_current_span(
                "SELECT", kind=SpanKind.CLIENT, attributes={"db.system": "sqlite", "n": query}
            ):
                pass
    [transaction] = ingest.wait_for_items("transaction", 1)
    assert len(transaction["spans"]) == 3
    gc.collect()
    assert len(kept) == 4
    assert [ref for ref in kept if ref() is not None] == []


def test_a_transport_of_the_users_own_gets_the_event_and_ours_gets_it_encoded(
    ingest: RecordingIngest,
) -> None:
    """otel-bridge encodes a transaction as soon as it is mapped only for its own transport,
    which reads nothing of it afterwards; a transport given to sentry-sdk by the application
    receives the event as sentry-sdk's own `add_transaction` makes it."""
    from sentry_sdk.envelope import Envelope
    from sentry_sdk.transport import Transport

    from otel_bridge.serialization import EncodedTransaction
    from otel_bridge.transport import BridgeTransport

    class Keeping(Transport):
        def __init__(self) -> None:
            super().__init__()
            self.envelopes: list[Envelope] = []

        def capture_envelope(self, envelope: Envelope) -> None:
            self.envelopes.append(envelope)

    class Ours(BridgeTransport):
        handed: list[type] = []

        def capture_envelopes(self, envelopes: Any) -> bool:
            self.handed.extend(type(item) for envelope in envelopes for item in envelope.items)
            return super().capture_envelopes(envelopes)

    config = load_config({"SENTRY_DSN": ingest.dsn})

    def export_a_job(transport: Transport) -> None:
        exporter = SentrySpanExporter(runtime=Runtime(config), transport_source=lambda: transport)
        provider = TracerProvider(resource=RESOURCE)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        with provider.get_tracer("test").start_as_current_span("job", kind=SpanKind.CONSUMER):
            provider.get_tracer("test").start_span("step").end()
        provider.shutdown()

    keeping = Keeping()
    export_a_job(keeping)
    [envelope] = keeping.envelopes
    [item] = envelope.items
    assert not isinstance(item, EncodedTransaction)
    assert envelope.get_transaction_event()["transaction"] == "job"  # type: ignore[index]

    options_of = sentry_sdk.Client(dsn=ingest.dsn)
    own = Ours(options_of.options)
    options_of.close(timeout=0)
    try:
        export_a_job(own)
        assert own.handed == [EncodedTransaction]
        own.flush(timeout=10)
        [event] = ingest.wait_for_items("transaction", 1)
        assert [span["description"] for span in event["spans"]] == ["step"]
    finally:
        own.kill()


def test_spans_of_requests_to_the_ingest_are_left_out_and_queries_kept(
    ingest: RecordingIngest, pipeline_factory: type[Pipeline]
) -> None:
    """The exporter leaves out an HTTP client span aimed at the ingest (a request of our own
    that an instrumentation saw), whether it names the ingest by address or by URL; a span
    that is no HTTP request (no method) is kept even at that address."""
    pipeline = pipeline_factory(ingest)
    host, port = "127.0.0.1", ingest.port
    spans: list[tuple[str, Attributes]] = [
        ("POST ingest by address",
         {"http.request.method": "POST", "server.address": host, "server.port": port}),
        ("POST ingest by url",
         {"http.method": "POST", "http.url": f"http://{host}:{port}/api/1/envelope/"}),
        ("query at the same address",
         {"db.system": "postgresql", "server.address": host, "server.port": port}),
        ("GET elsewhere",
         {"http.request.method": "GET", "server.address": host, "server.port": port + 1}),
    ]
    with pipeline.tracer.start_as_current_span("GET /checkout", kind=SpanKind.SERVER):
        for name, attributes in spans:
            with pipeline.tracer.start_as_current_span(
                name, kind=SpanKind.CLIENT, attributes=attributes
            ):
                pass
    [transaction] = ingest.wait_for_items("transaction", 1)
    kept = sorted((span["op"], span["description"]) for span in transaction["spans"])
    assert kept == [("db", "query at the same address"), ("http.client", "GET")]
