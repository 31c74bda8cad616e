"""Exactly one Sentry event (and one breadcrumb, one Sentry log, one OTel record) per log call.

A structlog logger backed by stdlib logging sends each call twice: once through our
processors (which know the message template and the structured keys) and once as a
`logging.LogRecord` (the rendered line), which sentry-sdk's LoggingIntegration and OTel's
LoggingHandler pick up on their own. The richer copy wins: our processors leave a *claim* for
the record the same call is about to create, and the hooks below drop the stdlib copy that
matches it. Plain stdlib records (no claim) and structlog without a stdlib backend (no record)
pass untouched.

The claim lives in a ContextVar because the record is created synchronously right after the
processor chain, in the same thread or asyncio task; nothing is shared between threads. One
claim per context is kept: the next bridged call replaces it, so a claim whose record never
came (a renderer that dropped the event) cannot linger.

Written by hand: neither sentry-sdk (it only ignores whole logger names) nor OTel (no
deduplication across handlers) can tell a structlog record from a plain one.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Any

from otel_bridge.logs.levels import sentry_log_severity

SENTRY_EVENT = "sentry.event"
SENTRY_BREADCRUMB = "sentry.breadcrumb"
SENTRY_LOG = "sentry.log"
OTEL_RECORD = "otel.record"


@dataclass(frozen=True)
class Claim:
    """What one structlog call already delivered, and to which sinks."""

    logger: str
    levelno: int
    text: str
    sinks: frozenset[str]

    def matches(self, logger: str, message: object) -> bool:
        return self.logger == logger and (not self.text or _mentions(message, self.text))


_claim: ContextVar[Claim | None] = ContextVar("otel_bridge_log_claim", default=None)


def _mentions(message: object, text: str) -> bool:
    # ProcessorFormatter setups hand the event dict itself to stdlib as the message.
    if isinstance(message, Mapping):
        return message.get("event") == text or _contains(str(message), text)
    if isinstance(message, str):
        return _contains(message, text)
    try:
        return _contains(str(message), text)
    except Exception:
        return False


def _contains(line: str, text: str) -> bool:
    """The event text as a renderer wrote it into the line: as it is, or escaped the way
    structlog's renderers escape it (JSONRenderer's ``\\u00e9`` and ``\\"``, LogfmtRenderer's
    ``\\"`` and ``\\n``, KeyValueRenderer's and a dict's repr)."""
    if text in line:
        return True
    if text.isascii() and text.isprintable() and not any(c in text for c in "\"'\\"):
        return False  # no renderer writes such a text any other way
    escaped = json.dumps(text)[1:-1]  # ascii-only, as JSONRenderer writes by default
    return (
        escaped in line
        or json.dumps(text, ensure_ascii=False)[1:-1] in line
        or repr(text)[1:-1] in line
    )


def claim(logger: object, levelno: int, text: str, sink: str) -> None:
    """Record that ``sink`` already got this call, if a stdlib record for it will follow."""
    if not isinstance(logger, logging.Logger) or not logger.isEnabledFor(levelno):
        return
    current = _claim.get()
    if (
        current is not None
        and (current.logger, current.levelno, current.text) == (logger.name, levelno, text)
    ):
        _claim.set(replace(current, sinks=current.sinks | {sink}))
    else:
        _claim.set(Claim(logger.name, levelno, text, frozenset((sink,))))


def consume(sink: str, predicate: Callable[[Claim], bool]) -> bool:
    """True (and the claim for ``sink`` used up) when the current claim matches."""
    current = _claim.get()
    if current is None or sink not in current.sinks or not predicate(current):
        return False
    remaining = current.sinks - {sink}
    _claim.set(replace(current, sinks=remaining) if remaining else None)
    return True


def _record_claimed(sink: str, record: object) -> bool:
    if not isinstance(record, logging.LogRecord):
        return False
    return consume(
        sink,
        lambda c: c.levelno == record.levelno and c.matches(record.name, record.msg),
    )


def drop_bridged_event(event: Any, hint: Mapping[str, Any] | None) -> Any:
    """sentry-sdk event processor: drop LoggingIntegration's event for a record the structlog
    bridge already reported. Register with ``sentry_sdk.scope.add_global_event_processor``."""
    try:
        if hint and _record_claimed(SENTRY_EVENT, hint.get("log_record")):
            return None
    except Exception:
        pass
    return event


