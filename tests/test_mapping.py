"""otel_bridge.pipeline.mapping on spans produced by the real OpenTelemetry SDK.

The Django tests run a real Django view under contrib's DjangoInstrumentor in a subprocess
(``python -m tests.test_mapping``), once per ``OTEL_SEMCONV_STABILITY_OPT_IN`` value, since
contrib reads the opt-in once per process.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)

import otel_bridge
from otel_bridge.pipeline.mapping import (
    event_fields_from_resource,
    json_safe,
    op_and_description,
    sentry_span,
    sentry_status,
    sentry_tag_key,
    sentry_tag_value,
    sentry_tags,
    transaction_event,
    transaction_name_and_source,
)

REPO = Path(__file__).resolve().parent.parent
REMOTE_TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
REMOTE_SPAN_ID = 0xB7AD6B7169203331


@contextmanager
def recording(
    resource: Resource | None = None,
) -> Iterator[tuple[trace.Tracer, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=resource or Resource.create({"service.name": "shop"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        yield provider.get_tracer("tests.mapping"), exporter
    finally:
        provider.shutdown()


def remote_parent() -> Any:
    parent = SpanContext(
        REMOTE_TRACE_ID, REMOTE_SPAN_ID, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED)
    )
    return trace.set_span_in_context(NonRecordingSpan(parent))


def make_span(
    name: str = "work",
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: dict[str, Any] | None = None,
    status: StatusCode | None = None,
    resource: Resource | None = None,
    body: Callable[[trace.Span], None] | None = None,
) -> ReadableSpan:
    with recording(resource) as (tracer, exporter):
        with tracer.start_as_current_span(
            name, kind=kind, attributes=attributes, record_exception=False,
            set_status_on_exception=False,
        ) as span:
            if status is not None:
                span.set_status(Status(status))
            if body is not None:
                body(span)
        (finished,) = exporter.get_finished_spans()
    return finished


def seconds(nanoseconds: int | None) -> float:
    assert nanoseconds is not None
    return nanoseconds / 1e9


def error_span(attributes: dict[str, Any], kind: SpanKind = SpanKind.SERVER) -> ReadableSpan:
    return make_span(kind=kind, attributes=attributes, status=StatusCode.ERROR)


# -- status --------------------------------------------------------------------------------

# sentry-sdk's get_span_status_from_http_code for every code it names (499: Sentry's table)
HTTP_TABLE = [
    (400, "invalid_argument"),
    (401, "unauthenticated"),
    (403, "permission_denied"),
    (404, "not_found"),
    (409, "already_exists"),
    (413, "failed_precondition"),
    (429, "resource_exhausted"),
    (499, "cancelled"),
    (500, "internal_error"),
    (501, "unimplemented"),
    (503, "unavailable"),
    (504, "deadline_exceeded"),
    (402, "invalid_argument"),
    (418, "invalid_argument"),
    (422, "invalid_argument"),
    (502, "internal_error"),
    (599, "internal_error"),
]


@pytest.mark.parametrize("key", ["http.response.status_code", "http.status_code"])
@pytest.mark.parametrize(("code", "expected"), HTTP_TABLE)
def test_error_status_from_http_code(key: str, code: int, expected: str) -> None:
    assert sentry_status(error_span({key: code})) == expected


def test_http_status_code_given_as_string() -> None:
    assert sentry_status(error_span({"http.response.status_code": "404"})) == "not_found"


@pytest.mark.parametrize("status", [None, StatusCode.UNSET, StatusCode.OK])
def test_unset_and_ok_are_ok_whatever_the_http_code(status: StatusCode | None) -> None:
    span = make_span(kind=SpanKind.SERVER, attributes={"http.status_code": 500}, status=status)
    assert sentry_status(span) == "ok"


GRPC_NAMES = [
    "ok", "cancelled", "unknown_error", "invalid_argument", "deadline_exceeded", "not_found",
    "already_exists", "permission_denied", "resource_exhausted", "failed_precondition",
    "aborted", "out_of_range", "unimplemented", "internal_error", "unavailable", "data_loss",
    "unauthenticated",
]


@pytest.mark.parametrize("code", range(1, 17))
def test_error_status_from_grpc_code(code: int) -> None:
    span = error_span({"rpc.system": "grpc", "rpc.grpc.status_code": code}, SpanKind.CLIENT)
    assert sentry_status(span) == GRPC_NAMES[code]


@pytest.mark.parametrize(
    ("value", "expected"),
    [(5, "not_found"), ("5", "not_found"), ("DEADLINE_EXCEEDED", "deadline_exceeded"),
     ("internal", "internal_error")],
)
def test_error_status_from_stable_rpc_response_code(value: Any, expected: str) -> None:
    assert sentry_status(error_span({"rpc.response.status_code": value})) == expected


@pytest.mark.parametrize(
    "attributes",
    [
        {},
        {"http.response.status_code": 200},  # failed after answering: no better clue
        {"rpc.grpc.status_code": 0},
        {"rpc.grpc.status_code": 99},
        {"rpc.response.status_code": "OK"},
    ],
)
def test_error_without_usable_code_is_unknown_error(attributes: dict[str, Any]) -> None:
    assert sentry_status(error_span(attributes)) == "unknown_error"


def test_http_code_wins_over_grpc_code_and_grpc_fills_in_below_400() -> None:
    both = {"http.response.status_code": 503, "rpc.grpc.status_code": 5}
    assert sentry_status(error_span(both)) == "unavailable"
    low = {"http.response.status_code": 200, "rpc.grpc.status_code": 5}
    assert sentry_status(error_span(low)) == "not_found"


# -- op and description --------------------------------------------------------------------

OLD_HTTP_SERVER = {
    "http.method": "GET",
    "http.scheme": "https",
    "http.host": "shop.example:8443",
    "http.target": "/orders/7?token=abc",
    "http.route": "/orders/{id}",
    "http.status_code": 200,
}
STABLE_HTTP_SERVER = {
    "http.request.method": "GET",
    "url.scheme": "https",
    "server.address": "shop.example",
    "server.port": 8443,
    "url.path": "/orders/7",
    "url.query": "token=abc",
    "http.route": "/orders/{id}",
    "http.response.status_code": 200,
}


@pytest.mark.parametrize("attributes", [OLD_HTTP_SERVER, STABLE_HTTP_SERVER])
def test_http_server_uses_the_route(attributes: dict[str, Any]) -> None:
    span = make_span("GET /orders/{id}", kind=SpanKind.SERVER, attributes=attributes)
    assert op_and_description(span) == ("http.server", "GET /orders/{id}")


@pytest.mark.parametrize(
    "attributes",
    [
        {"http.request.method": "POST", "url.path": "/cart", "url.query": "a=1"},
        {"http.method": "POST", "http.target": "/cart?a=1"},
        {"http.method": "POST", "http.url": "http://user:secret@shop.example/cart?a=1#frag"},
        {"http.request.method": "POST", "url.full": "http://shop.example/cart?a=1"},
    ],
)
def test_http_server_without_route_uses_the_path_without_query(attributes: dict[str, Any]) -> None:
    span = make_span("POST", kind=SpanKind.SERVER, attributes=attributes)
    assert op_and_description(span) == ("http.server", "POST /cart")


@pytest.mark.parametrize(
    "attributes",
    [
        {"http.method": "GET", "http.url": "https://bob:hunter2@api.example:8443/v1/x?key=s#f"},
        {"http.request.method": "GET", "url.full": "https://bob:hunter2@api.example:8443/v1/x?key=s",
         "server.address": "api.example", "server.port": 8443, "url.path": "/v1/x"},
    ],
)
def test_http_client_uses_the_url_without_credentials_query_or_fragment(
    attributes: dict[str, Any],
) -> None:
    span = make_span("GET", kind=SpanKind.CLIENT, attributes=attributes)
    op, description = op_and_description(span)
    assert (op, description) == ("http.client", "GET https://api.example:8443/v1/x")
    assert "hunter2" not in description and "bob" not in description


def test_http_client_ipv6_url_keeps_brackets() -> None:
    span = make_span(kind=SpanKind.CLIENT, attributes={
        "http.request.method": "GET", "url.full": "http://[::1]:8000/a?b=c"})
    assert op_and_description(span)[1] == "GET http://[::1]:8000/a"


def test_http_other_method_resolves_to_the_original() -> None:
    span = make_span(kind=SpanKind.SERVER, attributes={
        "http.request.method": "_OTHER", "http.request.method_original": "PURGE",
        "url.path": "/cache"})
    assert op_and_description(span) == ("http.server", "PURGE /cache")


def test_http_on_other_kinds_and_without_target() -> None:
    internal = make_span(kind=SpanKind.INTERNAL, attributes={"http.method": "GET"})
    assert op_and_description(internal) == ("http", "GET")


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({"db.system": "postgresql", "db.statement": "SELECT 1"}, "SELECT 1"),
        ({"db.system.name": "sqlite", "db.query.text": "SELECT * FROM t"}, "SELECT * FROM t"),
        ({"db.system.name": "redis"}, "GET"),  # no query text: the span name
    ],
)
def test_db_spans(attributes: dict[str, Any], expected: str) -> None:
    span = make_span("GET", kind=SpanKind.CLIENT, attributes=attributes)
    assert op_and_description(span) == ("db", expected)


def test_rpc_span() -> None:
    span = make_span("shop.Cart/Add", kind=SpanKind.CLIENT,
                     attributes={"rpc.system": "grpc", "rpc.service": "shop.Cart"})
    assert op_and_description(span) == ("rpc", "shop.Cart/Add")
    # the current conventions have no rpc.service (the service is in rpc.method): op
    # `default` before
    current = make_span("shop.Cart/Add", kind=SpanKind.CLIENT, attributes={
        "rpc.system.name": "grpc", "rpc.method": "shop.Cart/Add",
    })
    assert op_and_description(current) == ("rpc", "shop.Cart/Add")


@pytest.mark.parametrize(
    ("kind", "attributes", "op"),
    [
        (SpanKind.PRODUCER, {"messaging.system": "rabbitmq"}, "queue.publish"),
        (SpanKind.CONSUMER, {"messaging.system": "kafka"}, "queue.process"),
        (SpanKind.CLIENT, {"messaging.system": "kafka", "messaging.operation.type": "send"},
         "queue.publish"),
        (SpanKind.INTERNAL, {"messaging.system": "kafka", "messaging.operation": "process"},
         "queue.process"),
        (SpanKind.INTERNAL, {"messaging.system": "kafka"}, "message"),
        # Celery: PRODUCER/CONSUMER spans without messaging.system.
        (SpanKind.CONSUMER, {"celery.action": "run"}, "queue.process"),
        (SpanKind.PRODUCER, {"celery.action": "apply_async"}, "queue.publish"),
    ],
)
def test_messaging_spans(kind: SpanKind, attributes: dict[str, Any], op: str) -> None:
    span = make_span("orders process", kind=kind, attributes=attributes)
    assert op_and_description(span) == (op, "orders process")


@pytest.mark.parametrize("trigger", ["http", "pubsub", "timer", "datasource", "other"])
def test_faas_trigger_is_the_op(trigger: str) -> None:
    span = make_span("handler", kind=SpanKind.SERVER, attributes={"faas.trigger": trigger})
    assert op_and_description(span) == (trigger, "handler")


def test_sentry_op_attribute_always_wins() -> None:
    span = make_span("WS /chat", kind=SpanKind.SERVER, attributes={
        "sentry.op": "websocket.server", "http.method": "GET", "http.route": "/chat",
        "db.system": "sqlite"})
    assert op_and_description(span) == ("websocket.server", "WS /chat")


@pytest.mark.parametrize(
    ("kind", "op"),
    [(SpanKind.SERVER, "websocket.server"), (SpanKind.CONSUMER, "websocket.server"),
     (SpanKind.CLIENT, "websocket.client"), (SpanKind.PRODUCER, "websocket.client")],
)
def test_websocket_message_spans(kind: SpanKind, op: str) -> None:
    span = make_span("chat receive", kind=kind,
                     attributes={"websocket.message.type": "text", "http.method": "GET"})
    assert op_and_description(span) == (op, "chat receive")


@pytest.mark.parametrize("kind", [SpanKind.INTERNAL, SpanKind.SERVER, SpanKind.CLIENT])
def test_unknown_spans_get_the_default_op_and_their_name(kind: SpanKind) -> None:
    span = make_span("compute forecast", kind=kind, attributes={"app.user": 3})
    assert op_and_description(span) == ("default", "compute forecast")


# -- transaction names ---------------------------------------------------------------------


@pytest.mark.parametrize("attributes", [OLD_HTTP_SERVER, STABLE_HTTP_SERVER])
def test_transaction_named_by_route(attributes: dict[str, Any]) -> None:
    span = make_span("GET /orders/{id}", kind=SpanKind.SERVER, attributes=attributes)
    assert transaction_name_and_source(span) == ("GET /orders/{id}", "route")


@pytest.mark.parametrize(
    "attributes",
    [
        {"http.request.method": "GET", "url.path": "/static/app.js", "url.query": "v=2"},
        {"http.method": "GET", "http.target": "/static/app.js?v=2"},
        {"http.method": "GET", "http.url": "http://shop.example/static/app.js?v=2"},
    ],
)
def test_transaction_without_route_named_by_path(attributes: dict[str, Any]) -> None:
    span = make_span("GET", kind=SpanKind.SERVER, attributes=attributes)
    assert transaction_name_and_source(span) == ("GET /static/app.js", "url")


def test_transaction_without_route_or_path_keeps_the_span_name() -> None:
    span = make_span("GET", kind=SpanKind.SERVER, attributes={"http.request.method": "GET"})
    assert transaction_name_and_source(span) == ("GET", "custom")


def test_client_root_named_by_url() -> None:
    span = make_span("GET", kind=SpanKind.CLIENT,
                     attributes={"http.method": "GET", "http.url": "https://a:b@x.example/p?q=1"})
    assert transaction_name_and_source(span) == ("GET https://x.example/p", "url")


@pytest.mark.parametrize(
    ("kind", "attributes", "name"),
    [
        (SpanKind.CONSUMER, {"messaging.system": "rabbitmq"}, "orders process"),
        (SpanKind.CONSUMER, {"celery.action": "run", "celery.task_name": "shop.tasks.bill"},
         "shop.tasks.bill"),
        (SpanKind.INTERNAL, {"code.function": "nightly"}, "orders process"),
        (SpanKind.INTERNAL, {"code.function.name": "nightly"}, "orders process"),
    ],
)
def test_tasks(kind: SpanKind, attributes: dict[str, Any], name: str) -> None:
    span = make_span("orders process", kind=kind, attributes=attributes)
    assert transaction_name_and_source(span) == (name, "task")


def test_other_roots_are_custom() -> None:
    assert transaction_name_and_source(make_span("cleanup")) == ("cleanup", "custom")


def test_sentry_source_attribute_overrides_only_with_a_valid_source() -> None:
    attributes = {"http.method": "GET", "http.target": "/a", "sentry.source": "view"}
    span = make_span("GET", kind=SpanKind.SERVER, attributes=attributes)
    assert transaction_name_and_source(span) == ("GET /a", "view")
    span = make_span("x", attributes={"sentry.source": "nonsense"})
    assert transaction_name_and_source(span) == ("x", "custom")


# -- spans ---------------------------------------------------------------------------------


def test_sentry_span_fields() -> None:
    with recording() as (tracer, exporter):
        with tracer.start_as_current_span("root", kind=SpanKind.SERVER), \
                tracer.start_as_current_span("SELECT", kind=SpanKind.CLIENT, attributes={
                    "db.system.name": "postgresql", "db.query.text": "SELECT 1",
                    "app.ids": (1, 2), "app.ratio": float("nan")}):
            pass
        child, root = exporter.get_finished_spans()
    result = sentry_span(child)
    assert re.fullmatch(r"[0-9a-f]{32}", result["trace_id"])
    assert re.fullmatch(r"[0-9a-f]{16}", result["span_id"])
    assert result["trace_id"] == f"{root.context.trace_id:032x}"
    assert result["parent_span_id"] == f"{root.context.span_id:016x}"
    assert result["span_id"] == f"{child.context.span_id:016x}"
    assert (result["op"], result["description"], result["status"]) == ("db", "SELECT 1", "ok")
    assert result["origin"] == "auto.otel"
    assert result["start_timestamp"] == seconds(child.start_time)
    assert result["timestamp"] == seconds(child.end_time)
    assert result["timestamp"] >= result["start_timestamp"]
    assert result["data"]["app.ids"] == [1, 2]
    assert result["data"]["app.ratio"] == "nan"
    assert result["data"]["db.query.text"] == "SELECT 1"
    assert result["data"]["otel.kind"] == "CLIENT"
    assert "tags" not in result
    json.dumps(result, allow_nan=False)


def test_sentry_span_of_a_failed_call_refines_its_status() -> None:
    span = error_span({"http.request.method": "GET", "url.full": "https://api.example/x",
                       "http.response.status_code": 503}, kind=SpanKind.CLIENT)
    result = sentry_span(span)
    assert (result["op"], result["status"]) == ("http.client", "unavailable")
    assert result["description"] == "GET https://api.example/x"


def test_sentry_span_of_a_live_span_ends_at_its_start() -> None:
    with recording() as (tracer, _):
        live = tracer.start_span("SELECT", kind=SpanKind.CLIENT,
                                 attributes={"db.system": "sqlite", "db.statement": "SELECT 1"})
        result = sentry_span(live)  # type: ignore[arg-type]
        live.set_attribute("db.statement", "SELECT 2")
        live.end()
    assert (result["op"], result["description"]) == ("db", "SELECT 1")
    assert result["data"]["db.statement"] == "SELECT 1"
    assert result["timestamp"] == result["start_timestamp"]


def test_sentry_origin_attribute_overrides_origin() -> None:
    span = make_span(attributes={"sentry.origin": "auto.websocket.otel_bridge"})
    assert sentry_span(span)["origin"] == "auto.websocket.otel_bridge"


def test_json_safe() -> None:
    assert json_safe((1, "a", (True, 2.5))) == [1, "a", [True, 2.5]]
    assert json_safe(float("inf")) == "inf"
    assert json_safe(b"\xffok") == "\ufffdok"
    assert json_safe({"k": (1,)}) == {"k": [1]}
    assert json_safe(object.__new__(object)).startswith("<object")
    assert not math.isnan(json_safe(1.0))


# -- tags and resource ---------------------------------------------------------------------


def test_tag_values_and_keys_respect_sentry_limits() -> None:
    assert sentry_tag_value("line one\nline two\r\n") == "line one line two"
    long = sentry_tag_value("x" * 500)
    assert len(long) == 200 and long.endswith("…")
    assert sentry_tag_key("http.request.header.x_forwarded_for_something") == (
        "http.request.header.x_forwarded_"
    )
    assert sentry_tag_key("user id/ä") == "user_id__"
    assert sentry_tags({"a": None, "b": "  ", "c": 3}) == {"c": "3"}


def test_resource_gives_release_environment_server_name_and_tags() -> None:
    resource = Resource.create({
        "service.name": "shop", "service.version": "1.4.2",
        "deployment.environment.name": "staging", "host.name": "web-1"})
    assert event_fields_from_resource(resource, release=None, environment=None) == {
        "release": "1.4.2", "environment": "staging", "server_name": "web-1",
        "tags": {"service.name": "shop"},
    }


def test_overrides_win_over_resource() -> None:
    resource = Resource.create({"service.version": "1.4.2",
                                "deployment.environment.name": "staging"})
    fields = event_fields_from_resource(resource, release="abc123", environment="prod-eu")
    assert (fields["release"], fields["environment"]) == ("abc123", "prod-eu")


def test_legacy_environment_attribute_and_defaults() -> None:
    legacy = Resource({"deployment.environment": "qa"})
    assert event_fields_from_resource(legacy, release=None, environment=None)["environment"] == "qa"
    empty = event_fields_from_resource(Resource({}), release=None, environment=None)
    assert empty == {"environment": "production", "tags": {}}
    stable_wins = Resource({"deployment.environment": "qa", "deployment.environment.name": "dev"})
    fields = event_fields_from_resource(stable_wins, release=None, environment=None)
    assert fields["environment"] == "dev"


# -- transaction events --------------------------------------------------------------------


def _server_tree(
    attributes: dict[str, Any], resource: Resource | None = None
) -> list[ReadableSpan]:
    with recording(resource) as (tracer, exporter):
        with tracer.start_as_current_span(
            "GET /orders/{id}", context=remote_parent(), kind=SpanKind.SERVER,
            attributes=attributes,
        ), tracer.start_as_current_span("render"), tracer.start_as_current_span(
            "SELECT", kind=SpanKind.CLIENT,
            attributes={"db.system": "sqlite", "db.statement": "SELECT 2"},
        ):
            pass
        return list(exporter.get_finished_spans())


@pytest.mark.parametrize("attributes", [OLD_HTTP_SERVER, STABLE_HTTP_SERVER])
def test_transaction_event(attributes: dict[str, Any]) -> None:
    resource = Resource.create({"service.name": "shop", "service.version": "2.0",
                                "host.name": "web-1", "deployment.environment.name": "stage"})
    db, render, root = _server_tree({**attributes, "http.status_code": 201}, resource)
    event = transaction_event(root, [render, db], release=None, environment="prod")
    assert event["type"] == "transaction"
    assert re.fullmatch(r"[0-9a-f]{32}", event["event_id"])
    assert event["platform"] == "python"
    assert event["transaction"] == "GET /orders/{id}"
    assert event["transaction_info"] == {"source": "route"}
    assert event["start_timestamp"] == seconds(root.start_time)
    assert event["timestamp"] == seconds(root.end_time)
    trace_ctx = event["contexts"]["trace"]
    assert trace_ctx["trace_id"] == f"{REMOTE_TRACE_ID:032x}"
    assert trace_ctx["parent_span_id"] == f"{REMOTE_SPAN_ID:016x}"
    assert trace_ctx["span_id"] == f"{root.context.span_id:016x}"
    assert (trace_ctx["op"], trace_ctx["status"], trace_ctx["origin"]) == (
        "http.server", "ok", "auto.otel")
    assert trace_ctx["data"]["otel.kind"] == "SERVER"
    assert trace_ctx["data"]["http.route"] == "/orders/{id}"
    assert event["contexts"]["otel"]["attributes"]["http.route"] == "/orders/{id}"
    assert event["contexts"]["otel"]["resource"]["service.version"] == "2.0"
    assert event["contexts"]["otel"]["resource"]["telemetry.sdk.name"] == "opentelemetry"
    assert [span["description"] for span in event["spans"]] == ["render", "SELECT 2"]
    assert event["spans"][0]["parent_span_id"] == trace_ctx["span_id"]
    assert event["spans"][1]["parent_span_id"] == event["spans"][0]["span_id"]
    assert (event["release"], event["environment"], event["server_name"]) == (
        "2.0", "prod", "web-1")
    assert event["tags"] == {"service.name": "shop"}
    assert event["sdk"]["name"] == "otel-bridge"
    assert event["sdk"]["version"] == otel_bridge.__version__
    assert {p["name"] for p in event["sdk"]["packages"]} >= {
        "pypi:otel-bridge", "pypi:opentelemetry-sdk", "pypi:sentry-sdk"}
    assert event["request"] == {
        "method": "GET", "url": "https://shop.example:8443/orders/7", "query_string": "token=abc"}
    status = attributes.get("http.response.status_code", 201)
    assert event["contexts"]["response"] == {"status_code": status}
    json.dumps(event, allow_nan=False)


def test_transaction_event_explicit_parent_for_follow_up() -> None:
    _db, render, _root = _server_tree(OLD_HTTP_SERVER)
    event = transaction_event(render, [], release="r", environment=None,
                              parent_span_id="00f067aa0ba902b7")
    assert event["contexts"]["trace"]["parent_span_id"] == "00f067aa0ba902b7"
    assert (event["transaction"], event["transaction_info"]["source"]) == ("render", "custom")
    assert event["spans"] == []
    assert event["release"] == "r"
    # Not an HTTP server span: no request interface.
    assert "request" not in event and "response" not in event["contexts"]


def test_local_root_without_parent_has_none() -> None:
    event = transaction_event(make_span("job"), [], release=None, environment=None)
    assert event["contexts"]["trace"]["parent_span_id"] is None
    assert event["environment"] == "production"


def test_request_interface_from_old_django_style_attributes_and_headers() -> None:
    root = make_span("GET x/", kind=SpanKind.SERVER, attributes={
        "http.method": "GET", "http.server_name": "testserver", "http.scheme": "http",
        "net.host.port": 80, "http.url": "http://u:pw@testserver/x/?page=2",
        "http.route": "x/", "http.status_code": 200,
        "http.request.header.user_agent": ("curl/8",),
        "http.request.header.accept": ("a", "b")})
    request = transaction_event(root, [], release=None, environment=None)["request"]
    assert request == {
        "method": "GET", "url": "http://testserver/x/", "query_string": "page=2",
        "headers": {"user-agent": "curl/8", "accept": "a, b"}}


def test_request_url_built_from_parts_with_non_default_port() -> None:
    root = make_span("GET", kind=SpanKind.SERVER, attributes={
        "http.request.method": "GET", "url.scheme": "http", "server.address": "127.0.0.1",
        "server.port": 8000, "url.path": "/health"})
    request = transaction_event(root, [], release=None, environment=None)["request"]
    assert request == {"method": "GET", "url": "http://127.0.0.1:8000/health"}


@pytest.mark.parametrize(
    ("attributes", "url"),
    [
        # gunicorn on :8000 behind a proxy, Host: shop.example.com (contrib's WSGI
        # attributes, old conventions): the listening port is not the one requested
        ({"http.method": "GET", "http.scheme": "http", "http.host": "shop.example.com",
          "net.host.port": 8000, "http.target": "/orders/7"}, "http://shop.example.com/orders/7"),
        ({"http.method": "GET", "http.scheme": "http", "http.host": "shop.example.com:8443",
          "net.host.port": 8000, "http.target": "/orders/7"},
         "http://shop.example.com:8443/orders/7"),
        # an IPv6 host keeps its brackets and its port
        ({"http.request.method": "GET", "url.scheme": "http", "server.address": "::1",
          "server.port": 8000, "url.path": "/orders/7"}, "http://[::1]:8000/orders/7"),
        ({"http.request.method": "GET", "url.scheme": "http", "server.address": "[::1]:8000",
          "server.port": 8000, "url.path": "/orders/7"}, "http://[::1]:8000/orders/7"),
    ],
)
def test_request_url_is_the_one_the_client_asked_for(
    attributes: dict[str, Any], url: str
) -> None:
    root = make_span("GET", kind=SpanKind.SERVER, attributes=attributes)
    assert transaction_event(root, [], release=None, environment=None)["request"]["url"] == url


def test_runtime_context_from_resource() -> None:
    resource = Resource({"process.runtime.name": "cpython", "process.runtime.version": "3.11.9"})
    event = transaction_event(make_span(resource=resource), [], release=None, environment=None)
    assert event["contexts"]["runtime"] == {"name": "cpython", "version": "3.11.9"}


# -- any attributes: never raises, always JSON ------------------------------------------------

KNOWN_KEYS = [
    "http.request.method", "http.method", "http.request.method_original", "http.route",
    "url.path", "url.full", "url.query", "url.scheme", "http.target", "http.url", "http.host",
    "http.scheme", "server.address", "server.port", "net.host.port", "http.status_code",
    "http.response.status_code", "rpc.grpc.status_code", "rpc.response.status_code",
    "db.system", "db.system.name", "db.statement", "db.query.text", "rpc.service",
    "rpc.system.name",
    "messaging.system", "messaging.operation", "faas.trigger", "sentry.op", "sentry.source",
    "sentry.origin", "websocket.message.type", "code.function", "celery.task_name",
    "http.request.header.x_token",
]
SCALARS = st.one_of(st.text(max_size=40), st.integers(-(2**63), 2**63 - 1), st.booleans(),
                    st.floats(allow_nan=True, allow_infinity=True))
ATTRIBUTE_VALUES = st.one_of(
    SCALARS,
    st.lists(st.text(max_size=10), max_size=3),
    st.lists(st.integers(-1000, 1000), max_size=3),
)


@hypothesis_settings(max_examples=200, deadline=None)
@given(
    attributes=st.dictionaries(
        st.one_of(st.sampled_from(KNOWN_KEYS), st.text(min_size=1, max_size=20)),
        ATTRIBUTE_VALUES, max_size=8,
    ),
    kind=st.sampled_from(list(SpanKind)),
    status=st.sampled_from(list(StatusCode)),
    name=st.text(max_size=30),
)
def test_any_attributes_map_to_json(
    attributes: dict[str, Any], kind: SpanKind, status: StatusCode, name: str
) -> None:
    span = make_span(name, kind=kind, attributes=attributes, status=status)
    event = transaction_event(span, [span], release=None, environment=None)
    json.dumps(event, allow_nan=False)
    assert isinstance(event["transaction"], str)
    assert event["transaction_info"]["source"] in {"custom", "url", "route", "view",
                                                   "component", "task"}
    assert isinstance(event["spans"][0]["op"], str) and event["spans"][0]["op"]
    for value in event["tags"].values():
        assert len(value) <= 200 and "\n" not in value


# -- real Django under contrib's instrumentation --------------------------------------------


def _django_probe() -> None:
    """Run in a subprocess: serve four requests through instrumented Django, print results."""
    from types import ModuleType

    import django
    from django.conf import settings
    from django.http import Http404, HttpResponse
    from django.urls import path

    from otel_bridge.pipeline.span_errors import exception_error_events

    def order(request: Any, id: int) -> Any:
        return HttpResponse("ok")

    def missing(request: Any) -> Any:
        raise Http404("no such order")

    def boom(request: Any) -> Any:
        raise ValueError("boom in view")

    # A module object works as ROOT_URLCONF and keeps the probe in this one file.
    urls = ModuleType("mapping_probe_urls")
    urls.__dict__["urlpatterns"] = [
        path("orders/<int:id>/", order), path("missing/", missing), path("boom/", boom)]
    settings.configure(DEBUG=False, ROOT_URLCONF=urls, ALLOWED_HOSTS=["*"], SECRET_KEY="t",
                       MIDDLEWARE=[], DATABASES={}, LOGGING_CONFIG=None)
    from opentelemetry.instrumentation.django import DjangoInstrumentor

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    DjangoInstrumentor().instrument(tracer_provider=provider)
    try:
        django.setup()
        from django.test import Client

        client = Client(raise_request_exception=False)
        results = []
        for url in ("/orders/7/?token=abc", "/missing/", "/boom/", "/nowhere/", "/raw/?q=1"):
            exporter.clear()
            # gunicorn passes RAW_URI, the test client does not: contrib reads paths from it.
            raw = url.startswith("/raw/")
            response = client.get(url, RAW_URI=url) if raw else client.get(url)
            (span,) = exporter.get_finished_spans()
            name, source = transaction_name_and_source(span)
            op, description = op_and_description(span)
            errors = exception_error_events(span, release=None, environment=None)
            results.append({
                "url": url, "code": response.status_code, "span_name": span.name,
                "name": name, "source": source, "op": op, "description": description,
                "status": sentry_status(span),
                "request": transaction_event(span, [], release=None, environment=None).get(
                    "request"),
                "errors": [e["exception"]["values"][0] for e in errors],
            })
    finally:
        DjangoInstrumentor().uninstrument()
        provider.shutdown()
    print(json.dumps(results))


def _run_probe(opt_in: str | None) -> dict[str, dict[str, Any]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "DJANGO_"))}
    if opt_in is not None:
        env["OTEL_SEMCONV_STABILITY_OPT_IN"] = opt_in
    completed = subprocess.run(
        [sys.executable, "-m", "tests.test_mapping"], cwd=REPO, env=env,
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert completed.returncode == 0, completed.stderr
    last_line = completed.stdout.strip().splitlines()[-1]
    return {result["url"]: result for result in json.loads(last_line)}


@pytest.fixture(scope="module", params=[None, "http,database"], ids=["old", "stable"])
def django_results(request: pytest.FixtureRequest) -> tuple[str | None, dict[str, Any]]:
    return request.param, _run_probe(request.param)


def test_django_route_200(django_results: tuple[str | None, dict[str, Any]]) -> None:
    opt_in, results = django_results
    ok = results["/orders/7/?token=abc"]
    assert ok["code"] == 200
    # contrib 0.66 puts Django's pattern, without leading slash, in http.route and the name.
    assert ok["span_name"] == "GET orders/<int:id>/"
    assert (ok["name"], ok["source"]) == ("GET orders/<int:id>/", "route")
    assert (ok["op"], ok["description"], ok["status"]) == (
        "http.server", "GET orders/<int:id>/", "ok")
    assert ok["errors"] == []
    if opt_in is None:
        assert ok["request"] == {
            "method": "GET", "url": "http://testserver/orders/7/", "query_string": "token=abc"}
    else:
        # stable conventions: no host, path or query without RAW_URI (see the raw test)
        assert ok["request"] == {"method": "GET"}


def test_django_http404_view(django_results: tuple[str | None, dict[str, Any]]) -> None:
    _, results = django_results
    missing = results["/missing/"]
    assert missing["code"] == 404
    assert (missing["name"], missing["source"]) == ("GET missing/", "route")
    assert (missing["op"], missing["description"], missing["status"]) == (
        "http.server", "GET missing/", "not_found")
    (error,) = missing["errors"]
    assert (error["type"], error["module"], error["value"]) == (
        "Http404", "django.http.response", "no such order")


def test_django_500_view(django_results: tuple[str | None, dict[str, Any]]) -> None:
    _, results = django_results
    boom = results["/boom/"]
    assert boom["code"] == 500
    assert (boom["name"], boom["source"]) == ("GET boom/", "route")
    assert (boom["op"], boom["status"]) == ("http.server", "internal_error")
    (error,) = boom["errors"]
    assert (error["type"], error["value"]) == ("ValueError", "boom in view")
    assert "module" not in error
    last_frame = error["stacktrace"]["frames"][-1]
    assert last_frame["function"] == "boom"
    assert last_frame["context_line"] == 'raise ValueError("boom in view")'
    assert last_frame["filename"] == "tests/test_mapping.py"
    assert last_frame["in_app"] is True


def test_django_unrouted_404(django_results: tuple[str | None, dict[str, Any]]) -> None:
    opt_in, results = django_results
    nowhere = results["/nowhere/"]
    assert nowhere["code"] == 404
    # No route, and OTel leaves a server's 4xx UNSET: status follows the span.
    assert nowhere["status"] == "ok"
    if opt_in is None:
        # old conventions: http.url gives the path
        assert (nowhere["name"], nowhere["source"]) == ("GET /nowhere/", "url")
        assert nowhere["description"] == "GET /nowhere/"
        assert nowhere["request"]["url"] == "http://testserver/nowhere/"
    else:
        # stable conventions under the test client (no RAW_URI): no path at all
        assert (nowhere["name"], nowhere["source"]) == ("GET", "custom")
        assert nowhere["description"] == "GET"


def test_django_raw_uri_gives_the_path(django_results: tuple[str | None, dict[str, Any]]) -> None:
    _, results = django_results
    raw = results["/raw/?q=1"]
    assert raw["code"] == 404
    assert (raw["name"], raw["source"], raw["description"]) == ("GET /raw/", "url", "GET /raw/")
    assert raw["request"]["query_string"] == "q=1"


if __name__ == "__main__":
    _django_probe()


def test_a_live_span_is_named_from_its_current_attributes() -> None:
    # The DSC (at inject time) and Django error capture name a request while its span is
    # still open; what they read then must not be remembered for later reads.
    tracer = TracerProvider().get_tracer("mapping")
    span = tracer.start_span("GET", kind=trace.SpanKind.SERVER,
                             attributes={"http.request.method": "GET", "url.path": "/orders/7/"})
    assert isinstance(span, ReadableSpan)
    assert transaction_name_and_source(span) == ("GET /orders/7/", "url")
    span.set_attribute("http.route", "orders/<int:id>/")
    assert transaction_name_and_source(span) == ("GET orders/<int:id>/", "route")
    span.end()


def test_a_finished_spans_attributes_are_read_in_place_and_a_live_spans_are_copied() -> None:
    """The exporter reads every attribute of every span several times: a finished span's
    are read where they are, with nothing copied or remembered that could outlive the span
    (a cache of them once kept up to 4,096 finished roots alive under an exporter that never
    cleared it). A live span's are a snapshot: they may still change."""
    import gc
    import weakref

    from otel_bridge.span_attributes import span_attributes

    root = make_span("GET /", kind=SpanKind.SERVER,
                     attributes={"http.request.method": "GET", "http.route": "/"})
    assert span_attributes(root) is span_attributes(root)
    assert dict(span_attributes(root)) == {"http.request.method": "GET", "http.route": "/"}
    assert transaction_name_and_source(root) == ("GET /", "route")
    forgotten = weakref.ref(root)
    del root
    gc.collect()
    assert forgotten() is None

    provider = TracerProvider()
    live = provider.get_tracer("test").start_span("GET", attributes={"http.route": "/a"})
    assert isinstance(live, ReadableSpan)
    snapshot = span_attributes(live)
    live.set_attribute("http.route", "/b")
    assert snapshot == {"http.route": "/a"}
    assert span_attributes(live) == {"http.route": "/b"}
    live.end()


