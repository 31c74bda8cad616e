"""BridgeTracer and HookSkippingSpanProcessor behave as the SDK's Tracer and multi-processor.

Each behaviour of ``start_as_current_span`` is run through the SDK's own TracerProvider and
through otel-bridge's, and the finished spans compared field by field."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, Tracer, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from otel_bridge.local_roots import LocalRootProcessors
from otel_bridge.tracing import (
    BridgeTracer,
    BridgeTracerProvider,
    HookSkippingSpanProcessor,
    implements,
)

Scenario = Callable[[trace.Tracer], None]


def _finished(provider_class: type[TracerProvider], scenario: Scenario) -> list[ReadableSpan]:
    provider = provider_class()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with contextlib.suppress(BaseException):  # the scenarios raise on purpose
        scenario(tracer)
    assert trace.get_current_span() is trace.INVALID_SPAN  # the context was restored
    provider.shutdown()
    return list(exporter.get_finished_spans())


def _shape(span: ReadableSpan) -> dict[str, Any]:
    return {
        "name": span.name,
        "kind": span.kind,
        "parent": span.parent is not None,
        "status": (span.status.status_code, span.status.description),
        "attributes": dict(span.attributes or {}),
        "events": [
            (event.name, {k: v for k, v in (event.attributes or {}).items()
                          if k != "exception.stacktrace"})
            for event in span.events
        ],
    }


def _raises(exception: BaseException, **options: Any) -> Scenario:
    def scenario(tracer: trace.Tracer) -> None:
        with (
            tracer.start_as_current_span("outer", attributes={"a": 1}),
            tracer.start_as_current_span("inner", kind=trace.SpanKind.CLIENT, **options),
        ):
            raise exception

    return scenario


def _nested(tracer: trace.Tracer) -> None:
    with tracer.start_as_current_span("outer") as outer:
        assert trace.get_current_span() is outer
        with tracer.start_as_current_span("inner", attributes={"db.system": "sqlite"}) as inner:
            assert trace.get_current_span() is inner
            assert isinstance(inner, ReadableSpan) and inner.parent is not None
            assert inner.parent.span_id == outer.get_span_context().span_id
            inner.set_attribute("rows", 3)
        assert trace.get_current_span() is outer


def _explicit_context(tracer: trace.Tracer) -> None:
    with (
        tracer.start_as_current_span("ambient"),
        tracer.start_as_current_span("detached", context=context_api.Context()) as span,
    ):
        assert isinstance(span, ReadableSpan) and span.parent is None


SCENARIOS: dict[str, Scenario] = {
    "nested": _nested,
    "explicit context": _explicit_context,
    "exception": _raises(ValueError("bad input")),
    "exception, not recorded": _raises(ValueError("bad"), record_exception=False),
    "exception, status untouched": _raises(KeyError("k"), set_status_on_exception=False),
    "keyboard interrupt": _raises(KeyboardInterrupt()),
    "generator exit": _raises(GeneratorExit()),
}


@pytest.mark.parametrize("name", SCENARIOS)
def test_spans_come_out_as_the_sdks_tracer_makes_them(name: str) -> None:
    sdk = [_shape(span) for span in _finished(TracerProvider, SCENARIOS[name])]
    ours = [_shape(span) for span in _finished(BridgeTracerProvider, SCENARIOS[name])]
    assert sdk  # the scenario made spans
    assert ours == sdk


def test_an_exception_is_recorded_on_the_span_it_left_and_propagates() -> None:
    spans = _finished(BridgeTracerProvider, _raises(ValueError("bad input")))
    inner, outer = spans
    assert inner.status.status_code is StatusCode.ERROR
    assert inner.status.description == "ValueError: bad input"
    assert [event.name for event in inner.events] == ["exception"]
    # use_span records it on every span it leaves, as the SDK does.
    assert outer.status.status_code is StatusCode.ERROR

    provider = BridgeTracerProvider()
    with pytest.raises(ValueError, match="bad input"):
        _raises(ValueError("bad input"))(provider.get_tracer("test"))


def test_end_on_exit_false_leaves_the_span_open() -> None:
    provider = BridgeTracerProvider()
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("kept", end_on_exit=False) as span:
        pass
    assert span.is_recording()
    assert trace.get_current_span() is trace.INVALID_SPAN
    span.end()
    assert not span.is_recording()


def test_one_context_can_be_reused_but_not_entered_twice_at_once(
    tracer_and_exporter: tuple[trace.Tracer, InMemorySpanExporter],
) -> None:
    tracer, exporter = tracer_and_exporter
    context_manager = tracer.start_as_current_span("again")
    with context_manager as first, pytest.raises(RuntimeError, match="once at a time"):
        context_manager.__enter__()
    with context_manager as second:
        assert trace.get_current_span() is second
    assert first is not second
    assert trace.get_current_span() is trace.INVALID_SPAN
    assert [span.name for span in exporter.get_finished_spans()] == ["again", "again"]


@pytest.fixture
def tracer_and_exporter() -> Iterator[tuple[trace.Tracer, InMemorySpanExporter]]:
    provider = BridgeTracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("test"), exporter
    provider.shutdown()


def test_as_a_decorator_each_call_gets_its_span(
    tracer_and_exporter: tuple[trace.Tracer, InMemorySpanExporter],
) -> None:
    tracer, exporter = tracer_and_exporter

    @tracer.start_as_current_span("work")
    def work(value: int) -> int:
        """Doubles."""
        assert trace.get_current_span().is_recording()
        return value * 2

    assert work.__doc__ == "Doubles."
    assert [work(1), work(2)] == [2, 4]
    spans = exporter.get_finished_spans()
    assert [span.name for span in spans] == ["work", "work"]
    assert spans[0].context.span_id != spans[1].context.span_id


def test_as_a_decorator_of_a_coroutine_the_span_lasts_the_awaited_call(
    tracer_and_exporter: tuple[trace.Tracer, InMemorySpanExporter],
) -> None:
    tracer, exporter = tracer_and_exporter

    @tracer.start_as_current_span("awaited")
    async def slow() -> str:
        await asyncio.sleep(0.05)
        return "done"

    assert asyncio.run(slow()) == "done"
    (span,) = exporter.get_finished_spans()
    assert span.end_time is not None and span.start_time is not None
    assert span.end_time - span.start_time >= 40_000_000  # the sleep is inside it


def test_every_tracer_of_the_provider_is_a_bridge_tracer() -> None:
    provider = BridgeTracerProvider()
    tracer = provider.get_tracer("a.module", "1.0")
    assert type(tracer) is BridgeTracer and isinstance(tracer, Tracer)
    assert provider.get_tracer("a.module", "1.0") is tracer  # still kept per scope
    assert tracer._instrumentation_scope.name == "a.module"


class _Recorder(SpanProcessor):
    def __init__(self, label: str, calls: list[tuple[str, str, str]]) -> None:
        self.label, self.calls = label, calls

    def on_start(self, span: Span, parent_context: context_api.Context | None = None) -> None:
        self.calls.append((self.label, "start", span.name))

    def _on_ending(self, span: Span) -> None:
        self.calls.append((self.label, "ending", span.name))

    def on_end(self, span: ReadableSpan) -> None:
        self.calls.append((self.label, "end", span.name))


class _EndOnly(SpanProcessor):
    def __init__(self, calls: list[tuple[str, str, str]]) -> None:
        self.calls = calls

    def on_end(self, span: ReadableSpan) -> None:
        self.calls.append(("end-only", "end", span.name))


def test_hooks_reach_the_processors_in_order_including_those_added_later() -> None:
    calls: list[tuple[str, str, str]] = []
    provider = BridgeTracerProvider()
    provider.add_span_processor(_Recorder("first", calls))
    provider.add_span_processor(_EndOnly(calls))
    tracer = provider.get_tracer("test")
    tracer.start_span("one").end()
    provider.add_span_processor(_Recorder("late", calls))
    tracer.start_span("two").end()
    provider.shutdown()

    assert calls == [
        ("first", "start", "one"), ("first", "ending", "one"),
        ("first", "end", "one"), ("end-only", "end", "one"),
        ("first", "start", "two"), ("late", "start", "two"),
        ("first", "ending", "two"), ("late", "ending", "two"),
        ("first", "end", "two"), ("end-only", "end", "two"), ("late", "end", "two"),
    ]


def test_no_op_hooks_are_not_called() -> None:
    batch = BatchSpanProcessor(InMemorySpanExporter())
    calls: list[tuple[str, str, str]] = []
    local_roots = LocalRootProcessors([_EndOnly(calls)])
    multi = HookSkippingSpanProcessor()
    for processor in (batch, local_roots):
        multi.add_span_processor(processor)

    assert not implements(batch, "on_start") and not implements(batch, "_on_ending")
    assert implements(batch, "on_end")
    assert [implements(local_roots, hook) for hook in ("on_start", "_on_ending", "on_end")] == [
        False, False, True,
    ]
    assert multi._on_start_hooks == () and multi._on_ending_hooks == ()
    assert multi._on_end_hooks == (batch.on_end, local_roots.on_end)
    assert multi._span_processors == (batch, local_roots)  # shutdown and flush reach both
    batch.shutdown()

    stub = SpanProcessor()
    stub.on_start = lambda span, parent_context=None: None  # type: ignore[method-assign]
    assert implements(stub, "on_start") and not implements(stub, "on_end")


def test_the_configurator_installs_it() -> None:
    """Under `opentelemetry-instrument` the provider and the instrumentations' tracers are
    otel-bridge's, and a query's span goes through them to the configured exporter."""
    script = (
        "import sqlite3\n"
        "from opentelemetry import trace\n"
        "provider = trace.get_tracer_provider()\n"
        "print(type(provider).__name__, type(provider._active_span_processor).__name__,"
        " type(provider.get_tracer('any')).__name__)\n"
        "sqlite3.connect(':memory:').cursor().execute('SELECT name FROM sqlite_master')\n"
    )
    env = {
        "PATH": f"{sys.prefix}/bin:/usr/bin:/bin",
        "SENTRY_DSN": "http://key@127.0.0.1:9/1",
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
    }
    result = subprocess.run(
        [f"{sys.prefix}/bin/opentelemetry-instrument", sys.executable, "-c", script],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    first_line, exported = result.stdout.split("\n", 1)
    assert first_line == "BridgeTracerProvider HookSkippingSpanProcessor BridgeTracer"
    span = json.loads(exported)
    assert span["kind"] == "SpanKind.CLIENT"
    assert span["attributes"]["db.statement"] == "SELECT name FROM sqlite_master"
