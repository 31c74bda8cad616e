"""OTel's BatchSpanProcessor in front of the `sentry` exporter, with its drops counted.

When its queue (``OTEL_BSP_MAX_QUEUE_SIZE``) is full, the SDK's processor silently pushes
out its oldest span and logs one warning per span. Sentry's users expect every loss to show
up as a client report, so this subclass counts the spans it has handed on and not yet seen
exported, and when that count reaches the queue's size it drops the new span itself: one
``queue_overflow`` loss (a ``transaction`` for a local root, else a ``span``), and a warning
at most every five minutes. The SDK's queue is never overfilled, so it never drops.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence

from opentelemetry.sdk.environment_variables import (
    OTEL_BSP_MAX_EXPORT_BATCH_SIZE,
    OTEL_BSP_MAX_QUEUE_SIZE,
)
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from otel_bridge.forks import reset_in_forked_children
from otel_bridge.pipeline.assembly import DroppedSpan, local_parent_id
from otel_bridge.span_attributes import SAMPLED, SPAN_ID, TRACE_FLAGS, TRACE_ID

_logger = logging.getLogger(__name__)
_DEFAULT_QUEUE_SIZE = 2048  # the SDK's default for OTEL_BSP_MAX_QUEUE_SIZE
# The `sentry` exporter's batches when OTEL_BSP_MAX_EXPORT_BATCH_SIZE is unset (the SDK's
# default is 512). A span waits in the queue until its batch is full; 512 spans outlive the
# collector's young generations and are promoted to the oldest one, which brings full
# collections forward: with 128, the benchmark's server collected exactly as often as the
# OTel floor's (165.6 / 15.2 / 1.2 collections per 1,000 requests against 192.4 / 17.6 /
# 1.6 with 512; collector time 74 against 114 µs per request, 2,500-request bursts,
# 2026-11-23). More, smaller batches cost little since a batch's envelopes are pipelined.
SENTRY_EXPORT_BATCH_SIZE = 128
_WARNING_INTERVAL = 300.0

DropReporter = Callable[[ReadableSpan], None]


def queue_size_from_env() -> int:
    """The queue size the SDK's BatchSpanProcessor reads (it logs a bad value itself)."""
    try:
        return int(os.environ.get(OTEL_BSP_MAX_QUEUE_SIZE, _DEFAULT_QUEUE_SIZE))
    except ValueError:
        return _DEFAULT_QUEUE_SIZE


def sentry_export_batch_size() -> int | None:
    """The batch size for the `sentry` exporter: None (the SDK reads the variable) when
    OTEL_BSP_MAX_EXPORT_BATCH_SIZE is set, else 128, or the queue size if that is smaller
    (the SDK refuses a batch larger than its queue)."""
    if os.environ.get(OTEL_BSP_MAX_EXPORT_BATCH_SIZE, "").strip():
        return None
    return min(SENTRY_EXPORT_BATCH_SIZE, max(1, queue_size_from_env()))


def report_span_lost(
    span: ReadableSpan, dropped_spans: deque[DroppedSpan] | None = None
) -> None:
    """A client report for a span dropped before the exporter saw it. The span is also
    added to ``dropped_spans``, where the exporter learns what becomes of its descendants:
    lost with a local root, adopted by the parent of any other span."""
    import sentry_sdk

    parent_id = local_parent_id(span)
    context = span._context  # behind the SDK's properties: see otel_bridge/span_attributes.py
    if dropped_spans is not None and context is not None:
        dropped_spans.append((context[TRACE_ID], context[SPAN_ID], parent_id))
    transport = sentry_sdk.get_client().transport
    if transport is None:
        return
    if parent_id is None:  # a local root: its transaction is lost
        transport.record_lost_event("queue_overflow", data_category="transaction")
    transport.record_lost_event("queue_overflow", data_category="span")


class _Dequeued(SpanExporter):
    """Passes batches on, telling the processor how many spans left its queue."""

    def __init__(self, exporter: SpanExporter, processor: AccountedBatchSpanProcessor) -> None:
        self.exporter = exporter
        self._processor = weakref.ref(processor)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        processor = self._processor()
        if processor is not None:
            processor._left_queue(len(spans))
        return self.exporter.export(spans)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.exporter.force_flush(timeout_millis)

    def shutdown(self) -> None:
        self.exporter.shutdown()


class AccountedBatchSpanProcessor(BatchSpanProcessor):
    def __init__(self, exporter: SpanExporter, on_drop: DropReporter = report_span_lost) -> None:
        self._capacity = queue_size_from_env()
        self._queued = 0
        self._dropped = 0
        self._next_warning = 0.0
        self._count_lock = threading.Lock()
        self._on_drop = on_drop
        super().__init__(
            _Dequeued(exporter, self), max_export_batch_size=sentry_export_batch_size()
        )
        # The SDK's on_end checks the sampled flag again and then hands the span to its batch
        # processor's emit (private); on the request thread, for every span, straight there.
        batcher = getattr(self, "_batch_processor", None)
        emit = getattr(batcher, "emit", None)
        self._enqueue: Callable[[ReadableSpan], None] = (
            emit if callable(emit) else super().on_end
        )
        # The SDK empties its queue in a forked child (gunicorn's workers): so does the count.
        reset_in_forked_children(self._reset_after_fork)

    def _reset_after_fork(self) -> None:
        self._count_lock = threading.Lock()
        self._queued = 0
        self._dropped = 0

    def _left_queue(self, count: int) -> None:
        with self._count_lock:
            self._queued = max(0, self._queued - count)

    def on_end(self, span: ReadableSpan) -> None:
        # On the request thread, for every span: read behind the SDK's properties (see
        # otel_bridge/span_attributes.py).
        context = span._context
        if context is None or not context[TRACE_FLAGS] & SAMPLED:
            return
        with self._count_lock:
            if self._queued < self._capacity:
                self._queued += 1
                full = False
            else:
                full = True
                self._dropped += 1
        if not full:
            self._enqueue(span)
            return
        self._warn_now_and_then()
        try:
            self._on_drop(span)
        except Exception:  # counting a loss must never break the application's span.end()
            _logger.debug("otel-bridge: could not count a dropped span", exc_info=True)

    def _warn_now_and_then(self) -> None:
        now = time.monotonic()
        with self._count_lock:
            if now < self._next_warning:
                return
            self._next_warning = now + _WARNING_INTERVAL
            dropped = self._dropped
        _logger.warning(
            "otel-bridge: the span queue is full (OTEL_BSP_MAX_QUEUE_SIZE=%d): %d span(s) "
            "dropped so far, sent as client reports (queue_overflow); the exporter cannot "
            "keep up with the spans or the ingest is slow",
            self._capacity,
            dropped,
        )
