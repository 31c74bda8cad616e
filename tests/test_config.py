"""The settings table: parsing, clear problems, and the docs generated from it."""

from __future__ import annotations

from pathlib import Path

from otel_bridge.config import SETTINGS, load_config, markdown_table, masked

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_defaults_when_nothing_is_set() -> None:
    config = load_config({})
    assert config.dsn is None
    assert config.span_errors == "server"
    assert config.scrub_enabled is True
    assert config.problems == ()
    assert config.effective_sample_rate({}) == 1.0


def test_values_parse() -> None:
    config = load_config(
        {
            "SENTRY_DSN": "https://abc@o1.ingest.example.com/42",
            "SENTRY_TRACES_SAMPLE_RATE": "0.25",
            "SENTRY_DEBUG": "yes",
            "SENTRY_TRACE_PROPAGATION_TARGETS": r"^https://api\.internal/, localhost",
            "OTEL_BRIDGE_SPAN_ERRORS": "ALL",
            "OTEL_BRIDGE_LOG_EVENT_LEVEL": "warn",
            "OTEL_BRIDGE_DJANGO_ERRORS": " Sentry ",
            "OTEL_BRIDGE_COMPRESSION": "NONE",
            "OTEL_BRIDGE_COMPRESSION_THRESHOLD": "0",
        }
    )
    assert config.problems == ()
    assert config.compression_threshold == 0
    assert config.django_errors == "sentry"
    assert config.compression == "none"
    assert config.traces_sample_rate == 0.25
    assert config.debug is True
    assert config.trace_propagation_targets == (r"^https://api\.internal/", "localhost")
    assert config.span_errors == "all"
    assert config.log_event_level == "WARNING"


def test_bad_values_keep_defaults_and_explain_once() -> None:
    config = load_config(
        {
            "SENTRY_DSN": "not-a-dsn",
            "SENTRY_TRACES_SAMPLE_RATE": "1.5",
            "OTEL_BRIDGE_MAX_PENDING_SPANS": "-3",
            "SENTRY_TRACE_PROPAGATION_TARGETS": "([",
            "OTEL_BRIDGE_DJANGO_ERRORS": "integration",
            "OTEL_BRIDGE_COMPRESSION": "brotli",
            "OTEL_BRIDGE_COMPRESSION_THRESHOLD": "-1",
        }
    )
    assert config.compression_threshold == 32768
    assert config.dsn is None
    assert (config.django_errors, config.compression) == ("lean", "gzip")
    assert config.traces_sample_rate is None
    assert config.max_pending_spans == 20_000
    problems = {problem.env: str(problem) for problem in config.problems}
    assert set(problems) == {
        "SENTRY_DSN",
        "SENTRY_TRACES_SAMPLE_RATE",
        "OTEL_BRIDGE_MAX_PENDING_SPANS",
        "SENTRY_TRACE_PROPAGATION_TARGETS",
        "OTEL_BRIDGE_DJANGO_ERRORS",
        "OTEL_BRIDGE_COMPRESSION",
        "OTEL_BRIDGE_COMPRESSION_THRESHOLD",
    }
    assert "expected an integer >= 0" in problems["OTEL_BRIDGE_COMPRESSION_THRESHOLD"]
    assert "expected one of lean, sentry" in problems["OTEL_BRIDGE_DJANGO_ERRORS"]
    assert "between 0 and 1" in problems["SENTRY_TRACES_SAMPLE_RATE"]
    assert "not-a-dsn" not in problems["SENTRY_DSN"]  # a DSN is a secret, even a broken one


def test_sampler_arg_is_the_fallback_rate() -> None:
    config = load_config({})
    assert config.effective_sample_rate({"OTEL_TRACES_SAMPLER_ARG": "0.1"}) == 0.1
    assert config.effective_sample_rate({"OTEL_TRACES_SAMPLER_ARG": "nonsense"}) == 1.0
    explicit = load_config({"SENTRY_TRACES_SAMPLE_RATE": "0"})
    assert explicit.effective_sample_rate({"OTEL_TRACES_SAMPLER_ARG": "0.1"}) == 0.0


def test_secrets_are_masked() -> None:
    dsn_setting = next(setting for setting in SETTINGS if setting.env == "SENTRY_DSN")
    shown = masked(dsn_setting, "https://secretkey@o1.ingest.example.com/42")
    assert "secretkey" not in shown and "o1.ingest.example.com/42" in shown


def test_docs_list_every_setting_exactly_as_generated() -> None:
    text = (DOCS / "configuration.md").read_text()
    assert markdown_table() in text, "regenerate with: python -m otel_bridge.config"
    for setting in SETTINGS:
        assert f"`{setting.env}`" in text
