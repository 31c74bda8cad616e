"""Sentry error events for exceptions recorded on spans (``span.record_exception``).

sentry-sdk stays the error engine; these events cover exceptions it never saw (caught by an
instrumentation, or raised where no sentry-sdk integration runs). All we have is the span
event's text, so the stack trace is parsed back out of ``exception.stacktrace`` — no
library does this for Python's traceback format, hence the hand-written parser.
"""

from __future__ import annotations

import functools
import re
import sys
import sysconfig
from collections.abc import Mapping
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from otel_bridge.pipeline.mapping import (
    base_event,
    http_status_code,
    trace_context,
    transaction_name_and_source,
)

SPAN_ERROR_MODES = ("none", "server", "server_consumer", "all")

# A line number of at most 18 digits: int() refuses over 4,300, and a stack trace recorded
# on a span is text anyone can write.
_FRAME_RE = re.compile(
    r'^  File "(?P<path>.*)", line (?P<lineno>\d{1,18})(?:, in (?P<function>.*))?$'
)
_TRACEBACK_STARTS = ("Traceback (most recent call last):", "  + Exception Group Traceback")
# Top-level lines of an exception group's own traceback carry this gutter.
_GROUP_GUTTER = "  | "
_MARKER_CHARS = frozenset("^~ ")
# sentry-sdk truncates exception values; comparing the first line only keeps dedupe robust.
_KEY_MESSAGE_LENGTH = 1000


def should_report_span_errors(span: ReadableSpan, mode: str) -> bool:
    """Whether ``span``'s recorded exceptions are reported under ``OTEL_BRIDGE_SPAN_ERRORS``.

    ``none``: never; ``server``: SERVER spans; ``server_consumer``: SERVER and CONSUMER
    spans; ``all``: every span. An HTTP span that answered below 500 (an ``Http404``, a
    permission error turned into a 403) handled its exception: like sentry-sdk's web
    integrations, we don't report it.
    """
    if mode == "none":
        return False
    status_code = http_status_code(span)
    if status_code is not None and status_code < 500:
        return False
    if mode == "server":
        return span.kind is SpanKind.SERVER
    if mode == "server_consumer":
        return span.kind in (SpanKind.SERVER, SpanKind.CONSUMER)
    if mode == "all":
        return True
    raise ValueError(f"unknown span error mode {mode!r}; expected one of {SPAN_ERROR_MODES}")


def short_type_name(exc_type: str) -> str:
    """``django.http.response.Http404`` -> ``Http404``; ``Outer.Inner`` -> ``Inner``."""
    return exc_type.rsplit(".", 1)[-1]


def exception_key(trace_id: str, exc_type: str, message: str) -> tuple[str, str, str]:
    """A key equal for the same exception as sentry-sdk and OTel each report it.

    OTel writes ``module.QualName`` (bare for builtins), sentry-sdk ``QualName`` with the
    module apart; both reduce to the last dotted part. sentry-sdk may append
    ``__notes__`` or truncate the value, so only the message's first line counts.
    """
    lines = message.strip().splitlines()
    first_line = lines[0].strip() if lines else ""
    return (
        trace_id.lower(),
        short_type_name(exc_type.strip()),
        first_line[:_KEY_MESSAGE_LENGTH],
    )


def split_exception_type(exc_type: str) -> tuple[str | None, str]:
    """``(module, type)`` the way sentry-sdk reports them, from OTel's ``exception.type``.

    The module is the longest dotted prefix that is an imported module (the exception was
    raised in this process, so its module is loaded); otherwise the last dot splits.
    """
    parts = exc_type.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module = ".".join(parts[:cut])
        if module in sys.modules:
            return module, ".".join(parts[cut:])
    if len(parts) == 1:
        return None, exc_type
    return ".".join(parts[:-1]), parts[-1]


