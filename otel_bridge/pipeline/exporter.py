"""The `sentry` trace exporter: finished OTel spans -> Sentry transaction envelopes.

It runs behind OTel's BatchSpanProcessor, so the request thread only hands a span over; the
grouping, mapping and serialisation happen on the batch thread. Envelopes go through
sentry-sdk's own transport (DSN auth, compression, rate limits, retries, client reports).

One transaction is one envelope, and a transport's queue is bounded (sentry-sdk's drops what
does not fit): so this exporter waits for room instead of overflowing it (the batch processor
keeps buffering meanwhile), and anything it must drop is counted as a client report. The
envelopes of one batch go to otel-bridge's transport as one job (``capture_envelopes``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

import sentry_sdk
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport
from sentry_sdk.utils import Dsn, format_timestamp

from otel_bridge.config import BridgeConfig
from otel_bridge.context import (
    apply_sentry_fields,
    breadcrumbs_from_span_events,
    sentry_fields_from_spans,
)
from otel_bridge.dsc import active_tracker, dsc_for_finished_root
from otel_bridge.pipeline.assembly import AssembledTransaction, TransactionAssembler
from otel_bridge.pipeline.ids import new_event_id
from otel_bridge.pipeline.mapping import (
    HTTP_METHOD_KEYS,
    format_span_id,
    resource_event_fields,
    transaction_event,
    transaction_name_and_source,
)
from otel_bridge.pipeline.span_errors import (
    exception_error_events,
    exception_key,
    should_report_span_errors,
)
from otel_bridge.runtime import Runtime, get_runtime
from otel_bridge.serialization import add_transaction
from otel_bridge.span_attributes import SAMPLED, TRACE_FLAGS, attributes_view, events_view
from otel_bridge.transport import BridgeTransport

if TYPE_CHECKING:
    from sentry_sdk._types import Event

    from otel_bridge.scrub import Scrubber

_logger = logging.getLogger(__name__)

_DEFAULT_PORTS = {"http": 80, "https": 443}
# sentry-sdk's default `max_spans`: the child spans one transaction carries.
MAX_SPANS_PER_TRANSACTION = 1000

TransportSource = Callable[[], Transport | None]


def _sentry_transport() -> Transport | None:
    return sentry_sdk.get_client().transport


class SentrySpanExporter(SpanExporter):
    """Registered as the `sentry` entry of `opentelemetry_traces_exporter`."""

    def __init__(
        self,
        runtime: Runtime | None = None,
        transport_source: TransportSource = _sentry_transport,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._runtime = runtime or get_runtime()
        self._config: BridgeConfig = self._runtime.config
        self._transport_source = transport_source
        self._clock = clock
        self._assembler = TransactionAssembler(
            max_pending=self._config.max_pending_spans,
            pending_ttl=self._config.pending_span_ttl,
        )
        self._lock = threading.Lock()
        self._pacer = TransportPacer(clock)
        self._shutdown = False
        self._warned_no_transport = False
        self._warned_export_failure = False
        self._ingest = _ingest_address(self._config.dsn)
        self._public_key = Dsn(self._config.dsn).public_key if self._config.dsn else None
        self._org_id = self._config.effective_org_id()
        self._scrubber = _scrubber(self._config)
        self._scrubbed_resource: tuple[Resource, dict[str, Any]] | None = None
        self.delivered_transactions = 0
        self.lost_transactions = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shutdown:
            return SpanExportResult.FAILURE
        try:
            with self._lock:
                self._export_locked(spans)
        except Exception:  # never let a mapping bug take the batch thread down
            if not self._warned_export_failure:  # once: every batch would repeat it
                self._warned_export_failure = True
                _logger.exception("otel-bridge: failed to convert spans for Sentry")
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True

    def shutdown(self) -> None:
        if self._shutdown:
            return
        with self._lock:
            ready = self._account_for_dropped_spans() + self._assembler.drain()
            sent_at = _now_timestamp()
            self._send(
                [self._envelope_or_loss(assembled, sent_at) for assembled in ready],
                self._deadline(),
            )
            self._report_assembly_drops()
            self._shutdown = True
        transport = self._transport_source()
        if transport is not None:
            transport.flush(self._config.shutdown_timeout)

    def _export_locked(self, spans: Sequence[ReadableSpan]) -> None:
        follow_ups = self._account_for_dropped_spans()
        now = self._clock()
        own = (
            spans
            if self._ingest is None
            else [span for span in spans if not self._is_ingest_request(span)]
        )
        ready = self._assembler.add(own, now)
        if follow_ups:
            ready = follow_ups + ready
        self._assembler.expire(now)
        sent_at = _now_timestamp()
        envelopes = [self._envelope_or_loss(assembled, sent_at) for assembled in ready]
        self._send(envelopes, self._deadline())
        self._report_assembly_drops()

    def _envelope_or_loss(
        self, assembled: AssembledTransaction, sent_at: str
    ) -> Envelope | None:
        """The envelope, or None when making it failed: one span no mapping foresaw (an
        attribute of a type the OTel API takes and a rule does not) loses its transaction,
        counted as a client report, never the rest of its batch."""
        try:
            return self._envelope_for(assembled, sent_at)
        except Exception:
            if not self._warned_export_failure:  # once: every such span would repeat it
                self._warned_export_failure = True
                _logger.exception(
                    "otel-bridge: failed to convert a transaction for Sentry (%r); it is "
                    "dropped and counted as a client report", assembled.root.name
                )
            self.lost_transactions += 1
            transport = self._transport_source()
            if transport is not None:
                transport.record_lost_event("internal_sdk_error", data_category="transaction")
                transport.record_lost_event(
                    "internal_sdk_error",
                    data_category="span",
                    quantity=len(assembled.descendants) + 1,
                )
            return None

    def _deadline(self) -> float:
        return self._clock() + self._config.shutdown_timeout

    def _send(self, envelopes: Sequence[Envelope | None], deadline: float) -> None:
        """Hand a batch's envelopes to the transport: as one job of its worker when it is
        otel-bridge's own (one wake-up of the worker per batch rather than per transaction;
        see BridgeTransport.capture_envelopes), else one by one."""
        batch = [envelope for envelope in envelopes if envelope is not None]
        transport = self._transport_source()
        if not batch or transport is None:
            return
        capture_many = getattr(transport, "capture_envelopes", None)
        if callable(capture_many):
            self._pacer.wait_for_room(transport, deadline, count=len(batch))
            # capture_envelopes records an overflow as a client report itself.
            if capture_many(batch):
                self.delivered_transactions += len(batch)
            else:
                self.lost_transactions += len(batch)
            return
        for envelope in batch:
            if self._pacer.wait_for_room(transport, deadline):
                self.delivered_transactions += 1
            else:
                self.lost_transactions += 1
            transport.capture_envelope(envelope)

    def _envelope_for(self, assembled: AssembledTransaction, sent_at: str) -> Envelope | None:
        """The transaction envelope of an assembled local root, or None when there is
        nothing to send (unsampled, no transport, transactions rate-limited)."""
        transport = self._transport_source()
        if transport is None:
            self._warn_no_transport()
            self.lost_transactions += 1
            return None
        root = assembled.root
        context = root._context  # behind the SDK's properties: see span_attributes.py
        if context is None or not context[TRACE_FLAGS] & SAMPLED:
            return None
        config = self._config
        resource = root._resource
        resource_fields = resource_event_fields(
            resource, release=config.release, environment=config.environment
        )
        name, source = transaction_name_and_source(root)
        tracker = active_tracker() if assembled.parent_span_id is not None else None
        span_context = root.get_span_context()
        if tracker is not None and span_context is not None:
            # A follow-up (spans that ended after their local root was sent) travels with
            # the trace's DSC, the one its root was sent with, not one made from its spans.
            dsc: dict[str, str] | None = tracker.dsc_for(span_context, None)
        else:
            dsc = dsc_for_finished_root(
                root,
                public_key=self._public_key,
                org_id=self._org_id,
                release=resource_fields.get("release"),
                environment=resource_fields.get("environment"),
                transaction=name,
                transaction_source=source,
            )
        self._report_span_errors(assembled, dsc)
        if _transactions_rate_limited(transport):
            # Sentry asked us to back off: don't spend CPU building what would be dropped.
            transport.record_lost_event("ratelimit_backoff", data_category="transaction")
            transport.record_lost_event(
                "ratelimit_backoff",
                data_category="span",
                quantity=len(assembled.descendants) + 1,
            )
            self.lost_transactions += 1
            return None
        parent_hex = (
            format_span_id(assembled.parent_span_id)
            if assembled.parent_span_id is not None
            else None
        )
        descendants = assembled.descendants
        if len(descendants) > MAX_SPANS_PER_TRANSACTION:
            # As sentry-sdk's span recorder: the first spans to start are kept and the rest
            # counted. Sentry refuses a transaction over 1 MB whole.
            transport.record_lost_event(
                "buffer_overflow",
                data_category="span",
                quantity=len(descendants) - MAX_SPANS_PER_TRANSACTION,
            )
            descendants = descendants[:MAX_SPANS_PER_TRANSACTION]
        event = transaction_event(
            root,
            descendants,
            release=config.release,
            environment=config.environment,
            parent_span_id=parent_hex,
            name_and_source=(name, source),
        )
        apply_sentry_fields(event, self._context_fields(assembled))
        event = self._scrub(event, resource)
        headers: dict[str, object] = {
            "event_id": event["event_id"],
            "sent_at": sent_at,
        }
        if dsc:
            headers["trace"] = dsc
        envelope = Envelope(headers=headers)
        if isinstance(transport, BridgeTransport):
            # Nothing reads the event after this in otel-bridge's own transport (see
            # EncodedTransaction); another transport gets the event as sentry-sdk makes it.
            add_transaction(envelope, cast("Event", event))
        else:
            envelope.add_transaction(cast("Event", event))
        return envelope

    def _scrub(self, event: dict[str, Any], resource: Resource) -> dict[str, Any]:
        if self._scrubber is None:
            return event
        if not self._runtime.spans_scrubbed:
            return self._scrubber.scrub_event(event)
        # The spans were scrubbed as they ended; only the resource (process command line,
        # custom resource attributes) is left, and it is the same for every event.
        otel_context = event.get("contexts", {}).get("otel")
        if otel_context is not None:
            cached = self._scrubbed_resource
            if cached is None or cached[0] is not resource:
                cached = self._scrubbed_resource = (
                    resource,
                    self._scrubber.scrub_attributes(otel_context.get("resource") or {}),
                )
            otel_context["resource"] = cached[1]
        return event

    def _report_span_errors(
        self, assembled: AssembledTransaction, dsc: dict[str, str] | None
    ) -> None:
        mode = self._config.span_errors
        if mode == "none":
            return
        client = sentry_sdk.get_client()
        if not client.is_active():
            return
        spans = (assembled.root, *assembled.descendants)
        fields: dict[str, Any] | None = None
        for span in spans:
            if not events_view(span) or not should_report_span_errors(span, mode):
                continue
            for event in exception_error_events(
                span, release=self._config.release, environment=self._config.environment
            ):
                key = _event_exception_key(event)
                if key is not None and key in self._runtime.captured:
                    continue  # sentry-sdk already reported this exception, with frames
                if key is not None:
                    self._runtime.captured.add(key)
                if fields is None:
                    fields = self._context_fields(assembled)
                apply_sentry_fields(event, fields)
                crumbs = breadcrumbs_from_span_events(spans, until=_event_time_ns(event))
                if crumbs:
                    event["breadcrumbs"] = {"values": crumbs}
                if dsc:
                    event.setdefault("contexts", {}).setdefault("trace", {})[
                        "dynamic_sampling_context"
                    ] = dsc
                event.setdefault("event_id", new_event_id())
                # Through the client, so before_send (scrubbing, fingerprint rules), error
                # sampling and the DSC-to-envelope-header move apply as to any error event.
                client.capture_event(event)

    def _context_fields(self, assembled: AssembledTransaction) -> dict[str, Any]:
        return sentry_fields_from_spans(
            [assembled.root, *assembled.descendants],
            send_default_pii=self._config.send_default_pii,
            tag_keys=self._config.tag_keys,
        )

    def _account_for_dropped_spans(self) -> list[AssembledTransaction]:
        dropped_spans = self._runtime.dropped_spans
        if not dropped_spans:
            return []
        # Taken one by one rather than copied and cleared: request threads may append
        # meanwhile, and only this thread (under the export lock) takes.
        dropped = [dropped_spans.popleft() for _ in range(len(dropped_spans))]
        return self._assembler.account_for_dropped(dropped)

    def _report_assembly_drops(self) -> None:
        stats = self._assembler.stats
        dropped, dropped_with_root = stats.take_dropped(), stats.take_dropped_with_root()
        if not (dropped or dropped_with_root):
            return
        transport = self._transport_source()
        if transport is not None:
            if dropped:
                transport.record_lost_event(
                    "buffer_overflow", data_category="span", quantity=dropped
                )
            if dropped_with_root:
                # Lost for the reason their root was: the batch queue had no room for it.
                transport.record_lost_event(
                    "queue_overflow", data_category="span", quantity=dropped_with_root
                )
        if dropped:
            _logger.debug("otel-bridge: dropped %d spans whose local root never ended", dropped)

    def _warn_no_transport(self) -> None:
        if not self._warned_no_transport:
            self._warned_no_transport = True
            if any(problem.env == "SENTRY_DSN" for problem in self._config.problems):
                return  # the configuration already said, once, that the DSN is unusable
            _logger.error(
                "otel-bridge: the `sentry` trace exporter is active but sentry-sdk is not "
                "started (is SENTRY_DSN set and valid?); transactions are dropped"
            )

    def _is_ingest_request(self, span: ReadableSpan) -> bool:
        """Spans of our own requests to the ingest (belt and braces: the transport already
        suppresses instrumentation while it sends)."""
        if self._ingest is None or span._kind is not SpanKind.CLIENT:
            return False
        attributes = attributes_view(span)  # exported spans have ended: read in place
        # The semantic conventions require the method on every HTTP client span: without
        # one it is no HTTP request (a database query, the shop's every CLIENT span), and
        # the address is not looked up.
        if attributes.keys().isdisjoint(HTTP_METHOD_KEYS):
            return False
        host = attributes.get("server.address", attributes.get("net.peer.name"))
        port = attributes.get("server.port", attributes.get("net.peer.port"))
        if host is None:
            url = attributes.get("url.full", attributes.get("http.url"))
            if not isinstance(url, str):
                return False
            try:
                parts = urlsplit(url)
                host, port = parts.hostname, parts.port or _DEFAULT_PORTS.get(parts.scheme)
            except ValueError:
                return False
        return (str(host), port if isinstance(port, int) else None) == self._ingest


def _now_timestamp() -> str:
    # One `sent_at` for the envelopes of a batch, mapped within milliseconds: formatting the
    # time was 6% of the batch thread's samples when done per transaction (py-spy,
    # 2026-11-23). Relay corrects a client's clock only for drifts of 55 minutes or more.
    return format_timestamp(datetime.now(timezone.utc))


def _scrubber(config: BridgeConfig) -> Scrubber | None:
    if not config.scrub_enabled:
        return None
    from otel_bridge.scrub import Scrubber

    return Scrubber.from_config(config)


def _ingest_address(dsn: str | None) -> tuple[str, int | None] | None:
    if not dsn:
        return None
    parsed = Dsn(dsn)
    return (parsed.host, parsed.port)


def _event_time_ns(event: dict[str, Any]) -> int | None:
    timestamp = event.get("timestamp")
    return int(timestamp * 1e9) if isinstance(timestamp, (int, float)) else None


def _event_exception_key(event: dict[str, Any]) -> tuple[str, str, str] | None:
    values = event.get("exception", {}).get("values") or []
    trace_id = event.get("contexts", {}).get("trace", {}).get("trace_id")
    if not values or not trace_id:
        return None
    last = values[-1]
    return exception_key(trace_id, str(last.get("type", "")), str(last.get("value", "")))


def _transactions_rate_limited(transport: Transport) -> bool:
    # `_check_disabled` is sentry-sdk's own rate-limit lookup; without it we simply build the
    # envelope and let the transport drop it.
    check = getattr(transport, "_check_disabled", None)
    return bool(check("transaction")) if callable(check) else False


class TransportPacer:
    """Waits for room in the transport's queue, so a burst is delivered instead of
    overflowing it, but never waits long on an ingest that makes no progress: after
    `stall_after` seconds without room (and, with otel-bridge's transport, without an
    envelope finished) it stops waiting (envelopes then overflow and are
    counted as client reports) until the queue has room again, and for `recovery` seconds
    after a stall it waits at most `short_wait`. Otherwise the batch processor's own queue
    would fill behind the waiting exporter and drop spans without counting them."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        stall_after: float = 2.0,
        short_wait: float = 0.05,
        recovery: float = 60.0,
    ) -> None:
        self._clock = clock
        self._stall_after = stall_after
        self._short_wait = short_wait
        self._recovery = recovery
        self._last_stall: float | None = None
        self.stalled = False

    def wait_for_room(self, transport: Transport, deadline: float, count: int = 1) -> bool:
        has_room = getattr(transport, "has_room", None)
        full: Callable[[], bool] | None
        if callable(has_room):  # otel-bridge's transport counts envelopes
            full = lambda: not has_room(count)  # noqa: E731
        else:
            # `_worker.full()` is sentry-sdk's own view of its queue; without it, don't pace.
            full = getattr(getattr(transport, "_worker", None), "full", None)
        if not callable(full):
            return True
        if not full():
            self.stalled = False
            return True
        if self.stalled:
            return False
        now = self._clock()
        recently_stalled = (
            self._last_stall is not None and now - self._last_stall < self._recovery
        )
        budget = self._short_wait if recently_stalled else self._stall_after
        give_up = min(deadline, now + budget)
        # otel-bridge's transport counts the envelopes it finished: while that count moves,
        # the ingest is slow, not stalled, and the wait goes on (up to the deadline).
        finished = getattr(transport, "finished_envelopes", None)
        progress = finished() if callable(finished) else None
        while full():
            now = self._clock()
            if callable(finished) and finished() != progress:
                progress = finished()
                give_up = min(deadline, now + budget)
            if now >= give_up:
                self.stalled = True
                self._last_stall = self._clock()
                _logger.debug("otel-bridge: the ingest makes no progress; not waiting for it")
                return False
            time.sleep(0.002)
        return True
