"""The Celery recipe of docs/crons.md end to end: a producer process and a Celery worker, both
under ``opentelemetry-instrument`` with nothing but environment variables, a broker in a
directory (kombu's filesystem transport) and the recording ingest.

What the recipe promises: the worker's task run is a transaction in the producer's trace
(contrib's Celery instrumentation carries it through the message), the monitor's check-ins
belong to that trace, and a failing task is one error event linked to its transaction. Both
of Celery's usual pools: prefork (the default, whose children fork after start-up) and solo.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.rig.ingest import RecordingIngest
from tests.rig.processes import REPO_ROOT, VENV_BIN, clean_env, run_instrumented

SERVICES = REPO_ROOT / "tests" / "services"


def _env(ingest: RecordingIngest, queue_dir: Path, service: str) -> dict[str, str]:
    return {
        "SENTRY_DSN": ingest.dsn,
        "SENTRY_RELEASE": "digest@1",
        "OTEL_SERVICE_NAME": service,
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "CELERY_QUEUE_DIR": str(queue_dir),
        "PYTHONPATH": f"{SERVICES}{os.pathsep}{REPO_ROOT}",
    }


def _stop(worker: subprocess.Popen[bytes]) -> None:
    # Celery's warm shutdown on SIGTERM; the group kill is for a worker that hangs.
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.wait(timeout=20)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(timeout=10)


def _transaction_named(ingest: RecordingIngest, name: str) -> dict[str, Any] | None:
    return next((t for t in ingest.events("transaction") if t["transaction"] == name), None)


@pytest.mark.parametrize("pool", ["prefork", "solo"])
def test_a_task_run_is_a_transaction_in_the_producers_trace_with_its_check_ins(
    ingest: RecordingIngest, tmp_path: Path, pool: str
) -> None:
    queue_dir = tmp_path / "queue"
    queue_dir.mkdir()
    produced = run_instrumented(
        ["python", "-m", "celery_tasks"], _env(ingest, queue_dir, "digest-producer"),
        cwd=SERVICES,
    )
    assert produced.returncode == 0, produced.stderr
    trace_id = produced.stdout.strip().splitlines()[-1]
    assert len(trace_id) == 32

    args = [
        str(VENV_BIN / "opentelemetry-instrument"), str(VENV_BIN / "celery"),
        "-A", "celery_tasks", "worker", f"--pool={pool}", "--concurrency=1",
        "--loglevel=info", "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]
    worker_env = _env(ingest, queue_dir, "digest-worker")
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        worker = subprocess.Popen(
            args, env=clean_env(worker_env), cwd=SERVICES,
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        check_ins = ingest.wait_for_items("check_in", 2, timeout=60)
        run = ingest.wait_for(
            lambda i: _transaction_named(i, "celery_tasks.send_digest"), timeout=30
        )
        broken = ingest.wait_for(
            lambda i: _transaction_named(i, "celery_tasks.broken_digest"), timeout=30
        )
    except BaseException:
        _stop(worker)
        print(log.read_text(errors="replace"))
        print(ingest.dump())
        raise
    _stop(worker)

    producer = _transaction_named(ingest, "enqueue digests")
    assert producer is not None
    assert producer["contexts"]["trace"]["trace_id"] == trace_id
    assert any(span["op"].startswith("queue.") or "apply_async" in span.get("description", "")
               for span in producer["spans"]), producer["spans"]

    assert run is not None and broken is not None
    assert run["contexts"]["trace"]["trace_id"] == trace_id
    assert run["contexts"]["trace"]["status"] == "ok"
    assert run["contexts"]["trace"]["op"] == "queue.process"
    assert run["release"] == "digest@1"
    monitor_spans = [s for s in run["spans"] if "send-digest" in s.get("description", "")]
    assert monitor_spans, run["spans"]

    started, finished = check_ins
    assert started["monitor_slug"] == finished["monitor_slug"] == "send-digest"
    assert [started["status"], finished["status"]] == ["in_progress", "ok"]
    assert started["check_in_id"] == finished["check_in_id"]
    assert finished["monitor_config"]["schedule"] == {"type": "crontab", "value": "0 8 * * 1-5"}
    assert finished["monitor_config"]["timezone"] == "Europe/Berlin"
    for check_in in (started, finished):
        assert check_in["contexts"]["trace"]["trace_id"] == trace_id

    assert broken["contexts"]["trace"]["trace_id"] == trace_id
    assert broken["contexts"]["trace"]["status"] != "ok"
    # sentry-sdk's CeleryIntegration (auto-enabled with celery installed) captures the
    # failure inside the task's OTel span. Each task starts with no breadcrumbs, as
    # CeleryIntegration's own scope does: the worker's start-up ones (its broker URL,
    # "Connected to filesystem://...") are not the task's.
    (error,) = ingest.wait_for_items("event", 1, timeout=30)
    (exception,) = error["exception"]["values"]
    assert exception["type"] == "RuntimeError"
    assert exception["value"] == "the digest template is missing"
    assert exception["stacktrace"]["frames"][-1]["function"] == "broken_digest"
    assert error["contexts"]["trace"]["trace_id"] == trace_id
    assert error["contexts"]["trace"]["span_id"] == broken["contexts"]["trace"]["span_id"]
    if pool == "solo":
        crumbs = [str(c.get("message")) for c in error.get("breadcrumbs", {}).get("values", [])]
        assert not any(c.startswith("Connected to") for c in crumbs), crumbs

    # every envelope came once: no transaction of the worker was sent twice
    names = [t["transaction"] for t in ingest.events("transaction")]
    assert names.count("celery_tasks.send_digest") == 1
