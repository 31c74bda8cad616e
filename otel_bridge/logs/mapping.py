"""Pure functions from a structlog event dict to what Sentry and OTel receive.

No I/O and no sentry-sdk or OTel state here, so every mapping is testable on its own.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from types import TracebackType
from typing import Any

from otel_bridge.logs.levels import sentry_level, sentry_log_severity

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]

# Keys that describe the call rather than the event: they are turned into the message, the
# level, the stack trace or the trace link, never copied as structured data.
RESERVED_KEYS = frozenset(
    (
        "event",
        "level",
        "logger",
        "exc_info",
        "exception",
        "stack_info",
        "stacklevel",
        "timestamp",
        "trace_id",
        "span_id",
        "trace_sampled",
        "_record",
        "_from_structlog",
        "_logger",
        "_name",
    )
)

SENTRY_ORIGIN = "auto.log.structlog"


def event_text(event_dict: Mapping[str, Any]) -> str:
    """The message of a structlog event (its ``event`` key), as text."""
    event = event_dict.get("event")
    if event is None:
        return ""
    return event if isinstance(event, str) else str(event)


def logger_name(logger: object, event_dict: Mapping[str, Any], default: str = "structlog") -> str:
    """``logger`` key (from ``add_logger_name``), else the wrapped logger's name (stdlib)."""
    name = event_dict.get("logger")
    if isinstance(name, str) and name:
        return name
    name = getattr(logger, "name", None)
    return name if isinstance(name, str) and name else default


def structured_fields(event_dict: Mapping[str, Any]) -> dict[str, Any]:
    """The caller's key/value pairs: everything but the reserved keys."""
    return {
        key: value
        for key, value in event_dict.items()
        if isinstance(key, str) and key not in RESERVED_KEYS
    }


def resolve_exc_info(value: Any) -> ExcInfo | None:
    """structlog's ``exc_info`` conventions (True, an exception, a sys.exc_info() tuple) as a
    tuple; None when there is no exception."""
    if value is None or value is False:
        return None
    if isinstance(value, BaseException):
        return type(value), value, value.__traceback__
    if value is True:
        value = sys.exc_info()
    if (
        isinstance(value, tuple)
        and len(value) == 3
        and isinstance(value[0], type)
        and isinstance(value[1], BaseException)
    ):
        return value[0], value[1], value[2]
    return None


def tags_from(fields: Mapping[str, Any], tag_keys: Sequence[str]) -> dict[str, str]:
    """Sentry tags (strings, at most 200 characters) for the configured keys present."""
    tags: dict[str, str] = {}
    for key in tag_keys:
        if key in fields and fields[key] is not None:
            tags[key] = str(fields[key])[:200]
    return tags


def breadcrumb(
    *, text: str, category: str, levelno: int, data: Mapping[str, Any], now: float | None = None
) -> dict[str, Any]:
    """A Sentry ``log`` breadcrumb, shaped like sentry-sdk's logging integration makes them."""
    return {
        "type": "log",
        "category": category,
        "level": sentry_level(levelno),
        "message": text,
        "timestamp": datetime.fromtimestamp(time.time() if now is None else now, timezone.utc),
        "data": dict(data),
    }


def error_event(
    *,
    text: str,
    logger: str,
    levelno: int,
    fields: Mapping[str, Any],
    tags: Mapping[str, str],
) -> dict[str, Any]:
    """A Sentry error event for one log call (without the exception, added by the caller).

    Grouped by logger and message template: structlog messages are constant strings with the
    variable parts in keys, so the message groups better than sentry's default (which would
    split by stack trace, or by the rendered line with its timestamp)."""
    event: dict[str, Any] = {
        "level": sentry_level(levelno),
        "logger": logger,
        "logentry": {"message": text, "formatted": text, "params": []},
        "fingerprint": [logger, text],
    }
    if fields:
        event["contexts"] = {"structlog": dict(fields)}
    if tags:
        event["tags"] = dict(tags)
    return event


def _attribute(value: Any) -> Any:
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        kinds = {type(v) for v in value}
        if len(kinds) <= 1 and kinds <= {bool, int, float, str}:
            return list(value)
    try:
        return repr(value) if not isinstance(value, Mapping) else str(dict(value))
    except Exception:  # one field's broken __repr__ must not lose the whole record
        return f"<{type(value).__name__} (repr failed)>"


def attributes_from(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Structured keys as OTel/Sentry attribute values (primitives or homogeneous lists;
    anything else as its text), never a live reference to the caller's objects."""
    return {key: _attribute(value) for key, value in fields.items() if value is not None}


def sentry_log(
    *,
    text: str,
    logger: str,
    levelno: int,
    fields: Mapping[str, Any],
    trace_ids: tuple[str, str] | None,
    now_ns: int | None = None,
) -> dict[str, Any]:
    """A Sentry Logs item (sentry-sdk's ``Log`` dict): the message template as body and
    ``sentry.message.template``, the structured keys as attributes, the OTel trace ids."""
    severity_number, severity_text = sentry_log_severity(levelno)
    attributes = attributes_from(fields)
    attributes["sentry.message.template"] = text
    attributes["sentry.origin"] = SENTRY_ORIGIN
    attributes["logger.name"] = logger
    return {
        "severity_text": severity_text,
        "severity_number": severity_number,
        "body": text,
        "attributes": attributes,
        "time_unix_nano": time.time_ns() if now_ns is None else now_ns,
        "trace_id": trace_ids[0] if trace_ids else None,
        "span_id": trace_ids[1] if trace_ids else None,
    }


def stdlib_drops(logger: object, levelno: int) -> bool:
    """structlog wraps a stdlib logger that will drop this level: the application chose not
    to see it, so neither Sentry nor OTel should (structlog's own filtering loggers never call
    processors for such levels)."""
    return isinstance(logger, logging.Logger) and not logger.isEnabledFor(levelno)
