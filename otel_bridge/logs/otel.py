"""structlog → OpenTelemetry log records, for ``OTEL_LOGS_EXPORTER`` backends.

The only module of otel-bridge that imports the (still experimental) OTel logs API.
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING

from opentelemetry._logs import LoggerProvider, SeverityNumber, get_logger
from opentelemetry.context import get_current
from structlog.typing import EventDict, WrappedLogger

from otel_bridge.logs import dedupe
from otel_bridge.logs.levels import level_number, otel_severity, threshold
from otel_bridge.logs.mapping import (
    attributes_from,
    event_text,
    logger_name,
    resolve_exc_info,
    stdlib_drops,
    structured_fields,
)
from otel_bridge.logs.scrubbing import LogScrubber, load_scrubber

if TYPE_CHECKING:
    from otel_bridge.config import BridgeConfig

_logger = logging.getLogger(__name__)


def logs_exporter_configured(environ: dict[str, str] | None = None) -> bool:
    """Whether ``OTEL_LOGS_EXPORTER`` names an exporter (unset and ``none`` do not)."""
    env = os.environ if environ is None else environ
    names = [n.strip().lower() for n in env.get("OTEL_LOGS_EXPORTER", "").split(",")]
    return any(name and name != "none" for name in names)


class OTelLogEmitter:
    """structlog processor emitting one OTel ``LogRecord`` per call at or above ``level``:
    body = the event message, severity from the level, attributes = the structured keys
    (scrubbed), the active span's trace context, and the exception (``exc_info``) as
    ``exception.*`` attributes. The instrumentation scope is the logger name, as OTel's
    stdlib logging handler does.

    Emits to ``logger_provider`` or the global one that `opentelemetry-instrument` builds
    when ``OTEL_LOGS_EXPORTER`` is set. Never raises; leaves ``event_dict`` unchanged.

    >>> import structlog
    >>> structlog.configure(processors=[OTelLogEmitter(), structlog.processors.JSONRenderer()])
    """

    def __init__(
        self,
        level: str | int | None = "DEBUG",
        *,
        logger_provider: LoggerProvider | None = None,
        scrubber: LogScrubber | None = None,
    ) -> None:
        self.level = threshold(level)
        self._provider = logger_provider
        self._scrubber = scrubber if scrubber is not None else load_scrubber()

    @classmethod
    def from_config(cls, config: BridgeConfig | None = None) -> OTelLogEmitter:
        if config is None:
            from otel_bridge.config import load_config

            config = load_config()
        return cls(scrubber=load_scrubber(config))

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        try:
            self._emit(logger, method_name, event_dict)
        except Exception:
            _logger.debug("otel-bridge: structlog event not emitted as OTel log", exc_info=True)
        return event_dict

    def _emit(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> None:
        levelno = level_number(method_name, event_dict)
        if self.level is None or levelno < self.level or stdlib_drops(logger, levelno):
            return
        name = logger_name(logger, event_dict)
        otel_logger = get_logger(name, logger_provider=self._provider)
        severity, severity_text = otel_severity(levelno)
        context = get_current()
        if not otel_logger.enabled(context=context, severity_number=SeverityNumber(severity)):
            return
        text = event_text(event_dict)
        fields = self._scrubber.scrub_mapping(structured_fields(event_dict))
        exc_info = resolve_exc_info(event_dict.get("exc_info"))
        now = time.time_ns()
        otel_logger.emit(
            timestamp=now,
            observed_timestamp=now,
            context=context,
            severity_number=SeverityNumber(severity),
            severity_text=severity_text,
            body=self._scrubber.scrub_text(text),
            attributes=attributes_from(fields),
            exception=exc_info[1] if exc_info else None,
        )
        dedupe.claim(logger, levelno, text, dedupe.OTEL_RECORD)
