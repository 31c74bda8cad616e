"""structlog → Sentry: breadcrumbs, error events and Sentry Logs, like sentry-sdk's logging
integration does for stdlib records but with structlog's message template and keys."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import sentry_sdk
from sentry_sdk.utils import event_from_exception
from structlog.typing import EventDict, WrappedLogger

from otel_bridge.logs import dedupe
from otel_bridge.logs.context import current_trace_ids
from otel_bridge.logs.levels import level_number, threshold
from otel_bridge.logs.mapping import (
    breadcrumb,
    error_event,
    event_text,
    logger_name,
    resolve_exc_info,
    sentry_log,
    stdlib_drops,
    structured_fields,
    tags_from,
)
from otel_bridge.logs.scrubbing import LogScrubber, load_scrubber

if TYPE_CHECKING:
    from otel_bridge.config import BridgeConfig

_logger = logging.getLogger(__name__)


class SentryBridge:
    """structlog processor sending log calls to Sentry (or GlitchTip) through sentry-sdk.

    - below ``breadcrumb_level``: nothing;
    - at or above it: a breadcrumb (category = logger name, message = event, data = the
      structured keys, scrubbed) that the next error event carries;
    - at or above ``event_level``: an error event, with the stack trace when ``exc_info`` is
      set, grouped by logger and event message, the structured keys as the ``structlog``
      context and ``tag_keys`` as tags; sentry-sdk links it to the active OTel trace;
    - when sentry-sdk runs with ``enable_logs=True``, at or above ``logs_level``: a Sentry
      log item with the message template, the keys as attributes and the trace ids.

    Levels are names (``"INFO"``, ``"NONE"`` to disable) or stdlib numbers. A no-op while
    sentry-sdk is not initialised; never raises; leaves ``event_dict`` unchanged.

    >>> import structlog
    >>> structlog.configure(processors=[
    ...     structlog.processors.add_log_level,
    ...     SentryBridge(event_level="ERROR", tag_keys=("tenant",)),
    ...     structlog.processors.JSONRenderer(),
    ... ])
    """

    def __init__(
        self,
        breadcrumb_level: str | int | None = "INFO",
        event_level: str | int | None = "ERROR",
        *,
        tag_keys: Sequence[str] = (),
        logs_level: str | int | None = "INFO",
        scrubber: LogScrubber | None = None,
    ) -> None:
        self.breadcrumb_level = threshold(breadcrumb_level)
        self.event_level = threshold(event_level)
        self.logs_level = threshold(logs_level)
        self.tag_keys = tuple(tag_keys)
        self._scrubber = scrubber if scrubber is not None else load_scrubber()

    @classmethod
    def from_config(cls, config: BridgeConfig | None = None) -> SentryBridge:
        """Levels, tag keys and scrubbing from the environment (``load_config()``)."""
        if config is None:
            from otel_bridge.config import load_config

            config = load_config()
        return cls(
            config.log_breadcrumb_level,
            config.log_event_level,
            tag_keys=config.tag_keys,
            scrubber=load_scrubber(config),
        )

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        try:
            self._send(logger, method_name, event_dict)
        except Exception:  # logging must survive whatever Sentry does
            _logger.debug("otel-bridge: structlog event not sent to Sentry", exc_info=True)
        return event_dict

    def _wanted(self, levelno: int, floor: int | None) -> bool:
        return floor is not None and levelno >= floor

    def _send(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> None:
        levelno = level_number(method_name, event_dict)
        as_event = self._wanted(levelno, self.event_level)
        as_crumb = self._wanted(levelno, self.breadcrumb_level)
        client = sentry_sdk.get_client()
        as_log = self._wanted(levelno, self.logs_level) and _logs_enabled(client.options)
        if not (as_event or as_crumb or as_log) or not client.is_active():
            return
        if stdlib_drops(logger, levelno):
            return
        text = event_text(event_dict)
        name = logger_name(logger, event_dict)
        fields = self._scrubber.scrub_mapping(structured_fields(event_dict))
        if as_event:
            self._capture_event(client, event_dict, text, name, levelno, fields)
            dedupe.claim(logger, levelno, text, dedupe.SENTRY_EVENT)
        if as_crumb:
            sentry_sdk.add_breadcrumb(
                breadcrumb(text=text, category=name, levelno=levelno, data=fields),
                hint={"structlog_event": True},
            )
            dedupe.claim(logger, levelno, text, dedupe.SENTRY_BREADCRUMB)
        if as_log:
            ids = current_trace_ids()
            log = sentry_log(
                text=text,
                logger=name,
                levelno=levelno,
                fields=fields,
                trace_ids=(ids[0], ids[1]) if ids else None,
            )
            # The scope's private _capture_log is what sentry-sdk's own logging integration
            # calls; the public sentry_sdk.logger API cannot carry our trace ids.
            sentry_sdk.get_current_scope()._capture_log(log)  # type: ignore[arg-type]
            dedupe.claim(logger, levelno, text, dedupe.SENTRY_LOG)

    def _capture_event(
        self,
        client: Any,
        event_dict: EventDict,
        text: str,
        name: str,
        levelno: int,
        fields: dict[str, Any],
    ) -> None:
        event = error_event(
            text=text,
            logger=name,
            levelno=levelno,
            fields=fields,
            tags=tags_from(fields, self.tag_keys),
        )
        hint: dict[str, Any] = {}
        exc_info = resolve_exc_info(event_dict.get("exc_info"))
        if exc_info is not None:
            with_exception, hint = event_from_exception(
                exc_info,
                client_options=client.options,
                mechanism={"type": "logging", "handled": True},
            )
            event["exception"] = with_exception["exception"]
        sentry_sdk.capture_event(event, hint=hint)  # type: ignore[arg-type]


def _logs_enabled(options: dict[str, Any]) -> bool:
    experiments = options.get("_experiments") or {}
    return bool(options.get("enable_logs") or experiments.get("enable_logs"))
