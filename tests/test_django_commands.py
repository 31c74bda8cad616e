"""Django management commands become transactions (``django_commands`` instrumentation).

The sample shop's ``shop_report`` command runs under ``opentelemetry-instrument`` with
``SENTRY_DSN`` at the recording ingest; contrib's Django instrumentation alone would send
its two queries as unrelated root spans."""

from __future__ import annotations

import importlib.util
import json
import textwrap
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

from tests.rig import REPO_ROOT, RecordingIngest, run_instrumented
from tests.rig.shop import SHOP_DIR, run_shop_command

ENTRY_POINT = (
    "django_commands = otel_bridge_instrumentation_django_commands:DjangoCommandsInstrumentor"
)


@pytest.fixture
def plugin_env(tmp_path: Path) -> dict[str, str]:
    """Environment making the instrumentation loadable even before the package is
    reinstalled with its entry point (then this adds nothing)."""
    paths: list[str] = []
    registered = any(
        ep.name == "django_commands" for ep in entry_points(group="opentelemetry_instrumentor")
    )
    if not registered:
        # importlib.metadata finds *.dist-info on sys.path: a stand-in for the real entry.
        dist_info = tmp_path / "shim" / "otel_bridge_django_commands_shim-0.0.dist-info"
        dist_info.mkdir(parents=True)
        (dist_info / "METADATA").write_text(
            "Metadata-Version: 2.1\nName: otel-bridge-django-commands-shim\nVersion: 0.0\n"
        )
        (dist_info / "entry_points.txt").write_text(
            f"[opentelemetry_instrumentor]\n{ENTRY_POINT}\n"
        )
        paths.append(str(dist_info.parent))
    if importlib.util.find_spec("otel_bridge_instrumentation_django_commands") is None:
        paths.append(str(REPO_ROOT / "instrumentations"))
    return {"PYTHONPATH": ":".join(paths)} if paths else {}


def transactions_named(ingest: RecordingIngest, name: str) -> list[dict[str, Any]]:
    return [t for t in ingest.events("transaction") if t.get("transaction") == name]


def test_command_becomes_a_transaction_with_its_queries(
    ingest: RecordingIngest, plugin_env: dict[str, str]
) -> None:
    run = run_shop_command(["shop_report"], {"SENTRY_DSN": ingest.dsn, **plugin_env})
    assert run.returncode == 0, run.stderr
    assert "shop_report:" in run.stdout
    ingest.wait_for(lambda i: transactions_named(i, "manage.py shop_report"))
    [transaction] = transactions_named(ingest, "manage.py shop_report")
    trace_context = transaction["contexts"]["trace"]
    assert trace_context["op"] == "task"
    assert trace_context["status"] == "ok"
    assert transaction["transaction_info"]["source"] == "task"
    queries = [s["description"] for s in transaction["spans"] if s["op"] == "db"]
    assert any("FROM shop_order" in q for q in queries), transaction["spans"]
    assert any("FROM order_line" in q for q in queries), transaction["spans"]
    assert all(s["trace_id"] == trace_context["trace_id"] for s in transaction["spans"])
    # the queries are inside the command's transaction, not transactions of their own
    assert not [t for t in ingest.events("transaction") if t["transaction"].startswith("SELECT")]


def test_disabled_by_otel_python_disabled_instrumentations(
    ingest: RecordingIngest, plugin_env: dict[str, str]
) -> None:
    run = run_shop_command(
        ["shop_report"],
        {
            "SENTRY_DSN": ingest.dsn,
            "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "django_commands",
            **plugin_env,
        },
    )
    assert run.returncode == 0, run.stderr
    # the process has exited: whatever it sent has arrived
    assert transactions_named(ingest, "manage.py shop_report") == []


