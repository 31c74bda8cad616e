"""Zero-code structlog instrumentation: trace ids, Sentry and OTel logs for every structlog call.

``opentelemetry-instrument`` loads it through the ``structlog`` entry of
``opentelemetry_instrumentor``; ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=structlog`` turns it off.

It inserts otel-bridge's processors (:func:`otel_bridge.logs.add_trace_context`,
:class:`otel_bridge.logs.SentryBridge` and, with ``OTEL_LOGS_EXPORTER`` set,
:class:`otel_bridge.logs.OTelLogEmitter`) into the processor chain the application passes to
``structlog.configure`` (and into the chain already configured when instrumenting), before
the renderer and before any processor that formats ``exc_info`` away (so the Sentry event
still gets the stack trace) or renames the ``event`` key (``EventRenamer``).

    from otel_bridge_instrumentation_structlog import StructlogInstrumentor

    StructlogInstrumentor().instrument()
    structlog.configure(processors=[..., structlog.processors.JSONRenderer()])
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any

import structlog
import structlog._config as structlog_config
from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)
from opentelemetry.instrumentation.utils import unwrap
from structlog.typing import Processor
from wrapt import wrap_function_wrapper

from otel_bridge.logs import (
    OTelLogEmitter,
    SentryBridge,
    bridge_processors,
    install_handler_filters,
    is_bridge_processor,
)
from otel_bridge.logs.dedupe import remove_handler_filters
from otel_bridge_instrumentation_structlog.package import _instruments
from otel_bridge_instrumentation_structlog.version import __version__

__all__ = ["StructlogInstrumentor", "__version__", "insert_bridge_processors", "insertion_index"]

# Processors ours must run before: those that turn `exc_info` into text and drop it, and
# EventRenamer, after which the message is no longer under `event` (every Sentry event
# would have an empty message, and all of them one fingerprint).
_MUST_SEE_FIRST: tuple[type, ...] = (
    structlog.processors.ExceptionRenderer,
    structlog.processors.ExceptionPrettyPrinter,
    structlog.processors.EventRenamer,
)


def insertion_index(processors: Sequence[Processor]) -> int:
    """Where our processors go: before the renderer (the last processor), or earlier, before
    the first processor that formats exceptions or renames the event key."""
    if not processors:
        return 0
    last = len(processors) - 1
    for index, processor in enumerate(processors[:last]):
        if isinstance(processor, _MUST_SEE_FIRST):
            return index
    return last


def insert_bridge_processors(
    processors: Sequence[Processor], ours: Sequence[Processor]
) -> list[Processor]:
    """A new chain with ``ours`` inserted, except those whose kind the chain already holds
    (the application wired some of them by hand, perhaps with its own settings)."""
    chain = list(processors)
    present = {_bridge_kind(p) for p in chain if is_bridge_processor(p)}
    missing = [p for p in ours if _bridge_kind(p) not in present]
    if not missing:
        return chain
    index = insertion_index(chain)
    return [*chain[:index], *missing, *chain[index:]]


def _bridge_kind(processor: object) -> object:
    # add_trace_context is a function (itself is its kind); the others are classes.
    return processor if not isinstance(processor, (SentryBridge, OTelLogEmitter)) else type(
        processor
    )


def remove_bridge_processors(
    processors: Sequence[Processor], ours: Sequence[Processor]
) -> list[Processor]:
    """``processors`` without the objects in ``ours`` (a bridge the application built itself
    stays; `add_trace_context`, one shared function, goes either way)."""
    return [p for p in processors if not any(p is mine for mine in ours)]


class StructlogInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Adds otel-bridge's processors to structlog's configuration.

    ``instrument(config=BridgeConfig, processors=[...])``: both optional; ``processors``
    replaces what is inserted (default: :func:`otel_bridge.logs.bridge_processors`).
    """

    # The configured chain object itself (structlog's built-in default list when unconfigured),
    # so uninstrument puts back exactly what was there.
    _original_defaults: Any = None
    _instrumented_defaults: list[Processor] | None = None
    _inserted: tuple[Processor, ...] = ()

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _instrument(self, **kwargs: Any) -> None:
        ours = kwargs.get("processors")
        if ours is None:
            config = kwargs.get("config")
            if config is None:
                from otel_bridge.runtime import get_runtime

                config = get_runtime().config
            ours = bridge_processors(config)
        ours = list(ours)
        StructlogInstrumentor._inserted = tuple(ours)

        def configure_wrapper(
            wrapped: Callable[..., None], instance: Any, args: Any, kw: dict[str, Any]
        ) -> None:
            if args:
                if args[0] is not None:
                    args = (insert_bridge_processors(list(args[0]), ours), *args[1:])
            elif kw.get("processors") is not None:
                kw = {**kw, "processors": insert_bridge_processors(list(kw["processors"]), ours)}
            return wrapped(*args, **kw)

        wrap_function_wrapper(structlog_config, "configure", configure_wrapper)
        wrap_function_wrapper(structlog, "configure", configure_wrapper)

        # Loggers made from here on use the chain already configured (or structlog's
        # built-in defaults) with ours added; is_configured() stays as it was.
        original = structlog_config._CONFIG.default_processors
        bridged = insert_bridge_processors(list(original), ours)
        StructlogInstrumentor._original_defaults = original
        StructlogInstrumentor._instrumented_defaults = bridged
        structlog_config._CONFIG.default_processors = bridged

        # OTel's logging handler would emit structlog's stdlib records a second time.
        install_handler_filters()

    def _uninstrument(self, **kwargs: Any) -> None:
        unwrap(structlog, "configure")
        unwrap(structlog_config, "configure")
        configured = structlog_config._CONFIG.default_processors
        current = list(configured)
        original = StructlogInstrumentor._original_defaults
        if configured is StructlogInstrumentor._instrumented_defaults and original is not None:
            structlog_config._CONFIG.default_processors = original
        else:
            stripped = remove_bridge_processors(current, StructlogInstrumentor._inserted)
            if len(stripped) != len(current):
                structlog_config._CONFIG.default_processors = stripped
        StructlogInstrumentor._original_defaults = None
        StructlogInstrumentor._instrumented_defaults = None
        StructlogInstrumentor._inserted = ()
        remove_handler_filters()