# -- remembered child shapes ---------------------------------------------------------------


def test_a_repeated_query_maps_alike_and_each_span_gets_its_own_data() -> None:
    attributes = {"db.system": "sqlite", "db.statement": "SELECT name FROM customer WHERE id = %s"}
    first = sentry_span(make_span("SELECT", kind=SpanKind.CLIENT, attributes=attributes))
    second = sentry_span(make_span("SELECT", kind=SpanKind.CLIENT, attributes=attributes))
    assert (first["op"], first["description"]) == ("db", attributes["db.statement"])
    assert second["data"] == first["data"] == {**attributes, "otel.kind": "CLIENT"}
    assert second["span_id"] != first["span_id"]
    # what one event does with its data never reaches the next span of the same shape
    first["data"]["db.statement"] = "changed"
    third = sentry_span(make_span("SELECT", kind=SpanKind.CLIENT, attributes=attributes))
    assert third["data"]["db.statement"] == attributes["db.statement"]


@pytest.mark.parametrize(
    "values",
    [
        (True, 1),  # equal under ==, as dict keys
        ((True,), (1,)),
        (0.0, -0.0),
        (2, 2.0),
    ],
)
def test_values_equal_under_eq_still_map_as_themselves(values: tuple[Any, Any]) -> None:
    for value in values:
        span = make_span("flagged", kind=SpanKind.CLIENT, attributes={"app.flag": value})
        data = sentry_span(span)["data"]
        assert json.dumps(data["app.flag"]) == json.dumps(json_safe(value)), value


def test_a_span_made_by_hand_with_a_list_value_maps(monkeypatch: pytest.MonkeyPatch) -> None:
    span = make_span("hand", kind=SpanKind.CLIENT, attributes={"app.items": ("a", "b")})
    monkeypatch.setattr(span, "_attributes", {"app.items": ["a", "b"]})
    assert sentry_span(span)["data"]["app.items"] == ["a", "b"]


def test_remembered_shapes_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from otel_bridge.pipeline import mapping

    monkeypatch.setattr(mapping, "_MAX_SHAPES", 3)
    monkeypatch.setattr(mapping, "_SHAPES", {})
    for number in range(10):
        sentry_span(make_span("q", kind=SpanKind.CLIENT, attributes={"db.statement": str(number)}))
        assert len(mapping._SHAPES) <= 3


@pytest.mark.parametrize("code", [code for code in range(400, 600) if code != 499])
def test_error_status_from_http_code_is_sentry_sdks(code: int) -> None:
    from sentry_sdk.tracing import get_span_status_from_http_code

    expected = get_span_status_from_http_code(code)
    assert sentry_status(error_span({"http.response.status_code": code})) == expected