@pytest.mark.parametrize("timezone", [None, "Europe/Berlin"])
def test_cron_monitor_from_environment(
    ingest: RecordingIngest, plugin_env: dict[str, str], timezone: str | None
) -> None:
    # With OTEL_BRIDGE_CRON_TIMEZONE the crontab is read in the host's zone: a system cron
    # runs `*/5 3 * * *` in local time, which without a timezone Sentry reads as UTC and
    # flags every run of a non-UTC host as missed.
    run = run_shop_command(
        ["shop_report"],
        {
            "SENTRY_DSN": ingest.dsn,
            "OTEL_BRIDGE_CRON_MONITORS": "shop_report=*/5 3 * * *;other=1h",
            **({"OTEL_BRIDGE_CRON_TIMEZONE": timezone} if timezone else {}),
            **plugin_env,
        },
    )
    assert run.returncode == 0, run.stderr
    started, finished = ingest.wait_for_items("check_in", 2)
    [transaction] = transactions_named(ingest, "manage.py shop_report")
    assert [started["status"], finished["status"]] == ["in_progress", "ok"]
    assert finished["monitor_slug"] == "shop_report"
    for check_in in (started, finished):
        config = check_in["monitor_config"]
        assert config["schedule"] == {"type": "crontab", "value": "*/5 3 * * *"}
        assert config.get("timezone") == timezone
    assert finished["contexts"]["trace"]["trace_id"] == transaction["contexts"]["trace"]["trace_id"]


def test_failing_command_is_an_error_transaction_and_check_in(
    ingest: RecordingIngest, plugin_env: dict[str, str]
) -> None:
    run = run_shop_command(
        ["sqlmigrate", "no_such_app", "0001"],
        {"SENTRY_DSN": ingest.dsn, "OTEL_BRIDGE_CRON_MONITORS": "sqlmigrate=1h", **plugin_env},
    )
    assert run.returncode != 0
    _, finished = ingest.wait_for_items("check_in", 2)
    assert finished["status"] == "error"
    ingest.wait_for(lambda i: transactions_named(i, "manage.py sqlmigrate"))
    [transaction] = transactions_named(ingest, "manage.py sqlmigrate")
    assert transaction["contexts"]["trace"]["status"] != "ok"


def test_excluded_commands_are_not_traced(
    ingest: RecordingIngest, plugin_env: dict[str, str]
) -> None:
    run = run_shop_command(
        ["shop_report"],
        {
            "SENTRY_DSN": ingest.dsn,
            "OTEL_BRIDGE_DJANGO_COMMANDS_EXCLUDE": "shop_report",
            **plugin_env,
        },
    )
    assert run.returncode == 0, run.stderr
    assert transactions_named(ingest, "manage.py shop_report") == []


INSTRUMENT_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")
    import django
    django.setup()
    from django.core.management import call_command
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from otel_bridge_instrumentation_django_commands import DjangoCommandsInstrumentor

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor = DjangoCommandsInstrumentor()
    instrumentor.instrument(tracer_provider=provider, exclude_commands=["check"], monitors={})
    call_command("shop_report")
    call_command("check")
    traced = [(s.name, dict(s.attributes)) for s in exporter.get_finished_spans()]
    instrumentor.uninstrument()
    exporter.clear()
    call_command("shop_report")
    after = [s.name for s in exporter.get_finished_spans()]
    print(json.dumps({"traced": traced, "after": after}))
    """
)


def test_instrument_and_uninstrument_in_process(tmp_path: Path) -> None:
    script = tmp_path / "instrument_commands.py"
    script.write_text(INSTRUMENT_SCRIPT)
    env = {
        "PYTHONPATH": f"{SHOP_DIR}:{REPO_ROOT / 'instrumentations'}",
        "SHOP_DB_PATH": str(tmp_path / "shop.sqlite3"),
    }
    run = run_instrumented(["python", str(script)], env, instrument=False)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    [(name, attributes)] = result["traced"]
    assert name == "manage.py shop_report"
    assert attributes["sentry.op"] == "task"
    assert attributes["django.management.command"] == "shop_report"
    assert "sentry.monitor.slug" not in attributes
    assert result["after"] == []


def test_settings_parsing() -> None:
    import sys

    sys.path.insert(0, str(REPO_ROOT / "instrumentations"))
    try:
        from otel_bridge_instrumentation_django_commands import (
            _monitor_map,
            parse_command_list,
        )
    finally:
        sys.path.remove(str(REPO_ROOT / "instrumentations"))
    assert parse_command_list(" runserver, shell ,,") == ("runserver", "shell")
    expected = {"shop_report": "*/5 * * * *", "cleanup": "1h"}
    assert _monitor_map(expected) == expected
    assert _monitor_map(("shop_report=*/5 * * * *", "cleanup=1h")) == expected
    assert _monitor_map((("shop_report", "*/5 * * * *"), ("cleanup", "1h"))) == expected
