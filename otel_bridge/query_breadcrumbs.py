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

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.trace import SpanKind
from sentry_sdk.scope import Scope
from sentry_sdk.utils import datetime_from_isoformat

from otel_bridge.span_attributes import IS_REMOTE, attributes_view

QUERY_CATEGORY = "query"
# sentry-sdk's default max_breadcrumbs: an event never carries more queries than that.
MAX_QUERIES_PER_TRACE = 100
# Units of work open at once whose queries are kept; past it the oldest is forgotten (its
# error gets no query breadcrumbs), so roots that never end hold at most 25,600 spans.
MAX_OPEN_TRACES = 256

_DB_SYSTEM_KEYS = ("db.system.name", "db.system")
_STATEMENT_KEYS = ("db.query.text", "db.statement")


class QueryBreadcrumbRecorder(SpanProcessor):
    """Remembers the database spans of each unit of work until its local root ends.

    A unit of work is told by its sentry-sdk isolation scope, the one its errors are
    captured in (otel_bridge.scopes forks one per local root, sentry-sdk's integrations per
    request): not by its trace, which concurrent requests of one page load share, each of
    which must see only its own queries. Registered before the scope processor, so a root's
    ``on_end`` still runs in its own scope."""

    def __init__(
        self,
        max_per_trace: int = MAX_QUERIES_PER_TRACE,
        max_traces: int = MAX_OPEN_TRACES,
    ) -> None:
        self._max_per_trace = max_per_trace
        self._max_traces = max_traces
        # id(scope) -> (the scope, its queries): the scope is kept so that an id reused by a
        # later scope is never taken for it.
        self._queries: OrderedDict[int, tuple[Scope, deque[ReadableSpan]]] = OrderedDict()
        self._lock = threading.Lock()

    def on_end(self, span: ReadableSpan) -> None:
        # On the request thread, for every span: read behind the SDK's properties (see
        # otel_bridge/span_attributes.py).
        if span._context is None:
            return
        parent = span._parent
        if parent is None or parent[IS_REMOTE]:
            # The unit of work is over: its errors have been captured.
            if self._queries:
                self._forget(Scope.get_isolation_scope())
            return
        # Database spans are CLIENT spans: the kind rules most spans out at once.
        if span._kind is not SpanKind.CLIENT:
            return
        # The SDK's own dict: the public mapping answers `in` for a missing key by raising
        # and catching a KeyError in Python, on the request thread.
        attributes = attributes_view(span)
        if "db.system" not in attributes and "db.system.name" not in attributes:
            return
        scope = Scope.get_isolation_scope()
        entry = self._queries.get(id(scope))
        if entry is None or entry[0] is not scope:
            with self._lock:
                entry = self._queries.get(id(scope))
                if entry is None or entry[0] is not scope:
                    entry = self._queries[id(scope)] = (scope, deque(maxlen=self._max_per_trace))
                    while len(self._queries) > self._max_traces:
                        self._queries.popitem(last=False)
        entry[1].append(span)  # deque.append is atomic

    def _forget(self, scope: Scope) -> None:
        with self._lock:
            entry = self._queries.get(id(scope))
            if entry is not None and entry[0] is scope:
                del self._queries[id(scope)]

    def queries(self, scope: Scope) -> list[ReadableSpan]:
        """The queries recorded so far in the unit of work whose isolation scope is
        ``scope``."""
        with self._lock:
            entry = self._queries.get(id(scope))
            return list(entry[1]) if entry is not None and entry[0] is scope else []

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


def with_query_breadcrumbs(
    event: dict[str, Any],
    recorder: QueryBreadcrumbRecorder,
    max_breadcrumbs: int,
    scope: Scope | None = None,
) -> dict[str, Any]:
    """``event`` with the queries of its unit of work (``scope``, else the isolation scope
    it is being captured in) merged into its breadcrumbs by time, unless a sentry-sdk
    integration already recorded query breadcrumbs for it."""
    if event.get("type") == "transaction":
        return event
    spans = recorder.queries(scope if scope is not None else Scope.get_isolation_scope())
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
