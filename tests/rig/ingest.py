"""Sentry-compatible recording ingest for tests (re-exported from ``samples.local_ingest``).

The implementation lives in ``samples/local_ingest.py`` so the demo runs without the
test suite. ``python -m tests.rig.ingest --port N`` prints every received item as one
JSON line.
"""

from __future__ import annotations

import sys

from samples.local_ingest import (
    Envelope,
    IngestResponse,
    Item,
    RecordingIngest,
    decode_body,
    main,
    parse_envelope,
)

__all__ = [
    "Envelope",
    "IngestResponse",
    "Item",
    "RecordingIngest",
    "decode_body",
    "main",
    "parse_envelope",
]

if __name__ == "__main__":
    sys.exit(main())
