"""The ``sentry-trace`` header: ``{trace_id}-{span_id}[-{0|1}]``.

Written by hand because sentry-sdk's parser accepts a bare trace id or a lone ``-`` and then
fails later in the request; this one is strict and total (malformed input gives ``None``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# A well-formed header is 51 characters; anything much longer is not worth a regex run.
_MAX_LENGTH = 128
_MAX_FOLDED_LENGTH = 8 * _MAX_LENGTH
_SENTRY_TRACE_RE = re.compile(r"[ \t]*([0-9a-f]{32})-([0-9a-f]{16})(?:-([01]))?[ \t]*")


@dataclass(frozen=True)
class SentryTrace:
    trace_id: int
    span_id: int
    # None: the sender deferred the sampling decision to us.
    sampled: bool | None


def parse_sentry_trace(value: object) -> SentryTrace | None:
    if not isinstance(value, str):
        return None
    if "," in value and len(value) <= _MAX_FOLDED_LENGTH:
        # A header sent twice, folded into one value by the server (RFC 9110, 5.3: WSGI
        # servers do): the first non-empty one counts, as in sentry-sdk.
        value = next((part for part in value.split(",") if part.strip()), "")
    if len(value) > _MAX_LENGTH:
        return None
    match = _SENTRY_TRACE_RE.fullmatch(value)
    if match is None:
        return None
    trace_id = int(match.group(1), 16)
    span_id = int(match.group(2), 16)
    if trace_id == 0 or span_id == 0:
        return None
    flag = match.group(3)
    return SentryTrace(trace_id, span_id, None if flag is None else flag == "1")


def format_sentry_trace(trace_id: int, span_id: int, sampled: bool | None) -> str:
    head = f"{trace_id:032x}-{span_id:016x}"
    return head if sampled is None else f"{head}-{1 if sampled else 0}"
