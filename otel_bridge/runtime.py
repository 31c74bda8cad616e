"""The one place of process-wide state.

OpenTelemetry builds exporters and propagators from entry points with no arguments, and
sentry-sdk's event processors are global, so the pieces the configurator sets up find each
other here. Nothing else in the package keeps module-level state.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from otel_bridge.config import BridgeConfig, load_config

if TYPE_CHECKING:
    from otel_bridge.pipeline.assembly import DroppedSpan
    from otel_bridge.scrub import Scrubber


class CapturedExceptions:
    """Exceptions sentry-sdk already turned into error events, keyed by
    (trace id, exception type, message), so the span pipeline does not report them twice."""

    def __init__(self, capacity: int = 10_000) -> None:
        self._keys: OrderedDict[tuple[str, str, str], None] = OrderedDict()
        self._capacity = capacity
        self._lock = threading.Lock()

    def add(self, key: tuple[str, str, str]) -> None:
        with self._lock:
            self._keys[key] = None
            self._keys.move_to_end(key)
            while len(self._keys) > self._capacity:
                self._keys.popitem(last=False)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._keys


# Drops not yet seen by the exporter (it takes them at every export); a bound for a process
# whose exporter has stopped.
MAX_DROPPED_SPANS = 20_000


@dataclass
class Runtime:
    config: BridgeConfig
    captured: CapturedExceptions = field(default_factory=CapturedExceptions)
    sentry_started: bool = False
    # Set when every trace exporter receives scrubbed span copies (ScrubbingSpanExporter):
    # the Sentry exporter then only scrubs what does not come from span data (the resource).
    spans_scrubbed: bool = False
    # Spans the batch queue had no room for, in the order they were dropped: the `sentry`
    # exporter drops the descendants of a local root with it (Sentry loses a transaction's
    # spans with it) rather than send them on their own at shutdown, and hands those of any
    # other span to its parent. Appended on request threads, taken on the batch thread;
    # deque operations are atomic.
    dropped_spans: deque[DroppedSpan] = field(
        default_factory=lambda: deque(maxlen=MAX_DROPPED_SPANS)
    )

    @cached_property
    def scrubber(self) -> Scrubber:
        from otel_bridge.scrub import Scrubber

        return Scrubber.from_config(self.config)


_runtime: Runtime | None = None
_lock = threading.Lock()


def get_runtime() -> Runtime:
    """The runtime set up by the configurator, or one read from the environment now (for
    code used without ``opentelemetry-instrument``)."""
    global _runtime
    with _lock:
        if _runtime is None:
            _runtime = Runtime(load_config())
        return _runtime


def set_runtime(runtime: Runtime) -> None:
    global _runtime
    with _lock:
        _runtime = runtime
