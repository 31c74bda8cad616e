"""Cron monitoring: ``otel_bridge.crons.monitor`` against a real sentry-sdk and the
recording ingest (check-ins), an in-memory OTel exporter (spans), and end to end under
``opentelemetry-instrument`` (check-ins and the job's transaction share one trace)."""

from __future__ import annotations

import asyncio
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sentry_sdk
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from otel_bridge.crons import (
    build_monitor_config,
    monitor,
    parse_cron_monitors,
    parse_schedule,
)
from tests.rig import RecordingIngest, run_instrumented


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


@pytest.fixture
def sentry(ingest: RecordingIngest) -> Iterator[RecordingIngest]:
    sentry_sdk.init(dsn=ingest.dsn, default_integrations=False, environment="crons-test")
    try:
        yield ingest
    finally:
        sentry_sdk.get_client().close(timeout=2)
        sentry_sdk.get_global_scope().set_client(None)


def check_ins(ingest: RecordingIngest, count: int) -> list[dict[str, Any]]:
    sentry_sdk.flush(timeout=5)
    return ingest.wait_for_items("check_in", count)


def only_span(exporter: InMemorySpanExporter) -> ReadableSpan:
    [span] = exporter.get_finished_spans()
    return span


def hex_trace(span: ReadableSpan) -> str:
    assert span.context is not None
    return format(span.context.trace_id, "032x")


