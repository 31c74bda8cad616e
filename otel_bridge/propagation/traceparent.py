"""W3C ``traceparent`` parsed on its own: our propagator compares its ids with ``sentry-trace``
before deciding which header wins. The parsing is opentelemetry-api's own (through
TraceContextTextMapPropagator), so both propagators accept exactly the same headers.
"""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_MAX_LENGTH = 512
_W3C = TraceContextTextMapPropagator()


@dataclass(frozen=True)
class TraceParent:
    trace_id: int
    span_id: int
    flags: int

    @property
    def sampled(self) -> bool:
        return bool(self.flags & 0x01)


def parse_traceparent(value: object) -> TraceParent | None:
    if not isinstance(value, str) or len(value) > _MAX_LENGTH:
        return None
    context = trace.get_current_span(_W3C.extract({"traceparent": value})).get_span_context()
    if not context.is_valid:
        return None
    return TraceParent(context.trace_id, context.span_id, int(context.trace_flags))


def format_traceparent(trace_id: int, span_id: int, flags: int) -> str:
    # Flags other than "sampled" (e.g. W3C level 2 "random", 0x02) travel on unchanged.
    return f"00-{trace_id:032x}-{span_id:016x}-{flags & 0xFF:02x}"
