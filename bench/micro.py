"""Per-span cost of a span pipeline, in-process: on_end + export, all threads' CPU.

    python -m bench.micro --variant bridge --traces 2000

Each run is its own process (the pipelines install global state: sentry-sdk's client,
``SentrySpanProcessor``'s singleton). It builds ``traces`` traces shaped like the shop's
order view (one SERVER span with HTTP attributes, five CLIENT spans with SQL), then waits
until the pipeline has handed everything to the transport, and prints one JSON line:
process CPU seconds (``time.process_time``: every thread), spans made, and what reached the
end of the pipeline.

Variants:
- ``none``: a TracerProvider without processors (the cost of making spans; subtracted);
- ``batch_null``: ``BatchSpanProcessor`` + an exporter that drops everything;
- ``sentry_processor``: sentry-sdk's ``SentrySpanProcessor`` (``instrumenter="otel"``);
- ``bridge``: otel-bridge's pipeline as its configurator builds it from ``SENTRY_DSN``.

Both Sentry variants use their own transport (sentry-sdk's ``HttpTransport``, otel-bridge's
``BridgeTransport``) doing all its work (queue, worker thread, serialisation, compression,
request heads) except the HTTP exchange itself.
Queues are made large enough that nothing is dropped, so both do all the work.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind

from bench.null_exporter import NullSpanExporter

VARIANTS = ("none", "batch_null", "sentry_processor", "bridge")
SPANS_PER_TRACE = 6
_DSN = "http://benchkey@127.0.0.1:9/1"  # never contacted: the transport sends nothing
_QUEUE = 1_000_000


def _counting_transport_class(base: type[Any] | None = None) -> type[Any]:
    from sentry_sdk.transport import HttpTransport

    class CountingTransport(base or HttpTransport):  # type: ignore[misc]
        """sentry-sdk's HTTP transport minus the request: serialised, compressed, counted."""

        sent_items: dict[str, int] = {}

        def _send_request(
            self, body: bytes, headers: dict[str, str], endpoint_type: Any,
            envelope: Any = None,
        ) -> None:
            for item in envelope.items if envelope is not None else ():
                kind = item.type or ""
                self.sent_items[kind] = self.sent_items.get(kind, 0) + 1

    return CountingTransport


def _counting_bridge_transport_class() -> type[Any]:
    """otel-bridge's transport minus the request: its connection answers at once, without a
    socket, after the requests are written out as for the wire (a batch's envelopes take
    a pipelined path that never calls ``_send_request``)."""
    from otel_bridge.http1 import Response, ResponseHeaders, request_head
    from otel_bridge.transport import BridgeTransport, Exchange

    class AnsweringConnection:
        pipelining = "proven"  # as after the first exchange with a pipelining ingest

        def __init__(self, window: int) -> None:
            self._window = window

        def window(self) -> int:
            return self._window

        def post(self, path: str, body: bytes, headers: dict[str, str]) -> Response:
            return self.post_many(path, [(body, headers)]).responses[0]

        def post_many(self, path: str, requests: Sequence[tuple[bytes, Any]]) -> Exchange:
            for body, headers in requests:
                request_head("POST", path, "127.0.0.1:9", headers, len(body))
            ok = Response(200, ResponseHeaders({}), b"{}", False)
            return Exchange([ok] * len(requests))

        def close(self) -> None:
            pass

    class CountingBridgeTransport(BridgeTransport):  # type: ignore[misc]
        sent_items: dict[str, int] = {}

        def __init__(self, options: dict[str, Any]) -> None:
            super().__init__(options)
            assert self._connection is not None
            self._connection = AnsweringConnection(  # type: ignore[assignment]
                self._connection.window()
            )

        def _handle_response(self, response: Any, envelope: Any) -> None:
            super()._handle_response(response, envelope)
            for item in envelope.items if envelope is not None else ():
                kind = item.type or ""
                self.sent_items[kind] = self.sent_items.get(kind, 0) + 1

    return CountingBridgeTransport


def _inline_transport_class(base: type[Any] | None = None) -> type[Any]:
    """Like the counting transport, but serialising and compressing on the caller's thread
    (no worker): for profiles without threads fighting over the GIL."""
    from sentry_sdk.transport import HttpTransport

    class InlineTransport(base or HttpTransport):  # type: ignore[misc]
        sent_items: dict[str, int] = {}

        def capture_envelope(self, envelope: Any) -> None:
            self._serialize_envelope(envelope)
            for item in envelope.items:
                kind = item.type or ""
                self.sent_items[kind] = self.sent_items.get(kind, 0) + 1

        def capture_envelopes(self, envelopes: Sequence[Any]) -> bool:
            for envelope in envelopes:
                self.capture_envelope(envelope)
            return True

    return InlineTransport


