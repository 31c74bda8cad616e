"""What the span pipeline reads behind the SDK's properties is what the properties return.

otel_bridge/span_attributes.py explains why the hot paths read ``span._context``,
``span._parent``, ... and index a span context by position. These tests pin that down on
real SDK spans (live and finished, root and child, remote parent), so that an SDK release
renaming or reordering any of it fails here with a plain message, not as a wrong field in a
transaction.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, Span, TracerProvider
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode
from opentelemetry.trace.span import TraceFlags, TraceState

from otel_bridge.span_attributes import (
    IS_REMOTE,
    IS_VALID,
    SAMPLED,
    SPAN_ID,
    TRACE_FLAGS,
    TRACE_ID,
    TRACE_STATE,
    attributes_view,
    events_view,
)

_FIELDS = (
    "context",
    "parent",
    "kind",
    "name",
    "status",
    "start_time",
    "end_time",
    "resource",
    "instrumentation_scope",
)


def _spans() -> Iterator[tuple[str, Span | ReadableSpan]]:
    provider = TracerProvider(resource=Resource.create({"service.name": "fields"}))
    tracer = provider.get_tracer("test")
    remote = SpanContext(
        0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED),
        trace_state=TraceState([("k", "v")]),
    )
    root = tracer.start_span(
        "root", context=trace.set_span_in_context(NonRecordingSpan(remote)),
        kind=SpanKind.SERVER, attributes={"http.route": "/x"},
    )
    child = tracer.start_span("child", context=trace.set_span_in_context(root),
                              kind=SpanKind.CLIENT, attributes={"db.system": "sqlite"})
    assert isinstance(root, Span) and isinstance(child, Span)  # the SDK's, not the API's
    yield "live root", root
    yield "live child", child
    child.add_event("something", {"n": 1})
    child.set_status(Status(StatusCode.ERROR, "broke"))
    child.end()
    root.end()
    yield "finished root", root._readable_span()
    yield "finished child", child._readable_span()
    provider.shutdown()


@pytest.mark.parametrize("label, span", list(_spans()), ids=lambda value: str(value)[:14])
def test_private_fields_are_what_the_properties_return(
    label: str, span: Span | ReadableSpan
) -> None:
    for field in _FIELDS:
        assert getattr(span, f"_{field}") is getattr(span, field), (label, field)
    assert span._status._status_code is span.status.status_code
    assert tuple(span._links) == span.links  # the scrubber's copies read these two
    assert span._instrumentation_info is span.__dict__["_instrumentation_info"]
    assert dict(attributes_view(span)) == dict(span.attributes or {})
    assert list(events_view(span)) == list(span.events)


def test_attributes_are_read_in_place() -> None:
    """The fast paths are taken: the SDK's own dict, or the dict a copy was made from."""
    for label, span in _spans():
        inner = span._attributes
        assert isinstance(inner, BoundedAttributes), label
        assert attributes_view(span) is inner._dict, label
    given = {"db.statement": "SELECT 1"}
    copy = ReadableSpan(name="copy", attributes=given)
    assert attributes_view(copy) is given
    assert dict(attributes_view(ReadableSpan(name="none"))) == {}


def test_events_are_read_in_place() -> None:
    for label, span in _spans():
        inner = span._events
        assert isinstance(inner, BoundedList), label
        assert events_view(span) is inner._dq, label  # type: ignore[attr-defined]
    given = [Event("retry", {"n": 1})]
    assert events_view(ReadableSpan(name="copy", events=given)) is given
    assert list(events_view(ReadableSpan(name="none"))) == []


@pytest.mark.parametrize("label, span", list(_spans()), ids=lambda value: str(value)[:14])
def test_span_context_items_by_position(label: str, span: Span | ReadableSpan) -> None:
    for context in (span.context, span.parent):
        assert context is not None, label
        assert context[TRACE_ID] == context.trace_id
        assert context[SPAN_ID] == context.span_id
        assert context[IS_REMOTE] is context.is_remote
        assert context[TRACE_FLAGS] == context.trace_flags
        assert bool(context[TRACE_FLAGS] & SAMPLED) is context.trace_flags.sampled
        assert context[TRACE_STATE] is context.trace_state
        assert context[IS_VALID] is context.is_valid


def test_an_unsampled_context_reads_as_unsampled() -> None:
    context = SpanContext(1, 2, is_remote=False, trace_flags=TraceFlags(TraceFlags.DEFAULT))
    assert not context[TRACE_FLAGS] & SAMPLED
    invalid = SpanContext(0, 0, is_remote=False)
    assert invalid[IS_VALID] is False
