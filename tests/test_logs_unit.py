"""structlog processors with a real sentry-sdk client sending to the RecordingIngest, and a
real OTel SDK LoggerProvider; stdlib logging and sentry-sdk's LoggingIntegration live."""

from __future__ import annotations

import asyncio
import logging
import logging.handlers
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from queue import Queue
from typing import Any

import pytest
import sentry_sdk
import structlog
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.trace import TracerProvider
from sentry_sdk.integrations.logging import LoggingIntegration
from sentry_sdk.scope import (
    register_external_propagation_context,
    remove_external_propagation_context,
)
from structlog.typing import Processor

from otel_bridge.logs import (
    OTelLogEmitter,
    SentryBridge,
    add_trace_context,
    drop_bridged_breadcrumb,
    drop_bridged_event,
    drop_bridged_log,
    install_handler_filters,
)
from otel_bridge.logs.dedupe import remove_handler_filters
from otel_bridge.logs.levels import level_number, threshold
from otel_bridge.logs.mapping import resolve_exc_info, structured_fields
from otel_bridge.scrub import Scrubber, SentryScrubHooks
from otel_bridge.sentry_client import otel_trace_ids
from tests.rig.ingest import RecordingIngest

tracer = TracerProvider().get_tracer("test")


# -- helpers ---------------------------------------------------------------------------------


def _init(ingest: RecordingIngest, **options: Any) -> None:
    sentry_sdk.init(
        dsn=ingest.dsn,
        default_integrations=False,
        integrations=[LoggingIntegration(level=logging.INFO, event_level=logging.ERROR)],
        **options,
    )


def _shutdown() -> None:
    sentry_sdk.flush(timeout=5)
    sentry_sdk.get_client().close()
    sentry_sdk.get_global_scope().set_client(None)


@contextmanager
def sentry(ingest: RecordingIngest, *, enable_logs: bool = True) -> Iterator[None]:
    """sentry-sdk wired the way otel_bridge.sentry_client wires it: LoggingIntegration,
    scrubbing hooks chained with the dedupe hooks, OTel ids as the propagation context."""
    hooks = SentryScrubHooks(
        Scrubber(),
        then={
            "before_send": drop_bridged_event,
            "before_breadcrumb": drop_bridged_breadcrumb,
            "before_send_log": drop_bridged_log,
        },
    )
    _init(ingest, enable_logs=enable_logs, **hooks.init_kwargs())
    register_external_propagation_context(otel_trace_ids)
    try:
        with sentry_sdk.isolation_scope():
            yield
    finally:
        remove_external_propagation_context()
        _shutdown()


def sent(ingest: RecordingIngest) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(error events, Sentry log items) received so far (call after the flush)."""
    logs = [entry for payload in ingest.events("log") for entry in payload.get("items", [])]
    return ingest.events("event"), logs


def stdlib_logger(name: str) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.setLevel(logging.DEBUG)
    return logger


def bound(logger: Any, *processors: Any) -> Any:
    chain = [structlog.processors.add_log_level, *processors, structlog.processors.JSONRenderer()]
    wrapper = structlog.stdlib.BoundLogger if isinstance(logger, logging.Logger) else None
    return structlog.wrap_logger(logger, processors=chain, wrapper_class=wrapper)


class _Sink:
    """A PrintLogger-like backend that keeps lines in memory."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def msg(self, line: str) -> None:
        self.lines.append(line)

    info = debug = warning = error = critical = exception = msg


@pytest.fixture
def otel_logs() -> Iterator[tuple[LoggerProvider, InMemoryLogRecordExporter]]:
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


# -- pure parts --------------------------------------------------------------------------------


def test_levels_follow_structlog_method_names() -> None:
    assert level_number("exception", {}) == logging.ERROR
    assert level_number("warn", {}) == logging.WARNING
    assert level_number("msg", {"level": "error"}) == logging.ERROR
    assert level_number("msg", {}) == logging.INFO
    assert threshold("none") is None and threshold("WARN") == logging.WARNING


def test_structured_fields_leave_out_the_call_description() -> None:
    fields = structured_fields(
        {"event": "x", "level": "info", "exc_info": True, "timestamp": "t", "order_id": 7}
    )
    assert fields == {"order_id": 7}


def test_exc_info_conventions() -> None:
    error = ValueError("boom")
    assert resolve_exc_info(error) == (ValueError, error, None)
    assert resolve_exc_info(False) is None
    try:
        raise KeyError("k")
    except KeyError:
        assert resolve_exc_info(True)[0] is KeyError  # type: ignore[index]
    assert resolve_exc_info(True) is None  # outside an except block


