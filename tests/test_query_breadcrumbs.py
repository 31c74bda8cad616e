"""Query breadcrumbs from OTel database spans (the mapping and the recorder's bounds; the
Django error tests check them end to end through sentry-sdk and the recording ingest)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import sentry_sdk
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind, Tracer
from sentry_sdk.scope import Scope

from otel_bridge.query_breadcrumbs import QueryBreadcrumbRecorder, with_query_breadcrumbs


def _setup(**limits: int) -> tuple[Tracer, QueryBreadcrumbRecorder]:
    recorder = QueryBreadcrumbRecorder(**limits)
    provider = TracerProvider()
    provider.add_span_processor(recorder)
    return provider.get_tracer("test"), recorder


def _query(tracer: Tracer, statement: str, system: str = "sqlite") -> None:
    with tracer.start_as_current_span(
        "SELECT", kind=SpanKind.CLIENT,
        attributes={"db.system": system, "db.statement": statement},
    ):
        pass


def _error_event(crumbs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {"message": "failed"}
    if crumbs is not None:
        event["breadcrumbs"] = {"values": crumbs}
    return event


def test_queries_of_the_unit_of_work_join_the_breadcrumbs_in_time_order() -> None:
    tracer, recorder = _setup()
    with sentry_sdk.isolation_scope():
        with tracer.start_as_current_span("GET /orders", kind=SpanKind.SERVER):
            _query(tracer, "SELECT * FROM shop_order WHERE id = ?")
            before_log = datetime.now(timezone.utc)
            _query(tracer, "SELECT name FROM customer WHERE id = ?", system="postgresql")
            with tracer.start_as_current_span("render"):  # not a query
                pass
            logged = {"category": "shop", "message": "looked up", "timestamp": before_log}
            event = with_query_breadcrumbs(_error_event([logged]), recorder, 100)
        # the unit of work ended: its queries are forgotten
        assert recorder.open_traces() == 0
        assert with_query_breadcrumbs(_error_event(), recorder, 100) == _error_event()
    values = event["breadcrumbs"]["values"]
    assert [c["message"] for c in values] == [
        "SELECT * FROM shop_order WHERE id = ?",
        "looked up",
        "SELECT name FROM customer WHERE id = ?",
    ]
    assert values[0]["category"] == "query" and values[0]["type"] == "default"
    assert values[2]["data"] == {"db.system": "postgresql"}
    assert isinstance(values[0]["timestamp"], datetime)


def test_requests_of_one_trace_each_get_their_own_queries() -> None:
    # A page load's fetches share the trace (one traceparent): keyed by trace, B's error got
    # A's query, and A ending took B's away.
    tracer, recorder = _setup()
    upstream = trace.set_span_in_context(trace.NonRecordingSpan(trace.SpanContext(
        int("771a43a4192642f0b136d5159a501700", 16), int("b0e6f15b45c36b12", 16),
        is_remote=True, trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
    )))
    with sentry_sdk.isolation_scope() as scope_a:
        root_a = tracer.start_span("GET /a", context=upstream, kind=SpanKind.SERVER)
        with trace.use_span(root_a):
            _query(tracer, "SELECT count(*) FROM customer")
    with sentry_sdk.isolation_scope() as scope_b:
        root_b = tracer.start_span("GET /b", context=upstream, kind=SpanKind.SERVER)
        with trace.use_span(root_b):
            _query(tracer, "SELECT count(*) FROM product")
    with sentry_sdk.isolation_scope():
        Scope.set_isolation_scope(scope_b)
        first = with_query_breadcrumbs(_error_event(), recorder, 100)
    with sentry_sdk.isolation_scope():
        Scope.set_isolation_scope(scope_a)
        root_a.end()
    with sentry_sdk.isolation_scope():
        Scope.set_isolation_scope(scope_b)
        after_a_ended = with_query_breadcrumbs(_error_event(), recorder, 100)
        root_b.end()
    for event in (first, after_a_ended):
        assert [c["message"] for c in event["breadcrumbs"]["values"]] == [
            "SELECT count(*) FROM product"
        ]


def test_other_units_and_transactions_get_nothing_and_sentry_sdks_own_queries_win() -> None:
    tracer, recorder = _setup()
    with sentry_sdk.isolation_scope(), tracer.start_as_current_span(
        "job", kind=SpanKind.CONSUMER
    ):
        _query(tracer, "UPDATE job SET done = 1")
        with sentry_sdk.isolation_scope():
            other = with_query_breadcrumbs(_error_event(), recorder, 100)
        transaction = with_query_breadcrumbs(
            {**_error_event(), "type": "transaction"}, recorder, 100
        )
        theirs = {"category": "query", "message": "UPDATE job SET done = %s", "timestamp": 1.0}
        recorded = with_query_breadcrumbs(_error_event([theirs]), recorder, 100)
    assert "breadcrumbs" not in other and "breadcrumbs" not in transaction
    assert recorded["breadcrumbs"]["values"] == [theirs]


def test_the_newest_queries_are_kept_within_every_bound() -> None:
    tracer, recorder = _setup(max_per_trace=3, max_traces=2)
    with sentry_sdk.isolation_scope(), tracer.start_as_current_span(
        "request", kind=SpanKind.SERVER
    ):
        for n in range(5):
            _query(tracer, f"SELECT {n}")
        crumbs = [{"message": "older", "timestamp": "2000-01-01T00:00:00Z"}]
        event = with_query_breadcrumbs(_error_event(crumbs), recorder, 3)
    # three kept per unit of work, and the event's limit of three keeps the newest
    assert [c["message"] for c in event["breadcrumbs"]["values"]] == [
        "SELECT 2", "SELECT 3", "SELECT 4"
    ]


def test_roots_that_never_end_do_not_pile_up() -> None:
    tracer, recorder = _setup(max_traces=2)
    units = []
    for _ in range(5):
        with sentry_sdk.isolation_scope() as scope:
            root = tracer.start_span("never ends", kind=SpanKind.SERVER)
            with trace.use_span(root):
                _query(tracer, "SELECT 1")
        units.append((scope, root))
    assert recorder.open_traces() == 2
    assert recorder.queries(units[-1][0])
    assert not recorder.queries(units[0][0])
    for scope, root in units:
        with sentry_sdk.isolation_scope():
            Scope.set_isolation_scope(scope)
            root.end()
    assert recorder.open_traces() == 0
