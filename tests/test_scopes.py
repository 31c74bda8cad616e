"""The scope processor's request sessions: real SDK spans, a real sentry-sdk client, the
recording ingest."""

from __future__ import annotations

import os
from typing import Any

import pytest
import sentry_sdk
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind
from sentry_sdk.scope import Scope

from otel_bridge.scopes import SentryScopeProcessor, install
from tests.rig.ingest import RecordingIngest


def test_request_sessions_are_counted_without_reading_os_urandom(
    ingest: RecordingIngest, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = sentry_sdk.Client(
        dsn=ingest.dsn, release="shop@2.0", environment="staging", default_integrations=False
    )
    provider = TracerProvider()
    try:
        with sentry_sdk.isolation_scope() as base:
            base.set_client(client)
            provider.add_span_processor(SentryScopeProcessor(base=base))
            tracer = provider.get_tracer("test")

            real_urandom = os.urandom
            forbidden = [False]

            def guarded_urandom(size: int) -> bytes:
                # uuid4() reads os.urandom: a GIL hand-over on every request.
                assert not forbidden[0], "os.urandom read while starting or ending a request"
                return real_urandom(size)

            monkeypatch.setattr(os, "urandom", guarded_urandom)
            seen: list[Any] = []
            for failing in (False, False, True):
                forbidden[0] = True
                span = tracer.start_span("GET /orders/{id}", kind=SpanKind.SERVER)
                forbidden[0] = False
                with trace.use_span(span, end_on_exit=False):
                    seen.append(Scope.get_isolation_scope()._session)
                    if failing:  # error events get their ids from uuid4 as always
                        sentry_sdk.capture_exception(RuntimeError("order lost"))
                forbidden[0] = True
                span.end()
                forbidden[0] = False
            monkeypatch.undo()
        client.flush(timeout=10)
    finally:
        provider.shutdown()
        client.close()

    assert all(s is not None and s.session_mode == "request" for s in seen)
    assert len({s.sid for s in seen}) == 3 and all(s.sid.version == 4 for s in seen)
    [aggregates] = ingest.wait_for_items("sessions")
    assert aggregates["attrs"] == {"release": "shop@2.0", "environment": "staging"}
    counts = {"exited": 0, "errored": 0}
    for bucket in aggregates["aggregates"]:
        for key in counts:
            counts[key] += bucket.get(key, 0)
    assert counts == {"exited": 2, "errored": 1}


def test_a_request_starts_clean_and_its_errors_carry_its_name_and_request(
    ingest: RecordingIngest,
) -> None:
    # As sentry-sdk's isolation_scope() and WSGI middleware: the current scope is forked too
    # (a tag set on it reached every later request), the request starts with no breadcrumbs
    # (start-up's, and those of a streamed body logged after its span ended, were on every
    # error), and a logged error or capture_message gets the transaction name and the
    # request the server span has.
    client = sentry_sdk.Client(dsn=ingest.dsn, default_integrations=False)
    provider = TracerProvider()
    try:
        with sentry_sdk.isolation_scope() as base:
            base.set_client(client)
            base.add_breadcrumb(message="booting worker")
            processor = SentryScopeProcessor(base=base)
            install(processor)
            provider.add_span_processor(processor)
            tracer = provider.get_tracer("test")
            attributes = {
                "http.method": "GET", "http.url": "http://shop.example/orders/7?page=2",
                "http.route": "orders/<int:id>/",
            }
            with tracer.start_as_current_span("GET", kind=SpanKind.SERVER, attributes=attributes):
                sentry_sdk.get_current_scope().set_tag("who", "alice")
                sentry_sdk.add_breadcrumb(message="alice was here")
            base.add_breadcrumb(message="logged while a body streamed")
            with tracer.start_as_current_span("GET", kind=SpanKind.SERVER, attributes=attributes):
                sentry_sdk.capture_message("order 7 looks odd")
        client.flush(timeout=10)
    finally:
        provider.shutdown()
        client.close()

    [event] = ingest.wait_for_items("event")
    assert "who" not in event.get("tags", {})
    assert event.get("breadcrumbs", {}).get("values", []) == []
    assert event["transaction"] == "GET orders/<int:id>/"
    assert event["transaction_info"] == {"source": "route"}
    assert event["request"]["method"] == "GET"
    assert event["request"]["url"] == "http://shop.example/orders/7"
    assert event["request"]["query_string"] == "page=2"
