"""LocalRootProcessors: the processors behind it see local roots, and nothing else."""

from __future__ import annotations

from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.propagate import extract
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider

from otel_bridge.local_roots import LocalRootProcessors


class _Recorder(SpanProcessor):
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def on_start(self, span: Span, parent_context: context_api.Context | None = None) -> None:
        self.calls.append(("start", span.name))

    def _on_ending(self, span: Span) -> None:
        self.calls.append(("ending", span.name))

    def on_end(self, span: ReadableSpan) -> None:
        self.calls.append(("end", span.name))

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        self.calls.append(("flush", ""))
        return True

    def shutdown(self) -> None:
        self.calls.append(("shutdown", ""))


def test_only_local_roots_reach_the_processors_behind_it() -> None:
    first, second = _Recorder(), _Recorder()
    provider = TracerProvider()
    provider.add_span_processor(LocalRootProcessors([first, second]))
    tracer = provider.get_tracer("test")
    upstream = extract({"traceparent": f"00-{'ab' * 16}-{'cd' * 8}-01"})

    with tracer.start_as_current_span("root"), tracer.start_as_current_span("child"):
        tracer.start_span("grandchild").end()
    with tracer.start_as_current_span("remote-parent", upstream):
        tracer.start_span("its child").end()
    provider.force_flush()
    provider.shutdown()

    expected = [
        ("start", "root"), ("ending", "root"), ("end", "root"),
        ("start", "remote-parent"), ("ending", "remote-parent"), ("end", "remote-parent"),
        ("flush", ""), ("shutdown", ""),
    ]
    assert first.calls == expected
    assert second.calls == expected
    assert trace.get_current_span() is trace.INVALID_SPAN
