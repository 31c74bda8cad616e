"""The `otel_bridge` configurator: builds the tracer, meter and logger providers and starts
sentry-sdk for errors.

Order matters at exit: sentry-sdk is started first, so its atexit hook (which closes the
transport) runs *after* the TracerProvider's (which flushes the batch processor into the
`sentry` exporter). Started the other way round, the last transactions would meet a closed
transport.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import signal
import threading
from types import FrameType
from typing import Any

from opentelemetry.environment_variables import OTEL_PYTHON_ID_GENERATOR
from opentelemetry.sdk._configuration import (
    _BaseConfigurator,
    _get_exporter_names,
    _import_exporters,
    _import_id_generator,
    _init_logging,
    _init_metrics,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.semconv.resource import ResourceAttributes

from otel_bridge.config import BridgeConfig, load_config, otel_sampler_notice
from otel_bridge.diagnostics import keep_own_warnings_visible, report_config_problems
from otel_bridge.distro import sdk_disabled
from otel_bridge.runtime import Runtime, set_runtime

_logger = logging.getLogger("otel_bridge")


class BridgeConfigurator(_BaseConfigurator):  # type: ignore[misc]
    """Registered as the `otel_bridge` entry of `opentelemetry_configurator`."""

    def _configure(self, **kwargs: Any) -> None:
        if sdk_disabled():
            return
        try:
            configure(auto_instrumentation_version=kwargs.get("auto_instrumentation_version"))
        except Exception as exc:  # e.g. an unknown OTEL_LOGS_EXPORTER name
            # Raised further, it would stop opentelemetry-instrument from loading any
            # instrumentation; the application must run either way.
            _logger.error("otel-bridge: configuration failed (%s); no telemetry is sent", exc)


def configure(auto_instrumentation_version: str | None = None) -> Runtime:
    """Set up everything from the environment; usable without `opentelemetry-instrument`."""
    from otel_bridge.dsc import LocalRootTracker
    from otel_bridge.local_roots import LocalRootProcessors
    from otel_bridge.pipeline.exporter import SentrySpanExporter
    from otel_bridge.sampling import build_sampler
    from otel_bridge.sentry_client import start_sentry

    keep_own_warnings_visible(_logger)
    config = load_config()
    report_config_problems(config.problems, _logger)
    sampler_notice = otel_sampler_notice(os.environ, config.traces_sample_rate)
    if sampler_notice is not None:
        _logger.warning("otel-bridge: %s", sampler_notice[0])
    attributes: dict[str, Any] = {}
    if auto_instrumentation_version:
        attributes[ResourceAttributes.TELEMETRY_AUTO_VERSION] = auto_instrumentation_version
    resource = Resource.create(attributes)
    config = with_guessed_release(config, resource)
    runtime = Runtime(config)
    set_runtime(runtime)

    root_processors: list[SpanProcessor] = [LocalRootTracker.from_runtime(runtime, resource)]
    span_processors: list[SpanProcessor] = []
    if start_sentry(runtime, resource):
        from otel_bridge.scopes import SentryScopeProcessor
        from otel_bridge.scopes import install as install_scopes

        scope_processor = SentryScopeProcessor()
        install_scopes(scope_processor)
        root_processors.append(scope_processor)
        if config.query_breadcrumbs:
            from otel_bridge.query_breadcrumbs import QueryBreadcrumbRecorder, install

            recorder = QueryBreadcrumbRecorder()
            install(recorder)
            span_processors.append(recorder)

    span_exporters, metric_exporters, log_exporters = _import_exporters(
        _get_exporter_names("traces"),
        _get_exporter_names("metrics"),
        _get_exporter_names("logs"),
    )
    scrubber = None
    if config.scrub_enabled:
        from otel_bridge.scrub import Scrubber

        scrubber = Scrubber.from_config(config)
        runtime.spans_scrubbed = True

    def export_processor(span_exporter: SpanExporter, *args: Any, **kw: Any) -> SpanProcessor:
        from otel_bridge.pipeline.batching import AccountedBatchSpanProcessor, report_span_lost

        to_sentry = isinstance(span_exporter, SentrySpanExporter)
        if scrubber is not None:
            from otel_bridge.scrub import ScrubbingSpanExporter

            # Every exporter (OTLP, console, the Sentry pipeline) sees scrubbed copies, made
            # on its batch thread: nothing is added to the request thread.
            span_exporter = ScrubbingSpanExporter(span_exporter, scrubber)
        if to_sentry:  # its spans dropped for want of room become client reports
            return AccountedBatchSpanProcessor(
                span_exporter,
                on_drop=functools.partial(report_span_lost, dropped_spans=runtime.dropped_spans),
            )
        return BatchSpanProcessor(span_exporter)

    from otel_bridge.tracing import init_tracing

    init_tracing(
        exporters=span_exporters,
        id_generator=id_generator_from_env(),
        sampler=build_sampler(config),
        resource=resource,
        # The query recorder first: a root's on_end must reach it before the scope
        # processor restores the scope the unit of work started in.
        span_processors=[*span_processors, LocalRootProcessors(root_processors)],
        export_span_processor=export_processor,
        exporter_args_map={SentrySpanExporter: {"runtime": runtime}},
    )
    # With no exporter (OTEL_*_EXPORTER=none, otel-bridge's default) an SDK provider only
    # costs CPU: the contrib instrumentations record a few metrics on every request
    # (about 15 µs through an SDK MeterProvider without readers, under 1 µs through the
    # API's no-op one). What they record goes nowhere in both cases.
    if metric_exporters:
        _init_metrics(metric_exporters, resource)
    if log_exporters:
        _init_logging(log_exporters, resource, setup_logging_handler=False)
    if config.scrub_enabled and log_exporters:
        from opentelemetry._logs import get_logger_provider

        from otel_bridge.scrub import Scrubber, install_log_scrubbing

        install_log_scrubbing(get_logger_provider(), Scrubber.from_config(config))
    _exit_cleanly_on_sigterm()
    return runtime


def with_guessed_release(config: BridgeConfig, resource: Resource) -> BridgeConfig:
    """With no SENTRY_RELEASE and no ``service.version``, the release sentry-sdk guesses
    (the git commit, HEROKU_BUILD_COMMIT, SOURCE_VERSION, K_REVISION, ...), for every kind
    of event alike: left to sentry-sdk, errors and sessions got it and the transactions of
    the same requests none."""
    if not config.dsn or config.release or resource.attributes.get(
        ResourceAttributes.SERVICE_VERSION
    ):
        return config
    from sentry_sdk.utils import get_default_release

    guessed = get_default_release()
    return dataclasses.replace(config, release=guessed) if guessed else config


def id_generator_from_env() -> IdGenerator | None:
    """``OTEL_PYTHON_ID_GENERATOR`` as the SDK's own configurator reads it: the name of an
    ``opentelemetry_id_generator`` entry point (``random``, the default; ``xray`` from
    opentelemetry-sdk-extension-aws). None for the SDK's default.

    A name that does not load would make the SDK's configurator fail, and with it every
    instrumentation; here it is reported once and the spans get random ids."""
    name = os.environ.get(OTEL_PYTHON_ID_GENERATOR, "").strip()
    if not name:
        return None
    try:
        generator: IdGenerator = _import_id_generator(name)
    except Exception as exc:  # not installed, failing to import, or no IdGenerator
        from otel_bridge.diagnostics import ID_GENERATOR_GROUP, entry_points_by_name

        installed = ", ".join(sorted(entry_points_by_name(ID_GENERATOR_GROUP)))
        _logger.error(
            "otel-bridge: OTEL_PYTHON_ID_GENERATOR=%r ignored (%s; installed: %s); "
            "using random ids",
            name,
            exc,
            installed or "none",
        )
        return None
    return generator


def _exit_cleanly_on_sigterm() -> None:
    """Python dies on SIGTERM without running atexit hooks, losing whatever is pending. When
    the application has no handler of its own, turn SIGTERM into a normal exit; servers that
    install their own (gunicorn, uvicorn) replace this one later and flush through atexit."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return

    def _terminate(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    with contextlib.suppress(ValueError, OSError):
        signal.signal(signal.SIGTERM, _terminate)
