"""The settings table: parsing, clear problems, and the docs generated from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from otel_bridge.config import (
    SETTINGS,
    load_config,
    markdown_table,
    masked,
    otel_sampler_notice,
)

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


@pytest.mark.parametrize(
    ("sampler", "expected"),
    [
        ("always_on", 1.0),
        ("ALWAYS_OFF", 0.0),
        ("parentbased_always_off", 0.0),
        ("parentbased_always_on", 1.0),
        ("traceidratio", 0.25),
        ("parentbased_traceidratio", 0.25),
        ("otel_bridge", 0.25),
        ("xray", 0.25),  # names no rate: the argument still does
    ],
)
def test_otel_sampler_names_set_the_rate(sampler: str, expected: float) -> None:
    env = {"OTEL_TRACES_SAMPLER": sampler, "OTEL_TRACES_SAMPLER_ARG": "0.25"}
    assert load_config(env).effective_sample_rate(env) == expected


def test_sentry_rate_wins_over_an_otel_sampler_name_and_says_so() -> None:
    env = {"OTEL_TRACES_SAMPLER": "always_off", "SENTRY_TRACES_SAMPLE_RATE": "0.5"}
    config = load_config(env)
    assert config.effective_sample_rate(env) == 0.5
    notice = otel_sampler_notice(env, config.traces_sample_rate)
    assert notice is not None and "overridden by SENTRY_TRACES_SAMPLE_RATE=0.5" in notice[0]


@pytest.mark.parametrize(
    ("sampler", "expected", "problem"),
    [
        ("", None, False),
        ("otel_bridge", None, False),
        ("parentbased_always_off", None, False),
        ("always_off", "read as 'parentbased_always_off'", False),
        ("TraceIdRatio", "read as 'parentbased_traceidratio'", False),
        ("xray", "'xray' ignored", True),
    ],
)
def test_otel_sampler_names_read_otherwise_than_otel_are_explained(
    sampler: str, expected: str | None, problem: bool
) -> None:
    notice = otel_sampler_notice({"OTEL_TRACES_SAMPLER": sampler})
    if expected is None:
        assert notice is None
    else:
        assert notice is not None and expected in notice[0] and notice[1] is problem


def test_secrets_are_masked() -> None:
    dsn_setting = next(setting for setting in SETTINGS if setting.env == "SENTRY_DSN")
    shown = masked(dsn_setting, "https://secretkey@o1.ingest.example.com/42")
    assert "secretkey" not in shown and "o1.ingest.example.com/42" in shown


def test_docs_list_every_setting_exactly_as_generated() -> None:
    text = (DOCS / "configuration.md").read_text()
    assert markdown_table() in text, "regenerate with: python -m otel_bridge.config"
    for setting in SETTINGS:
        assert f"`{setting.env}`" in text


def test_cron_timezone_is_checked_as_sentry_checks_it() -> None:
    assert load_config({"OTEL_BRIDGE_CRON_TIMEZONE": "Europe/Berlin"}).cron_timezone == (
        "Europe/Berlin"
    )
    config = load_config({"OTEL_BRIDGE_CRON_TIMEZONE": "posix/Europe/Berlin"})
    assert config.cron_timezone is None
    assert [problem.env for problem in config.problems] == ["OTEL_BRIDGE_CRON_TIMEZONE"]
