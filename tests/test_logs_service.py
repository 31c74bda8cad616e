"""A real service under `opentelemetry-instrument` (the otel_bridge distro) logging through
structlog and stdlib logging inside a request: what reaches the Sentry ingest and the OTLP
receiver, with no otel-bridge code in the service (tests/services/logs_service.py)."""

from __future__ import annotations

import json
import time
import urllib.request
from importlib.metadata import entry_points
from typing import Any

import pytest

from tests.rig.ingest import RecordingIngest
from tests.rig.otlp import LogRecordDict, OtlpReceiver
from tests.rig.processes import REPO_ROOT, InstrumentedServer

SERVICE = str(REPO_ROOT / "tests" / "services" / "logs_service.py")


def _get(server: InstrumentedServer, path: str) -> Any:
    with urllib.request.urlopen(server.url(path), timeout=30) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module", autouse=True)
def _instrumentation_registered() -> None:
    names = {ep.name for ep in entry_points(group="opentelemetry_instrumentor")}
    assert "structlog" in names, (
        "the structlog instrumentation is not registered: pyproject needs "
        '[project.entry-points.opentelemetry_instrumentor] structlog = '
        '"otel_bridge_instrumentation_structlog:StructlogInstrumentor" (then pip install -e .)'
    )


class Run:
    """One request to /work with everything the service sent for it."""

    def __init__(
        self, ids: dict[str, str], events: list[dict[str, Any]], logs: list[dict[str, Any]],
        otlp: list[LogRecordDict], output: str,
    ) -> None:
        self.trace_id = ids["trace_id"]
        self.span_id = ids["span_id"]
        self.events = events
        self.logs = logs
        self.otlp = otlp
        self.output = output

    def events_about(self, text: str) -> list[dict[str, Any]]:
        return [
            e for e in self.events
            if text in (e.get("logentry", {}).get("formatted") or "")
            or text in (e.get("logentry", {}).get("message") or "")
        ]


def _run(
    backend: str, ingest: RecordingIngest, otlp: OtlpReceiver, tmp_path: Any, **extra: str
) -> Run:
    env = {
        "OTEL_SERVICE_NAME": "logs-service",
        "SENTRY_DSN": ingest.dsn,
        "SENTRY_ENABLE_LOGS": "true",
        "OTEL_BRIDGE_TAG_KEYS": "tenant",
        "OTEL_LOGS_EXPORTER": "otlp",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "LOGS_SERVICE_BACKEND": backend,
        **extra,
    }
    with InstrumentedServer(
        ["python", SERVICE, "{port}"], env=env, cwd=REPO_ROOT, ready_path="/health",
        log_dir=tmp_path,
    ) as server:
        ids = _get(server, "/work")
        _get(server, "/flush")
        ingest.wait_for(lambda i: len(i.events("event")) >= 3, timeout=20)
        otlp_logs = _wait_for_otlp(otlp, "stdlib failure")
        output = server.output_text()
    logs = [entry for payload in ingest.events("log") for entry in payload.get("items", [])]
    return Run(ids, ingest.events("event"), logs, otlp_logs, output)


