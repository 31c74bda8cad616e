"""W3C ``traceparent``: the strict parse our propagator needs to compare ids with ``sentry-trace``.

Same grammar as opentelemetry-api's TraceContextTextMapPropagator (which only writes into a
Context); we need the ids alone, before deciding which header wins.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_MAX_LENGTH = 512
_TRACEPARENT_RE = re.compile(
    r"[ \t]*([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?[ \t]*"
)


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
    match = _TRACEPARENT_RE.fullmatch(value)
    if match is None:
        return None
    version, trace_hex, span_hex, flags_hex, rest = match.groups()
    # Version ff is forbidden; version 00 has exactly four fields; later versions may add more.
    if version == "ff" or (version == "00" and rest):
        return None
    trace_id = int(trace_hex, 16)
    span_id = int(span_hex, 16)
    if trace_id == 0 or span_id == 0:
        return None
    return TraceParent(trace_id, span_id, int(flags_hex, 16))


def format_traceparent(trace_id: int, span_id: int, flags: int) -> str:
    # Flags other than "sampled" (e.g. W3C level 2 "random", 0x02) travel on unchanged.
    return f"00-{trace_id:032x}-{span_id:016x}-{flags & 0xFF:02x}"
