"""The shared scrubber (``otel_bridge.scrub``) as the log processors use it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from otel_bridge.config import BridgeConfig


class LogScrubber(Protocol):
    def scrub_mapping(self, data: Mapping[str, Any]) -> dict[str, Any]: ...

    def scrub_text(self, text: str) -> str: ...


class _NoScrubbing:
    def scrub_mapping(self, data: Mapping[str, Any]) -> dict[str, Any]:
        return dict(data)

    def scrub_text(self, text: str) -> str:
        return text


def load_scrubber(config: BridgeConfig | None = None) -> LogScrubber:
    """``otel_bridge.scrub.Scrubber`` built from ``config`` (the environment when None).
    Imported lazily so the processors load fast; without that module nothing is scrubbed."""
    try:
        from otel_bridge.scrub import Scrubber
    except ModuleNotFoundError as exc:
        if exc.name != "otel_bridge.scrub":
            raise
        return _NoScrubbing()
    if config is None:
        from otel_bridge.config import load_config

        config = load_config()
    return Scrubber.from_config(config)