def make_traces(tracer: trace.Tracer, count: int) -> None:
    for index in range(count):
        with tracer.start_as_current_span(
            "GET orders/<int:order_id>/",
            kind=SpanKind.SERVER,
            attributes={
                "http.request.method": "GET",
                "http.route": "orders/<int:order_id>/",
                "url.path": f"/orders/{index % 10 + 1}/",
                "url.scheme": "http",
                "server.address": "127.0.0.1",
                "server.port": 8000,
                "user_agent.original": "bench",
                "network.protocol.version": "1.1",
            },
        ) as root:
            for query in range(SPANS_PER_TRACE - 1):
                with tracer.start_as_current_span(
                    "SELECT",
                    kind=SpanKind.CLIENT,
                    attributes={
                        "db.system": "sqlite",
                        "db.name": "shop.sqlite3",
                        "db.statement": f"SELECT id, name FROM product WHERE id = {query}",
                    },
                ):
                    pass
            root.set_attribute("http.response.status_code", 200)


def _setup_none() -> Callable[[], dict[str, int]]:
    trace.set_tracer_provider(TracerProvider())
    return lambda: {}


def _setup_batch_null() -> Callable[[], dict[str, int]]:
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    exporter = NullSpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=_QUEUE))
    trace.set_tracer_provider(provider)

    def finish() -> dict[str, int]:
        provider.force_flush()
        return {"spans": exporter.exported}

    return finish


def _setup_sentry_processor() -> Callable[[], dict[str, int]]:
    import sentry_sdk
    from opentelemetry.propagate import set_global_textmap
    from sentry_sdk.integrations.opentelemetry import SentryPropagator, SentrySpanProcessor

    transport = _counting_transport_class()
    sentry_sdk.init(
        dsn=_DSN, traces_sample_rate=1.0, instrumenter="otel", transport=transport,
        transport_queue_size=_QUEUE, default_integrations=False,
    )
    provider = TracerProvider()
    provider.add_span_processor(SentrySpanProcessor())
    trace.set_tracer_provider(provider)
    set_global_textmap(SentryPropagator())

    def finish() -> dict[str, int]:
        sentry_sdk.flush(timeout=120)
        return dict(transport.sent_items)

    return finish


def _setup_bridge() -> Callable[[], dict[str, int]]:
    import sentry_sdk

    from otel_bridge.configurator import configure

    os.environ.update(
        {
            "SENTRY_DSN": _DSN,
            "OTEL_TRACES_EXPORTER": "sentry",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
            "OTEL_BSP_MAX_QUEUE_SIZE": str(_QUEUE),
            "OTEL_BRIDGE_TRANSPORT_QUEUE_SIZE": str(_QUEUE),
        }
    )
    configure()
    client = sentry_sdk.get_client()
    transport_class = _counting_bridge_transport_class()
    transport = transport_class(client.options)
    client.transport = transport
    provider = trace.get_tracer_provider()

    def finish() -> dict[str, int]:
        provider.force_flush()  # type: ignore[attr-defined]
        transport.flush(timeout=120)
        return dict(transport_class.sent_items)

    return finish


SETUPS: dict[str, Callable[[], Callable[[], dict[str, int]]]] = {
    "none": _setup_none,
    "batch_null": _setup_batch_null,
    "sentry_processor": _setup_sentry_processor,
    "bridge": _setup_bridge,
}


def measure(variant: str, traces: int) -> dict[str, Any]:
    finish = SETUPS[variant]()
    tracer = trace.get_tracer("bench.micro")
    make_traces(tracer, 20)  # warm-up: first calls import and cache
    before = finish()
    start_cpu, start_wall = time.process_time(), time.perf_counter()
    make_traces(tracer, traces)
    after = finish()
    delivered = {kind: n - before.get(kind, 0) for kind, n in after.items()}
    cpu, wall = time.process_time() - start_cpu, time.perf_counter() - start_wall
    return {
        "variant": variant,
        "cpu_s": cpu,
        "wall_s": wall,
        "spans": traces * SPANS_PER_TRACE,
        "delivered": delivered,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="per-span cost of a span pipeline")
    parser.add_argument("--variant", choices=VARIANTS, required=True)
    parser.add_argument("--traces", type=int, default=2000)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.variant, args.traces)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
