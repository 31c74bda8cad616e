"""A real in-process TracerProvider wired like the configurator wires it (sampler, tracker,
propagator), with an in-memory exporter; shared by the propagation tests."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from otel_bridge.dsc import LocalRootTracker, active_tracker, set_active_tracker
from otel_bridge.local_roots import LocalRootProcessors
from otel_bridge.propagation.propagator import SentryBridgePropagator
from otel_bridge.sampling import BridgeSampler, SamplingRule


@dataclass
class Rig:
    provider: TracerProvider
    tracer: trace.Tracer
    exporter: InMemorySpanExporter
    tracker: LocalRootTracker
    propagator: CompositePropagator

    def extract(self, headers: dict[str, str]):
        return self.propagator.extract(headers)

    def inject(self, context=None) -> dict[str, str]:
        carrier: dict[str, str] = {}
        self.propagator.inject(carrier, context)
        return carrier


@contextmanager
def rig(
    rate: float = 1.0,
    rules: Sequence[SamplingRule] = (),
    *,
    public_key: str | None = "pk123",
    release: str | None = "shop@1.0",
    environment: str | None = "test",
    record_unsampled_clients: bool = False,
    max_traces: int = 4096,
    org_id: str | None = None,
    strict_trace_continuation: bool = False,
) -> Iterator[Rig]:
    tracker = LocalRootTracker(
        public_key=public_key, release=release, environment=environment, sample_rate=rate,
        max_traces=max_traces, org_id=org_id, strict_trace_continuation=strict_trace_continuation,
    )
    previous = active_tracker()
    set_active_tracker(tracker)
    exporter = InMemorySpanExporter()
    provider = TracerProvider(
        sampler=BridgeSampler(
            rate, rules, tracker=tracker, record_unsampled_clients=record_unsampled_clients
        )
    )
    provider.add_span_processor(LocalRootProcessors([tracker]))  # as the configurator does
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    propagator = CompositePropagator(
        [TraceContextTextMapPropagator(), SentryBridgePropagator(inject_traceparent=False)]
    )
    try:
        yield Rig(provider, provider.get_tracer("test"), exporter, tracker, propagator)
    finally:
        provider.shutdown()
        set_active_tracker(previous)
