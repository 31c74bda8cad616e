"""What the distro calls to install the one global propagator.

The global propagator is built by opentelemetry-api when ``opentelemetry.propagate`` is
imported (before any distro), so the distro must replace it with ``set_global_textmap``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from opentelemetry.propagators import textmap
from opentelemetry.propagators.composite import CompositePropagator

from otel_bridge.config import BridgeConfig
from otel_bridge.propagation.envfix import DROPPED_ENV, GROUP
from otel_bridge.propagation.propagator import SentryBridgePropagator
from otel_bridge.propagation.targets import TargetGatedPropagator

_logger = logging.getLogger(__name__)

OURS = "otel_bridge"
# sentry-sdk registers its own ``sentry`` propagator, which needs sentry-sdk's span
# processor; with otel-bridge the same headers come from ours, so the name maps to ours.
_ALIASES = frozenset((OURS, "sentry"))
DEFAULT_PROPAGATORS = ("tracecontext", "baggage", OURS)


def propagator_names(environ: Mapping[str, str]) -> tuple[str, ...]:
    raw = environ.get("OTEL_PROPAGATORS", "")
    names = tuple(dict.fromkeys(n.strip() for n in raw.split(",") if n.strip()))
    return names or DEFAULT_PROPAGATORS


def _load(name: str) -> textmap.TextMapPropagator | None:
    from importlib.metadata import entry_points

    for entry_point in entry_points(group=GROUP, name=name):
        try:
            propagator = entry_point.load()()
        except Exception:
            _logger.warning("otel-bridge: propagator %r failed to load", name, exc_info=True)
            return None
        if isinstance(propagator, textmap.TextMapPropagator):
            return propagator
    return None


def build_global_propagator(
    config: BridgeConfig, environ: Mapping[str, str] | None = None
) -> textmap.TextMapPropagator:
    """OTEL_PROPAGATORS (default ``tracecontext,baggage,otel_bridge``) as one propagator.

    With ours in the list, ``baggage`` is handled by ours (one merged header) and ours runs
    last on extract (its rule decides between traceparent and sentry-trace). Unknown names
    are skipped with one warning. Target gating wraps everything.
    """
    env = os.environ if environ is None else environ
    names = propagator_names(env)
    if any(name.lower() == "none" for name in names):
        return CompositePropagator([])
    lowered = [name.lower() for name in names]
    with_ours = any(name in _ALIASES for name in lowered)
    unknown = [n for n in env.get(DROPPED_ENV, "").split(",") if n]
    propagators: list[textmap.TextMapPropagator] = []
    for name, low in zip(names, lowered, strict=True):
        if low in _ALIASES or (low == "baggage" and with_ours):
            continue
        loaded = _load(name)
        if loaded is None:
            unknown.append(name)
        else:
            propagators.append(loaded)
    if with_ours:
        propagators.append(SentryBridgePropagator(inject_traceparent="tracecontext" not in lowered))
    if unknown:
        _logger.warning(
            "otel-bridge: OTEL_PROPAGATORS names unknown propagators %s; they are ignored",
            ", ".join(sorted(set(unknown))),
        )
    return TargetGatedPropagator(CompositePropagator(propagators), config.trace_propagation_targets)


def install_global_propagator(
    config: BridgeConfig, environ: Mapping[str, str] | None = None
) -> textmap.TextMapPropagator:
    """Build and set the global propagator; returns it."""
    from opentelemetry.propagate import set_global_textmap

    propagator = build_global_propagator(config, environ)
    set_global_textmap(propagator)
    return propagator