def drop_bridged_breadcrumb(crumb: Any, hint: Mapping[str, Any] | None) -> Any:
    """``before_breadcrumb``: drop LoggingIntegration's breadcrumb for a bridged record."""
    try:
        if hint and _record_claimed(SENTRY_BREADCRUMB, hint.get("log_record")):
            return None
    except Exception:
        pass
    return crumb


def drop_bridged_log(log: Any, hint: Mapping[str, Any] | None) -> Any:
    """``before_send_log``: drop LoggingIntegration's Sentry log for a bridged record (its hint
    carries no record, so it is matched on logger name, severity and message: the template
    sentry-sdk keeps when the record had %-args, its body being the formatted line)."""
    try:
        attributes = log.get("attributes") or {}
        if attributes.get("sentry.origin") != "auto.log.stdlib":
            return log
        name = str(attributes.get("logger.name"))
        severity = log.get("severity_number")
        body = attributes.get("sentry.message.template", log.get("body"))
        if consume(
            SENTRY_LOG,
            lambda c: sentry_log_severity(c.levelno)[0] == severity and c.matches(name, body),
        ):
            return None
    except Exception:
        pass
    return log


# Set on a record by QueueClaimStamp, on the thread that logged: the claim itself stays
# behind in that thread's context when the record is handled on a QueueListener's thread.
CLAIMED_ATTRIBUTE = "otel_bridge_claimed"


class BridgedRecordFilter(logging.Filter):
    """A filter for OTel's ``LoggingHandler``: skips records the OTel log emitter processor
    already emitted with their structured attributes."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            if OTEL_RECORD in getattr(record, CLAIMED_ATTRIBUTE, ()):
                return False
            return not _record_claimed(OTEL_RECORD, record)
        except Exception:
            return True


class QueueClaimStamp(logging.Filter):
    """A filter for a ``QueueHandler``: never drops a record, but marks one the OTel log
    emitter already emitted, so :class:`BridgedRecordFilter` on an OTel ``LoggingHandler``
    behind the queue (on the listener's thread, where the claim is not visible) skips it.
    The mark is an attribute of the record, which QueueHandler's copy keeps."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            if _record_claimed(OTEL_RECORD, record):
                setattr(record, CLAIMED_ATTRIBUTE, frozenset((OTEL_RECORD,)))
        except Exception:
            pass
        return True


def is_otel_logging_handler(handler: logging.Handler) -> bool:
    # By name, so this module does not import the experimental OTel logs SDK: the contrib
    # handler (opentelemetry.instrumentation.logging.handler) and the SDK's deprecated one.
    cls = type(handler)
    return cls.__name__ == "LoggingHandler" and cls.__module__.startswith("opentelemetry.")


def _add_once(handler: logging.Handler, kind: type[logging.Filter]) -> None:
    if not any(isinstance(f, kind) for f in handler.filters):
        handler.addFilter(kind())


def _queued_handlers(queue_handler: logging.Handler) -> list[logging.Handler]:
    # dictConfig (Python >= 3.12) links a QueueHandler to the listener it starts.
    listener = getattr(queue_handler, "listener", None)
    return list(getattr(listener, "handlers", ()) or ())


def install_handler_filters(root: logging.Logger | None = None) -> int:
    """Add :class:`BridgedRecordFilter` to every OTel ``LoggingHandler`` on the root logger,
    and :class:`QueueClaimStamp` to every ``QueueHandler`` there (plus BridgedRecordFilter
    to the OTel handlers of the listener dictConfig gave it); idempotent. Returns how many
    OTel handlers carry the filter. Meant for the ``opentelemetry_post_instrument`` entry
    point (after the logging instrumentation added its handler) and for
    :class:`StructlogInstrumentor`."""
    count = 0
    for handler in (root or logging.getLogger()).handlers:
        candidates = [handler]
        if isinstance(handler, logging.handlers.QueueHandler):
            _add_once(handler, QueueClaimStamp)
            candidates = _queued_handlers(handler)
        for candidate in candidates:
            if is_otel_logging_handler(candidate):
                _add_once(candidate, BridgedRecordFilter)
                count += 1
    return count


def remove_handler_filters(root: logging.Logger | None = None) -> None:
    """Undo :func:`install_handler_filters`."""
    for handler in (root or logging.getLogger()).handlers:
        for candidate in [handler, *_queued_handlers(handler)]:
            for existing in [
                f for f in candidate.filters if isinstance(f, BridgedRecordFilter | QueueClaimStamp)
            ]:
                candidate.removeFilter(existing)
