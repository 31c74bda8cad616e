"""Keep an unknown name in ``OTEL_PROPAGATORS`` from killing the process at startup.

opentelemetry-api builds the global propagator when ``opentelemetry.propagate`` is first
imported and raises ValueError for an unknown name. ``opentelemetry-instrument`` imports it
(through ``opentelemetry.instrumentation.utils``) on its very first line, before any distro
runs, so the launcher exits 1. The only code that runs earlier is a ``.pth`` file in
site-packages; ``otel_bridge.pth`` calls ``sanitize_otel_propagators`` from there.

Stdlib only and never raises: it runs at every interpreter start when the variable is set.
"""

from __future__ import annotations

import os
from collections.abc import Collection, MutableMapping

OTEL_PROPAGATORS = "OTEL_PROPAGATORS"
# Names removed here, so the distro can log them once in the application's own log.
DROPPED_ENV = "OTEL_BRIDGE_DROPPED_PROPAGATORS"
GROUP = "opentelemetry_propagator"


def known_propagator_names() -> set[str]:
    from importlib.metadata import entry_points

    return {ep.name for ep in entry_points(group=GROUP)}


def sanitize_otel_propagators(
    environ: MutableMapping[str, str] | None = None, known: Collection[str] | None = None
) -> list[str]:
    """Remove unknown names from OTEL_PROPAGATORS in place; returns the names removed.

    opentelemetry-api looks every comma-separated item up in turn until a ``none``, so an
    empty one (a trailing comma) or an unknown one before ``none`` fails as an unknown name
    does: those are removed too, and ``none`` anywhere is written as ``none`` alone (what
    the API makes of it when it gets that far). ``known`` defaults to the installed
    ``opentelemetry_propagator`` entry points."""
    env = os.environ if environ is None else environ
    try:
        raw = env.get(OTEL_PROPAGATORS)
        if raw is None:
            return []
        names = [name.strip() for name in raw.split(",") if name.strip()]
        if any(name.lower() == "none" for name in names):
            if raw.strip() != "none":
                env[OTEL_PROPAGATORS] = "none"
            return []
        if known is None:
            known = known_propagator_names()
        dropped = [name for name in names if name not in known]
        kept = [name for name in names if name in known]
        if kept:
            if ",".join(kept) != raw:
                env[OTEL_PROPAGATORS] = ",".join(kept)
        else:  # nothing usable: the default propagators
            del env[OTEL_PROPAGATORS]
        if dropped:
            env[DROPPED_ENV] = ",".join(dropped)
        return dropped
    except Exception:
        return []
