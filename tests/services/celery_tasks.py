"""The Celery recipe of docs/crons.md, run by tests/test_celery.py.

The broker is a directory (kombu's filesystem transport), so producer and worker are real,
separate processes without a broker server. Everything else is the recipe as documented.
"""

from __future__ import annotations

import os

from celery import Celery
from celery.schedules import crontab
from opentelemetry import trace

from otel_bridge.crons import monitor

QUEUE_DIR = os.environ["CELERY_QUEUE_DIR"]

app = Celery("celery_tasks", broker="filesystem://")
app.conf.broker_transport_options = {
    "data_folder_in": QUEUE_DIR,
    "data_folder_out": QUEUE_DIR,
    "control_folder": os.path.join(QUEUE_DIR, "control"),  # else ./control in the cwd
}
app.conf.task_ignore_result = True

DIGEST_SCHEDULE = "0 8 * * 1-5"


def beat_crontab(expression: str) -> crontab:
    """A 5-field crontab string as Celery's crontab (whose argument order differs)."""
    minute, hour, day_of_month, month_of_year, day_of_week = expression.split()
    return crontab(
        minute=minute, hour=hour, day_of_month=day_of_month,
        month_of_year=month_of_year, day_of_week=day_of_week,
    )


app.conf.beat_schedule = {
    "send-digest": {"task": "celery_tasks.send_digest", "schedule": beat_crontab(DIGEST_SCHEDULE)},
}
app.conf.timezone = "Europe/Berlin"


@app.task  # type: ignore[untyped-decorator]  # celery ships no type hints
@monitor("send-digest", schedule=DIGEST_SCHEDULE, timezone="Europe/Berlin", max_runtime=10)
def send_digest(recipients: int) -> int:
    trace.get_current_span().set_attribute("digest.recipients", recipients)
    return recipients


@app.task  # type: ignore[untyped-decorator]  # celery ships no type hints
def broken_digest() -> None:
    raise RuntimeError("the digest template is missing")


def enqueue() -> None:
    """The producer: a unit of work of its own that enqueues both tasks."""
    tracer = trace.get_tracer("digest-producer")
    with tracer.start_as_current_span("enqueue digests") as span:
        send_digest.delay(3)
        broken_digest.delay()
        print(format(span.get_span_context().trace_id, "032x"))


if __name__ == "__main__":
    enqueue()
