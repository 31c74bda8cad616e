"""The batch processor in front of the `sentry` exporter: its default batch size (128 spans,
so that spans leave the queue before the garbage collector promotes them), the user's
OTEL_BSP_* settings winning, and other exporters keeping the SDK's defaults."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from otel_bridge.pipeline.batching import AccountedBatchSpanProcessor, sentry_export_batch_size
from tests.rig import run_instrumented


class _Batches(SpanExporter):
    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.first = threading.Event()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.sizes.append(len(spans))
        self.first.set()
        return SpanExportResult.SUCCESS


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, 128),
        ({"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "300"}, None),  # the SDK reads the user's value
        ({"OTEL_BSP_MAX_QUEUE_SIZE": "64"}, 64),  # never larger than the queue
    ],
)
def test_sentry_export_batch_size(
    env: dict[str, str], expected: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "OTEL_BSP_MAX_QUEUE_SIZE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert sentry_export_batch_size() == expected


def test_a_full_batch_of_128_leaves_without_waiting_for_the_schedule(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", raising=False)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "60000")  # a minute: only a full batch goes
    exporter = _Batches()
    processor = AccountedBatchSpanProcessor(exporter, on_drop=lambda span: None)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("test")
    try:
        for _ in range(300):
            tracer.start_span("work").end()
        # Well inside the minute's schedule: only a full batch can have sent it.
        assert exporter.first.wait(10), "a full batch of 128 waited for the schedule"
        processor.force_flush()
        assert max(exporter.sizes) <= 128
        assert sum(exporter.sizes) == 300
    finally:
        provider.shutdown()


_PRINT_BATCH_SIZES = """
import json
from opentelemetry import trace
from opentelemetry.sdk.trace.export import BatchSpanProcessor
processors = trace.get_tracer_provider()._active_span_processor._span_processors
print(json.dumps([
    p._batch_processor._max_export_batch_size
    for p in processors if isinstance(p, BatchSpanProcessor)
]))
"""


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, [128]),
        ({"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "300"}, [300]),
        ({"OTEL_TRACES_EXPORTER": "console"}, [512]),  # not the sentry exporter: SDK default
        ({"OTEL_TRACES_EXPORTER": "sentry,console"}, [128, 512]),
    ],
)
def test_the_configured_pipeline_under_opentelemetry_instrument(
    env: dict[str, str], expected: list[int]
) -> None:
    run = run_instrumented(
        ["python", "-c", _PRINT_BATCH_SIZES],
        {"SENTRY_DSN": "http://key@127.0.0.1:9/1", **env},
    )
    assert run.returncode == 0, run.stderr
    assert sorted(json.loads(run.stdout.strip().splitlines()[-1])) == sorted(expected)
