"""The `otel_bridge` distro: defaults for `opentelemetry-instrument`, set before use.

`opentelemetry-instrument` runs, in order: the distro's ``configure()``, the configurator,
then the instrumentors. The distro only settles environment defaults and the global
propagator; the configurator builds the providers.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from opentelemetry.environment_variables import (
    OTEL_LOGS_EXPORTER,
    OTEL_METRICS_EXPORTER,
    OTEL_TRACES_EXPORTER,
)
from opentelemetry.instrumentation.distro import BaseDistro  # type: ignore[attr-defined]
from opentelemetry.instrumentation.environment_variables import OTEL_PYTHON_CONFIGURATOR
from opentelemetry.sdk.environment_variables import (
    OTEL_EXPERIMENTAL_RESOURCE_DETECTORS,
    OTEL_EXPORTER_OTLP_PROTOCOL,
    OTEL_SDK_DISABLED,
)

from otel_bridge.config import load_config

_logger = logging.getLogger("otel_bridge")

CONFIGURATOR_NAME = "otel_bridge"


def sdk_disabled(environ: os._Environ[str] | dict[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return env.get(OTEL_SDK_DISABLED, "").strip().lower() == "true"


def apply_environment_defaults(environ: Any = None) -> None:
    """The defaults that make `SENTRY_DSN` alone enough, written into the environment so
    the SDK and every instrumentation read the same values."""
    env = os.environ if environ is None else environ
    # More than one configurator may be installed (opentelemetry-distro brings its own) and the
    # first found would win: name ours explicitly unless the user chose.
    env.setdefault(OTEL_PYTHON_CONFIGURATOR, CONFIGURATOR_NAME)
    if not env.get(OTEL_TRACES_EXPORTER, "").strip():
        env[OTEL_TRACES_EXPORTER] = "sentry" if env.get("SENTRY_DSN", "").strip() else "none"
    # The OTel defaults for metrics and logs (`otlp`) would fail without a collector.
    env.setdefault(OTEL_METRICS_EXPORTER, "none")
    env.setdefault(OTEL_LOGS_EXPORTER, "none")
    # We ship the OTLP/HTTP exporter, not gRPC.
    env.setdefault(OTEL_EXPORTER_OTLP_PROTOCOL, "http/protobuf")
    env.setdefault(OTEL_EXPERIMENTAL_RESOURCE_DETECTORS, "process,os,host,heroku")


_EXPORTER_VARIABLES = {
    "traces": (OTEL_TRACES_EXPORTER, "trace"),
    "metrics": (OTEL_METRICS_EXPORTER, "metrics"),
    "logs": (OTEL_LOGS_EXPORTER, "logs"),
}


def drop_unknown_exporters(environ: Any) -> None:
    """An unknown name in OTEL_TRACES_EXPORTER (or the metrics or logs one) makes the SDK give
    up on every exporter and instrumentation; keep the known ones and say once which were
    dropped."""
    from otel_bridge.diagnostics import validate_exporter_names

    for signal, (variable, label) in _EXPORTER_VARIABLES.items():
        known, unknown = validate_exporter_names(environ.get(variable), environ, signal)
        if unknown:
            _logger.error(
                "otel-bridge: unknown %s exporter(s) %s in %s ignored; using %s",
                label,
                ", ".join(unknown),
                variable,
                ", ".join(known) or "none",
            )
            environ[variable] = ",".join(known) or "none"


class BridgeDistro(BaseDistro):  # type: ignore[misc]
    """Registered as the `otel_bridge` entry of `opentelemetry_distro`."""

    def _configure(self, **kwargs: Any) -> None:
        if sdk_disabled():
            return
        apply_environment_defaults()
        drop_unknown_exporters(os.environ)
        from otel_bridge.propagation.setup import install_global_propagator

        install_global_propagator(load_config(), os.environ)

    def load_instrumentor(self, entry_point: Any, **kwargs: Any) -> None:
        if entry_point.name == "logging":
            # stdlib records get otelTraceID/otelSpanID. Passed here rather than through
            # OTEL_PYTHON_LOG_CORRELATION, which would also call logging.basicConfig().
            kwargs.setdefault("inject_trace_context", True)
        super().load_instrumentor(entry_point, **kwargs)