@functools.cache
def _library_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {paths.get(key) for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    return tuple(sorted((root for root in roots if root), key=len, reverse=True))


def _in_app(path: str) -> bool:
    if path.startswith("<") or "site-packages" in path or "dist-packages" in path:
        return False
    return not any(path.startswith(root) for root in _library_roots())


def _relative_filename(path: str) -> str:
    """The path relative to the longest ``sys.path`` entry containing it (stable across
    deploy directories, which keeps Sentry's grouping steady)."""
    best = ""
    for entry in sys.path:
        if entry and path.startswith(entry.rstrip("/") + "/") and len(entry) > len(best):
            best = entry.rstrip("/")
    return path[len(best) + 1 :] if best else path


def _module_from_filename(filename: str) -> str | None:
    if filename.startswith("/") or not filename.endswith(".py"):
        return None
    module = filename[: -len(".py")].replace("/", ".")
    return module.removesuffix(".__init__")


def _frame(line: str) -> dict[str, Any] | None:
    match = _FRAME_RE.match(line)
    if match is None:
        return None
    path = match.group("path")
    filename = _relative_filename(path)
    frame: dict[str, Any] = {
        "filename": filename,
        "abs_path": path,
        "lineno": int(match.group("lineno")),
        "function": match.group("function") or "<module>",
        "in_app": _in_app(path),
    }
    module = _module_from_filename(filename)
    if module:
        frame["module"] = module
    return frame


def parse_python_traceback(text: str) -> list[dict[str, Any]]:
    """Frames (oldest first, as Sentry wants) of the last exception in a formatted traceback.

    ``traceback.format_exception`` prints chained causes first, so the frames of the
    exception itself are in the last ``Traceback`` section. Caret lines and "[Previous
    line repeated ...]" notes are skipped; an exception group's own frames are read from
    behind its ``|`` gutter, its sub-exceptions are not.
    """
    frames: list[dict[str, Any]] = []
    # The source line, when Python could read it, directly follows its "File" line.
    awaiting_context: dict[str, Any] | None = None
    for raw in text.splitlines():
        if raw.startswith(_TRACEBACK_STARTS):
            frames, awaiting_context = [], None
            continue
        line = raw[len(_GROUP_GUTTER) :] if raw.startswith(_GROUP_GUTTER) else raw
        frame = _frame(line)
        if frame is not None:
            frames.append(frame)
            awaiting_context = frame
            continue
        if awaiting_context is not None and line.startswith("    "):
            code = line.strip()
            if code and not set(code) <= _MARKER_CHARS and not code.startswith("[Previous"):
                awaiting_context["context_line"] = code
        awaiting_context = None
    return frames


def _exception_value(attributes: Mapping[str, Any]) -> dict[str, Any]:
    raw_type = str(attributes.get("exception.type") or "Exception")
    module, type_name = split_exception_type(raw_type)
    value: dict[str, Any] = {
        "type": type_name,
        "value": str(attributes.get("exception.message") or ""),
        "mechanism": {"type": "otel", "handled": False},
    }
    if module:
        value["module"] = module
    stacktrace = attributes.get("exception.stacktrace")
    if isinstance(stacktrace, str):
        frames = parse_python_traceback(stacktrace)
        if frames:
            value["stacktrace"] = {"frames": frames}
    return value


def exception_error_events(
    span: ReadableSpan, *, release: str | None, environment: str | None
) -> list[dict[str, Any]]:
    """One Sentry error event per ``exception`` span event, linked to the span's trace.

    ``transaction`` is the name the span would have as a transaction (server and consumer
    spans, the usual reporters, are local roots). No fingerprint: Sentry groups by the
    parsed stack trace like any other Python error.
    """
    events: list[dict[str, Any]] = []
    transaction, _ = transaction_name_and_source(span)
    for span_event in span.events:
        if span_event.name != "exception":
            continue
        event = base_event(span, release=release, environment=environment)
        event["contexts"]["trace"] = trace_context(span)
        event.update(
            {
                "level": "error",
                "timestamp": span_event.timestamp / 1e9,
                "transaction": transaction,
                "exception": {"values": [_exception_value(span_event.attributes or {})]},
            }
        )
        events.append(event)
    return events
