"""The rig itself, checked against real clients: sentry-sdk, the OTLP exporters, Bugsink,
and the sample shop."""

from __future__ import annotations

import gzip
import importlib.util
import json
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import sentry_sdk

from tests.rig.bugsink import Bugsink
from tests.rig.ingest import RecordingIngest, parse_envelope
from tests.rig.otlp import OtlpReceiver
from tests.rig.processes import (
    REPO_ROOT,
    InstrumentedServer,
    ProcessStartError,
    run_instrumented,
)
from tests.rig.shop import run_shop_command

HAVE_BROTLI = importlib.util.find_spec("brotli") is not None

# A plain sentry-sdk app (no bridge): one transaction with one error inside it.
SENTRY_APP = """
import json, os, sentry_sdk
sentry_sdk.init(
    dsn=os.environ["DSN"], traces_sample_rate=1.0, release="rig@1",
    _experiments={"transport_compression_algo": os.environ["ALGO"]},
)
with sentry_sdk.start_transaction(name="rig-transaction", op="task") as transaction:
    with sentry_sdk.start_span(op="db", name="SELECT 1"):
        pass
    try:
        raise ValueError("rig error")
    except ValueError as exc:
        sentry_sdk.capture_exception(exc)
print(json.dumps({"trace_id": transaction.trace_id}))
sentry_sdk.flush(timeout=10)
"""


def run_sentry_app(dsn: str, algo: str = "gzip") -> str:
    """Run SENTRY_APP in a clean child process; returns its trace id."""
    result = run_instrumented(
        ["python", "-c", SENTRY_APP], {"DSN": dsn, "ALGO": algo}, instrument=False
    )
    assert result.returncode == 0, result.stderr
    return str(json.loads(result.stdout.strip().splitlines()[-1])["trace_id"])


@pytest.fixture
def client(ingest: RecordingIngest) -> Iterator[sentry_sdk.Client]:
    """An in-process sentry-sdk client bound to nothing global (no integrations)."""
    client = sentry_sdk.Client(
        dsn=ingest.dsn, default_integrations=False, auto_enabling_integrations=False,
        _experiments={"transport_compression_algo": "gzip"},  # type: ignore[typeddict-item]
    )
    try:
        yield client
    finally:
        client.close(timeout=2)


def transaction_event(name: str) -> Any:
    now = time.time()
    trace = {"trace_id": secrets.token_hex(16), "span_id": secrets.token_hex(8), "op": "test"}
    return {
        "type": "transaction", "transaction": name, "start_timestamp": now, "timestamp": now,
        "contexts": {"trace": trace}, "spans": [],
    }


def error_event(message: str) -> Any:
    return {"message": message, "level": "error"}


# -- envelope format -----------------------------------------------------------------


def test_parse_envelope_with_and_without_length() -> None:
    payload = b'{"a":"x\\ny"}'
    data = (
        b'{"event_id":"abc"}\n'
        + b'{"type":"event","length":%d}\n' % len(payload) + payload + b"\n"
        + b'{"type":"attachment","length":3}\n\n\n\n'  # payload may hold newlines
        + b'{"type":"client_report"}\n{"discarded_events":[]}'
    )
    envelope = parse_envelope(data)
    assert envelope.headers == {"event_id": "abc"}
    assert [item.type for item in envelope.items] == ["event", "attachment", "client_report"]
    assert envelope.items[0].json == {"a": "x\ny"}
    assert envelope.items[1].payload == b"\n\n\n"
    assert envelope.items[2].json == {"discarded_events": []}


# -- RecordingIngest with a real sentry-sdk --------------------------------------------


@pytest.mark.parametrize("algo", ["gzip", "br"])
def test_ingest_records_sentry_sdk_error_and_transaction(
    ingest: RecordingIngest, algo: str
) -> None:
    trace_id = run_sentry_app(ingest.dsn, algo)

    [error] = ingest.wait_for_items("event", 1)
    [transaction] = ingest.wait_for_items("transaction", 1)

    assert error["exception"]["values"][-1]["type"] == "ValueError"
    assert error["contexts"]["trace"]["trace_id"] == trace_id
    assert transaction["transaction"] == "rig-transaction"
    assert transaction["contexts"]["trace"]["trace_id"] == trace_id
    assert [span["description"] for span in transaction["spans"]] == ["SELECT 1"]
    envelope = next(env for env in ingest.envelopes if env.items_of("transaction"))
    # sentry-sdk falls back to gzip when the brotli package is missing
    assert envelope.content_encoding == (algo if HAVE_BROTLI or algo != "br" else "gzip")
    assert envelope.project_id == "42"
    assert envelope.headers["trace"]["trace_id"] == trace_id
    assert envelope.auth is not None and "sentry_key=publickey" in envelope.auth


