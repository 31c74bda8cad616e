"""otel_bridge.pipeline.span_errors on exceptions recorded by the real OpenTelemetry SDK."""

from __future__ import annotations

import builtins
import inspect
import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode
from sentry_sdk.utils import event_from_exception

from otel_bridge.pipeline.span_errors import (
    exception_error_events,
    exception_key,
    parse_python_traceback,
    should_report_span_errors,
    split_exception_type,
)


@contextmanager
def recording(resource: Resource) -> Iterator[tuple[trace.Tracer, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        yield provider.get_tracer("tests.span_errors"), exporter
    finally:
        provider.shutdown()


RESOURCE = Resource.create({"service.name": "shop", "service.version": "3.1",
                            "host.name": "worker-2"})


def span_with(
    body: Callable[[trace.Span], None],
    *,
    kind: SpanKind = SpanKind.SERVER,
    name: str = "GET /orders/{id}",
    attributes: dict[str, Any] | None = None,
) -> ReadableSpan:
    with recording(RESOURCE) as (tracer, exporter):
        with tracer.start_as_current_span(name, kind=kind, attributes=attributes,
                                          record_exception=False) as span:
            body(span)
            span.set_status(Status(StatusCode.ERROR))
        (finished,) = exporter.get_finished_spans()
    return finished


def stacktrace_of(span: ReadableSpan) -> str:
    attributes = span.events[0].attributes or {}
    text = attributes["exception.stacktrace"]
    assert isinstance(text, str)
    return text


def make_span(kind: SpanKind) -> ReadableSpan:
    return span_with(lambda span: None, kind=kind)


# -- which spans report --------------------------------------------------------------------

KINDS = [SpanKind.SERVER, SpanKind.CONSUMER, SpanKind.CLIENT, SpanKind.PRODUCER,
         SpanKind.INTERNAL]
EXPECTED = {
    "none": set(),
    "server": {SpanKind.SERVER},
    "server_consumer": {SpanKind.SERVER, SpanKind.CONSUMER},
    "all": set(KINDS),
}


@pytest.mark.parametrize("mode", list(EXPECTED))
@pytest.mark.parametrize("kind", KINDS)
def test_should_report_span_errors(mode: str, kind: SpanKind) -> None:
    assert should_report_span_errors(make_span(kind), mode) is (kind in EXPECTED[mode])


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown span error mode"):
        should_report_span_errors(make_span(SpanKind.SERVER), "servers")


# -- a real recorded exception -------------------------------------------------------------


class OrderError(Exception):
    class Missing(LookupError):
        pass


def load_order(order_id: int) -> None:
    check_order(order_id)


def check_order(order_id: int) -> None:
    raise OrderError(f"order {order_id} is broken")


def _record(call: Callable[[], None]) -> Callable[[trace.Span], None]:
    def body(span: trace.Span) -> None:
        try:
            call()
        except Exception as exc:
            span.record_exception(exc)

    return body


def _line_of(function: Callable[..., Any], text: str) -> int:
    lines, start = inspect.getsourcelines(function)
    return start + next(i for i, line in enumerate(lines) if text in line)


def test_error_event_from_recorded_exception() -> None:
    span = span_with(_record(lambda: load_order(7)), attributes={
        "http.method": "GET", "http.route": "/orders/{id}", "http.status_code": 500,
        "http.url": "http://shop.example/orders/7?x=1"})
    (event,) = exception_error_events(span, release=None, environment="staging")
    (value,) = event["exception"]["values"]
    assert value["type"] == "OrderError"
    assert value["module"] == __name__
    assert value["value"] == "order 7 is broken"
    assert value["mechanism"] == {"type": "otel", "handled": False}
    frames = value["stacktrace"]["frames"]
    # oldest first: the test's lambda, then load_order, then check_order (where it raised)
    assert [f["function"] for f in frames][-3:] == ["<lambda>", "load_order", "check_order"]
    raising = frames[-1]
    assert raising["lineno"] == _line_of(check_order, "raise OrderError")
    assert raising["context_line"] == 'raise OrderError(f"order {order_id} is broken")'
    assert raising["abs_path"] == __file__
    assert raising["filename"] == "tests/test_span_errors.py"
    assert raising["module"] == "tests.test_span_errors"
    assert raising["in_app"] is True
    assert frames[-2]["lineno"] == _line_of(load_order, "check_order(order_id)")

    assert event["level"] == "error"
    assert event["platform"] == "python"
    assert re.fullmatch(r"[0-9a-f]{32}", event["event_id"])
    assert event["timestamp"] == span.events[0].timestamp / 1e9
    assert event["transaction"] == "GET /orders/{id}"
    trace_ctx = event["contexts"]["trace"]
    assert trace_ctx["trace_id"] == f"{span.context.trace_id:032x}"
    assert trace_ctx["span_id"] == f"{span.context.span_id:016x}"
    assert trace_ctx["parent_span_id"] is None
    assert (trace_ctx["op"], trace_ctx["status"]) == ("http.server", "internal_error")
    assert (event["release"], event["environment"], event["server_name"]) == (
        "3.1", "staging", "worker-2")
    assert event["tags"] == {"service.name": "shop"}
    assert event["request"]["url"] == "http://shop.example/orders/7"
    assert "fingerprint" not in event
    json.dumps(event, allow_nan=False)


def test_same_key_as_sentry_sdk_for_the_same_exception() -> None:
    """The lead dedupes span errors against what sentry-sdk captured: keys must agree."""
    try:
        load_order(9)
    except OrderError as exc:
        exc.add_note("extra context sentry-sdk appends to the value")
        caught = exc
    span = span_with(lambda span: span.record_exception(caught))
    (event,) = exception_error_events(span, release=None, environment=None)
    ours = event["exception"]["values"][0]
    trace_id = event["contexts"]["trace"]["trace_id"]
    sentry_event, _ = event_from_exception(caught)
    theirs = sentry_event["exception"]["values"][-1]
    assert (theirs["type"], theirs["module"]) == (ours["type"], ours["module"])
    assert exception_key(trace_id, ours["type"], ours["value"]) == exception_key(
        trace_id.upper(), theirs["type"], theirs["value"])
    # and OTel's raw, fully qualified exception.type reduces to the same key
    raw_type = str((span.events[0].attributes or {})["exception.type"])
    assert raw_type == f"{__name__}.OrderError"
    assert exception_key(trace_id, raw_type, "order 9 is broken")[1] == "OrderError"


def test_exception_key_normalisation() -> None:
    assert exception_key("ABC", "django.http.response.Http404", "  nope\nmore ") == (
        "abc", "Http404", "nope")
    assert exception_key("abc", "ValueError", "") == ("abc", "ValueError", "")
    assert exception_key("abc", "OrderError.Missing", "m")[1] == "Missing"


def test_nested_class_keeps_its_qualname() -> None:
    def fail() -> None:
        raise OrderError.Missing("gone")

    span = span_with(_record(fail))
    value = exception_error_events(span, release=None, environment=None)[0]["exception"][
        "values"][0]
    assert (value["module"], value["type"]) == (__name__, "OrderError.Missing")


def test_split_exception_type() -> None:
    assert split_exception_type("ValueError") == (None, "ValueError")
    assert split_exception_type("json.decoder.JSONDecodeError") == (
        "json.decoder", "JSONDecodeError")
    assert split_exception_type("not_imported_pkg.errors.Boom") == (
        "not_imported_pkg.errors", "Boom")


def test_chained_exception_uses_the_frames_of_the_last_one() -> None:
    def lower() -> None:
        raise KeyError("k")

    def upper() -> None:
        try:
            lower()
        except KeyError as exc:
            raise RuntimeError("wrapped") from exc

    span = span_with(_record(upper))
    value = exception_error_events(span, release=None, environment=None)[0]["exception"][
        "values"][0]
    assert (value["type"], value["value"]) == ("RuntimeError", "wrapped")
    functions = [f["function"] for f in value["stacktrace"]["frames"]]
    assert functions[-1] == "upper" and "lower" not in functions
    assert value["stacktrace"]["frames"][-1]["context_line"] == (
        'raise RuntimeError("wrapped") from exc')


# ExceptionGroup is 3.11+; the package still supports 3.10.
EXCEPTION_GROUP = vars(builtins).get("ExceptionGroup")


@pytest.mark.skipif(EXCEPTION_GROUP is None, reason="needs ExceptionGroup (Python 3.11+)")
def test_exception_group_uses_the_groups_own_frames() -> None:
    def inner_failure() -> None:
        raise ValueError("a")

    def group() -> None:
        errors: list[Exception] = [TypeError("b")]
        try:
            inner_failure()
        except ValueError as exc:
            errors.append(exc)
        assert EXCEPTION_GROUP is not None
        raise EXCEPTION_GROUP("several", errors)

    span = span_with(_record(group))
    value = exception_error_events(span, release=None, environment=None)[0]["exception"][
        "values"][0]
    assert value["type"] == "ExceptionGroup"
    text = stacktrace_of(span)
    assert "  + Exception Group Traceback" in text and "    | " in text
    frames = value["stacktrace"]["frames"]
    assert frames[-1]["function"] == "group"
    assert frames[-1]["context_line"] == 'raise EXCEPTION_GROUP("several", errors)'
    # the sub-exception's own traceback (inner_failure) is not mixed in
    assert "inner_failure" not in [f["function"] for f in frames]


def test_recursion_note_and_caret_lines_are_skipped() -> None:
    def recurse(n: int) -> None:
        if n == 0:
            raise ZeroDivisionError("bottom")
        recurse(n - 1)

    span = span_with(_record(lambda: recurse(10)))
    text = stacktrace_of(span)
    assert "[Previous line repeated" in text
    frames = parse_python_traceback(text)
    assert all(not f.get("context_line", "x").startswith(("[", "^", "~")) for f in frames)
    assert frames[-1]["context_line"] == 'raise ZeroDivisionError("bottom")'


def test_frames_without_source_and_library_frames() -> None:
    def run_exec() -> None:
        exec(compile("1/0", "<generated>", "exec"))

    def library() -> None:
        json.loads("{")

    span = span_with(_record(run_exec))
    frames = parse_python_traceback(stacktrace_of(span))
    generated = frames[-1]
    assert (generated["filename"], generated["function"], generated["in_app"]) == (
        "<generated>", "<module>", False)
    assert "context_line" not in generated

    span = span_with(_record(library))
    frames = parse_python_traceback(stacktrace_of(span))
    assert frames[-1]["module"].startswith("json.")
    assert frames[-1]["in_app"] is False
    assert [f["in_app"] for f in frames if f["function"] == "library"] == [True]


def test_a_line_number_too_long_for_int_is_not_a_frame() -> None:
    # A recorded stack trace is text anyone can write: int() of a 5,000-digit line number
    # raised ValueError and lost the batch the span was in.
    text = (
        "Traceback (most recent call last):\n"
        f'  File "/srv/app.py", line {"9" * 5000}, in handler\n'
        '  File "/srv/app.py", line 12, in load\n'
        "ValueError: bad\n"
    )
    frames = parse_python_traceback(text)
    assert [(f["lineno"], f["function"]) for f in frames] == [(12, "load")]


def test_one_event_per_exception_event_and_none_for_other_events() -> None:
    def body(span: trace.Span) -> None:
        span.add_event("cache miss", {"key": "orders:7"})
        span.record_exception(ValueError("first"))
        span.record_exception(KeyError("second"))

    span = span_with(body, kind=SpanKind.CONSUMER, name="orders process",
                     attributes={"messaging.system": "rabbitmq"})
    events = exception_error_events(span, release="r1", environment=None)
    assert [e["exception"]["values"][0]["type"] for e in events] == ["ValueError", "KeyError"]
    assert events[0]["event_id"] != events[1]["event_id"]
    # never raised: no traceback text beyond the header, so no frames
    assert all("stacktrace" not in e["exception"]["values"][0] for e in events)
    assert events[0]["transaction"] == "orders process"
    assert events[0]["contexts"]["trace"]["op"] == "queue.process"
    assert events[0]["release"] == "r1"
    assert "request" not in events[0]


def test_span_without_exceptions_gives_nothing() -> None:
    span = span_with(lambda span: span.add_event("note"))
    assert exception_error_events(span, release=None, environment=None) == []


class GatewayError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__([message])
        self.message = message  # sentry-sdk reports this attribute, OTel str(exc)


def test_an_exception_sentry_sdk_reports_by_its_message_attribute_is_not_sent_again() -> None:
    # Django's ValidationError and many API clients' errors: sentry-sdk's value is
    # `exc.message`, OTel's exception.message is str(exc) ("['...']"); the keys differed and
    # the span pipeline sent the same exception a second time.
    from otel_bridge.config import BridgeConfig
    from otel_bridge.runtime import Runtime, get_runtime, set_runtime
    from otel_bridge.sentry_client import link_event_to_trace

    try:
        raise GatewayError("upstream refused the payment")
    except GatewayError as exc:
        caught = exc
    span = span_with(lambda span: span.record_exception(caught))
    (ours,) = exception_error_events(span, release=None, environment=None)
    value = ours["exception"]["values"][0]["value"]
    assert value == "['upstream refused the payment']"
    trace_id = ours["contexts"]["trace"]["trace_id"]

    theirs, hint = event_from_exception(caught)
    assert theirs["exception"]["values"][-1]["value"] == "upstream refused the payment"
    theirs["contexts"] = {"trace": {"trace_id": trace_id}}
    previous = get_runtime()
    set_runtime(Runtime(BridgeConfig()))
    try:
        link_event_to_trace(dict(theirs), hint)
        assert exception_key(trace_id, ours["exception"]["values"][0]["type"], value) in (
            get_runtime().captured
        )
    finally:
        set_runtime(previous)