# -- trace context -------------------------------------------------------------------------------


def test_trace_context_only_with_a_valid_span() -> None:
    assert add_trace_context(None, "info", {"event": "x"}) == {"event": "x"}
    with tracer.start_as_current_span("req") as span:
        ctx = span.get_span_context()
        out = add_trace_context(None, "info", {"event": "x"})
        kept = add_trace_context(None, "info", {"event": "x", "trace_id": "mine"})
    assert out["trace_id"] == format(ctx.trace_id, "032x")
    assert out["span_id"] == format(ctx.span_id, "016x")
    assert out["trace_sampled"] is True
    assert kept["trace_id"] == "mine"


# -- Sentry bridge -------------------------------------------------------------------------------


def test_bridge_is_a_noop_without_sentry(ingest: RecordingIngest) -> None:
    sentry_sdk.get_global_scope().set_client(None)
    event_dict = {"event": "payment.failed", "order_id": 7}
    assert not sentry_sdk.get_client().is_active()
    assert SentryBridge()(None, "error", dict(event_dict)) == event_dict
    assert ingest.received == []


def test_breadcrumbs_events_and_logs_from_structlog(ingest: RecordingIngest) -> None:
    sink = _Sink()
    bridge = SentryBridge("INFO", "ERROR", tag_keys=("tenant",), scrubber=Scrubber())
    log = bound(sink, add_trace_context, bridge)
    with sentry(ingest), tracer.start_as_current_span("request") as span:
        trace_id = format(span.get_span_context().trace_id, "032x")
        log.debug("cache.miss", key="a")
        log.info("order.loaded", order_id=7, password="hunter2")
        try:
            raise ZeroDivisionError("division by zero")
        except ZeroDivisionError:
            log.error("payment.failed", exc_info=True, tenant="acme", order_id=7)
    events, logs = sent(ingest)
    assert len(sink.lines) == 3  # the renderer still gets every line
    [event] = events
    assert event["logentry"]["message"] == "payment.failed"
    assert event["fingerprint"] == ["structlog", "payment.failed"]
    assert event["level"] == "error"
    assert event["tags"]["tenant"] == "acme"
    assert event["contexts"]["structlog"] == {"tenant": "acme", "order_id": 7}
    assert event["contexts"]["trace"]["trace_id"] == trace_id
    [exception] = event["exception"]["values"]
    assert exception["type"] == "ZeroDivisionError"
    assert exception["mechanism"]["type"] == "logging"
    assert exception["stacktrace"]["frames"][-1]["function"].startswith("test_breadcrumbs")
    crumbs = [c for c in event["breadcrumbs"]["values"] if c.get("category") == "structlog"]
    assert [c["message"] for c in crumbs] == ["order.loaded"]  # debug is below the level
    assert crumbs[0]["data"] == {"order_id": 7, "password": "[Filtered]"}
    assert sorted(entry["body"] for entry in logs) == ["order.loaded", "payment.failed"]
    for entry in logs:
        assert entry["trace_id"] == trace_id
        assert entry["attributes"]["sentry.message.template"]["value"] == entry["body"]
    loaded = next(entry for entry in logs if entry["body"] == "order.loaded")
    assert loaded["attributes"]["password"]["value"] == "[Filtered]"
    assert loaded["attributes"]["order_id"]["value"] == 7


def test_levels_none_disable(ingest: RecordingIngest) -> None:
    log = bound(_Sink(), SentryBridge("NONE", "NONE", logs_level=None))
    with sentry(ingest):
        log.error("payment.failed")
    assert sent(ingest) == ([], [])


# -- exactly one Sentry event per error log --------------------------------------------------------


def _count(events: list[dict[str, Any]], message: str) -> int:
    return sum(
        1
        for e in events
        if message in (e.get("logentry", {}).get("message") or "")
        or message in (e.get("logentry", {}).get("formatted") or "")
    )