def test_ingest_store_endpoint_and_deflate(ingest: RecordingIngest) -> None:
    body = json.dumps({"event_id": "e" * 32, "message": "legacy"}).encode()
    request = urllib.request.Request(
        f"{ingest.url}/api/7/store/", data=gzip.compress(body), method="POST",
        headers={"Content-Encoding": "gzip"},
    )
    with urllib.request.urlopen(request) as response:
        assert response.status == 200
    assert ingest.events("event") == [{"event_id": "e" * 32, "message": "legacy"}]


def test_rate_limit_response_stops_sentry_sdk_sending_transactions(
    ingest: RecordingIngest, client: sentry_sdk.Client
) -> None:
    ingest.respond_with(
        429, {"Retry-After": "60", "X-Sentry-Rate-Limits": "60:transaction:key"}
    )
    client.capture_event(transaction_event("first"))
    client.flush(timeout=5)
    assert [env.status for env in ingest.received] == [429]
    assert ingest.events("transaction") == []  # rejected ones are not "accepted"

    ingest.respond_with(200)
    client.capture_event(transaction_event("second"))
    client.capture_event(error_event("still sending errors"))
    client.flush(timeout=5)

    [error] = ingest.wait_for_items("event", 1)
    assert error["message"] == "still sending errors"
    sent_after_limit = [item.type for env in ingest.received[1:] for item in env.items]
    assert "transaction" not in sent_after_limit, ingest.dump()

    def backoff_reported(ingest: RecordingIngest) -> bool:
        return any(
            (discarded["reason"], discarded["category"]) == ("ratelimit_backoff", "transaction")
            for report in ingest.events("client_report")
            for discarded in report.get("discarded_events", [])
        )

    assert ingest.wait_for(backoff_reported)


def test_stop_refuses_connections_and_start_reuses_the_port(
    ingest: RecordingIngest, client: sentry_sdk.Client
) -> None:
    port = ingest.port
    client.capture_event(error_event("before stop"))  # opens a keep-alive connection
    client.flush(timeout=5)
    ingest.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{ingest.url}/api/42/envelope/", data=b"{}", timeout=2)
    client.capture_event(error_event("while down"))
    client.flush(timeout=5)

    ingest.start()
    assert ingest.port == port
    client.capture_event(error_event("after restart"))
    client.flush(timeout=5)

    messages = [event["message"] for event in ingest.wait_for_items("event", 2)]
    assert messages == ["before stop", "after restart"]


def test_slow_response_is_applied(ingest: RecordingIngest) -> None:
    ingest.respond_with(200, delay=1.0)
    request = urllib.request.Request(
        f"{ingest.url}/api/42/envelope/", data=b'{}\n{"type":"event"}\n{}', method="POST"
    )
    with pytest.raises(TimeoutError):
        urllib.request.urlopen(request, timeout=0.2)


def test_wait_for_items_timeout_lists_what_arrived(ingest: RecordingIngest) -> None:
    request = urllib.request.Request(
        f"{ingest.url}/api/42/envelope/", data=b'{}\n{"type":"event"}\n{"message":"hi"}',
        method="POST",
    )
    urllib.request.urlopen(request).close()
    with pytest.raises(AssertionError, match=r"(?s)transaction.*event: \{\"message\": \"hi\"\}"):
        ingest.wait_for_items("transaction", 1, timeout=0.3)


# -- OTLP receiver with the real exporters ---------------------------------------------


