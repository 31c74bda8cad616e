"""``otel-bridge doctor --send-test``: send a test transaction and error to the DSN and say
whether the ingest accepted each.

sentry-sdk builds, authenticates, compresses and sends the envelopes (its ``Client`` and
``HttpTransport``, its rate-limit parsing). Written here is only what it does not offer: the
transport sends synchronously and records the ingest's answer to each envelope, since
sentry-sdk's own transport sends in the background and only logs the outcome.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import sentry_sdk
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import HttpTransport

__all__ = ["Delivery", "SendTestResult", "send_test"]


@dataclass(frozen=True)
class Delivery:
    """The ingest's answer to one envelope (or why it never got one)."""

    item_types: tuple[str, ...]
    event_id: str | None = None
    status: int | None = None
    retry_after: str | None = None
    rate_limits: str | None = None
    body: str = ""
    error: str | None = None

    @property
    def accepted(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def explain(self) -> str:
        if self.error is not None:
            return self.error
        if self.status is None:
            return "not sent: sentry-sdk holds it back after the ingest's rate limit"
        if self.status == 429:
            wait = f" (Retry-After: {self.retry_after})" if self.retry_after else ""
            return f"rate limited by the ingest: HTTP 429{wait}"
        if self.status in (401, 403):
            return (f"rejected: HTTP {self.status}, the DSN's key or project is not accepted"
                    f"{_body(self.body)}")
        if self.status == 413:
            return f"rejected: HTTP 413, envelope too large{_body(self.body)}"
        if 400 <= self.status < 500:
            return f"rejected: HTTP {self.status}{_body(self.body)}"
        if self.status >= 500:
            return f"ingest error: HTTP {self.status}{_body(self.body)}"
        if 200 <= self.status < 300:
            return f"accepted: HTTP {self.status}"
        return f"unexpected answer: HTTP {self.status}"


def _body(body: str) -> str:
    return f" ({body[:200]})" if body else ""


@dataclass(frozen=True)
class SendTestResult:
    deliveries: tuple[Delivery, ...]
    trace_id: str | None

    def delivery_of(self, item_type: str) -> Delivery | None:
        for delivery in self.deliveries:
            if item_type in delivery.item_types:
                return delivery
        return None

    @property
    def accepted(self) -> bool:
        return all(
            (delivery := self.delivery_of(kind)) is not None and delivery.accepted
            for kind in ("transaction", "event")
        )


class RecordingTransport(HttpTransport):
    """sentry-sdk's HTTP transport, sending in the caller's thread and keeping each answer."""

    TIMEOUT = 10

    def __init__(self, options: dict[str, Any]) -> None:
        super().__init__(options)
        self.deliveries: list[Delivery] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        types = tuple(item.type or "" for item in envelope.items)
        event_id = envelope.headers.get("event_id")
        before = len(self.deliveries)
        try:
            self._send_envelope(envelope)
        except Exception as exc:
            reason = exc.__cause__ or exc.__context__ or exc
            self.deliveries.append(
                Delivery(
                    types, event_id,
                    error=f"could not reach the ingest: {_connection_error(reason)}",
                )
            )
            return
        if len(self.deliveries) == before:
            self.deliveries.append(Delivery(types, event_id))

    def _handle_response(self, response: Any, envelope: Envelope | None) -> None:
        types = tuple(item.type or "" for item in (envelope.items if envelope else []))
        data = getattr(response, "data", b"") or b""
        self.deliveries.append(
            Delivery(
                types,
                envelope.headers.get("event_id") if envelope else None,
                status=int(response.status),
                retry_after=self._get_header_value(response, "Retry-After"),
                rate_limits=self._get_header_value(response, "X-Sentry-Rate-Limits"),
                body=data.decode("utf-8", "replace").strip() if isinstance(data, bytes) else "",
            )
        )
        super()._handle_response(response, envelope)


def _connection_error(exc: BaseException) -> str:
    text = str(exc)
    if "Connection refused" in text or isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the ingest running, are host and port right?)"
    if "timed out" in text.lower():
        return "timed out"
    if "Name or service not known" in text or "getaddrinfo" in text:
        return "host name does not resolve"
    return f"{type(exc).__name__}: {text}"


@contextlib.contextmanager
def _quiet_sentry_logs() -> Iterator[None]:
    # sentry-sdk logs failed sends as warnings; the CLI reports them itself, once.
    sentry_logger = logging.getLogger("sentry_sdk.errors")
    previous = sentry_logger.disabled
    sentry_logger.disabled = True
    try:
        yield
    finally:
        sentry_logger.disabled = previous


def send_test(
    dsn: str, *, environment: str | None = None, release: str | None = None
) -> SendTestResult:
    """Send one transaction (with a child span) then one error event on the same trace.

    The transaction goes first: an ingest that answers with a rate limit on transactions
    (Bugsink does, on every envelope) would otherwise make sentry-sdk hold it back."""
    marker = uuid.uuid4().hex[:8]
    client = sentry_sdk.Client(
        dsn=dsn,
        transport=RecordingTransport,
        default_integrations=False,
        auto_enabling_integrations=False,
        integrations=[],
        traces_sample_rate=1.0,
        send_client_reports=False,
        environment=environment,
        release=release,
    )
    transport = client.transport
    assert isinstance(transport, RecordingTransport)
    with _quiet_sentry_logs(), sentry_sdk.isolation_scope(), sentry_sdk.new_scope() as scope:
        scope.set_client(client)
        scope.set_tag("otel_bridge.doctor", marker)
        transaction = sentry_sdk.start_transaction(
            name="otel-bridge doctor --send-test", op="otel_bridge.doctor", source="task"
        )
        with transaction, sentry_sdk.start_span(op="otel_bridge.doctor.step", name="test span"):
            pass
        scope.set_context(
            "trace", {"trace_id": transaction.trace_id, "span_id": transaction.span_id}
        )
        try:
            raise DoctorTestError(f"otel-bridge doctor test error {marker} (safe to ignore)")
        except DoctorTestError:
            sentry_sdk.capture_exception()
        client.close(timeout=0)
    return SendTestResult(tuple(transport.deliveries), transaction.trace_id)


class DoctorTestError(Exception):
    """The exception the test error event carries."""