def test_stdlib_backed_structlog_sends_one_event_one_breadcrumb_one_log(
    ingest: RecordingIngest,
) -> None:
    log = bound(stdlib_logger("app.stdlib"), SentryBridge(scrubber=Scrubber()))
    plain = stdlib_logger("app.plain")
    with sentry(ingest):
        log.info("step.one", n=1)
        log.error("step.failed", n=2)
        plain.info("plain step %s", 1)
        plain.error("plain failure %s", 2)
    events, logs = sent(ingest)
    assert _count(events, "step.failed") == 1
    [ours] = [e for e in events if "step.failed" in e["logentry"]["message"]]
    assert ours["contexts"]["structlog"] == {"n": 2}  # the rich copy won
    assert _count(events, "plain failure") == 1  # plain stdlib untouched
    plain_event = next(e for e in events if "plain failure" in e["logentry"]["formatted"])
    # (breadcrumbs of other kinds, e.g. sentry-sdk's httplib ones, carry no message)
    crumbs = [c.get("message", "") for c in plain_event["breadcrumbs"]["values"]]
    assert sum("step.one" in c for c in crumbs) == 1
    assert sum("step.failed" in c for c in crumbs) == 1
    assert sum("plain step 1" in c for c in crumbs) == 1
    bodies = [entry["body"] for entry in logs]
    assert sum("step.one" in b for b in bodies) == 1
    assert sum("step.failed" in b for b in bodies) == 1
    assert sum("plain step 1" in b for b in bodies) == 1


def test_without_the_dedupe_hooks_stdlib_backed_structlog_would_report_twice(
    ingest: RecordingIngest,
) -> None:
    """The control for the test above: the duplicate is real, the hooks remove it."""
    log = bound(stdlib_logger("app.control"), SentryBridge(scrubber=Scrubber()))
    _init(ingest)
    try:
        log.error("control.failed")
    finally:
        _shutdown()
    assert _count(ingest.events("event"), "control.failed") == 2


@pytest.mark.parametrize(
    "renderer",
    [
        structlog.processors.JSONRenderer(),
        structlog.processors.LogfmtRenderer(),
        structlog.processors.KeyValueRenderer(),
    ],
    ids=["json", "logfmt", "keyvalue"],
)
def test_one_event_log_and_record_when_the_renderer_escapes_the_message(
    ingest: RecordingIngest, otel_logs, renderer: Any
) -> None:
    # The renderers escape accents (JSON's \u00e9), quotes and line breaks: the stdlib copy
    # does not hold the text as it was logged, and must still be recognised as the copy.
    provider, exporter = otel_logs
    handler = LoggingHandler(logger_provider=provider)
    root = logging.getLogger()
    root.addHandler(handler)
    texts = ["paiement refusé", 'quote "x" failed', "line1\nline2", "back\\slash"]
    chain: list[Processor] = [
        structlog.processors.add_log_level,
        SentryBridge(scrubber=Scrubber()),
        OTelLogEmitter(logger_provider=provider),
        renderer,
    ]
    log = structlog.wrap_logger(
        stdlib_logger("app.escaped"), processors=chain, wrapper_class=structlog.stdlib.BoundLogger
    )
    try:
        install_handler_filters()
        with sentry(ingest):
            for text in texts:
                log.error(text)
    finally:
        remove_handler_filters()
        root.removeHandler(handler)
    events, logs = sent(ingest)
    assert sorted(e["logentry"]["message"] for e in events) == sorted(texts)
    assert sorted(entry["body"] for entry in logs) == sorted(texts)
    assert sorted(str(d.log_record.body) for d in exporter.get_finished_logs()) == sorted(texts)


def test_one_sentry_log_when_percent_args_reach_stdlib(ingest: RecordingIngest) -> None:
    # render_to_log_args_and_kwargs hands stdlib the template and its args: sentry-sdk's
    # Sentry log then has the formatted line as body and the template apart.
    chain: list[Processor] = [
        structlog.processors.add_log_level,
        SentryBridge(scrubber=Scrubber()),
        structlog.stdlib.render_to_log_args_and_kwargs,
    ]
    log = structlog.wrap_logger(
        stdlib_logger("app.args"), processors=chain, wrapper_class=structlog.stdlib.BoundLogger
    )
    with sentry(ingest):
        log.info("user %s logged in", "bob")
        log.error("charge %s failed", "ch_1")
    events, logs = sent(ingest)
    assert sorted(entry["body"] for entry in logs) == ["charge %s failed", "user %s logged in"]
    assert [e["logentry"]["message"] for e in events] == ["charge %s failed"]


def test_a_field_whose_repr_fails_loses_only_its_own_value(
    ingest: RecordingIngest, otel_logs
) -> None:
    class Unprintable:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    provider, exporter = otel_logs
    sink = _Sink()
    chain: list[Processor] = [
        structlog.processors.add_log_level,
        SentryBridge(scrubber=Scrubber()),
        OTelLogEmitter(logger_provider=provider),
        lambda _logger, _name, event: str(event["event"]),  # a renderer that reads no field
    ]
    log = structlog.wrap_logger(sink, processors=chain)
    with sentry(ingest):
        log.error("order.failed", order=Unprintable(), order_id=7)
    _, logs = sent(ingest)
    [entry] = logs
    assert entry["attributes"]["order_id"]["value"] == 7
    assert "repr failed" in entry["attributes"]["order"]["value"]
    [record] = [d.log_record for d in exporter.get_finished_logs()]
    assert (record.attributes or {})["order_id"] == 7
    assert sink.lines == ["order.failed"]


