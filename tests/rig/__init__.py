"""The test rig: real servers on 127.0.0.1 to point instrumented code at.

- ``RecordingIngest``: Sentry-compatible ingest recording envelopes (byte-level checks).
- ``OtlpReceiver``: OTLP/HTTP protobuf receiver (the "swap the backend" checks).
- ``Bugsink``: a real Bugsink error ingest with a REST query API.
- ``InstrumentedServer`` / ``run_instrumented``: child processes under
  ``opentelemetry-instrument`` with a clean environment, always stopped.
- ``start_shop`` / ``run_shop_command``: the sample Django shop (``samples/shop``).

Names are imported lazily so ``python -m tests.rig.ingest`` runs without the package
having imported that module first. See docs/testing.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.rig.bugsink import Bugsink, BugsinkEvent
    from tests.rig.ingest import Envelope, Item, RecordingIngest, parse_envelope
    from tests.rig.otlp import LogRecordDict, OtlpReceiver, SpanDict
    from tests.rig.processes import (
        REPO_ROOT,
        CompletedRun,
        InstrumentedServer,
        ProcessStartError,
        clean_env,
        free_port,
        run_instrumented,
    )
    from tests.rig.shop import SHOP_DIR, run_shop_command, start_shop

_EXPORTS = {
    "Bugsink": "bugsink",
    "BugsinkEvent": "bugsink",
    "Envelope": "ingest",
    "Item": "ingest",
    "RecordingIngest": "ingest",
    "parse_envelope": "ingest",
    "LogRecordDict": "otlp",
    "OtlpReceiver": "otlp",
    "SpanDict": "otlp",
    "REPO_ROOT": "processes",
    "CompletedRun": "processes",
    "InstrumentedServer": "processes",
    "ProcessStartError": "processes",
    "clean_env": "processes",
    "free_port": "processes",
    "run_instrumented": "processes",
    "SHOP_DIR": "shop",
    "run_shop_command": "shop",
    "start_shop": "shop",
}

__all__ = [
    "REPO_ROOT",
    "SHOP_DIR",
    "Bugsink",
    "BugsinkEvent",
    "CompletedRun",
    "Envelope",
    "InstrumentedServer",
    "Item",
    "LogRecordDict",
    "OtlpReceiver",
    "ProcessStartError",
    "RecordingIngest",
    "SpanDict",
    "clean_env",
    "free_port",
    "parse_envelope",
    "run_instrumented",
    "run_shop_command",
    "start_shop",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tests.rig' has no attribute {name!r}")
    return getattr(importlib.import_module(f"tests.rig.{module}"), name)