def test_otlp_receiver_decodes_spans_from_the_otlp_exporter(otlp_receiver: OtlpReceiver) -> None:
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.trace import SpanKind, StatusCode

    provider = TracerProvider(resource=Resource.create({"service.name": "rig"}))
    exporter = OTLPSpanExporter(
        endpoint=f"{otlp_receiver.endpoint}/v1/traces", compression=Compression.Gzip
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("rig-test")
    with tracer.start_as_current_span("GET /orders", kind=SpanKind.SERVER) as root:
        root.set_attribute("http.route", "/orders/<id>/")
        with tracer.start_as_current_span("SELECT", kind=SpanKind.CLIENT) as child:
            child.set_attribute("db.statement.params", [1, 2])
            child.set_status(StatusCode.ERROR, "bad")
    provider.shutdown()

    spans = otlp_receiver.wait_for_spans(2)
    by_name = {span["name"]: span for span in spans}
    server, db = by_name["GET /orders"], by_name["SELECT"]
    assert server["trace_id"] == format(root.get_span_context().trace_id, "032x")
    assert server["parent_span_id"] == ""
    assert db["parent_span_id"] == server["span_id"]
    assert server["kind"] == 2 and db["kind"] == 3
    assert server["attributes"] == {"http.route": "/orders/<id>/"}
    assert db["attributes"] == {"db.statement.params": [1, 2]}
    assert server["resource"]["service.name"] == "rig"
    assert (db["status_code"], db["status_message"]) == (2, "bad")


def test_otlp_receiver_decodes_log_records(otlp_receiver: OtlpReceiver) -> None:
    import logging

    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.instrumentation.logging.handler import LoggingHandler
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor

    provider = LoggerProvider()
    provider.add_log_record_processor(
        SimpleLogRecordProcessor(OTLPLogExporter(endpoint=f"{otlp_receiver.endpoint}/v1/logs"))
    )
    logger = logging.getLogger("rig.otlp.test")
    logger.propagate = False
    handler = LoggingHandler(logger_provider=provider)
    logger.addHandler(handler)
    try:
        logger.warning("disk %s full", "/var", extra={"volume": "/var"})
    finally:
        logger.removeHandler(handler)
        provider.shutdown()

    [record] = otlp_receiver.log_records()
    assert record["body"] == "disk /var full"
    assert record["severity_text"] == "WARN"
    assert record["attributes"]["volume"] == "/var"


# -- Bugsink ---------------------------------------------------------------------------


def test_bugsink_stores_a_sentry_sdk_error_with_its_trace_id(bugsink: Bugsink) -> None:
    trace_id = run_sentry_app(bugsink.dsn)

    [event] = bugsink.wait_for_events(lambda event: event.trace_id == trace_id)

    assert event.exception_type == "ValueError"
    assert event.exception_value == "rig error"
    assert event.data["release"] == "rig@1"


def test_bugsink_answers_every_envelope_with_a_day_long_transaction_rate_limit(
    bugsink: Bugsink,
) -> None:
    # Bugsink ingests errors only: a pipeline sending transactions there gets told to
    # stop sending them for 24 h (any category list containing "transaction").
    envelope = b'{}\n{"type":"transaction"}\n' + json.dumps(transaction_event("t")).encode()
    status, headers = bugsink.post_envelope(envelope)
    assert status == 200
    limits = headers["X-Sentry-Rate-Limits"]
    seconds, categories = limits.split(":")[:2]
    assert int(seconds) == 86400
    assert "transaction" in categories.split(";")


# -- processes and the sample shop -------------------------------------------------------


def test_clean_env_hides_the_developers_sentry_and_otel_vars(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SENTRY_DSN", "http://leak@127.0.0.1:1/1")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "leak")
    code = "import os, json; print(json.dumps(sorted(os.environ)))"
    result = run_instrumented(["python", "-c", code], {"MINE": "1"}, instrument=False)
    names = json.loads(result.stdout)
    assert "MINE" in names
    assert not [name for name in names if name.startswith(("SENTRY_", "OTEL_"))]


def test_server_that_dies_reports_its_stderr(tmp_path: Path) -> None:
    server = InstrumentedServer(
        ["python", "-c", "import sys; sys.exit('cannot bind {port}')"],
        instrument=False, ready_timeout=10, log_dir=tmp_path,
    )
    with pytest.raises(ProcessStartError, match="cannot bind"):
        server.start()
    assert not server.running


def test_servers_without_a_log_dir_write_inside_the_sessions_temp_dir(
    _session_temp_dir: Path,
) -> None:
    """What a server writes outside the fixtures is removed with the session's directory,
    not left in /tmp run after run."""
    server = InstrumentedServer(
        ["python", "-c", "import sys; sys.exit('gone {port}')"],
        instrument=False, ready_timeout=10,
    )
    with pytest.raises(ProcessStartError, match="gone"):
        server.start()
    assert server.log_dir.is_relative_to(_session_temp_dir)
    assert "gone" in server.stderr_path.read_text()


def test_shop_sample_views(shop_server: Any) -> None:
    shop = shop_server(instrument=False)

    order = requests.get(shop.url("/orders/3/"), timeout=10).json()
    assert order["id"] == 3 and order["items"]
    assert requests.get(shop.url("/orders/999/"), timeout=10).status_code == 404
    assert requests.get(shop.url("/health/"), timeout=10).text == "ok"
    assert requests.get(shop.url("/boom/"), timeout=10).status_code == 500
    assert "RuntimeError: boom from shop" in shop.stderr_text()
    assert requests.get(shop.url("/not-found/"), timeout=10).status_code == 404
    called = requests.get(
        shop.url("/call/"), params={"url": shop.url("/echo-headers/")}, timeout=10
    ).json()
    assert called["status"] == 200
    assert called["body"]["headers"]["User-Agent"].startswith("python-requests")
    echoed = requests.get(shop.url("/echo-headers/"), headers={"X-Rig": "1"}, timeout=10)
    assert echoed.json()["headers"]["X-Rig"] == "1"
    assert requests.get(shop.url("/log/"), timeout=10).json() == {"logged": 3}
    assert "shop log error: payment declined" in shop.stderr_text()


def test_shop_report_command(tmp_path: Path) -> None:
    result = run_shop_command(["shop_report"], instrument=False, db_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "shop_report: 10 orders, revenue 672.00"


def test_shop_under_opentelemetry_instrument_exports_to_otlp(
    shop_server: Any, otlp_receiver: OtlpReceiver
) -> None:
    # The "swap the backend" promise: plain OTLP env vars, the app untouched.
    shop = shop_server(
        {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_LOGS_EXPORTER": "none",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        }
    )
    assert requests.get(shop.url("/orders/1/"), timeout=10).status_code == 200

    def has_request(spans: list[Any]) -> bool:
        return any(span["attributes"].get("http.route") == "orders/<int:order_id>/"
                   for span in spans)

    try:
        spans = otlp_receiver.wait_for_spans(has_request, timeout=20)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{shop.output_text()}") from None
    [server] = [s for s in spans if s["attributes"].get("http.route") == "orders/<int:order_id>/"]
    assert server["kind"] == 2
    assert server["resource"]["service.name"] == "shop"
    db_spans = [s for s in spans if s["trace_id"] == server["trace_id"] and s["kind"] == 3]
    assert len(db_spans) == 5, shop.stderr_text()


# -- end to end: the shop, instrumented only by env vars, into the rig's ingests ---------


def test_shop_error_is_linked_to_its_transaction(ingest: RecordingIngest, shop_server: Any) -> None:
    shop = shop_server({"SENTRY_DSN": ingest.dsn, "SENTRY_TRACES_SAMPLE_RATE": "1.0"})
    assert requests.get(shop.url("/boom/"), timeout=10).status_code == 500

    def boom_transaction(ingest: RecordingIngest) -> list[Any]:
        return [t for t in ingest.events("transaction") if t["transaction"] == "GET boom/"]

    try:
        [error] = ingest.wait_for_items("event", 1, timeout=15)
        [transaction] = ingest.wait_for(boom_transaction, timeout=15)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{shop.output_text()}") from None
    assert error["exception"]["values"][-1]["type"] == "RuntimeError"
    trace = transaction["contexts"]["trace"]
    assert error["contexts"]["trace"]["trace_id"] == trace["trace_id"]
    assert trace["status"] == "internal_error"


def test_shop_error_reaches_bugsink_with_the_incoming_trace_id(
    bugsink: Bugsink, shop_server: Any
) -> None:
    shop = shop_server({"SENTRY_DSN": bugsink.dsn, "SENTRY_TRACES_SAMPLE_RATE": "1.0"})
    trace_id = secrets.token_hex(16)
    traceparent = f"00-{trace_id}-{secrets.token_hex(8)}-01"
    response = requests.get(shop.url("/boom/"), headers={"traceparent": traceparent}, timeout=10)
    assert response.status_code == 500

    try:
        [event] = bugsink.wait_for_events(lambda event: event.trace_id == trace_id)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{shop.output_text()}") from None
    assert (event.exception_type, event.exception_value) == ("RuntimeError", "boom from shop")


# A test process that inherited SIGINT ignored, with and without the rig's remedy: what a
# process it starts does on SIGINT.
INHERITED_SIG_IGN = """
import signal, subprocess, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
if sys.argv[1] == "remedy":
    from tests.rig.processes import give_children_default_sigint
    give_children_default_sigint()
child = subprocess.run(
    [sys.executable, "-c", "import signal; print(signal.getsignal(signal.SIGINT))"],
    capture_output=True, text=True, check=True,
)
print(child.stdout.strip())
"""


@pytest.mark.parametrize("remedy", [True, False], ids=["remedy", "without"])
def test_children_of_a_run_that_ignores_sigint_get_the_default(remedy: bool) -> None:
    completed = subprocess.run(
        [sys.executable, "-c", INHERITED_SIG_IGN, "remedy" if remedy else "plain"],
        cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=60,
    )
    child_handler = completed.stdout.strip()
    if remedy:
        assert "default_int_handler" in child_handler, completed
    else:  # the situation the remedy is for: Python keeps the inherited SIG_IGN
        assert child_handler == str(int(signal.SIG_IGN)), completed
