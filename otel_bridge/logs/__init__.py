"""Logs on the trace: structlog processors for OTel correlation, Sentry and OTel logs.

    import structlog
    from otel_bridge.logs import OTelLogEmitter, SentryBridge, add_trace_context

    structlog.configure(processors=[
        structlog.processors.add_log_level,
        add_trace_context,           # trace_id, span_id, trace_sampled
        SentryBridge.from_config(),  # breadcrumbs, error events, Sentry Logs
        OTelLogEmitter.from_config(),  # OTel log records for OTEL_LOGS_EXPORTER
        structlog.processors.JSONRenderer(),
    ])

Under ``opentelemetry-instrument`` the ``structlog`` instrumentation inserts them for you
(see docs/logs.md). The sentry-sdk hooks in :mod:`otel_bridge.logs.dedupe` keep one Sentry
event per log call when structlog writes through stdlib logging.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from otel_bridge.logs.context import add_trace_context
from otel_bridge.logs.dedupe import (
    BridgedRecordFilter,
    QueueClaimStamp,
    drop_bridged_breadcrumb,
    drop_bridged_event,
    drop_bridged_log,
    install_handler_filters,
)
from otel_bridge.logs.otel import OTelLogEmitter, logs_exporter_configured
from otel_bridge.logs.sentry import SentryBridge

if TYPE_CHECKING:
    from structlog.typing import Processor

    from otel_bridge.config import BridgeConfig

__all__ = [
    "BridgedRecordFilter",
    "OTelLogEmitter",
    "QueueClaimStamp",
    "SentryBridge",
    "add_trace_context",
    "bridge_processors",
    "drop_bridged_breadcrumb",
    "drop_bridged_event",
    "drop_bridged_log",
    "install_handler_filters",
    "is_bridge_processor",
]


def bridge_processors(config: BridgeConfig | None = None) -> list[Processor]:
    """The processors the instrumentation inserts: trace context, the Sentry bridge and, when
    ``OTEL_LOGS_EXPORTER`` names an exporter, the OTel log emitter."""
    if config is None:
        from otel_bridge.config import load_config

        config = load_config()
    processors: list[Processor] = [add_trace_context, SentryBridge.from_config(config)]
    if logs_exporter_configured():
        processors.append(OTelLogEmitter.from_config(config))
    return processors


def is_bridge_processor(processor: object) -> bool:
    """Whether ``processor`` is one of ours (so chains are never bridged twice)."""
    return processor is add_trace_context or isinstance(processor, (SentryBridge, OTelLogEmitter))
