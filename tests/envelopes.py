"""Envelopes for transport tests."""

from __future__ import annotations

import uuid
from typing import Any

from sentry_sdk.envelope import Envelope


def transaction_envelope(name: str = "GET /x") -> Envelope:
    """An envelope with one minimal transaction named ``name`` and a fresh event id."""
    event_id = uuid.uuid4().hex
    envelope = Envelope(headers={"event_id": event_id})
    event: Any = {
        "type": "transaction", "event_id": event_id, "transaction": name,
        "start_timestamp": 1.0, "timestamp": 2.0,
        "contexts": {"trace": {"trace_id": uuid.uuid4().hex, "span_id": "1" * 16}},
        "spans": [],
    }
    envelope.add_transaction(event)
    return envelope
