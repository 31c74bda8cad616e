"""Where otel-bridge's span pipeline spends its time, on one thread, under cProfile.

    python -m bench.profile_pipeline [--traces 2000] [--sort tottime]

Spans are recorded first (on_end of the bridge's own span processors included, as on the
request thread), then handed to the `sentry` exporter in batches of 512 as the batch
processor would, with cProfile on. The transport serialises and compresses inline (no worker
thread, no HTTP request), so its cost shows in the profile and no thread competes for the GIL.
Prints the per-span cost of each half and the top of the profile.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider

from bench.micro import SPANS_PER_TRACE, _inline_transport_class, make_traces


class _Collect(SpanProcessor):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.spans.append(span)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--traces", type=int, default=2000)
    parser.add_argument("--sort", default="tottime")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args(argv)

    os.environ.update(
        {"SENTRY_DSN": "http://benchkey@127.0.0.1:9/1", "OTEL_TRACES_EXPORTER": "none",
         "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none",
         "OTEL_BRIDGE_TRANSPORT_QUEUE_SIZE": "1000000"}
    )
    import sentry_sdk

    from otel_bridge.configurator import configure
    from otel_bridge.pipeline.exporter import SentrySpanExporter

    runtime = configure()
    client = sentry_sdk.get_client()
    from otel_bridge.transport import BridgeTransport

    transport_class = _inline_transport_class(BridgeTransport)
    transport = transport_class(client.options)
    client.transport = transport
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    collect = _Collect()
    provider.add_span_processor(collect)
    tracer = provider.get_tracer("bench.profile")

    make_traces(tracer, 20)
    collect.spans.clear()
    start = time.process_time()
    make_traces(tracer, args.traces)
    record_cpu = time.process_time() - start
    record_profiler = cProfile.Profile()
    record_profiler.enable()
    make_traces(tracer, args.traces // 4)
    record_profiler.disable()
    del collect.spans[args.traces * SPANS_PER_TRACE :]

    bare = TracerProvider()
    bare_tracer = bare.get_tracer("bench.profile")
    start = time.process_time()
    make_traces(bare_tracer, args.traces)
    bare_cpu = time.process_time() - start

    exporter = SentrySpanExporter(runtime=runtime, transport_source=lambda: transport)
    spans = collect.spans
    profiler = cProfile.Profile()
    start = time.process_time()
    profiler.enable()
    for index in range(0, len(spans), 512):
        exporter.export(spans[index : index + 512])
    profiler.disable()
    export_cpu = time.process_time() - start
    transport.flush(timeout=60)

    count = args.traces * SPANS_PER_TRACE
    print(f"spans: {count}; transactions handed to the transport: {transport.sent_items}")
    print(f"request thread, bridge processors on_start/on_end: "
          f"{(record_cpu - bare_cpu) / count * 1e6:.1f} us/span over a bare TracerProvider")
    print(f"exporter.export (grouping, mapping, scrubbing, envelopes, serialising; profiled): "
          f"{export_cpu / count * 1e6:.1f} us/span")
    print("=== request thread (span start/end with the bridge's processors)")
    pstats.Stats(record_profiler).sort_stats(args.sort).print_stats(args.top // 2)
    print("=== exporter.export")
    pstats.Stats(profiler).sort_stats(args.sort).print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
