"""Monitor schedules as Sentry expects them in ``monitor_config``, parsed with a clear error.

Pure, and importing nothing but the standard library and cronsim (Sentry's own crontab
reader), so the configuration table can parse ``OTEL_BRIDGE_CRON_MONITORS`` without
importing sentry-sdk or OpenTelemetry. Errors are ``ValueError`` saying what was
expected.
"""

from __future__ import annotations

import functools
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
    crontab = " ".join(fields)
    problem = _crontab_problem(crontab)
    if problem is not None:
        raise ValueError(f"crontab {schedule!r}: {problem}")
    return {"type": "crontab", "value": crontab}


def _crontab_problem(crontab: str) -> str | None:
    """Why Sentry would refuse ``crontab``, or None. Sentry reads crontabs with cronsim:
    the same reader here, so what passes is what Sentry takes (a monitor whose schedule
    it refused would silently never be created)."""
    from datetime import datetime

    from cronsim import CronSim, CronSimError

    try:
        CronSim(crontab, datetime(2000, 1, 1))
    except CronSimError as exc:
        return f"{exc} (e.g. a value out of range, a step of 0, an unknown name)"
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
            check_timezone(value)
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{key} must be a whole number, got {value!r}")
        low, high = _OPTION_BOUNDS[key]
        if not low <= value <= high:
            raise ValueError(f"{key} must be {low}-{high}, got {value!r}")
    return {"schedule": parse_schedule(schedule), **given}


def check_timezone(name: object) -> None:
    """ValueError unless ``name`` is a timezone Sentry's monitors accept."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"timezone must be a tz database name, got {name!r}")
    known = _timezones_sentry_accepts()
    # A machine without a tz database (no tzdata package) cannot tell: Sentry will.
    if known and name not in known:
        raise ValueError(
            f"timezone {name!r} is not a tz database name (e.g. 'Europe/Berlin', 'UTC')"
        )


@functools.cache
def _timezones_sentry_accepts() -> frozenset[str]:
    """What Sentry's monitor validator accepts (``sentry.utils.dates.AVAILABLE_TIMEZONES``):
    the tz database's names but ``Factory``. ``ZoneInfo`` also loads ``posixrules``,
    ``posix/…`` and ``right/…``, which Sentry refuses, creating no monitor at all."""
    import zoneinfo

    return frozenset(zoneinfo.available_timezones() - {"Factory"})


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
