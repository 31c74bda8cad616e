"""One span processor in front of the processors that only act on local roots.

The SDK calls every registered processor three times for every span (``on_start``,
``_on_ending``, ``on_end``), on the thread that makes the span. Most spans are children (a
request's database queries, its outgoing calls), which the DSC tracker and the scope
processor only look at to return: registered behind this one, they are called for local
roots alone, and the test is made once per span rather than once per processor.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry import context as context_api
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from otel_bridge.span_attributes import IS_REMOTE


class LocalRootProcessors(SpanProcessor):
    """Forwards local roots (no parent, or a remote one) to ``processors``, in order.

    Each hook tests the span as ``pipeline.assembly.is_local_root`` does, written out: the
    hooks run for every span the application makes, and the test costs less than a call
    (and reads the span behind the SDK's properties, see otel_bridge/span_attributes.py).
    The processors behind it keep their own test, so each still works registered alone.
    """

    def __init__(self, processors: Sequence[SpanProcessor]) -> None:
        self.processors = tuple(processors)

    def on_start(self, span: Span, parent_context: context_api.Context | None = None) -> None:
        parent = span._parent
        if parent is not None and not parent[IS_REMOTE]:
            return
        for processor in self.processors:
            processor.on_start(span, parent_context=parent_context)

    def _on_ending(self, span: Span) -> None:
        parent = span._parent
        if parent is not None and not parent[IS_REMOTE]:
            return
        for processor in self.processors:
            processor._on_ending(span)

    def on_end(self, span: ReadableSpan) -> None:
        parent = span._parent
        if parent is not None and not parent[IS_REMOTE]:
            return
        for processor in self.processors:
            processor.on_end(span)

    def shutdown(self) -> None:
        for processor in self.processors:
            processor.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return all([processor.force_flush(timeout_millis) for processor in self.processors])