def _wait_for_otlp(otlp: OtlpReceiver, text: str) -> list[LogRecordDict]:
    """All OTLP log records once one containing ``text`` arrived (the service flushed them
    together, in one export)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        records = otlp.log_records()
        if any(text in str(r["body"]) for r in records):
            return records
        time.sleep(0.1)
    raise AssertionError(f"no OTLP log containing {text!r}: {otlp.log_records()}")


@pytest.fixture(params=["stdlib", "print"])
def run(request: Any, ingest: RecordingIngest, otlp_receiver: OtlpReceiver, tmp_path: Any) -> Run:
    return _run(request.param, ingest, otlp_receiver, tmp_path)


def test_one_error_event_per_error_log_linked_to_the_request(run: Run) -> None:
    structlog_events = run.events_about("payment.failed")
    plain_error = run.events_about("inventory.low")
    stdlib_events = run.events_about("stdlib failure for order 7")
    assert len(structlog_events) == 1, run.output
    assert len(plain_error) == 1, run.output
    assert len(stdlib_events) == 1, run.output
    assert len(run.events) == 3, [e.get("logentry") for e in run.events]
    assert plain_error[0]["contexts"]["structlog"] == {"sku": "A-1", "left": 0}
    for event in (*structlog_events, *plain_error, *stdlib_events):
        assert event["contexts"]["trace"]["trace_id"] == run.trace_id
    [event] = structlog_events
    assert event["fingerprint"] == ["shop.orders", "payment.failed"]
    assert event["tags"]["tenant"] == "acme"
    assert event["contexts"]["structlog"]["order_id"] == 7
    assert event["contexts"]["structlog"]["card_token"] == "[Filtered]"
    [exception] = event["exception"]["values"]
    assert exception["type"] == "PaymentDeclined"
    assert exception["stacktrace"]["frames"][-1]["function"] == "work"


def test_breadcrumbs_on_the_error_event(run: Run) -> None:
    [event] = run.events_about("stdlib failure for order 7")
    messages = [crumb.get("message") or "" for crumb in event["breadcrumbs"]["values"]]
    assert sum("order.loaded" in m for m in messages) == 1, messages
    assert sum("stdlib step reserve" in m for m in messages) == 1, messages
    assert sum("payment.failed" in m for m in messages) == 1, messages
    assert sum("inventory.low" in m for m in messages) == 1, messages
    assert not any("order.debug_detail" in m for m in messages)
    loaded = next(c for c in event["breadcrumbs"]["values"] if "order.loaded" in (c["message"]))
    assert loaded["category"] == "shop.orders"
    assert loaded["data"]["password"] == "[Filtered]"


def test_sentry_log_items_carry_the_trace(run: Run) -> None:
    texts = ("order.loaded", "stdlib step reserve", "payment.failed", "inventory.low",
             "stdlib failure")
    for text in texts:
        matching = [entry for entry in run.logs if text in entry["body"]]
        assert len(matching) == 1, (text, [entry["body"] for entry in run.logs])
        assert matching[0]["trace_id"] == run.trace_id
    [loaded] = [entry for entry in run.logs if entry["body"] == "order.loaded"]
    assert loaded["attributes"]["sentry.message.template"]["value"] == "order.loaded"
    assert loaded["attributes"]["order_id"]["value"] == 7
    assert loaded["attributes"]["password"]["value"] == "[Filtered]"


def test_otlp_log_records(run: Run) -> None:
    def about(text: str) -> list[LogRecordDict]:
        return [r for r in run.otlp if text in str(r["body"])]

    [loaded] = about("order.loaded")
    assert loaded["body"] == "order.loaded"  # the template, not the rendered JSON line
    assert loaded["severity_text"] == "INFO"
    assert loaded["attributes"]["order_id"] == 7
    assert loaded["attributes"]["password"] == "[Filtered]"
    assert loaded["trace_id"] == run.trace_id
    assert loaded["resource"]["service.name"] == "logs-service"
    [failed] = about("payment.failed")
    assert failed["severity_number"] == 17
    assert failed["attributes"]["exception.type"].endswith("PaymentDeclined")
    assert len(about("inventory.low")) == 1
    [stdlib] = about("stdlib failure for order 7")
    assert stdlib["trace_id"] == run.trace_id
    assert not about("order.debug_detail")


def test_opt_out_leaves_structlog_alone(
    ingest: RecordingIngest, otlp_receiver: OtlpReceiver, tmp_path: Any
) -> None:
    """OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=structlog: structlog's records reach Sentry only
    the way sentry-sdk's logging integration sees them (stdlib backend), no bridge."""
    result = _run(
        "stdlib", ingest, otlp_receiver, tmp_path,
        OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="structlog",
    )
    events = result.events_about("payment.failed")
    assert len(events) == 1
    assert "structlog" not in events[0].get("contexts", {})


def test_stdlib_records_carry_trace_ids(run: Run) -> None:
    """Plain stdlib records get the same correlation (otelTraceID/otelSpanID from the
    logging instrumentation, which the distro turns on with inject_trace_context)."""
    [event] = run.events_about("stdlib failure for order 7")
    assert event["extra"]["otelTraceID"] == run.trace_id
    assert event["extra"]["otelSpanID"] == run.span_id
