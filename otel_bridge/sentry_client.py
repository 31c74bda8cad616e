"""sentry-sdk as the error engine, with its own tracing off.

sentry-sdk's integrations capture unhandled exceptions with frames and locals; OpenTelemetry
owns tracing. Three things make the two agree:

- sentry-sdk's tracing is off (no ``traces_sample_rate``), so it never starts a second trace;
- an *external propagation context* (sentry-sdk's hook for OTel) returns the active OTel span's
  ids: error events get them, and sentry-sdk stops injecting its own ``sentry-trace``/``baggage``
  into outgoing requests (OTel's propagators do that, once);
- a global event processor adds the parent span id and the dynamic sampling context, which
  sentry-sdk moves into the envelope's ``trace`` header.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from typing import Any

import sentry_sdk
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from sentry_sdk.integrations.logging import LoggingIntegration
from sentry_sdk.scope import (
    add_global_event_processor,
    global_event_processors,
    register_external_propagation_context,
)

from otel_bridge.config import BridgeConfig
from otel_bridge.pipeline.mapping import event_fields_from_resource
from otel_bridge.pipeline.span_errors import exception_key
from otel_bridge.runtime import Runtime, get_runtime
from otel_bridge.transport import (
    COMPRESSION_THRESHOLD_OPTION,
    PIPELINE_DEPTH_OPTION,
    BridgeTransport,
)

_logger = logging.getLogger(__name__)

_LOG_LEVELS = {
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
    "CRITICAL": logging.CRITICAL,
    "NONE": None,
}


def otel_trace_ids() -> tuple[str, str] | None:
    """The active OTel span's (trace id, span id) in Sentry's hex form, if there is one."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def link_event_to_trace(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    """Global sentry-sdk event processor: the parent span id and DSC of the active OTel span
    on every error event; and a note that this exception was reported, for the span pipeline's
    dedupe."""
    if event.get("type") in ("transaction", "check_in"):
        return event
    trace_context = event.setdefault("contexts", {}).setdefault("trace", {})
    span = trace.get_current_span()
    span_context = span.get_span_context()
    if span_context.is_valid and trace_context.get("trace_id") == format(
        span_context.trace_id, "032x"
    ):
        parent = getattr(span, "parent", None)
        if parent is not None and "parent_span_id" not in trace_context:
            trace_context["parent_span_id"] = format(parent.span_id, "016x")
        if "dynamic_sampling_context" not in trace_context:
            from otel_bridge.dsc import current_dsc

            dsc = current_dsc()
            if dsc:
                trace_context["dynamic_sampling_context"] = dsc
    _remember_captured_exception(get_runtime(), event, hint)
    return event


def _remember_captured_exception(
    runtime: Runtime, event: dict[str, Any], hint: dict[str, Any] | None = None
) -> None:
    values = (event.get("exception") or {}).get("values") or []
    trace_id = event.get("contexts", {}).get("trace", {}).get("trace_id")
    if not (values and trace_id):
        return
    last = values[-1]
    exc_type = str(last.get("type", ""))
    messages = {str(last.get("value", ""))}
    # sentry-sdk's value is the exception's `message` or `detail` attribute where it has
    # one (Django's ValidationError, many API clients' errors); OTel records str(exc).
    exc_info = (hint or {}).get("exc_info")
    if isinstance(exc_info, tuple) and len(exc_info) == 3 and exc_info[1] is not None:
        with contextlib.suppress(Exception):  # a __str__ that raises
            messages.add(str(exc_info[1]))
    for message in messages:
        runtime.captured.add(exception_key(trace_id, exc_type, message))
        if runtime.config.scrub_enabled:
            # Spans reach the pipeline scrubbed, so their copy of this message is too.
            scrubbed = runtime.scrubber.scrub_text(message)
            runtime.captured.add(exception_key(trace_id, exc_type, scrubbed))


def _web_framework_integrations(config: BridgeConfig) -> tuple[list[Any], list[Any]]:
    """(integrations to add, integrations to disable) for the web frameworks installed.

    With OTEL_BRIDGE_DJANGO_ERRORS=lean, sentry-sdk's DjangoIntegration (which sentry-sdk
    would otherwise enable by itself) is replaced by otel-bridge's error receiver; with
    `sentry`, it runs with its span-making parts off: tracing is off, so they would make
    unsampled spans on every request, for nothing."""
    if importlib.util.find_spec("django") is None:
        return [], []
    if config.django_errors == "lean":
        from sentry_sdk.integrations.django import DjangoIntegration

        from otel_bridge.django_errors import DjangoErrorsIntegration

        return [DjangoErrorsIntegration()], [DjangoIntegration]
    from sentry_sdk.integrations.django import DjangoIntegration

    return [DjangoIntegration(middleware_spans=False, signals_spans=False, cache_spans=False)], []


def start_sentry(runtime: Runtime, resource: Resource) -> bool:
    """Start sentry-sdk for errors when a DSN is configured. Returns whether it started."""
    config = runtime.config
    if not config.dsn:
        return False
    fields = event_fields_from_resource(
        resource, release=config.release, environment=config.environment
    )
    framework_integrations, disabled_integrations = _web_framework_integrations(config)
    options: dict[str, Any] = {
        "dsn": config.dsn,
        "release": fields.get("release"),
        "environment": fields.get("environment"),
        "debug": config.debug,
        # Tracing belongs to OpenTelemetry: sentry-sdk must never start or propagate a trace.
        "traces_sample_rate": None,
        "trace_propagation_targets": [],
        "transport": BridgeTransport,
        "transport_queue_size": config.transport_queue_size,
        "shutdown_timeout": config.shutdown_timeout,
        "enable_logs": config.enable_logs,
        # Compression runs on the application's own CPU for every envelope: gzip at level 1
        # costs a third of brotli's default for ~15% more bytes on small envelopes; level 0
        # is sentry-sdk's "no compression".
        "_experiments": {
            "transport_compression_algo": "gzip",
            "transport_compression_level": 1 if config.compression == "gzip" else 0,
            COMPRESSION_THRESHOLD_OPTION: config.compression_threshold,
            PIPELINE_DEPTH_OPTION: config.pipeline_depth,
        },
        "integrations": [
            LoggingIntegration(
                level=_LOG_LEVELS[config.log_breadcrumb_level],
                event_level=_LOG_LEVELS[config.log_event_level],
            ),
            *framework_integrations,
        ],
        "disabled_integrations": disabled_integrations,
    }
    if config.org_id is not None:
        options["org_id"] = config.org_id
    if config.strict_trace_continuation:
        options["strict_trace_continuation"] = True
    if config.send_default_pii:
        # Only when asked: sentry-sdk 2.75 deprecates the option (None means False).
        options["send_default_pii"] = True
    server_name = fields.get("server_name")
    if server_name:
        options["server_name"] = server_name
    options.update(_event_hooks(config))
    if not config.debug:
        # sentry-sdk builds a log record for every debug line (several per envelope) and
        # then drops it in a filter unless `debug` is on: don't build them.
        logging.getLogger("sentry_sdk.errors").setLevel(logging.WARNING)
    try:
        sentry_sdk.init(**options)
    except Exception as exc:  # a bad option must not stop the application
        _logger.error("otel-bridge: sentry-sdk could not start (%s); errors are not sent", exc)
        return False
    for key, value in (fields.get("tags") or {}).items():
        sentry_sdk.get_global_scope().set_tag(key, value)
    register_external_propagation_context(otel_trace_ids)
    if link_event_to_trace not in global_event_processors:
        add_global_event_processor(link_event_to_trace)  # type: ignore[arg-type]
    runtime.sentry_started = True
    return True


def _event_hooks(config: BridgeConfig) -> dict[str, Any]:
    """sentry-sdk's before_* hooks: scrubbing first, then dropping the stdlib copy of a log
    call that structlog already bridged, then the fingerprint rules."""
    from otel_bridge.context import apply_fingerprint_rules
    from otel_bridge.logs import drop_bridged_breadcrumb, drop_bridged_event, drop_bridged_log
    from otel_bridge.scrub import Scrubber, SentryScrubHooks

    rules = config.fingerprint_rules

    def before_send(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any] | None:
        kept: dict[str, Any] | None = drop_bridged_event(event, hint)
        if kept is not None and rules:
            kept = apply_fingerprint_rules(kept, rules)
        return kept

    then: dict[str, Any] = {
        "before_send": before_send,
        "before_breadcrumb": drop_bridged_breadcrumb,
        "before_send_log": drop_bridged_log,
    }
    if config.scrub_enabled:
        return SentryScrubHooks(Scrubber.from_config(config), then=then).init_kwargs()
    return then
