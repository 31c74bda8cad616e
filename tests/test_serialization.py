"""Envelope payloads encoded by orjson: the same envelope sentry-sdk would write, read back."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sentry_sdk.envelope import Envelope, Item

from otel_bridge import serialization
from otel_bridge.serialization import (
    add_transaction,
    encode_payloads,
    envelope_bytes,
    payload_bytes,
)


def _transaction() -> dict[str, Any]:
    return {
        "type": "transaction", "event_id": "a" * 32, "transaction": "GET /ü/<id>",
        "start_timestamp": 1.5, "timestamp": 2.25,
        "contexts": {"trace": {"trace_id": "b" * 32, "span_id": "c" * 16, "op": "http.server",
                               "data": {"http.response.status_code": 200, "db.rows": None}}},
        "spans": [{"span_id": "d" * 16, "description": 'SELECT "x"\n', "data": {1: True}}],
        "tags": ("a", "b"),
    }


def _items(data: bytes) -> list[tuple[dict[str, Any], Any]]:
    lines = data.split(b"\n")
    items = []
    position = 1
    while position < len(lines) - 1:
        header = json.loads(lines[position])
        items.append((header, json.loads(lines[position + 1])))
        position += 2
    return items


def test_an_envelope_reads_back_as_sentry_sdks_own() -> None:
    ours = Envelope(headers={"event_id": "a" * 32})
    ours.add_transaction(_transaction())  # type: ignore[arg-type]
    theirs = Envelope(headers={"event_id": "a" * 32})
    theirs.add_transaction(_transaction())  # type: ignore[arg-type]

    encode_payloads(ours)
    assert ours.items[0].payload.bytes is not None
    assert ours.items[0].get_transaction_event() == _transaction()  # loss counting reads it
    ours_items, theirs_items = _items(ours.serialize()), _items(theirs.serialize())
    assert [payload for _, payload in ours_items] == [payload for _, payload in theirs_items]
    header, payload = ours_items[0]
    # UTF-8 as it is, where json.dumps escapes "ü": the length is of these bytes.
    assert header["length"] == len(ours.items[0].payload.bytes) < theirs_items[0][0]["length"]
    assert {**header, "length": 0} == {**theirs_items[0][0], "length": 0}
    assert payload["spans"][0]["data"] == {"1": True}  # keys as json.dumps writes them


def test_nan_becomes_null_where_sentry_sdks_encoder_refuses_the_envelope() -> None:
    event = {"measurements": {"lcp": {"value": float("nan")}}, "x": float("inf")}
    assert json.loads(payload_bytes(event) or b"") == {
        "measurements": {"lcp": {"value": None}}, "x": None
    }


@pytest.mark.parametrize(
    ("odd", "read_back"),
    [
        (2**70, 2**70),  # beyond orjson's 64 bits: exact all the same
        ("lone \udc80 surrogate", "lone \ufffd surrogate"),
        (object, repr(object)),
    ],
)
def test_what_orjson_cannot_encode_is_sent_beside_a_nan(odd: Any, read_back: Any) -> None:
    # Left to sentry-sdk's encoder, the NaN beside it raised on the transport's thread and
    # the envelopes of its window were lost.
    envelope = Envelope()
    event = {"type": "transaction", "odd": odd, "ratio": float("inf"), "n": {1: "x"}}
    envelope.add_transaction(event)  # type: ignore[arg-type]
    encode_payloads(envelope)
    assert envelope.items[0].payload.bytes is not None
    assert _items(envelope_bytes(envelope))[0][1] == {
        "type": "transaction", "odd": read_back, "ratio": None, "n": {"1": "x"}
    }


def test_without_orjson_sentry_sdk_encodes_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serialization, "orjson", None)
    envelope = Envelope()
    envelope.add_transaction(_transaction())  # type: ignore[arg-type]
    encode_payloads(envelope)
    assert envelope.items[0].payload.bytes is None
    assert _items(envelope.serialize())[0][1]["transaction"] == "GET /ü/<id>"


def test_a_transaction_encoded_when_mapped_is_the_one_sentry_sdk_would_send() -> None:
    ours = Envelope(headers={"event_id": "a" * 32})
    event = _transaction()
    add_transaction(ours, event)  # type: ignore[arg-type]
    event["spans"].append({"span_id": "e" * 16})  # later changes are not sent: it is encoded
    theirs = Envelope(headers={"event_id": "a" * 32})
    theirs.add_transaction(_transaction())  # type: ignore[arg-type]

    (item,) = ours.items
    assert item.payload.json is None  # nothing of the event is kept but its bytes
    ours_items, theirs_items = _items(ours.serialize()), _items(theirs.serialize())
    assert [payload for _, payload in ours_items] == [payload for _, payload in theirs_items]
    assert {**ours_items[0][0], "length": 0} == {**theirs_items[0][0], "length": 0}
    assert item.data_category == "transaction"


def test_a_dropped_encoded_transaction_still_counts_its_spans() -> None:
    """sentry-sdk's client reports count a dropped transaction's spans from its event."""
    import sentry_sdk

    client = sentry_sdk.Client(dsn="http://key@127.0.0.1:9/1", default_integrations=False)
    transport = client.transport
    assert transport is not None
    envelope = Envelope()
    event = {**_transaction(), "spans": [{"span_id": f"{n:016x}"} for n in range(7)]}
    add_transaction(envelope, event)  # type: ignore[arg-type]
    transport.record_lost_event("ratelimit_backoff", item=envelope.items[0])
    assert transport._discarded_events == {  # type: ignore[attr-defined]  # no public view
        ("transaction", "ratelimit_backoff"): 1, ("span", "ratelimit_backoff"): 8,
    }
    transport.kill()  # nothing to deliver: the ingest at port 9 does not exist


def test_a_transaction_orjson_cannot_encode_is_encoded_all_the_same() -> None:
    envelope = Envelope()
    event = {**_transaction(), "huge": 1 << 70, "nan": float("nan")}
    add_transaction(envelope, event)  # type: ignore[arg-type]
    (item,) = envelope.items
    assert item.payload.json is None
    read = json.loads(item.get_bytes())
    assert (read["huge"], read["nan"], read["transaction"]) == (1 << 70, None, "GET /ü/<id>")


def test_a_whole_envelope_is_the_bytes_sentry_sdk_writes() -> None:
    envelope = Envelope(headers={"event_id": "a" * 32, "trace": {"public_key": "k", "x": "ü"}})
    envelope.add_transaction(_transaction())  # type: ignore[arg-type]
    envelope.add_item(Item(payload=b'{"status":"ok"}', type="session"))
    theirs = Envelope(headers=dict(envelope.headers))
    theirs.add_transaction(_transaction())  # type: ignore[arg-type]
    theirs.add_item(Item(payload=b'{"status":"ok"}', type="session"))

    ours_bytes = envelope_bytes(envelope)
    assert ours_bytes.endswith(b"\n") and ours_bytes.count(b"\n") == 5
    ours_read = Envelope.deserialize(ours_bytes)
    theirs_read = Envelope.deserialize(theirs.serialize())
    assert ours_read.headers == theirs_read.headers
    assert [(i.headers["type"], json.loads(i.get_bytes())) for i in ours_read.items] == [
        (i.headers["type"], json.loads(i.get_bytes())) for i in theirs_read.items
    ]
    # each item's length is that of its payload as written, so a reader finds the next item
    lines = ours_bytes.split(b"\n")
    assert [json.loads(lines[n])["length"] for n in (1, 3)] == [len(lines[n]) for n in (2, 4)]


def test_headers_orjson_cannot_encode_are_written_all_the_same() -> None:
    envelope = Envelope(headers={"event_id": "a" * 32, "odd": 1 << 70})
    envelope.add_transaction(_transaction())  # type: ignore[arg-type]
    read = Envelope.deserialize(envelope_bytes(envelope))
    assert read.headers == {"event_id": "a" * 32, "odd": 1 << 70}
    assert json.loads(read.items[0].get_bytes())["transaction"] == "GET /ü/<id>"
