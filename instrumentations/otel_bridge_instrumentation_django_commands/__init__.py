"""OpenTelemetry instrumentation for Django management commands.

contrib's Django instrumentation traces requests only; a command run by ``manage.py`` (or
``call_command``) produces no span of its own, so its queries float as separate local roots.
This wraps ``BaseCommand.execute`` in one INTERNAL span named ``manage.py <command>``
(``sentry.op=task``, source ``task``): the command becomes one transaction with its SQL and
HTTP spans inside.

    opentelemetry-instrument python manage.py shop_report

Settings (environment):

- ``OTEL_BRIDGE_DJANGO_COMMANDS_EXCLUDE``: commands not traced, comma-separated (replaces
  the default: long-running servers and interactive shells).
- ``OTEL_BRIDGE_CRON_MONITORS``: ``command=schedule`` pairs separated by ``;``; those
  commands also send Sentry check-ins (monitor slug = command name), e.g.
  ``shop_report=*/5 * * * *;cleanup=1h``.

Disable with ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=django_commands``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Collection, Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)
from opentelemetry.instrumentation.utils import unwrap
from wrapt import wrap_function_wrapper

from otel_bridge.crons import Monitor, build_monitor_config, parse_cron_monitors, slugify
from otel_bridge.schedules import check_timezone
from otel_bridge_instrumentation_django_commands.package import _instruments
from otel_bridge_instrumentation_django_commands.version import __version__

__all__ = [
    "DEFAULT_EXCLUDED_COMMANDS",
    "DjangoCommandsInstrumentor",
    "command_name",
    "parse_command_list",
]

_logger = logging.getLogger(__name__)

EXCLUDE_ENV = "OTEL_BRIDGE_DJANGO_COMMANDS_EXCLUDE"
MONITORS_ENV = "OTEL_BRIDGE_CRON_MONITORS"
TIMEZONE_ENV = "OTEL_BRIDGE_CRON_TIMEZONE"

# Servers and shells run for hours: one span for their whole life is no transaction anyone
# wants (their requests are traced by the Django instrumentation). `test` would wrap a whole
# test run.
DEFAULT_EXCLUDED_COMMANDS: tuple[str, ...] = (
    "runserver",
    "runserver_plus",
    "testserver",
    "runworker",
    "shell",
    "shell_plus",
    "dbshell",
    "check",
    "test",
)

COMMAND_OP = "task"
ATTR_COMMAND = "django.management.command"


def parse_command_list(raw: str) -> tuple[str, ...]:
    """``OTEL_BRIDGE_DJANGO_COMMANDS_EXCLUDE``: comma-separated command names."""
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def command_name(command: object) -> str:
    """The name ``manage.py`` knows a command by: its module's last part
    (``shop.management.commands.shop_report`` -> ``shop_report``)."""
    return type(command).__module__.rsplit(".", 1)[-1]


def _from_config(attr: str, env: str, parse: Callable[[str], Any], default: Any) -> Any:
    """A setting from the config table when it lists it, else parsed from the environment.

    Bad values keep the default and are logged once (here: the instrumentor runs once)."""
    from otel_bridge.runtime import get_runtime

    config = get_runtime().config
    if hasattr(config, attr):
        return getattr(config, attr)
    raw = os.environ.get(env)
    if raw is None:
        return default
    try:
        return parse(raw)
    except ValueError as exc:
        _logger.error("otel-bridge: %s=%r ignored: %s", env, raw, exc)
        return default


def _timezone(raw: str) -> str | None:
    check_timezone(raw.strip())
    return raw.strip()


def _monitor_map(value: Any) -> dict[str, str]:
    """Command -> schedule from a mapping, ``(name, schedule)`` pairs or ``"name=schedule"``
    strings (how a config table may hold ``OTEL_BRIDGE_CRON_MONITORS``)."""
    if isinstance(value, Mapping):
        return {str(name): str(schedule) for name, schedule in value.items()}
    monitors: dict[str, str] = {}
    for entry in value or ():
        if isinstance(entry, str):
            name, _, schedule = entry.partition("=")
        else:
            name, schedule = entry
        monitors[str(name).strip()] = str(schedule).strip()
    return monitors


class DjangoCommandsInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Traces Django management commands; optionally sends Sentry check-ins for some.

    ``instrument()`` accepts ``tracer_provider``, ``exclude_commands`` (names not traced),
    ``monitors`` (command name -> schedule) and ``monitors_timezone`` (the crontabs'), which
    win over the environment."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _instrument(self, **kwargs: Any) -> None:
        # Imported here: without Django the loader sees ModuleNotFoundError and skips us.
        from django.core.management.base import BaseCommand

        exclude = kwargs.get("exclude_commands")
        if exclude is None:
            exclude = _from_config(
                "django_commands_exclude", EXCLUDE_ENV, parse_command_list,
                DEFAULT_EXCLUDED_COMMANDS,
            )
        monitors = kwargs.get("monitors")
        if monitors is None:
            monitors = _from_config("cron_monitors", MONITORS_ENV, parse_cron_monitors, {})
        timezone = kwargs.get("monitors_timezone")
        if timezone is None:
            timezone = _from_config("cron_timezone", TIMEZONE_ENV, _timezone, None)
        tracer = trace.get_tracer(
            __name__, __version__, tracer_provider=kwargs.get("tracer_provider")
        )
        wrap_function_wrapper(
            BaseCommand, "execute",
            _traced_execute(tracer, frozenset(exclude), _monitor_map(monitors), timezone),
        )

    def _uninstrument(self, **kwargs: Any) -> None:
        from django.core.management.base import BaseCommand

        unwrap(BaseCommand, "execute")


def _traced_execute(
    tracer: trace.Tracer,
    exclude: frozenset[str],
    monitors: Mapping[str, Any],
    timezone: str | None = None,
) -> Callable[..., Any]:
    configs: dict[str, dict[str, Any] | None] = {}
    for name, schedule in monitors.items():
        try:
            configs[name] = build_monitor_config(schedule, timezone=timezone)
        except ValueError as exc:
            _logger.error("otel-bridge: cron monitor for %s ignored: %s", name, exc)

    def wrapper(
        wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any
    ) -> Any:
        name = command_name(instance)
        if name in exclude:
            return wrapped(*args, **kwargs)
        monitored = name in configs
        job = Monitor(
            slugify(name) if monitored else None,
            monitor_config=configs.get(name),
            name=f"manage.py {name}",
            op=COMMAND_OP,
            attributes={
                ATTR_COMMAND: name,
                "code.function.name": f"{type(instance).__module__}.Command.handle",
            },
            tracer=tracer,
        )
        with job.run():
            return wrapped(*args, **kwargs)

    return wrapper
