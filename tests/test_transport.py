"""otel-bridge's transport (sentry-sdk's HTTP transport over one kept-alive connection of its
own) against the recording ingest, over HTTP and HTTPS, on 127.0.0.1."""

from __future__ import annotations

import gzip
import os
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sentry_sdk

from otel_bridge import transport as transport_module
from otel_bridge.transport import COMPRESSION_THRESHOLD_OPTION, BridgeTransport, gzip_body
from tests.envelopes import transaction_envelope as _envelope
from tests.rig.ingest import RecordingIngest


def _client(dsn: str, **options: Any) -> sentry_sdk.Client:
    experiments: dict[str, Any] = {
        "transport_compression_algo": "gzip", "transport_compression_level": 1
    }
    experiments.update(options.pop("_experiments", {}))
    return sentry_sdk.Client(
        dsn=dsn, transport=BridgeTransport, _experiments=experiments, **options  # type: ignore[arg-type]
    )


def _transport(client: sentry_sdk.Client) -> BridgeTransport:
    transport = client.transport
    assert isinstance(transport, BridgeTransport)
    return transport


@pytest.fixture
def client_factory() -> Iterator[Any]:
    clients: list[sentry_sdk.Client] = []

    def make(dsn: str, **options: Any) -> sentry_sdk.Client:
        client = _client(dsn, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close(timeout=2)


def test_envelopes_share_one_kept_alive_connection(
    ingest: RecordingIngest, client_factory: Any
) -> None:
    transport = _transport(client_factory(ingest.dsn))
    assert transport.capture_envelopes([_envelope(f"batch {n}") for n in range(10)])
    for n in range(5):
        transport.capture_envelope(_envelope(f"single {n}"))
    transport.flush(timeout=10)

    names = {event["transaction"] for event in ingest.events("transaction")}
    assert names == {f"batch {n}" for n in range(10)} | {f"single {n}" for n in range(5)}
    assert ingest.connections_accepted == 1
    assert ingest.options_requests == 1  # the pipelining probe, once per transport


def test_a_connection_the_ingest_closed_is_reopened_without_loss(
    ingest: RecordingIngest, client_factory: Any
) -> None:
    transport = _transport(client_factory(ingest.dsn))
    transport.capture_envelope(_envelope("before"))
    transport.flush(timeout=10)
    ingest.stop()  # cuts the kept-alive connection; the same port listens again below
    ingest.start()
    transport.capture_envelope(_envelope("after"))
    transport.flush(timeout=10)

    assert [event["transaction"] for event in ingest.events("transaction")] == [
        "before", "after"
    ]
    assert ingest.connections_accepted == 2
    assert not ingest.events("client_report")


def test_an_unreachable_ingest_fails_a_batch_once_and_every_loss_is_reported(
    ingest: RecordingIngest, client_factory: Any
) -> None:
    transport = _transport(client_factory(ingest.dsn))
    ingest.stop()
    assert transport.capture_envelopes([_envelope(f"lost {n}") for n in range(5)])
    transport.flush(timeout=10)
    ingest.start()
    transport.capture_envelope(_envelope("back"))
    transport.flush(timeout=10)  # also sends the pending client report

    assert [event["transaction"] for event in ingest.events("transaction")] == ["back"]
    discarded = [
        entry for report in ingest.events("client_report")
        for entry in report["discarded_events"]
    ]
    assert {"reason": "network_error", "category": "transaction", "quantity": 5} in discarded


def test_an_envelope_that_cannot_be_serialised_loses_only_itself(
    ingest: RecordingIngest, client_factory: Any
) -> None:
    # It raised while its window was prepared: the window's other envelopes, prepared or
    # not, were lost, and none of it counted.
    from sentry_sdk.envelope import Item

    class Unwritable(Item):
        def get_bytes(self) -> bytes:
            raise ValueError("a payload no encoder takes")

    transport = _transport(client_factory(ingest.dsn))
    transport.capture_envelope(_envelope("first"))  # the connection, proven pipelining
    transport.flush(timeout=10)
    broken = _envelope("broken")
    broken.items[0] = Unwritable(payload=b"", type="transaction")
    batch = [_envelope("a"), _envelope("b"), broken, _envelope("c")]
    assert transport.capture_envelopes(batch)
    transport.flush(timeout=10)
    transport.capture_envelope(_envelope("last"))  # carries the client report
    transport.flush(timeout=10)

    names = [event["transaction"] for event in ingest.events("transaction")]
    assert names == ["first", "a", "b", "c", "last"]
    discarded = [
        entry for report in ingest.events("client_report")
        for entry in report["discarded_events"]
    ]
    assert {"reason": "internal_sdk_error", "category": "transaction", "quantity": 1} in discarded


def test_a_429_to_the_first_envelope_holds_back_the_rest_of_its_batch(
    ingest: RecordingIngest, client_factory: Any
) -> None:
    """The first exchange (one envelope and the pipelining probe) is answered before the
    rest of its batch is prepared, so a rate limit it sets applies to them at once."""
    ingest.respond_with(429, {"Retry-After": "60", "X-Sentry-Rate-Limits": "60:transaction:key"})
    transport = _transport(client_factory(ingest.dsn))
    assert transport.capture_envelopes([_envelope(f"limited {n}") for n in range(8)])
    transport.flush(timeout=10)
    ingest.respond_with(200)
    transport.capture_envelope(_envelope("still limited"))  # counted too, then the report
    transport.flush(timeout=10)
    received = [
        item.json["transaction"] for envelope in ingest.received
        for item in envelope.items if item.type == "transaction"
    ]
    assert received == ["limited 0"]  # the one that drew the 429, nothing after it
    backed_off = sum(
        entry["quantity"] for report in ingest.events("client_report")
        for entry in report["discarded_events"]
        if (entry["reason"], entry["category"]) == ("ratelimit_backoff", "transaction")
    )
    assert backed_off == 8  # seven of the batch, and the one after


@pytest.mark.parametrize("size", [0, 1, 4_000, 70_000, 400_000])
@pytest.mark.parametrize("one_call", [True, False], ids=["zlib.compress", "compressobj"])
def test_gzip_body_is_standard_gzip_at_any_size(
    size: int, one_call: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # compressobj is the path of Python 3.10, whose zlib.compress takes no wbits.
    monkeypatch.setattr(transport_module, "_ONE_CALL_GZIP", one_call)
    payload = (os.urandom(size // 4).hex() * 2)[:size].encode()
    body = gzip_body(payload, 1)
    assert gzip.decompress(body) == payload
    assert body[:2] == b"\x1f\x8b"


def test_large_envelopes_arrive_whole(ingest: RecordingIngest, client_factory: Any) -> None:
    transport = _transport(client_factory(ingest.dsn))
    envelope = _envelope("large")
    event = envelope.items[0].payload.json
    assert event is not None
    event["spans"] = [
        {"span_id": f"{n:016x}", "trace_id": "a" * 32, "op": "db",
         "description": f"SELECT {n} FROM t", "start_timestamp": 1.0, "timestamp": 1.5}
        for n in range(2_000)
    ]
    transport.capture_envelope(envelope)
    transport.flush(timeout=10)
    [received] = ingest.events("transaction")
    assert len(received["spans"]) == 2_000
    assert received["spans"][1999]["description"] == "SELECT 1999 FROM t"
    assert ingest.envelopes[0].content_encoding == "gzip"  # over the 32 KiB threshold


@pytest.mark.parametrize(
    ("threshold", "encodings"),
    [(None, [None, "gzip"]), (0, ["gzip", "gzip"]), (10**9, [None, None])],
)
def test_envelopes_under_the_compression_threshold_go_uncompressed(
    ingest: RecordingIngest, client_factory: Any, threshold: int | None,
    encodings: list[str | None],
) -> None:
    experiments = {} if threshold is None else {COMPRESSION_THRESHOLD_OPTION: threshold}
    transport = _transport(client_factory(ingest.dsn, _experiments=experiments))
    small, large = _envelope("small"), _envelope("large")
    event = large.items[0].payload.json
    assert event is not None
    event["spans"] = [{"span_id": f"{n:016x}", "description": "x" * 100} for n in range(400)]
    for envelope in (small, large):
        transport.capture_envelope(envelope)
        transport.flush(timeout=10)
    assert [envelope.content_encoding for envelope in ingest.envelopes] == encodings
    assert [e["transaction"] for e in ingest.events("transaction")] == ["small", "large"]


def test_compression_none_sends_plain_envelopes(
    ingest: RecordingIngest, client_factory: Any
) -> None:
    transport = _transport(
        client_factory(ingest.dsn, _experiments={"transport_compression_level": 0})
    )
    transport.capture_envelope(_envelope("plain"))
    transport.flush(timeout=10)
    [envelope] = ingest.envelopes
    assert envelope.content_encoding is None
    assert envelope.items_of("transaction")[0].json["transaction"] == "plain"


@pytest.fixture
def tls_ingest(tmp_path: Path) -> Iterator[tuple[RecordingIngest, Path]]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is needed to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    with RecordingIngest(tls=context) as server:
        yield server, cert


def test_https_verifies_the_ingest_with_ca_certs(
    tls_ingest: tuple[RecordingIngest, Path], client_factory: Any
) -> None:
    ingest, cert = tls_ingest
    assert ingest.dsn.startswith("https://")
    transport = _transport(client_factory(ingest.dsn, ca_certs=str(cert)))
    transport.capture_envelope(_envelope("over tls"))
    transport.flush(timeout=10)
    assert [event["transaction"] for event in ingest.events("transaction")] == ["over tls"]

    # Without the certificate (certifi's bundle only) the ingest is not trusted.
    untrusting = _transport(client_factory(ingest.dsn))
    untrusting.capture_envelope(_envelope("untrusted"))
    untrusting.flush(timeout=10)
    assert [event["transaction"] for event in ingest.events("transaction")] == ["over tls"]


def test_envelopes_waiting_are_bounded_and_the_overflow_is_reported(
    ingest: RecordingIngest, client_factory: Any
) -> None:
    transport = _transport(client_factory(ingest.dsn, transport_queue_size=5))
    ingest.respond_with(200, delay=0.5)
    assert transport.capture_envelopes([_envelope(f"first {n}") for n in range(5)])
    assert not transport.has_room(1)
    assert not transport.capture_envelopes([_envelope(f"second {n}") for n in range(3)])
    transport.flush(timeout=20)
    ingest.respond_with(200)
    assert transport.has_room(5)
    transport.capture_envelope(_envelope("last"))  # carries the client report
    transport.flush(timeout=10)

    names = [event["transaction"] for event in ingest.events("transaction")]
    assert sorted(names) == sorted([f"first {n}" for n in range(5)] + ["last"])
    discarded = [
        entry for report in ingest.events("client_report")
        for entry in report["discarded_events"]
    ]
    assert {"reason": "queue_overflow", "category": "transaction", "quantity": 3} in discarded


def test_unusable_tls_settings_fall_back_to_sentry_sdks_pool_with_a_warning(
    client_factory: Any, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-bundle.pem"
    with caplog.at_level("WARNING", logger="otel_bridge.transport"):
        transport = _transport(
            client_factory("https://key@127.0.0.1:9/1", ca_certs=str(missing))
        )
    assert transport._connection is None  # sentry-sdk's urllib3 pool sends (and complains)
    assert "TLS settings for the ingest failed" in caplog.text


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_sends_on_its_own_connection(
    ingest: RecordingIngest, client_factory: Any
) -> None:
    # Pre-fork servers and Celery's prefork pool fork after the parent may already have sent
    # something: the child must not write into the parent's kept-alive connection.
    transport = _transport(client_factory(ingest.dsn))
    transport.capture_envelope(_envelope("parent before the fork"))
    transport.flush(timeout=10)
    assert ingest.connections_accepted == 1

    pid = os.fork()
    if pid == 0:  # the child: only this thread exists here
        delivered = False
        try:
            transport.capture_envelope(_envelope("child"))
            transport.flush(timeout=10)
            delivered = True
        finally:
            os._exit(0 if delivered else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0

    transport.capture_envelope(_envelope("parent after the fork"))
    transport.flush(timeout=10)

    names = [event["transaction"] for event in ingest.events("transaction")]
    assert sorted(names) == ["child", "parent after the fork", "parent before the fork"]
    assert ingest.connections_accepted == 2  # the parent's, kept alive, and the child's own
    assert not ingest.events("client_report")
