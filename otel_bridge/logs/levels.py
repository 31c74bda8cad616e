"""Log levels: structlog method names, stdlib numbers, Sentry names and OTel severities."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

# structlog calls processors with the logger method's name; `warn`, `exception`, `fatal` and
# `msg` (PrintLogger's only method) are aliases stdlib levels do not spell out.
_METHOD_LEVELS: Mapping[str, int] = {
    "trace": 5,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "msg": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}

_THRESHOLDS: Mapping[str, int | None] = {
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARNING": logging.WARNING,
    "WARN": logging.WARNING,
    "ERROR": logging.ERROR,
    "CRITICAL": logging.CRITICAL,
    "FATAL": logging.CRITICAL,
    "NONE": None,
}

# OTel log data model severity numbers (TRACE=1, DEBUG=5, INFO=9, WARN=13, ERROR=17, FATAL=21).
_OTEL_SEVERITIES: tuple[tuple[int, int, str], ...] = (
    (logging.CRITICAL, 21, "FATAL"),
    (logging.ERROR, 17, "ERROR"),
    (logging.WARNING, 13, "WARN"),
    (logging.INFO, 9, "INFO"),
    (logging.DEBUG, 5, "DEBUG"),
)


def threshold(level: str | int | None) -> int | None:
    """A level setting (`"INFO"`, `"none"`, `20`) as a stdlib number; None means disabled.
    Unknown names disable rather than raise: processors must never break logging."""
    if level is None:
        return None
    if isinstance(level, int):
        return level
    return _THRESHOLDS.get(level.strip().upper())


def level_number(method_name: str, event_dict: Mapping[str, Any]) -> int:
    """The stdlib level of one structlog call: the method name decides, an explicit `level`
    key (from `add_log_level` or the caller) only when the method says nothing (`msg`, `log`)."""
    number = _METHOD_LEVELS.get(method_name)
    if number is not None and method_name != "msg":
        return number
    level = event_dict.get("level")
    if isinstance(level, int) and not isinstance(level, bool):
        return level
    if isinstance(level, str):
        by_name = _METHOD_LEVELS.get(level.lower())
        if by_name is not None:
            return by_name
    return number if number is not None else logging.INFO


def sentry_level(number: int) -> str:
    """Sentry's level name for a stdlib level number."""
    if number >= logging.CRITICAL:
        return "fatal"
    if number >= logging.ERROR:
        return "error"
    if number >= logging.WARNING:
        return "warning"
    if number >= logging.INFO:
        return "info"
    return "debug"


def otel_severity(number: int) -> tuple[int, str]:
    """(OTel severity number, severity text) for a stdlib level number."""
    for floor, severity, text in _OTEL_SEVERITIES:
        if number >= floor:
            return severity, text
    return 1, "TRACE"


def sentry_log_severity(number: int) -> tuple[int, str]:
    """(severity number, lowercase text) as Sentry Logs spell them (`warn`, `fatal`)."""
    severity, text = otel_severity(number)
    return severity, text.lower()
