"""Canaries planted in headers, query strings, form fields, log keys and exception messages of a
real Django service under ``opentelemetry-instrument`` never reach a byte of what the Sentry
ingest or the OTLP receiver get, while the events and spans carrying them do arrive."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import requests

from tests.rig import InstrumentedServer, OtlpReceiver, RecordingIngest

SERVICES_DIR = Path(__file__).parent / "services"


def _canaries() -> dict[str, str]:
    tag = uuid.uuid4().hex[:10]
    names = ("query", "auth", "apikey", "cookie", "csrf", "form", "card", "log", "setcookie")
    canaries = {name: f"CANARY{name.upper()}{tag}" for name in names}
    # the service's user e-mail (scrub_app.USER_EMAIL): personal data, SENTRY_SEND_DEFAULT_PII off
    canaries["email"] = "CANARYEMAIL.ada@example.com"
    return canaries


def _every_received_byte(ingest: RecordingIngest, otlp: OtlpReceiver) -> list[tuple[str, bytes]]:
    chunks: list[tuple[str, bytes]] = []
    for envelope in ingest.received:
        chunks.append(("envelope headers", json.dumps(envelope.headers).encode()))
        for item in envelope.items:
            chunks.append((f"{item.type} item", json.dumps(item.headers).encode() + item.payload))
    for request in otlp.trace_requests:
        chunks.append(("otlp traces", request.SerializeToString()))
    for request in otlp.log_requests:
        chunks.append(("otlp logs", request.SerializeToString()))
    for request in otlp.metric_requests:
        chunks.append(("otlp metrics", request.SerializeToString()))
    return chunks


def _post(server: InstrumentedServer, canaries: dict[str, str], *, fail: bool) -> requests.Response:
    query = f"?api_key={canaries['query']}&page=1" + ("&fail=1" if fail else "")
    return requests.post(
        server.url("/login/" + query),
        data={
            "username": "bob",
            "password": canaries["form"],
            "card_token": canaries["card"],
            "session_note": canaries["log"],
            "new_session": canaries["setcookie"],
        },
        headers={
            "Authorization": f"Bearer {canaries['auth']}",
            "X-Api-Key": canaries["apikey"],
            "Cookie": f"sessionid={canaries['cookie']}; csrftoken={canaries['csrf']}",
        },
        timeout=30,
    )


def test_canaries_never_reach_sentry_or_otlp(
    ingest: RecordingIngest, otlp_receiver: OtlpReceiver, tmp_path: Path
) -> None:
    canaries = _canaries()
    env = {
        "DJANGO_SETTINGS_MODULE": "scrub_app",
        "SCRUB_APP_DB": str(tmp_path / "scrub.sqlite3"),
        "OTEL_SERVICE_NAME": "scrub-e2e",
        "SENTRY_DSN": ingest.dsn,
        "SENTRY_ENABLE_LOGS": "true",
        "OTEL_TRACES_EXPORTER": "sentry,otlp",
        "OTEL_LOGS_EXPORTER": "otlp",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        # every header becomes a span attribute: the scrubber, not the instrumentation's own
        # sanitising, must keep the secrets out
        "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST": ".*",
        "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE": ".*",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_BLRP_SCHEDULE_DELAY": "100",
    }
    server = InstrumentedServer(
        ["python", "scrub_app.py", "runserver", "--noreload", "127.0.0.1:{port}"],
        env=env,
        cwd=SERVICES_DIR,
        ready_path=None,
        log_dir=tmp_path,
    )
    with server:
        assert _post(server, canaries, fail=False).status_code == 200
        assert _post(server, canaries, fail=True).status_code == 500
        # what carried the canaries did arrive (so the check below is not vacuous)
        errors = ingest.wait_for_items("event", timeout=30)
        otlp_receiver.wait_for_spans(
            lambda spans: sum(1 for s in spans if s["kind"] == 2) >= 2, timeout=30
        )
    # stopped: whatever was still pending has been flushed at exit

    leaks = [
        (where, name)
        for where, chunk in _every_received_byte(ingest, otlp_receiver)
        for name, canary in canaries.items()
        if canary.encode() in chunk
    ]
    assert not leaks, f"canaries leaked: {leaks}\n{server.stderr_text()[-3000:]}"

    error = next(e for e in errors if e.get("exception"))
    assert error["exception"]["values"][-1]["value"] == "login failed for password=[Filtered]"
    server_spans = [s for s in otlp_receiver.spans() if s["kind"] == 2]
    for span in server_spans:
        attributes = span["attributes"]
        urls = [attributes.get(k) for k in ("url.full", "http.url", "url.query", "http.target")]
        assert any("api_key=[Filtered]" in str(url) for url in urls), attributes
        assert attributes.get("http.request.header.authorization") == ["[Filtered]"]
    db_statements = [
        s["attributes"].get("db.statement", s["attributes"].get("db.query.text"))
        for s in otlp_receiver.spans()
        if s["kind"] == 3
        and ("db.statement" in s["attributes"] or "db.query.text" in s["attributes"])
    ]
    assert "SELECT %s AS pw" in db_statements
