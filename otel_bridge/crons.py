"""Cron and background job monitoring: one OTel span per run plus Sentry check-ins.

    from otel_bridge.crons import monitor

    @monitor("nightly-report", schedule="0 3 * * *", timezone="Europe/Berlin")
    def nightly_report() -> None: ...

    with monitor("cleanup", schedule=(1, "hour")):
        ...

The span is the vendor-neutral part (any OTel backend sees the job; with no parent it is a
local root, which the Sentry pipeline turns into a transaction). The check-ins are
Sentry's: ``in_progress`` when the job starts, then ``ok`` or ``error`` with the duration,
each carrying the span's trace id so Sentry links the check-in to the transaction. A
``schedule`` makes each check-in upsert the monitor (``monitor_config``).

sentry-sdk builds and sends the check-ins (``sentry_sdk.crons.capture_checkin``); written
here is only what it does not do: the span and the trace context on the check-in
(schedules are parsed in ``otel_bridge.schedules``). Without an initialised sentry-sdk the
span still happens and no check-in is attempted.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, cast, overload

import sentry_sdk
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer, TracerProvider
from sentry_sdk.crons import capture_checkin
from sentry_sdk.crons.consts import MonitorStatus

from otel_bridge import __version__
from otel_bridge.schedules import (
    Schedule,
    build_monitor_config,
    parse_cron_monitors,
    parse_schedule,
    slugify,
)

__all__ = [
    "ATTR_MONITOR_SLUG",
    "ATTR_SENTRY_OP",
    "ATTR_SENTRY_SOURCE",
    "Monitor",
    "Schedule",
    "build_monitor_config",
    "monitor",
    "parse_cron_monitors",
    "parse_schedule",
    "slugify",
]

_logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

# Attributes the span pipeline's mapping reads (op and transaction source hints).
ATTR_SENTRY_OP = "sentry.op"
ATTR_SENTRY_SOURCE = "sentry.source"
ATTR_MONITOR_SLUG = "sentry.monitor.slug"
ATTR_CHECK_IN_ID = "sentry.monitor.check_in_id"

CRON_OP = "cron"

def _sentry_active() -> bool:
    client = sentry_sdk.get_client()
    return client.is_active() and getattr(client, "transport", None) is not None


def _send_check_in(
    slug: str,
    status: str,
    span: Span,
    *,
    check_in_id: str | None = None,
    duration: float | None = None,
    monitor_config: Mapping[str, Any] | None = None,
) -> str | None:
    try:
        return _capture_check_in(slug, status, span, check_in_id, duration, monitor_config)
    except Exception:  # monitoring must never change the job's outcome
        _logger.debug("otel-bridge: check-in for %s not sent", slug, exc_info=True)
        return None


def _capture_check_in(
    slug: str,
    status: str,
    span: Span,
    check_in_id: str | None,
    duration: float | None,
    monitor_config: Mapping[str, Any] | None,
) -> str | None:
    span_context = span.get_span_context()
    with sentry_sdk.new_scope() as scope:
        if span_context.is_valid:
            # Explicit rather than left to an external propagation context: the check-in then
            # links to this span's trace whoever set up sentry-sdk.
            scope.set_context(
                "trace",
                {
                    "trace_id": format(span_context.trace_id, "032x"),
                    "span_id": format(span_context.span_id, "016x"),
                },
            )
        return capture_checkin(
            monitor_slug=slug,
            check_in_id=check_in_id,
            status=status,
            duration=duration,
            monitor_config=cast(Any, dict(monitor_config)) if monitor_config else None,
        )


def _is_success(exc: BaseException | None) -> bool:
    # `sys.exit(0)` at the end of a job (management commands do it) is not a failure.
    return exc is None or (isinstance(exc, SystemExit) and exc.code in (None, 0))


class _Run:
    """One execution of a monitored job: its span, context token and check-in id."""

    def __enter__(self) -> _Run:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.finish(exc)

    def __init__(self, owner: Monitor) -> None:
        self._owner = owner
        self._span: Span | None = None
        self._token: object = None
        self._started = 0.0
        self._check_in_id: str | None = None

    def start(self) -> None:
        owner = self._owner
        self._span = owner.tracer.start_span(
            owner.name, kind=SpanKind.INTERNAL, attributes=owner.attributes
        )
        self._token = otel_context.attach(trace.set_span_in_context(self._span))
        self._started = time.monotonic()
        if owner.slug and _sentry_active():
            self._check_in_id = _send_check_in(
                owner.slug, MonitorStatus.IN_PROGRESS, self._span,
                monitor_config=owner.monitor_config,
            )
            if self._check_in_id:
                self._span.set_attribute(ATTR_CHECK_IN_ID, self._check_in_id)

    def finish(self, exc: BaseException | None) -> None:
        span = self._span
        assert span is not None
        duration = time.monotonic() - self._started
        ok = _is_success(exc)
        try:
            if not ok and exc is not None:
                _record_failure(span, exc)
            owner = self._owner
            if owner.slug and _sentry_active():
                # Sent while the span is still current and open, so it carries its trace.
                _send_check_in(
                    owner.slug, MonitorStatus.OK if ok else MonitorStatus.ERROR, span,
                    check_in_id=self._check_in_id, duration=duration,
                    monitor_config=owner.monitor_config,
                )
        finally:
            span.end()
            otel_context.detach(cast(Any, self._token))


def _record_failure(span: Span, exc: BaseException) -> None:
    # The job's exception is the caller's to see: one whose str() fails must not replace it,
    # nor keep the error check-in, the span's end and the context's reset from happening.
    try:
        description = f"{type(exc).__name__}: {exc}"
    except Exception:
        description = type(exc).__name__
    try:
        span.record_exception(exc)
    except Exception:
        _logger.debug("otel-bridge: could not record the job's exception", exc_info=True)
    span.set_status(Status(StatusCode.ERROR, description))


class Monitor:
    """A monitored job: decorator (sync and async functions) and context manager (``with``
    and ``async with``). Each call or ``with`` block is one run: one span, two check-ins.

    A ``slug`` of None traces the job without check-ins (used for untracked Django
    management commands)."""

    def __init__(
        self,
        slug: str | None,
        *,
        monitor_config: Mapping[str, Any] | None = None,
        name: str | None = None,
        op: str = CRON_OP,
        attributes: Mapping[str, Any] | None = None,
        tracer: Tracer | None = None,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        if slug is None and monitor_config is not None:
            raise ValueError("a monitor_config needs a slug")
        self.slug = slug
        self.monitor_config = dict(monitor_config) if monitor_config else None
        self.name = name or slug or "job"
        self.tracer = tracer or trace.get_tracer(
            "otel_bridge.crons", __version__, tracer_provider=tracer_provider
        )
        base: dict[str, Any] = {ATTR_SENTRY_OP: op, ATTR_SENTRY_SOURCE: "task"}
        if slug:
            base[ATTR_MONITOR_SLUG] = slug
        if self.monitor_config:
            schedule = self.monitor_config["schedule"]
            base["sentry.monitor.schedule"] = " ".join(
                str(schedule[key]) for key in ("value", "unit") if key in schedule
            )
        base.update(attributes or {})
        self.attributes = base
        # Runs of one Monitor may overlap (threads, tasks, nesting): each context keeps its own.
        self._runs: contextvars.ContextVar[tuple[_Run, ...]] = contextvars.ContextVar(
            f"otel_bridge_monitor_{id(self)}", default=()
        )

    def run(self) -> AbstractContextManager[object]:
        """One run as a context manager, with no state kept on the Monitor."""
        return _Run(self)

    # context manager ---------------------------------------------------------------------

    def __enter__(self) -> Monitor:
        run = _Run(self)
        run.start()
        self._runs.set((*self._runs.get(), run))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        runs = self._runs.get()
        if not runs:
            return
        self._runs.set(runs[:-1])
        runs[-1].finish(exc)

    async def __aenter__(self) -> Monitor:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    # decorator ---------------------------------------------------------------------------

    def _for_function(self, fn: Callable[..., Any]) -> Monitor:
        module = getattr(fn, "__module__", None) or ""
        qualname = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", "job")
        attributes = {
            **self.attributes,
            "code.function": qualname,
            "code.namespace": module,
            "code.function.name": f"{module}.{qualname}" if module else qualname,
        }
        return Monitor(
            self.slug,
            monitor_config=self.monitor_config,
            name=self.name,
            op=str(self.attributes[ATTR_SENTRY_OP]),
            attributes=attributes,
            tracer=self.tracer,
        )

    @overload
    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, R]]
    ) -> Callable[P, Coroutine[Any, Any, R]]: ...

    @overload
    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]: ...

    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        bound = self._for_function(fn)
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_inner(*args: P.args, **kwargs: P.kwargs) -> Any:
                with bound.run():
                    return await fn(*args, **kwargs)

            return async_inner

        @functools.wraps(fn)
        def inner(*args: P.args, **kwargs: P.kwargs) -> Any:
            with bound.run():
                return fn(*args, **kwargs)

        return inner


def monitor(
    slug: str,
    *,
    schedule: Schedule | None = None,
    timezone: str | None = None,
    checkin_margin: int | None = None,
    max_runtime: int | None = None,
    failure_issue_threshold: int | None = None,
    recovery_threshold: int | None = None,
    name: str | None = None,
    tracer_provider: TracerProvider | None = None,
) -> Monitor:
    """Monitor a job: a span named ``name`` (default: the slug) with ``sentry.op=cron``,
    and Sentry check-ins for ``slug``. With a ``schedule`` (crontab string, ``"10m"``, or
    ``(10, "minute")``) each check-in creates or updates the monitor in Sentry.

    Raises ``ValueError`` at once for a schedule or option Sentry would reject."""
    if not slug or not slug.strip():
        raise ValueError("a monitor needs a slug")
    config = build_monitor_config(
        schedule,
        timezone=timezone,
        checkin_margin=checkin_margin,
        max_runtime=max_runtime,
        failure_issue_threshold=failure_issue_threshold,
        recovery_threshold=recovery_threshold,
    )
    return Monitor(slug, monitor_config=config, name=name, tracer_provider=tracer_provider)
