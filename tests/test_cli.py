"""``otel-bridge doctor`` as a real subprocess: masked secrets, flagged problems, and
``--send-test`` against the recording ingest (accepting, failing, rate limiting) and a
closed port."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from tests.rig import Bugsink, CompletedRun, RecordingIngest, free_port, run_instrumented

KEY_CANARY = "c4n4rykey0123456789"
SECRET_CANARY = "s3cretcanary"
HEADER_CANARY = "tok-h3ader-canary"


def doctor(env: Mapping[str, str], *args: str) -> CompletedRun:
    return run_instrumented(["otel-bridge", "doctor", *args], env, instrument=False, timeout=60)


def problem_lines(run: CompletedRun) -> list[str]:
    return [line for line in run.stdout.splitlines() if line.lstrip().startswith("!!")]


def test_clean_configuration_exits_zero_and_masks_secrets() -> None:
    run = doctor(
        {
            "SENTRY_DSN": f"https://{KEY_CANARY}:{SECRET_CANARY}@o1.ingest.example/42",
            "OTEL_EXPORTER_OTLP_HEADERS": f"authorization=Bearer {HEADER_CANARY}",
            "SENTRY_TRACES_SAMPLE_RATE": "0.25",
            "DJANGO_SETTINGS_MODULE": "shop.settings",
        }
    )
    assert run.returncode == 0, run.stdout + run.stderr
    output = run.stdout + run.stderr
    for canary in (KEY_CANARY, SECRET_CANARY, HEADER_CANARY):
        assert canary not in output
    assert "https://***@o1.ingest.example/42" in run.stdout
    assert "authorization=***" in run.stdout
    assert "SENTRY_TRACES_SAMPLE_RATE" in run.stdout and "0.25" in run.stdout
    assert "No problems found." in run.stdout
    # what would load, and why
    assert "sentry  active" in run.stdout  # the distro's default exporter with a DSN
    assert "tracecontext" in run.stdout
    assert "otel-bridge: traceparent + sentry-trace" in run.stdout
    assert "django" in run.stdout


def test_invalid_dsn_is_flagged_without_printing_it() -> None:
    run = doctor({"SENTRY_DSN": f"https://{KEY_CANARY}@o1.ingest.example/not-a-project"})
    assert run.returncode == 1
    assert KEY_CANARY not in run.stdout + run.stderr
    problems = "\n".join(problem_lines(run))
    assert "SENTRY_DSN" in problems
    assert "not a valid DSN" in problems


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"SENTRY_TRACES_SAMPLE_RATE": "1.5"}, "SENTRY_TRACES_SAMPLE_RATE"),
        ({"SENTRY_TRACES_SAMPLE_RATE": "-0.1"}, "between 0 and 1"),
        ({"OTEL_TRACES_SAMPLER_ARG": "7"}, "OTEL_TRACES_SAMPLER_ARG"),
        ({"OTEL_TRACES_EXPORTER": "sentry,zipkin"}, "zipkin"),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
         "opentelemetry-exporter-otlp-proto-grpc"),
        ({"OTEL_PROPAGATORS": "tracecontext,b3"}, "ignored, with one warning"),
        ({"OTEL_PROPAGATORS": "b3", "OTEL_PYTHON_DISTRO": "nope"}, "start-up hook"),
        ({"DJANGO_SETTINGS_MODULE": ""}, "DJANGO_SETTINGS_MODULE is not in the environment"),
        ({"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "requestz"}, "requestz"),
        ({"OTEL_PYTHON_DISTRO": "otel-bridge"}, "OTEL_PYTHON_DISTRO='otel-bridge'"),
        ({"OTEL_BRIDGE_SAMPLING_RULES": "/health=2"}, "outside [0, 1]"),
        ({"OTEL_PYTHON_ID_GENERATOR": "xrayy"}, "no installed id generator"),
        ({"OTEL_TRACES_SAMPLER": "xray"}, "OTEL_TRACES_SAMPLER='xray' ignored"),
        # set but empty: the loader matches no name with it (it said "none installed")
        ({"OTEL_PYTHON_CONFIGURATOR": ""},
         "OTEL_PYTHON_CONFIGURATOR='' matches no installed configurator"),
    ],
)
def test_problems_are_flagged(env: dict[str, str], expected: str) -> None:
    base = {"SENTRY_DSN": "https://key@o1.ingest.example/42",
            "DJANGO_SETTINGS_MODULE": "shop.settings"}
    run = doctor({**base, **env})
    assert run.returncode == 1, run.stdout
    assert any(expected in line for line in problem_lines(run)), run.stdout


def test_an_instrumentation_is_shown_as_opentelemetry_instrument_loads_it(tmp_path: Path) -> None:
    # Django reporting 4.1 where django_commands declares >= 4.2: the loader checks only a
    # distribution's `instruments` extra (otel-bridge has none) and instruments with
    # skip_dep_check=True, so it is active. The doctor said "skipped" and flagged a problem.
    fake = tmp_path / "django-4.1.0.dist-info"
    fake.mkdir()
    (fake / "METADATA").write_text("Metadata-Version: 2.1\nName: Django\nVersion: 4.1.0\n")
    run = doctor({"PYTHONPATH": str(tmp_path), "DJANGO_SETTINGS_MODULE": "shop.settings"})
    line = next(line for line in run.stdout.splitlines() if "django_commands" in line)
    assert "active" in line and "django 4.1.0" in line, run.stdout
    assert not line.lstrip().startswith("!!")
    wrapped = run_instrumented(
        ["python", "-c", "from django.core.management.base import BaseCommand; "
         "print(hasattr(BaseCommand.execute, '__wrapped__'))"],
        {"PYTHONPATH": str(tmp_path), "DJANGO_SETTINGS_MODULE": "shop.settings"},
        timeout=60,
    )
    assert wrapped.stdout.strip().splitlines()[-1] == "True", wrapped.stdout + wrapped.stderr


def test_disabled_instrumentation_is_shown_as_disabled() -> None:
    run = doctor({"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "requests"})
    line = next(line for line in run.stdout.splitlines() if line.strip().startswith("requests"))
    assert "disabled" in line


def test_send_test_accepted(ingest: RecordingIngest) -> None:
    dsn = ingest.make_dsn(public_key=KEY_CANARY)
    run = doctor({"SENTRY_DSN": dsn, "SENTRY_ENVIRONMENT": "doctor-test"}, "--send-test")
    assert run.returncode == 0, run.stdout + run.stderr
    assert KEY_CANARY not in run.stdout + run.stderr
    assert "The ingest accepted both." in run.stdout
    [event] = ingest.events("event")
    [transaction] = ingest.events("transaction")
    assert "doctor test error" in event["exception"]["values"][-1]["value"]
    assert event["environment"] == transaction["environment"] == "doctor-test"
    trace_id = transaction["contexts"]["trace"]["trace_id"]
    assert event["contexts"]["trace"]["trace_id"] == trace_id
    assert trace_id in run.stdout
    assert [s["description"] for s in transaction["spans"]] == ["test span"]
    assert KEY_CANARY in (ingest.envelopes[0].auth or "")  # the key went where it belongs


def test_send_test_connection_refused() -> None:
    run = doctor({"SENTRY_DSN": f"http://key@127.0.0.1:{free_port()}/42"}, "--send-test")
    assert run.returncode == 1
    assert "connection refused" in run.stdout
    assert "did NOT accept" in run.stdout


@pytest.mark.parametrize(
    ("status", "headers", "message"),
    [
        (500, {}, "HTTP 500"),
        (403, {}, "DSN's key or project is not accepted"),
        (429, {"Retry-After": "60"}, "rate limited by the ingest: HTTP 429 (Retry-After: 60)"),
    ],
)
def test_send_test_rejected(
    ingest: RecordingIngest, status: int, headers: dict[str, str], message: str
) -> None:
    ingest.respond_with(status, headers)
    run = doctor({"SENTRY_DSN": ingest.dsn}, "--send-test")
    assert run.returncode == 1, run.stdout
    assert message in run.stdout
    assert len(ingest.received) >= 1  # it did reach the ingest


def test_send_test_rate_limited_transactions_are_reported(ingest: RecordingIngest) -> None:
    # Bugsink's answer to every envelope: accepted, but no transactions for a day.
    ingest.respond_with(200, {"X-Sentry-Rate-Limits": "86400:transaction:key"})
    run = doctor({"SENTRY_DSN": ingest.dsn}, "--send-test")
    assert run.returncode == 0, run.stdout
    assert "X-Sentry-Rate-Limits: 86400:transaction:key" in run.stdout


def test_send_test_without_dsn() -> None:
    run = doctor({}, "--send-test")
    assert run.returncode == 1
    assert "SENTRY_DSN is not set" in run.stdout


def test_send_test_against_bugsink(bugsink: Bugsink) -> None:
    run = doctor({"SENTRY_DSN": bugsink.dsn}, "--send-test")
    assert run.returncode == 0, run.stdout + run.stderr
    trace_id = run.stdout.split("trace id ", 1)[1].split()[0]
    [event] = bugsink.wait_for_events(lambda e: e.trace_id == trace_id)
    assert event.exception_type == "DoctorTestError"
    assert "otel-bridge doctor test error" in (event.exception_value or "")
