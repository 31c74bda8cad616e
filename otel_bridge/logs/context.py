"""Trace correlation for structlog: the active OTel span's ids on every event."""

from __future__ import annotations

from opentelemetry import trace
from structlog.typing import EventDict, WrappedLogger


def current_trace_ids() -> tuple[str, str, bool] | None:
    """(trace id, span id, sampled) of the active span in W3C hex, or None without one."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    sampled = bool(context.trace_flags.sampled)
    return format(context.trace_id, "032x"), format(context.span_id, "016x"), sampled


def add_trace_context(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """structlog processor: add ``trace_id``, ``span_id`` (W3C hex) and ``trace_sampled``
    from the current OpenTelemetry context; adds nothing when no valid span is active.

    Keys the caller already set win (a log line about another trace keeps its ids).

    >>> import structlog
    >>> structlog.configure(processors=[add_trace_context, structlog.processors.JSONRenderer()])
    """
    try:
        ids = current_trace_ids()
    except Exception:  # a broken context must never break logging
        return event_dict
    if ids is None:
        return event_dict
    trace_id, span_id, sampled = ids
    event_dict.setdefault("trace_id", trace_id)
    event_dict.setdefault("span_id", span_id)
    event_dict.setdefault("trace_sampled", sampled)
    return event_dict
