"""Query breadcrumbs from OTel database spans (the mapping and the recorder's bounds; the
Django error tests check them end to end through sentry-sdk and the recording ingest)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind, Tracer

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


def _error_event(trace_id: int, crumbs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {"contexts": {"trace": {"trace_id": f"{trace_id:032x}"}}}
    if crumbs is not None:
        event["breadcrumbs"] = {"values": crumbs}
    return event


def test_queries_of_the_trace_join_the_breadcrumbs_in_time_order() -> None:
    tracer, recorder = _setup()
    with tracer.start_as_current_span("GET /orders", kind=SpanKind.SERVER) as root:
        _query(tracer, "SELECT * FROM shop_order WHERE id = ?")
        before_log = datetime.now(timezone.utc)
        _query(tracer, "SELECT name FROM customer WHERE id = ?", system="postgresql")
        with tracer.start_as_current_span("render"):  # not a query
            pass
        trace_id = root.get_span_context().trace_id
        logged = {"category": "shop", "message": "looked up", "timestamp": before_log}
        event = with_query_breadcrumbs(_error_event(trace_id, [logged]), recorder, 100)
    values = event["breadcrumbs"]["values"]
    assert [c["message"] for c in values] == [
        "SELECT * FROM shop_order WHERE id = ?",
        "looked up",
        "SELECT name FROM customer WHERE id = ?",
    ]
    assert values[0]["category"] == "query" and values[0]["type"] == "default"
    assert values[2]["data"] == {"db.system": "postgresql"}
    assert isinstance(values[0]["timestamp"], datetime)
    # the unit of work ended: its queries are forgotten
    assert recorder.open_traces() == 0
    assert with_query_breadcrumbs(_error_event(trace_id), recorder, 100) == _error_event(trace_id)


def test_other_traces_and_transactions_get_nothing_and_sentry_sdks_own_queries_win() -> None:
    tracer, recorder = _setup()
    with tracer.start_as_current_span("job", kind=SpanKind.CONSUMER) as root:
        _query(tracer, "UPDATE job SET done = 1")
        trace_id = root.get_span_context().trace_id
        other = with_query_breadcrumbs(_error_event(trace_id + 1), recorder, 100)
        transaction = with_query_breadcrumbs(
            {**_error_event(trace_id), "type": "transaction"}, recorder, 100
        )
        theirs = {"category": "query", "message": "UPDATE job SET done = %s", "timestamp": 1.0}
        recorded = with_query_breadcrumbs(_error_event(trace_id, [theirs]), recorder, 100)
    assert "breadcrumbs" not in other and "breadcrumbs" not in transaction
    assert recorded["breadcrumbs"]["values"] == [theirs]


def test_the_newest_queries_are_kept_within_every_bound() -> None:
    tracer, recorder = _setup(max_per_trace=3, max_traces=2)
    with tracer.start_as_current_span("request", kind=SpanKind.SERVER) as root:
        for n in range(5):
            _query(tracer, f"SELECT {n}")
        trace_id = root.get_span_context().trace_id
        crumbs = [{"message": "older", "timestamp": "2000-01-01T00:00:00Z"}]
        event = with_query_breadcrumbs(_error_event(trace_id, crumbs), recorder, 3)
    # three kept per trace, and the event's limit of three keeps the newest
    assert [c["message"] for c in event["breadcrumbs"]["values"]] == [
        "SELECT 2", "SELECT 3", "SELECT 4"
    ]


def test_roots_that_never_end_do_not_pile_up() -> None:
    tracer, recorder = _setup(max_traces=2)
    roots = []
    for _ in range(5):
        root = tracer.start_span("never ends", kind=SpanKind.SERVER)
        roots.append(root)
        with trace.use_span(root):
            _query(tracer, "SELECT 1")
    assert recorder.open_traces() == 2
    assert recorder.queries(roots[-1].get_span_context().trace_id)
    assert not recorder.queries(roots[0].get_span_context().trace_id)
    for root in roots:
        root.end()
    assert recorder.open_traces() == 0
