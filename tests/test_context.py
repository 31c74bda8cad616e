"""Vendor-neutral context: real SDK spans and a real sentry-sdk client, then the pure mapping
into Sentry's native fields (user, tags, contexts, breadcrumbs, fingerprint)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sentry_sdk
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_bridge import context
from otel_bridge.config import InvalidSetting
from otel_bridge.context import (
    MAX_TAG_KEY_LENGTH,
    MAX_TAG_VALUE_LENGTH,
    apply_fingerprint_rules,
    apply_sentry_fields,
    breadcrumbs_from_span_events,
    parse_fingerprint_rules,
    sentry_fields_from_attributes,
    sentry_fields_from_spans,
    sentry_tag,
)


@pytest.fixture(autouse=True)
def _own_sentry_scope() -> Iterator[None]:
    # context.* writes to sentry-sdk's isolation scope; keep each test's writes to itself
    with sentry_sdk.isolation_scope():
        yield


@pytest.fixture
def tracer_and_exporter() -> Iterator[tuple[object, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("test"), exporter
    provider.shutdown()


def _one_span(tracer_and_exporter, body) -> ReadableSpan:
    tracer, exporter = tracer_and_exporter
    with tracer.start_as_current_span("GET /orders/{id}"):
        body()
    (span,) = exporter.get_finished_spans()
    assert isinstance(span, ReadableSpan)
    return span


def test_user_tags_contexts_fingerprint_land_in_native_places(tracer_and_exporter) -> None:
    def body() -> None:
        context.set_user(id=42, email="ada@example.com", username="ada", plan="gold")
        context.set_tag("tenant", "north")
        context.set_tags({"feature.flag": True})
        context.set_context("order", {"id": 7, "amount": 9.5, "items": {"sku": "A1"}})
        context.set_fingerprint("orders", "{{ default }}")

    span = _one_span(tracer_and_exporter, body)
    attributes = dict(span.attributes or {})
    assert attributes["enduser.id"] == "42"
    assert attributes["user.id"] == "42"
    assert attributes["sentry.tag.tenant"] == "north"
    assert attributes["sentry.context.order.amount"] == 9.5

    fields = sentry_fields_from_attributes(attributes, send_default_pii=False)
    assert fields["user"] == {"id": "42", "username": "ada", "plan": "gold"}
    assert fields["tags"] == {"tenant": "north", "feature.flag": "true"}
    assert fields["contexts"] == {"order": {"id": 7, "amount": 9.5, "items": {"sku": "A1"}}}
    assert fields["fingerprint"] == ["orders", "{{ default }}"]

    with_pii = sentry_fields_from_attributes(
        {**attributes, "client.address": "203.0.113.9"}, send_default_pii=True
    )
    assert with_pii["user"]["email"] == "ada@example.com"
    assert with_pii["user"]["ip_address"] == "203.0.113.9"


def test_tags_obey_sentry_limits() -> None:
    long_key = "k" * 50
    fields = sentry_fields_from_attributes(
        {
            f"sentry.tag.{long_key}": "v",
            "sentry.tag.multi": "line one\nline two\r\n",
            "sentry.tag.long": "x" * 500,
            "sentry.tag.bad key/ü": "ok",
            "sentry.tag.empty": "  ",
            "http.route": "/orders/{id}",
        },
        send_default_pii=False,
        tag_keys=("http.route",),
    )
    tags = fields["tags"]
    assert all(len(k) <= MAX_TAG_KEY_LENGTH for k in tags)
    assert all(
        len(v) <= MAX_TAG_VALUE_LENGTH and "\n" not in v and "\r" not in v for v in tags.values()
    )
    assert tags["k" * MAX_TAG_KEY_LENGTH] == "v"
    assert tags["multi"] == "line one line two"
    assert tags["long"] == "x" * MAX_TAG_VALUE_LENGTH
    assert tags["bad_key__"] == "ok"
    assert "empty" not in tags
    assert tags["http.route"] == "/orders/{id}"
    assert sentry_tag("", "v") is None


def test_breadcrumbs_from_span_events(tracer_and_exporter) -> None:
    tracer, exporter = tracer_and_exporter
    with tracer.start_as_current_span("root"):
        context.add_breadcrumb("cart loaded", category="cart", data={"items": 3})
        with tracer.start_as_current_span("child") as child:
            child.add_event("cache miss", {"cache.key": "user:1"})
            context.add_breadcrumb("payment", category="pay", level="warning")
            try:
                raise KeyError("x")
            except KeyError as exc:
                child.record_exception(exc)
    crumbs = breadcrumbs_from_span_events(list(exporter.get_finished_spans()))
    assert [c["message"] for c in crumbs] == ["cart loaded", "cache miss", "payment"]
    assert crumbs[0]["category"] == "cart"
    assert crumbs[0]["data"] == {"items": 3}
    assert crumbs[1]["category"] == "otel.event"
    assert crumbs[1]["data"] == {"cache.key": "user:1"}
    assert crumbs[2]["level"] == "warning"
    timestamps = [c["timestamp"] for c in crumbs]
    assert timestamps == sorted(timestamps)
    assert all(1e9 < t < 1e11 for t in timestamps)  # seconds, not nanoseconds
    # for an error: only what happened before the exception
    spans = list(exporter.get_finished_spans())
    child = next(s for s in spans if s.name == "child")
    raised_at = next(e.timestamp for e in child.events if e.name == "exception")
    early = breadcrumbs_from_span_events(spans, until=raised_at)
    assert [c["message"] for c in early] == ["cart loaded", "cache miss", "payment"]
    assert breadcrumbs_from_span_events(spans, until=child.events[0].timestamp - 1) == crumbs[:1]


def test_fields_from_spans_root_first_wins_and_child_fills_in(tracer_and_exporter) -> None:
    tracer, exporter = tracer_and_exporter
    with tracer.start_as_current_span("root"):
        context.set_tag("where", "root")
        with tracer.start_as_current_span("child"):
            context.set_tag("where", "child")
            context.set_user(id="9")
    child, root = exporter.get_finished_spans()
    fields = sentry_fields_from_spans([root, child], send_default_pii=False)
    assert fields["tags"]["where"] == "root"
    assert fields["user"] == {"id": "9"}


def test_apply_sentry_fields_keeps_what_the_event_has() -> None:
    event = {"tags": {"a": "event"}, "user": {"id": "1"}, "contexts": {"trace": {"trace_id": "t"}}}
    fields = {
        "tags": {"a": "span", "b": "span"},
        "user": {"id": "2", "username": "u"},
        "contexts": {"order": {"id": 7}},
        "fingerprint": ["g"],
    }
    apply_sentry_fields(event, fields)
    assert event["tags"] == {"a": "event", "b": "span"}
    assert event["user"] == {"id": "1", "username": "u"}
    assert event["contexts"] == {"trace": {"trace_id": "t"}, "order": {"id": 7}}
    assert event["fingerprint"] == ["g"]


def test_reserved_contexts_are_not_overwritten() -> None:
    fields = sentry_fields_from_attributes({"sentry.context.trace.x": 1}, send_default_pii=False)
    assert "contexts" not in fields


# -- fingerprint rules --------------------------------------------------------------------


def _error(type_: str, op: str | None = None, message: str = "boom") -> dict:
    event: dict = {
        "exception": {"values": [{"type": type_, "module": "app.errors", "value": message}]}
    }
    if op:
        event["contexts"] = {"trace": {"op": op}}
    return event


def test_fingerprint_rules_parse_and_apply() -> None:
    rules = parse_fingerprint_rules(
        "OperationalError=database-errors, op:http.client=upstream,"
        "message:*timeout*=timeouts, type:app.errors.Quota*=quota"
    )
    assert [r.field for r in rules] == ["type", "op", "message", "type"]
    assert apply_fingerprint_rules(_error("OperationalError"), rules)["fingerprint"] == [
        "database-errors"
    ]
    assert apply_fingerprint_rules(_error("KeyError", op="http.client"), rules)["fingerprint"] == [
        "upstream"
    ]
    assert apply_fingerprint_rules(_error("KeyError", message="read timeout"), rules)[
        "fingerprint"
    ] == ["timeouts"]
    assert apply_fingerprint_rules(_error("QuotaExceeded"), rules)["fingerprint"] == ["quota"]
    assert "fingerprint" not in apply_fingerprint_rules(_error("KeyError"), rules)
    # a fingerprint set in code wins over rules
    explicit = {**_error("OperationalError"), "fingerprint": ["mine"]}
    assert apply_fingerprint_rules(explicit, rules)["fingerprint"] == ["mine"]


def test_op_rule_matches_dotted_children_only() -> None:
    rules = parse_fingerprint_rules("op:db=database")
    assert apply_fingerprint_rules(_error("E", op="db.query"), rules)["fingerprint"] == ["database"]
    assert "fingerprint" not in apply_fingerprint_rules(_error("E", op="dbx"), rules)


@pytest.mark.parametrize("raw", ["nogroup", "=g", "op:=g", "colour:red=g"])
def test_bad_fingerprint_rules_raise_a_clear_error(raw: str) -> None:
    with pytest.raises(InvalidSetting):
        parse_fingerprint_rules(raw)


# -- sentry-sdk side: error events captured by sentry-sdk carry the same context ----------------


def test_sentry_scope_receives_the_same_context(ingest, tracer_and_exporter) -> None:
    tracer, _ = tracer_and_exporter
    client = sentry_sdk.Client(dsn=ingest.dsn, default_integrations=False)
    try:
        with sentry_sdk.isolation_scope() as scope:
            scope.set_client(client)
            scope.clear_breadcrumbs()  # forked: earlier tests' subprocess breadcrumbs are in it
            with tracer.start_as_current_span("job"):
                context.set_user(id="42", username="ada")
                context.set_tag("tenant", "north")
                context.set_context("order", {"id": 7})
                context.add_breadcrumb("cart loaded", category="cart")
                context.set_fingerprint("orders")
                event_id = context.capture_message(
                    "forecast looks wrong", tags={"anomaly": "temperature"}, value=99.5
                )
        client.flush(timeout=10)
    finally:
        client.close()
    assert event_id
    (event,) = ingest.wait_for_items("event")
    assert event["message"] == "forecast looks wrong"
    assert event["level"] == "warning"
    assert event["user"] == {"id": "42", "username": "ada"}
    assert event["tags"] == {"tenant": "north", "anomaly": "temperature"}
    assert event["contexts"]["order"] == {"id": 7}
    assert event["contexts"]["details"] == {"value": 99.5}
    assert event["fingerprint"] == ["orders"]
    assert [c["message"] for c in event["breadcrumbs"]["values"]] == ["cart loaded"]


def test_capture_message_span_event_reaches_otel(tracer_and_exporter) -> None:
    def body() -> None:
        context.capture_message("odd reading", level="info", tags={"sensor": "s1"}, value=3)

    span = _one_span(tracer_and_exporter, body)
    (event,) = span.events
    assert event.name == "message"
    event_attributes = dict(event.attributes or {})
    assert event_attributes["message.text"] == "odd reading"
    assert event_attributes["sentry.tag.sensor"] == "s1"
    assert event_attributes["sentry.context.details.value"] == 3
    (crumb,) = breadcrumbs_from_span_events([span])
    assert crumb == {
        "type": "default",
        "category": "message",
        "level": "info",
        "message": "odd reading",
        "timestamp": crumb["timestamp"],
    }


def test_everything_is_safe_without_a_span_or_a_sentry_client() -> None:
    with sentry_sdk.isolation_scope() as scope:
        scope.set_client(None)  # whatever another test may have initialised
        context.set_user(id=1)
        context.set_tag("a", "b")
        context.set_context("c", {"d": 1})
        context.add_breadcrumb("e")
        context.set_fingerprint("f")
        assert context.capture_message("g") is None


def test_a_users_full_name_keeps_their_username(tracer_and_exporter) -> None:
    # `name` went to the attribute `user.name`, which holds the username: the transaction
    # showed "Alice Smith" as the username and lost "alice".
    span = _one_span(
        tracer_and_exporter, lambda: context.set_user(id=42, username="alice", name="Alice Smith")
    )
    fields = sentry_fields_from_attributes(dict(span.attributes or {}), send_default_pii=False)
    assert fields["user"] == {"id": "42", "username": "alice", "name": "Alice Smith"}
    assert sentry_sdk.get_isolation_scope()._user == {
        "id": "42", "username": "alice", "name": "Alice Smith"
    }


@pytest.mark.parametrize("name", ["trace", "otel"])
def test_sentrys_own_contexts_are_refused_on_both_sides(
    tracer_and_exporter, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    # On sentry-sdk's scope `trace` replaced the error's trace context: no trace id, no span
    # id, and the span pipeline, no longer matching it, sent the error a second time.
    span = _one_span(tracer_and_exporter, lambda: context.set_context(name, {"note": "mine"}))
    assert not any(key.startswith("sentry.context.") for key in span.attributes or {})
    assert name not in (sentry_sdk.get_isolation_scope()._contexts or {})
    assert any(f"set_context({name!r}" in record.getMessage() for record in caplog.records)


def test_a_fingerprint_attribute_of_any_type_is_read() -> None:
    # The plain OTel API accepts `sentry.fingerprint = 42`: reading it raised, and the batch
    # it was in was lost.
    for value, expected in ((42, ["42"]), ("orders", ["orders"]), (("a", "b"), ["a", "b"])):
        fields = sentry_fields_from_attributes(
            {"sentry.fingerprint": value}, send_default_pii=False
        )
        assert fields["fingerprint"] == expected