def test_stdlib_logger_level_is_respected(ingest: RecordingIngest, otel_logs) -> None:
    provider, exporter = otel_logs
    quiet = logging.getLogger("app.quiet")
    quiet.setLevel(logging.CRITICAL)
    log = bound(quiet, SentryBridge(scrubber=Scrubber()), OTelLogEmitter(logger_provider=provider))
    with sentry(ingest):
        log.error("muted.failed")
    assert sent(ingest) == ([], [])
    assert exporter.get_finished_logs() == ()


def test_print_logger_structlog_sends_one_event(ingest: RecordingIngest) -> None:
    log = bound(_Sink(), SentryBridge(scrubber=Scrubber()))
    with sentry(ingest):
        log.error("print.failed")
    assert _count(sent(ingest)[0], "print.failed") == 1


def test_one_event_per_log_across_threads_and_tasks(ingest: RecordingIngest) -> None:
    log = bound(stdlib_logger("app.concurrent"), SentryBridge(scrubber=Scrubber()))

    def in_thread(index: int) -> None:
        for n in range(5):
            log.error("thread.failed", worker=index, n=n)

    async def in_task(index: int) -> None:
        for n in range(5):
            log.error("task.failed", worker=index, n=n)
            await asyncio.sleep(0)

    async def tasks() -> None:
        await asyncio.gather(*(in_task(i) for i in range(4)))

    with sentry(ingest):
        threads = [threading.Thread(target=in_thread, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        asyncio.run(tasks())
        for thread in threads:
            thread.join()
    events = sent(ingest)[0]
    assert _count(events, "thread.failed") == 20
    assert _count(events, "task.failed") == 20
    assert all("structlog" in e["contexts"] for e in events)  # every one is the rich copy


def test_bridge_never_raises(ingest: RecordingIngest) -> None:
    class Hostile:
        def __str__(self) -> str:
            raise RuntimeError("no text")

        __repr__ = __str__

    event_dict = {"event": Hostile(), "value": Hostile()}
    with sentry(ingest):
        assert SentryBridge()(None, "error", event_dict) is event_dict
        assert OTelLogEmitter()(None, "error", event_dict) is event_dict


# -- OTel log records ------------------------------------------------------------------------------


def test_otel_emitter_emits_body_severity_attributes_and_trace(otel_logs) -> None:
    provider, exporter = otel_logs
    emitter = OTelLogEmitter(logger_provider=provider, scrubber=Scrubber())
    log = bound(_Sink(), emitter)
    with tracer.start_as_current_span("request") as span:
        log.warning("quota.low", remaining=3, api_key="k-123", tags=["a", "b"])
        try:
            raise ValueError("bad")
        except ValueError:
            log.error("parse.failed", exc_info=True)
    first, second = (data.log_record for data in exporter.get_finished_logs())
    assert first.body == "quota.low"
    assert first.severity_text == "WARN" and first.severity_number.value == 13
    assert dict(first.attributes or {}) == {
        "remaining": 3, "api_key": "[Filtered]", "tags": ("a", "b")
    }
    assert first.trace_id == span.get_span_context().trace_id
    assert first.span_id == span.get_span_context().span_id
    assert (second.attributes or {})["exception.type"] == "ValueError"


def test_otel_handler_gets_no_second_copy_of_structlog_records(otel_logs) -> None:
    provider, exporter = otel_logs
    handler = LoggingHandler(logger_provider=provider)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        assert install_handler_filters() >= 1
        log = bound(stdlib_logger("app.otel"), OTelLogEmitter(logger_provider=provider))
        log.info("shipped", order_id=1)
        stdlib_logger("app.otel").info("plain %s", "line")
    finally:
        remove_handler_filters()
        root.removeHandler(handler)
    records = [data.log_record for data in exporter.get_finished_logs()]
    assert [r.body for r in records] == ["shipped", "plain line"]
    assert (records[0].attributes or {})["order_id"] == 1


def test_otel_handler_behind_a_queue_gets_no_second_copy_either(otel_logs) -> None:
    # The OTel handler runs on the QueueListener's thread, where the claim the structlog call
    # left in its own thread's context is not visible: the QueueHandler marks the record.
    provider, exporter = otel_logs
    otel_handler = LoggingHandler(logger_provider=provider)
    queue: Queue[logging.LogRecord] = Queue()
    queue_handler = logging.handlers.QueueHandler(queue)
    listener = logging.handlers.QueueListener(queue, otel_handler)
    queue_handler.listener = listener  # type: ignore[attr-defined]  # as dictConfig does (3.12)
    root = logging.getLogger()
    root.addHandler(queue_handler)
    listener.start()
    try:
        assert install_handler_filters() == 1
        log = bound(stdlib_logger("app.queued"), OTelLogEmitter(logger_provider=provider))
        log.info("shipped", order_id=1)
        stdlib_logger("app.queued").info("plain %s", "line")
        log.warning("late", order_id=2)
    finally:
        listener.stop()  # handles what is queued first
        remove_handler_filters()
        root.removeHandler(queue_handler)
    assert not queue_handler.filters and not otel_handler.filters
    # the queued plain line arrives after the structlog lines, emitted on the calling thread
    records = {data.log_record.body: data.log_record for data in exporter.get_finished_logs()}
    assert len(exporter.get_finished_logs()) == 3
    assert sorted(records) == ["late", "plain line", "shipped"]
    assert (records["late"].attributes or {})["order_id"] == 2


# -- zero-code instrumentation ---------------------------------------------------------------------


def _instrumentation() -> Any:
    try:
        import otel_bridge_instrumentation_structlog
    except ModuleNotFoundError:  # pragma: no cover - a setup problem, said plainly
        pytest.fail("otel_bridge_instrumentation_structlog is not installed: pip install -e .")
    return otel_bridge_instrumentation_structlog


def test_insertion_before_exception_formatting_and_renderer() -> None:
    insertion_index = _instrumentation().insertion_index
    insert_bridge_processors = _instrumentation().insert_bridge_processors
    renderer = structlog.processors.JSONRenderer()
    chain = [
        structlog.processors.add_log_level,
        structlog.processors.format_exc_info,
        renderer,
    ]
    assert insertion_index(chain) == 1
    assert insertion_index([renderer]) == 0
    # after EventRenamer the message is no longer under `event`: ours go before it
    renamer = structlog.processors.EventRenamer("message")
    assert insertion_index([structlog.processors.add_log_level, renamer, renderer]) == 1
    assert insertion_index([]) == 0
    ours = [add_trace_context]
    assert insert_bridge_processors(chain, ours)[1] is add_trace_context
    already = [add_trace_context, renderer]
    assert insert_bridge_processors(already, ours) == already
    mine = SentryBridge(event_level="CRITICAL")
    mixed = insert_bridge_processors([mine, renderer], [add_trace_context, SentryBridge()])
    assert mixed == [mine, add_trace_context, renderer]  # the app's own bridge is kept


def test_instrumentor_inserts_and_removes_processors(ingest: RecordingIngest) -> None:
    instrumentor = _instrumentation().StructlogInstrumentor()
    sink = _Sink()
    bridge = SentryBridge(scrubber=Scrubber())
    instrumentor.instrument(processors=[add_trace_context, bridge])
    try:
        structlog.configure(
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(),
            ],
            logger_factory=lambda *args: sink,
        )
        chain = structlog.get_config()["processors"]
        assert chain[1] is add_trace_context and chain[2] is bridge
        with sentry(ingest):
            try:
                raise KeyError("sku")
            except KeyError:
                structlog.get_logger().error("lookup.failed", exc_info=True)
        [event] = sent(ingest)[0]
        assert event["exception"]["values"][0]["type"] == "KeyError"
        assert '"exception"' in sink.lines[0]  # format_exc_info still ran after us
    finally:
        instrumentor.uninstrument()
    try:
        structlog.configure(processors=[structlog.processors.JSONRenderer()])
        assert len(structlog.get_config()["processors"]) == 1  # configure no longer wrapped
    finally:
        structlog.reset_defaults()


def test_instrumentor_bridges_an_already_configured_chain() -> None:
    renderer = structlog.processors.KeyValueRenderer()
    structlog.configure(processors=[renderer])
    instrumentor = _instrumentation().StructlogInstrumentor()
    instrumentor.instrument(processors=[add_trace_context])
    try:
        assert structlog.get_config()["processors"] == [add_trace_context, renderer]
    finally:
        instrumentor.uninstrument()
        structlog.reset_defaults()
    assert add_trace_context not in structlog.get_config()["processors"]
