"""What the bridge keeps per trace must not keep finished spans alive."""

from __future__ import annotations

import gc
import weakref

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from otel_bridge.config import load_config
from otel_bridge.dsc import LocalRootTracker, set_active_tracker
from otel_bridge.runtime import Runtime
from otel_bridge.sampling import build_sampler


def test_finished_root_spans_are_not_retained_by_the_tracker() -> None:
    runtime = Runtime(load_config({"SENTRY_DSN": "http://key@127.0.0.1:9/1"}))
    resource = Resource.create({"service.name": "memory"})
    tracker = LocalRootTracker.from_runtime(runtime, resource)
    provider = TracerProvider(resource=resource, sampler=build_sampler(runtime.config, tracker))
    provider.add_span_processor(tracker)
    tracer = provider.get_tracer("test")
    try:
        refs = []
        for _ in range(20):
            span = tracer.start_span("GET /")
            tracer.start_span("child", context=None).end()
            span.end()
            refs.append(weakref.ref(span))
            del span
        gc.collect()
        assert [ref for ref in refs if ref() is not None] == []
    finally:
        provider.shutdown()
        set_active_tracker(None)