# -- schedules -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ("*/5 * * * *", {"type": "crontab", "value": "*/5 * * * *"}),
        ("  0 3 * * 1-5 ", {"type": "crontab", "value": "0 3 * * 1-5"}),
        ("@daily", {"type": "crontab", "value": "0 0 * * *"}),
        ("0,30 8-18/2 L JAN-MAR mon#2,5L", {
            "type": "crontab", "value": "0,30 8-18/2 L JAN-MAR mon#2,5L",
        }),
        ("0 0 LW * 7", {"type": "crontab", "value": "0 0 LW * 7"}),
        ("5m", {"type": "interval", "value": 5, "unit": "minute"}),
        ("2 hours", {"type": "interval", "value": 2, "unit": "hour"}),
        ((10, "minutes"), {"type": "interval", "value": 10, "unit": "minute"}),
        ((1, "week"), {"type": "interval", "value": 1, "unit": "week"}),
    ],
)
def test_parse_schedule(schedule: Any, expected: dict[str, Any]) -> None:
    assert parse_schedule(schedule) == expected


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ("30s", "seconds"),
        ("* * *", "5-field crontab"),
        ((0, "minute"), "positive"),
        ((5, "fortnight"), "unknown interval unit"),
        ("every day", "5-field crontab"),
        # what Sentry's crontab reader (cronsim) refuses: the monitor would never be created
        ("61 * * * *", "Bad minute"),
        ("*/0 * * * *", "Bad minute"),
        ("5-1 * * * *", "Bad minute"),
        ("1,,2 * * * *", "Bad minute"),
        ("foo bar baz qux quux", "Bad minute"),
        ("0 24 * * *", "Bad hour"),
        ("0 0 0 * *", "Bad day-of-month"),
        ("0 0 31 2 *", "Bad day-of-month"),  # 31 February never comes
        ("0 0 15W * *", "Bad day-of-month"),
        ("0 0 ? * MON-FRI", "Bad day-of-month"),
        ("0 0 * 13 *", "Bad month"),
        ("0 0 * JUNE *", "Bad month"),
        ("0 0 * * 8", "Bad day-of-week"),
        ("0 0 * * MON#6", "Bad day-of-week"),
    ],
)
def test_parse_schedule_rejects(schedule: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_schedule(schedule)


def test_monitor_config_options_need_a_schedule() -> None:
    assert build_monitor_config(None) is None
    with pytest.raises(ValueError, match="need"):
        build_monitor_config(None, max_runtime=5)
    config = build_monitor_config(
        "0 * * * *", timezone="Europe/Berlin", checkin_margin=2, max_runtime=10,
        failure_issue_threshold=3, recovery_threshold=2,
    )
    assert config == {
        "schedule": {"type": "crontab", "value": "0 * * * *"},
        "timezone": "Europe/Berlin",
        "checkin_margin": 2,
        "max_runtime": 10,
        "failure_issue_threshold": 3,
        "recovery_threshold": 2,
    }


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"timezone": "Not/AZone"}, "tz database name"),
        # ZoneInfo loads these, Sentry's validator refuses them and creates no monitor
        ({"timezone": "Factory"}, "tz database name"),
        ({"timezone": "posixrules"}, "tz database name"),
        ({"timezone": "posix/Europe/Berlin"}, "tz database name"),
        ({"timezone": "right/UTC"}, "tz database name"),
        ({"max_runtime": 0}, "max_runtime must be 1-40320"),
        ({"checkin_margin": 50_000}, "checkin_margin must be 1-40320"),
        ({"failure_issue_threshold": 0}, "1-720"),
        ({"recovery_threshold": 1_000}, "1-720"),
    ],
)
def test_monitor_config_options_sentry_would_refuse_are_refused(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        build_monitor_config("0 * * * *", **options)


def test_parse_cron_monitors() -> None:
    assert parse_cron_monitors("shop_report=*/5 * * * *; cleanup = 1h ;") == {
        "shop_report": "*/5 * * * *",
        "cleanup": "1h",
    }
    with pytest.raises(ValueError, match="cleanup"):
        parse_cron_monitors("cleanup=every day")
    with pytest.raises(ValueError, match=r"shop_report: .*Bad minute"):
        parse_cron_monitors("shop_report=61 * * * *")
    with pytest.raises(ValueError, match="name=schedule"):
        parse_cron_monitors("shop_report")


# -- in process: check-ins and spans ---------------------------------------------------------


def test_decorator_ok_sends_in_progress_then_ok(sentry: RecordingIngest, spans: Any) -> None:
    provider, exporter = spans

    @monitor("nightly-report", schedule="0 3 * * *", timezone="UTC", max_runtime=30,
             tracer_provider=provider)
    def nightly_report(x: int) -> int:
        return x * 2

    assert nightly_report(21) == 42
    started, finished = check_ins(sentry, 2)
    span = only_span(exporter)

    assert [started["status"], finished["status"]] == ["in_progress", "ok"]
    assert started["monitor_slug"] == finished["monitor_slug"] == "nightly-report"
    assert started["check_in_id"] == finished["check_in_id"]
    assert started["duration"] is None
    assert isinstance(finished["duration"], float) and finished["duration"] >= 0
    assert finished["monitor_config"] == {
        "schedule": {"type": "crontab", "value": "0 3 * * *"},
        "timezone": "UTC",
        "max_runtime": 30,
    }
    assert finished["environment"] == "crons-test"
    for check_in in (started, finished):
        assert check_in["contexts"]["trace"]["trace_id"] == hex_trace(span)

    assert span.parent is None  # a local root: the pipeline makes it a transaction
    assert span.name == "nightly-report"
    assert span.kind == trace.SpanKind.INTERNAL
    assert span.status.status_code == StatusCode.UNSET
    attributes: dict[str, Any] = dict(span.attributes or {})
    assert attributes["sentry.op"] == "cron"
    assert attributes["sentry.source"] == "task"
    assert attributes["sentry.monitor.slug"] == "nightly-report"
    assert attributes["sentry.monitor.check_in_id"] == started["check_in_id"]
    assert attributes["code.function"].endswith("nightly_report")
    assert attributes["code.function.name"] == f"{__name__}.{attributes['code.function']}"


def test_context_manager_error_sends_error_and_reraises(
    sentry: RecordingIngest, spans: Any
) -> None:
    provider, exporter = spans
    with pytest.raises(KeyError, match="missing"), monitor(
        "cleanup", schedule=(5, "minute"), tracer_provider=provider
    ):
        raise KeyError("missing")

    started, finished = check_ins(sentry, 2)
    span = only_span(exporter)
    assert [started["status"], finished["status"]] == ["in_progress", "error"]
    assert finished["monitor_config"]["schedule"] == {
        "type": "interval", "value": 5, "unit": "minute",
    }
    assert finished["duration"] >= 0
    assert finished["contexts"]["trace"]["trace_id"] == hex_trace(span)
    assert span.status.status_code == StatusCode.ERROR
    assert "KeyError" in (span.status.description or "")
    [event] = span.events
    assert event.name == "exception"
    assert (event.attributes or {})["exception.type"] == "KeyError"


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise TypeError("no text for this one")


def test_an_exception_that_cannot_be_printed_still_ends_the_run(
    sentry: RecordingIngest, spans: Any
) -> None:
    """The job's own exception reaches the caller, the error check-in goes out, the span
    ends and the context is restored, whatever its str() does."""
    provider, exporter = spans

    @monitor("odd-job", schedule="1h", tracer_provider=provider)
    def job() -> None:
        raise _Unprintable()

    with pytest.raises(_Unprintable):
        job()
    started, finished = check_ins(sentry, 2)
    assert [started["status"], finished["status"]] == ["in_progress", "error"]
    span = only_span(exporter)
    assert span.status.status_code == StatusCode.ERROR
    assert span.status.description == "_Unprintable"
    assert not trace.get_current_span().get_span_context().is_valid


def test_async_decorator(sentry: RecordingIngest, spans: Any) -> None:
    provider, exporter = spans

    @monitor("async-job", tracer_provider=provider)
    async def job() -> str:
        await asyncio.sleep(0)
        return "done"

    assert asyncio.run(job()) == "done"
    started, finished = check_ins(sentry, 2)
    assert [started["status"], finished["status"]] == ["in_progress", "ok"]
    assert "monitor_config" not in finished  # no schedule: the monitor is not upserted
    assert finished["contexts"]["trace"]["trace_id"] == hex_trace(only_span(exporter))


def test_async_decorator_error(sentry: RecordingIngest, spans: Any) -> None:
    provider, exporter = spans

    @monitor("async-fail", tracer_provider=provider)
    async def job() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        asyncio.run(job())
    _, finished = check_ins(sentry, 2)
    assert finished["status"] == "error"
    assert only_span(exporter).status.status_code == StatusCode.ERROR


def test_monitor_inside_a_trace_is_a_child_on_that_trace(
    sentry: RecordingIngest, spans: Any
) -> None:
    provider, exporter = spans
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("celery.run") as parent, monitor(
        "child-job", tracer_provider=provider
    ):
        pass
    _, finished = check_ins(sentry, 2)
    job = next(s for s in exporter.get_finished_spans() if s.name == "child-job")
    assert job.parent is not None and job.parent.span_id == parent.get_span_context().span_id
    assert finished["contexts"]["trace"]["trace_id"] == hex_trace(job)


def test_concurrent_runs_of_one_decorated_job_are_separate(
    sentry: RecordingIngest, spans: Any
) -> None:
    provider, exporter = spans
    barrier = threading.Barrier(2)

    @monitor("parallel", tracer_provider=provider)
    def job() -> None:
        barrier.wait(timeout=10)

    threads = [threading.Thread(target=job) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    items = check_ins(sentry, 4)
    ids = {item["check_in_id"] for item in items}
    assert len(ids) == 2
    for check_in_id in ids:
        statuses = [i["status"] for i in items if i["check_in_id"] == check_in_id]
        assert statuses == ["in_progress", "ok"]
    assert len({s.context.trace_id for s in exporter.get_finished_spans()}) == 2


def test_sys_exit_zero_is_ok(sentry: RecordingIngest, spans: Any) -> None:
    provider, _ = spans
    with pytest.raises(SystemExit), monitor("exits", tracer_provider=provider):
        sys.exit(0)
    _, finished = check_ins(sentry, 2)
    assert finished["status"] == "ok"


def test_without_sentry_the_span_still_happens(spans: Any) -> None:
    provider, exporter = spans
    assert not sentry_sdk.get_client().is_active()

    @monitor("offline", schedule="1h", tracer_provider=provider)
    def job() -> int:
        return 1

    assert job() == 1
    span = only_span(exporter)
    assert span.name == "offline"
    assert "sentry.monitor.check_in_id" not in (span.attributes or {})


def test_bad_schedule_fails_at_decoration() -> None:
    with pytest.raises(ValueError, match="crontab"):
        monitor("bad", schedule="every now and then")


# -- end to end under opentelemetry-instrument ---------------------------------------------

JOB_SCRIPT = textwrap.dedent(
    """
    from otel_bridge.crons import monitor

    @monitor("e2e-ok", schedule="*/10 * * * *")
    def ok_job():
        return 1

    ok_job()
    try:
        with monitor("e2e-fail", schedule="1h"):
            raise ValueError("job failed")
    except ValueError:
        pass
    """
)


def test_check_ins_and_transactions_share_the_trace(
    ingest: RecordingIngest, tmp_path: Path
) -> None:
    script = tmp_path / "job.py"
    script.write_text(JOB_SCRIPT)
    run = run_instrumented(
        ["python", str(script)],
        {"SENTRY_DSN": ingest.dsn, "OTEL_SERVICE_NAME": "jobs"},
    )
    assert run.returncode == 0, run.stderr
    items = ingest.wait_for_items("check_in", 4)
    transactions = ingest.wait_for_items("transaction", 2)
    by_name = {t["transaction"]: t for t in transactions}
    for slug, final in (("e2e-ok", "ok"), ("e2e-fail", "error")):
        mine = [i for i in items if i["monitor_slug"] == slug]
        assert [i["status"] for i in mine] == ["in_progress", final]
        transaction = by_name[slug]
        trace_context = transaction["contexts"]["trace"]
        assert trace_context["op"] == "cron"
        assert transaction["transaction_info"]["source"] == "task"
        for check_in in mine:
            assert check_in["contexts"]["trace"]["trace_id"] == trace_context["trace_id"]
            assert check_in["contexts"]["trace"]["span_id"] == trace_context["span_id"]
    assert by_name["e2e-fail"]["contexts"]["trace"]["status"] != "ok"
