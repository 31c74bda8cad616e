"""Monitor schedules as Sentry expects them in ``monitor_config``, parsed with a clear error.

Pure and stdlib-only, so the configuration table can parse ``OTEL_BRIDGE_CRON_MONITORS``
without importing sentry-sdk or OpenTelemetry. Errors are ``ValueError`` saying what was
expected.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = [
    "Schedule",
    "build_monitor_config",
    "parse_cron_monitors",
    "parse_schedule",
    "slugify",
]

Schedule = str | tuple[int, str]

_UNITS = {
    "minute": "minute", "minutes": "minute", "min": "minute", "mins": "minute", "m": "minute",
    "hour": "hour", "hours": "hour", "h": "hour", "hr": "hour", "hrs": "hour",
    "day": "day", "days": "day", "d": "day",
    "week": "week", "weeks": "week", "w": "week",
    "month": "month", "months": "month", "mo": "month",
    "year": "year", "years": "year", "y": "year",
}
_INTERVAL = re.compile(r"^\s*(\d+)\s*([A-Za-z]+)\s*$")
# Sentry accepts the 5-field crontab; the @-macros are spelled out for it.
_CRON_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_SLUG_CHARS = re.compile(r"[^a-z0-9_-]+")
# Each crontab field's values, as Sentry's crontab reader (cronsim) takes them.
_CRON_FIELDS = (
    ("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12),
    ("day of week", 0, 7),
)
_MONTHS = {name: number for number, name in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
)}
_WEEKDAYS = {name: number for number, name in enumerate(
    ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
)}
# Sentry's bounds for monitor_config (minutes for the first two, check-ins for the others).
_OPTION_BOUNDS = {
    "checkin_margin": (1, 40_320),
    "max_runtime": (1, 40_320),
    "failure_issue_threshold": (1, 720),
    "recovery_threshold": (1, 720),
}


def _interval(count: int, unit: str) -> dict[str, Any]:
    if isinstance(count, bool) or not isinstance(count, int) or count <= 0:
        raise ValueError(f"an interval needs a positive whole number, got {count!r}")
    normalised = _UNITS.get(unit.strip().lower())
    if normalised is None:
        if unit.strip().lower() in ("s", "sec", "secs", "second", "seconds"):
            raise ValueError("Sentry monitors do not support intervals in seconds")
        raise ValueError(
            f"unknown interval unit {unit!r}; use minute, hour, day, week, month or year"
        )
    return {"type": "interval", "value": count, "unit": normalised}


def parse_schedule(schedule: Schedule) -> dict[str, Any]:
    """A schedule as Sentry's ``monitor_config.schedule``.

    ``"*/5 * * * *"`` and ``"@daily"`` are crontabs; ``"5m"``, ``"2 hours"`` and
    ``(5, "minute")`` are intervals. Raises ``ValueError`` saying what was expected.
    """
    if isinstance(schedule, tuple):
        if len(schedule) != 2 or not isinstance(schedule[1], str):
            raise ValueError(f"an interval is (count, unit), got {schedule!r}")
        return _interval(schedule[0], schedule[1])
    if not isinstance(schedule, str):
        raise ValueError(f"a schedule is a crontab string or (count, unit), got {schedule!r}")
    text = schedule.strip()
    match = _INTERVAL.match(text)
    if match:
        return _interval(int(match.group(1)), match.group(2))
    crontab = _CRON_MACROS.get(text.lower(), text)
    fields = crontab.split()
    if len(fields) != 5:
        raise ValueError(
            f"{schedule!r} is neither a 5-field crontab (e.g. '*/5 * * * *') nor an interval "
            "(e.g. '10m', '2 hours')"
        )
    for index, field in enumerate(fields):
        label = _CRON_FIELDS[index][0]
        for item in field.split(","):
            problem = _cron_item_problem(item, index)
            if problem is not None:
                raise ValueError(f"crontab {schedule!r}: {label} {field!r}: {problem}")
    return {"type": "crontab", "value": " ".join(fields)}


def _cron_value(text: str, index: int) -> int | None:
    names = _MONTHS if index == 3 else _WEEKDAYS if index == 4 else {}
    if text.isascii() and text.isdigit():
        return int(text)
    return names.get(text.lower())


def _cron_item_problem(item: str, index: int) -> str | None:
    """What is wrong with one comma-separated item of a crontab field, or None.

    Written by hand: the standard library has no crontab reader, and a schedule Sentry
    refuses would silently never create the monitor."""
    _, low, high = _CRON_FIELDS[index]
    if not item:
        return "an empty list item"
    if item == "?" and index in (2, 4):
        return None
    if index == 2 and item in ("L", "LW"):  # the month's last day, its last weekday
        return None
    base, slash, step = item.partition("/")
    if slash and not (step.isascii() and step.isdigit() and int(step) > 0):
        return f"the step {step!r} is not a positive number"
    if index == 2 and base.endswith("W") and not slash:  # the weekday nearest a day
        base = base[:-1]
    elif index == 4 and not slash and (base.endswith("L") or "#" in base):
        base, _, nth = base.removesuffix("L").partition("#")
        if nth and not (nth.isascii() and nth.isdigit() and 1 <= int(nth) <= 5):
            return f"{item!r}: the week of the month must be 1-5"
    if base == "*":
        return None
    start, dash, end = base.partition("-")
    values = []
    for part in (start, end) if dash else (start,):
        value = _cron_value(part, index)
        if value is None:
            return f"{part!r} is not a number{' or a name' if index >= 3 else ''}"
        if not low <= value <= high:
            return f"{value} is outside {low}-{high}"
        values.append(value)
    if dash and values[0] > values[1]:
        return f"the range {base!r} runs backwards"
    return None


def build_monitor_config(
    schedule: Schedule | None,
    *,
    timezone: str | None = None,
    checkin_margin: int | None = None,
    max_runtime: int | None = None,
    failure_issue_threshold: int | None = None,
    recovery_threshold: int | None = None,
) -> dict[str, Any] | None:
    """Sentry's ``monitor_config`` (upserts the monitor), or None without a schedule.

    Margins and runtimes are in minutes, as Sentry counts them."""
    extras = {
        "timezone": timezone,
        "checkin_margin": checkin_margin,
        "max_runtime": max_runtime,
        "failure_issue_threshold": failure_issue_threshold,
        "recovery_threshold": recovery_threshold,
    }
    given = {key: value for key, value in extras.items() if value is not None}
    if schedule is None:
        if given:
            # Sentry rejects a monitor_config without a schedule; say so where it is written.
            raise ValueError(f"{', '.join(given)} need(s) a schedule")
        return None
    for key, value in given.items():
        if key == "timezone":
            _check_timezone(value)
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{key} must be a whole number, got {value!r}")
        low, high = _OPTION_BOUNDS[key]
        if not low <= value <= high:
            raise ValueError(f"{key} must be {low}-{high}, got {value!r}")
    return {"schedule": parse_schedule(schedule), **given}


def _check_timezone(name: object) -> None:
    import zoneinfo

    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"timezone must be a tz database name, got {name!r}")
    if not zoneinfo.available_timezones():  # no tz database here to check against
        return
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"timezone {name!r} is not a tz database name (e.g. 'Europe/Berlin', 'UTC')"
        ) from None


def slugify(name: str) -> str:
    """A Sentry monitor slug (lowercase letters, digits, ``-``, ``_``; at most 50)."""
    return _SLUG_CHARS.sub("-", name.strip().lower()).strip("-")[:50]


def parse_cron_monitors(raw: str) -> dict[str, str]:
    """``OTEL_BRIDGE_CRON_MONITORS``: ``name=schedule`` pairs separated by ``;`` (crontabs
    contain commas), e.g. ``shop_report=*/5 * * * *;cleanup=1h``. Returns name -> schedule."""
    monitors: dict[str, str] = {}
    for part in raw.split(";"):
        if not part.strip():
            continue
        name, sep, schedule = part.partition("=")
        if not sep or not name.strip() or not schedule.strip():
            raise ValueError(f"expected name=schedule pairs separated by ';', got {part!r}")
        try:
            parse_schedule(schedule)
        except ValueError as exc:
            raise ValueError(f"{name.strip()}: {exc}") from None
        monitors[name.strip()] = schedule.strip()
    return monitors
