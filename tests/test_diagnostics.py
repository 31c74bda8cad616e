"""Start-up diagnostics: one log line per configuration problem, and the trace exporter
names the SDK would (not) resolve."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from otel_bridge.config import load_config
from otel_bridge.diagnostics import (
    describe_unknown_exporter,
    keep_own_warnings_visible,
    report_config_problems,
    resolve_exporter_name,
    validate_exporter_names,
    validate_propagator_names,
)
from tests.rig import run_instrumented

HTTP = {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}


def test_each_problem_is_logged_once_with_secrets_masked(caplog: pytest.LogCaptureFixture) -> None:
    config = load_config(
        {
            "SENTRY_DSN": "https://canarykey@o1.example/not-a-number",
            "SENTRY_TRACES_SAMPLE_RATE": "1.7",
            "OTEL_BRIDGE_SHUTDOWN_TIMEOUT": "-1",
        }
    )
    assert len(config.problems) == 3
    logger = logging.getLogger("test.diagnostics")
    with caplog.at_level(logging.WARNING, logger="test.diagnostics"):
        report_config_problems(config.problems, logger)
        report_config_problems(config.problems, logger)  # configurator and CLI both call it
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 3
    assert all(line.startswith("otel-bridge: ") for line in lines)
    assert all("\n" not in line for line in lines)
    assert not any("canarykey" in line for line in lines)
    rate = next(line for line in lines if "SENTRY_TRACES_SAMPLE_RATE" in line)
    assert "'1.7'" in rate and "between 0 and 1" in rate and "using the default (1.0)" in rate
    dsn = next(line for line in lines if "SENTRY_DSN" in line)
    assert "not a valid DSN" in dsn


@pytest.mark.parametrize(
    ("names", "env", "known", "unknown"),
    [
        (None, {}, [], []),
        ("none", {}, [], []),
        ("sentry", {}, ["sentry"], []),
        (" sentry , console ", {}, ["sentry", "console"], []),
        ("sentry,zipkin", {}, ["sentry"], ["zipkin"]),
        ("sentry,none", {}, ["sentry"], []),
        ("sentry,sentry", {}, ["sentry"], []),
        ("otlp", HTTP, ["otlp"], []),
        ("otlp_proto_http", {}, ["otlp_proto_http"], []),
        # gRPC is what `otlp` means without a protocol, and it is not installed here
        ("otlp", {}, [], ["otlp"]),
        ("otlp_proto_grpc", HTTP, [], ["otlp_proto_grpc"]),
        ("otlp", {"OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon"}, [], ["otlp"]),
        ("Sentry", {}, [], ["Sentry"]),
    ],
)
def test_validate_exporter_names(
    names: str | None, env: dict[str, str], known: list[str], unknown: list[str]
) -> None:
    assert validate_exporter_names(names, env) == (known, unknown)


def test_traces_protocol_wins_over_the_general_one() -> None:
    env = {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
           "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}
    assert resolve_exporter_name("otlp", env) == "otlp_proto_http"


def test_unknown_exporters_are_explained() -> None:
    assert "opentelemetry-exporter-otlp-proto-grpc" in describe_unknown_exporter("otlp", {})
    assert "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf" in describe_unknown_exporter("otlp", {})
    assert "case-sensitive" in describe_unknown_exporter("Sentry", {})
    zipkin = describe_unknown_exporter("zipkin", {})
    assert "no installed trace exporter" in zipkin and "sentry" in zipkin


def test_validate_propagator_names() -> None:
    assert validate_propagator_names("tracecontext, baggage,b3,none") == (
        ["tracecontext", "baggage"], ["b3"],
    )


def test_bad_configuration_at_start_up_is_one_line_each_and_the_app_runs(
    tmp_path: Path,
) -> None:
    app = tmp_path / "app.py"
    app.write_text("print('app ran')\n")
    run = run_instrumented(
        ["python", str(app)],
        {
            "SENTRY_DSN": "https://canarykey@o1.example/not-a-number",
            "SENTRY_TRACES_SAMPLE_RATE": "2",
            "OTEL_TRACES_EXPORTER": "console,zipkin",
        },
    )
    assert run.returncode == 0, run.stderr
    assert "app ran" in run.stdout
    assert "canarykey" not in run.stdout + run.stderr
    lines = [line for line in run.stderr.splitlines() if line.startswith("otel-bridge:")]
    for needle in ("SENTRY_DSN", "SENTRY_TRACES_SAMPLE_RATE", "zipkin"):
        assert len([line for line in lines if needle in line]) == 1, run.stderr


class LoggingHandler(logging.Handler):  # named like OTel's, as the check goes by name
    records: list[logging.LogRecord]

    def __init__(self) -> None:
        super().__init__()
        self.records = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


LoggingHandler.__module__ = "opentelemetry.instrumentation.logging.handler"


@pytest.fixture
def isolated_logging() -> Iterator[tuple[logging.Logger, logging.Logger, io.StringIO]]:
    """A logger tree of its own (`root` stands in for the root logger) and a stderr."""
    root = logging.getLogger("diagtest")
    own = logging.getLogger("diagtest.otel_bridge")
    saved = (root.handlers[:], own.handlers[:], logging.lastResort)
    stderr = io.StringIO()
    logging.lastResort = logging.StreamHandler(stderr)
    logging.lastResort.setLevel(logging.WARNING)
    own.handlers[:] = []
    root.propagate = False  # the real root logger of the test run is not part of it
    try:
        yield root, own, stderr
    finally:
        root.handlers[:], own.handlers[:], logging.lastResort = saved
        root.propagate = True


def test_own_warnings_reach_stderr_when_only_otel_handles_logging(
    isolated_logging: tuple[logging.Logger, logging.Logger, io.StringIO],
) -> None:
    root, own, stderr = isolated_logging
    root.handlers[:] = [LoggingHandler()]  # here: pytest adds its capture handlers late
    keep_own_warnings_visible(own)
    keep_own_warnings_visible(own)  # idempotent
    own.warning("queue full")
    own.info("not worth a line")
    assert stderr.getvalue() == "queue full\n"
    assert [r.getMessage() for r in root.handlers[0].records] == ["queue full"]  # type: ignore[attr-defined]


def test_own_warnings_are_not_repeated_when_the_application_logs_somewhere(
    isolated_logging: tuple[logging.Logger, logging.Logger, io.StringIO],
) -> None:
    root, own, stderr = isolated_logging
    appl_output = io.StringIO()
    root.handlers[:] = [LoggingHandler(), logging.StreamHandler(appl_output)]
    keep_own_warnings_visible(own)
    own.warning("queue full")
    assert stderr.getvalue() == ""
    assert appl_output.getvalue() == "queue full\n"
