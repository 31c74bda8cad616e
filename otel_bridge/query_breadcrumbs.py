"""`query` breadcrumbs on error events, made from the OTel database spans of the error's trace.

sentry-sdk's DjangoIntegration adds a breadcrumb for every SQL statement as it runs, one of
the per-request costs OTEL_BRIDGE_DJANGO_ERRORS=lean avoids. The OTel database spans hold
the same statements: this span processor keeps a reference to the last ones of each open
unit of work (nothing is converted on the request), and an event processor turns them into
breadcrumbs only when an error event is captured in that trace.

Written by hand: sentry-sdk only records query breadcrumbs from its own integrations' hooks,
and OpenTelemetry has no notion of breadcrumbs.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from datetime import datetime, timezone
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.trace import SpanKind
from sentry_sdk.utils import datetime_from_isoformat

from otel_bridge.span_attributes import IS_REMOTE, TRACE_ID, attributes_view

QUERY_CATEGORY = "query"
# sentry-sdk's default max_breadcrumbs: an event never carries more queries than that.
MAX_QUERIES_PER_TRACE = 100
# Units of work open at once whose queries are kept; past it the oldest is forgotten (its
# error gets no query breadcrumbs), so roots that never end hold at most 25,600 spans.
MAX_OPEN_TRACES = 256

_DB_SYSTEM_KEYS = ("db.system.name", "db.system")
_STATEMENT_KEYS = ("db.query.text", "db.statement")


class QueryBreadcrumbRecorder(SpanProcessor):
    """Remembers the database spans of each trace until a local root of it ends."""

    def __init__(
        self,
        max_per_trace: int = MAX_QUERIES_PER_TRACE,
        max_traces: int = MAX_OPEN_TRACES,
    ) -> None:
        self._max_per_trace = max_per_trace
        self._max_traces = max_traces
        self._queries: OrderedDict[int, deque[ReadableSpan]] = OrderedDict()
        self._lock = threading.Lock()

    def on_end(self, span: ReadableSpan) -> None:
        # On the request thread, for every span: read behind the SDK's properties (see
        # otel_bridge/span_attributes.py).
        context = span._context
        if context is None:
            return
        parent = span._parent
        if parent is None or parent[IS_REMOTE]:
            # The unit of work is over: its errors have been captured.
            if self._queries:
                with self._lock:
                    self._queries.pop(context[TRACE_ID], None)
            return
        # Database spans are CLIENT spans: the kind rules most spans out at once.
        if span._kind is not SpanKind.CLIENT:
            return
        # The SDK's own dict: the public mapping answers `in` for a missing key by raising
        # and catching a KeyError in Python, on the request thread.
        attributes = attributes_view(span)
        if "db.system" not in attributes and "db.system.name" not in attributes:
            return
        trace_id = context[TRACE_ID]
        queries = self._queries.get(trace_id)
        if queries is None:
            with self._lock:
                queries = self._queries.get(trace_id)
                if queries is None:
                    queries = self._queries[trace_id] = deque(maxlen=self._max_per_trace)
                    while len(self._queries) > self._max_traces:
                        self._queries.popitem(last=False)
        queries.append(span)  # deque.append is atomic

    def queries(self, trace_id: int) -> list[ReadableSpan]:
        with self._lock:
            return list(self._queries.get(trace_id, ()))

    def open_traces(self) -> int:
        return len(self._queries)

    def shutdown(self) -> None:
        with self._lock:
            self._queries.clear()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def query_breadcrumb(span: ReadableSpan) -> dict[str, Any]:
    """The breadcrumb sentry-sdk records for a query: category ``query``, the statement as
    message (scrubbed later with the event, like sentry-sdk's own), the database system."""
    attributes = span.attributes or {}
    statement = next(
        (attributes[key] for key in _STATEMENT_KEYS if isinstance(attributes.get(key), str)),
        span.name,
    )
    system = next((attributes[key] for key in _DB_SYSTEM_KEYS if key in attributes), None)
    crumb: dict[str, Any] = {
        "type": "default",
        "category": QUERY_CATEGORY,
        "message": statement,
        "timestamp": datetime.fromtimestamp((span.start_time or 0) / 1e9, timezone.utc),
    }
    if system is not None:
        crumb["data"] = {"db.system": str(system)}
    return crumb


def _crumb_time(crumb: Any) -> float:
    timestamp = crumb.get("timestamp") if isinstance(crumb, dict) else None
    if isinstance(timestamp, datetime):
        return timestamp.timestamp()
    if isinstance(timestamp, (int, float)):
        return float(timestamp)
    if isinstance(timestamp, str):
        try:  # the parser sentry-sdk uses when it sorts breadcrumbs itself
            return datetime_from_isoformat(timestamp).timestamp()
        except (ValueError, IndexError):
            return 0.0
    return 0.0


def _trace_id(event: dict[str, Any]) -> int | None:
    trace_hex = (event.get("contexts") or {}).get("trace", {}).get("trace_id")
    if isinstance(trace_hex, str):
        try:
            return int(trace_hex, 16)
        except ValueError:
            return None
    context = trace.get_current_span().get_span_context()
    return context.trace_id if context.is_valid else None


def with_query_breadcrumbs(
    event: dict[str, Any], recorder: QueryBreadcrumbRecorder, max_breadcrumbs: int
) -> dict[str, Any]:
    """``event`` with the queries of its trace merged into its breadcrumbs by time, unless
    a sentry-sdk integration already recorded query breadcrumbs for it."""
    if event.get("type") == "transaction":
        return event
    trace_id = _trace_id(event)
    spans = recorder.queries(trace_id) if trace_id is not None else []
    if not spans:
        return event
    breadcrumbs = event.setdefault("breadcrumbs", {})
    if not isinstance(breadcrumbs, dict):  # sentry-sdk's AnnotatedValue: leave it alone
        return event
    values = breadcrumbs.setdefault("values", [])
    if any(isinstance(c, dict) and c.get("category") == QUERY_CATEGORY for c in values):
        return event
    merged = sorted([*values, *(query_breadcrumb(span) for span in spans)], key=_crumb_time)
    breadcrumbs["values"] = merged[-max_breadcrumbs:] if max_breadcrumbs > 0 else []
    return event


_active: QueryBreadcrumbRecorder | None = None


def add_query_breadcrumbs(event: Any, hint: Any) -> Any:
    """sentry-sdk global event processor for the recorder :func:`install` made active."""
    recorder = _active
    if recorder is None or not isinstance(event, dict):
        return event
    try:
        import sentry_sdk

        limit = sentry_sdk.get_client().options.get("max_breadcrumbs", MAX_QUERIES_PER_TRACE)
        return with_query_breadcrumbs(event, recorder, int(limit))
    except Exception:  # a breadcrumb is never worth losing the error event
        return event


def install(recorder: QueryBreadcrumbRecorder) -> None:
    """Make ``recorder`` the source of query breadcrumbs for every error event."""
    from sentry_sdk.scope import add_global_event_processor, global_event_processors

    global _active
    _active = recorder
    if add_query_breadcrumbs not in global_event_processors:
        add_global_event_processor(add_query_breadcrumbs)
