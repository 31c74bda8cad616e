"""The Sentry dynamic sampling context (DSC) of the trace each span belongs to.

The DSC travels in ``baggage`` (``sentry-*`` entries) and in the envelope ``trace`` header.
Rules (Sentry's tracing spec): an incoming DSC is frozen and forwarded unchanged (only a
missing ``sample_rand`` is back-filled, as sentry-sdk does); a service that starts the trace
creates one on first use and freezes it. ``sample_rand < sample_rate`` iff ``sampled`` in
every DSC we create.

The DSC is per trace, so the tracker keys its state by trace id (not by span): every local
root and child of one trace in this process shares it, including spans that are not
recorded (unsampled traces still propagate ``sampled=false`` downstream).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import chain
from random import Random
from typing import TYPE_CHECKING, Any, Final

from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.util.types import Attributes

from otel_bridge.propagation.baggage import dsc_entries, parse_baggage, serialize_baggage, split_dsc
from otel_bridge.span_attributes import (
    IS_REMOTE,
    SAMPLED,
    SPAN_ID,
    TRACE_FLAGS,
    TRACE_ID,
    span_attributes,
)

# Set by the propagator on extract: the sender's DSC (``sentry-`` prefix removed), read-only.
INCOMING_DSC_KEY = context_api.create_key("otel_bridge.incoming_dsc")
# Set by the propagator when ``sentry-trace`` came without a sampled flag (decision deferred).
DEFERRED_KEY = context_api.create_key("otel_bridge.sampling_deferred")

# Attributes the sampler and tracker leave on a local root so the exporter can rebuild the
# exact DSC from the finished span; the exporter should not show them as span data.
ATTR_SAMPLE_RAND = "sentry.sample_rand"
ATTR_SAMPLE_RATE = "sentry.sample_rate"
ATTR_DSC = "sentry.dsc"
INTERNAL_ATTRIBUTES = frozenset((ATTR_SAMPLE_RAND, ATTR_SAMPLE_RATE, ATTR_DSC))

if TYPE_CHECKING:
    from opentelemetry.sdk.resources import Resource

    from otel_bridge.runtime import Runtime

_MAX_TRACES = 4096
# Traces with a root still open moved to the back per trace remembered (see _insert).
_MAX_REQUEUED = 8


def format_rand(value: float) -> str:
    return f"{value:.6f}"


def format_rate(value: float) -> str:
    return str(float(value))


def parse_unit(value: object) -> float | None:
    """A float in [0, 1] from a DSC string or attribute, else None."""
    if value is None:  # the usual case (no incoming DSC): not worth a raised TypeError
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if not math.isnan(number) and 0.0 <= number <= 1.0 else None


def parse_rand(value: object) -> float | None:
    number = parse_unit(value)
    return number if number is not None and number < 1.0 else None


def generate_sample_rand(trace_id: int, lower: float = 0.0, upper: float = 1.0) -> float | None:
    """Pseudo-random in [lower, upper) with 6 decimals, seeded by the trace id.

    Same recipe as sentry-sdk (``Random(trace_id_hex)``), so every service back-filling the
    same trace agrees. None when the interval is empty.

    One difference: sentry-sdk truncates the lower bound to 6 decimals, so for a rate with
    more (0.1234567) a trace it did not sample could be given a ``sample_rand`` under the
    rate. The bound is rounded up here instead; where sentry-sdk's value is right, both
    draw the same one.
    """
    low, high = int(lower * 1_000_000), int(upper * 1_000_000)
    if low / 1_000_000 < lower:
        low += 1
    if not low < high:
        return None
    return Random(f"{trace_id:032x}").randrange(low, high) / 1_000_000


_LOW_56_BITS: Final = (1 << 56) - 1


def head_sample_rand(trace_id: int) -> float:
    """sample_rand for a trace this service starts, from the low 56 bits of its new id.

    Those bits are random (the SDK's id generators draw them; W3C Trace Context level 2
    reserves them for randomness), and only this service draws the value: it travels on
    in baggage and the envelope's DSC. The seeded ``Random`` that back-filling needs, so
    that services which never saw each other agree, costs about 5 µs per root (a SHA-512
    and a Mersenne Twister set-up) for nothing here.
    """
    return ((trace_id & _LOW_56_BITS) * 1_000_000 >> 56) / 1_000_000


def consistent_rand_rate(
    trace_id: int, sampled: bool, rand: float | None, rate: float
) -> tuple[float, float]:
    """(sample_rand, sample_rate) such that ``rand < rate`` iff ``sampled``.

    A given rand is kept when it already agrees; otherwise it is back-filled from the
    decision's range. When that range is empty (sampled at rate 0, dropped at rate 1) the
    rate says what really happened instead: 1.0 or 0.0.
    """
    if rand is not None and (rand < rate) == sampled:
        return rand, rate
    lower, upper = (0.0, rate) if sampled else (rate, 1.0)
    filled = generate_sample_rand(trace_id, lower, upper)
    if filled is not None:
        return filled, rate
    rate = 1.0 if sampled else 0.0
    kept = rand if rand is not None else generate_sample_rand(trace_id)
    return (kept if kept is not None else 0.0), rate


def transaction_from_span(name: str, attributes: Attributes) -> tuple[str, str]:
    """(transaction name, source): ``METHOD route`` from ``http.route``, else the span name.

    A server span without a route is named after its URL, which the DSC must not carry.
    """
    attrs: Mapping[str, Any] = attributes or {}
    method = attrs.get("http.request.method") or attrs.get("http.method")
    route = attrs.get("http.route")
    if isinstance(route, str) and route:
        return (f"{method} {route}" if isinstance(method, str) else route), "route"
    if method is not None:
        return name, "url"
    return name, "custom"


def build_dsc(
    trace_id: int,
    *,
    sample_rand: float,
    sample_rate: float,
    sampled: bool,
    public_key: str | None,
    release: str | None,
    environment: str | None,
    transaction: str | None,
    transaction_source: str | None,
    org_id: str | None = None,
) -> dict[str, str]:
    dsc = {
        "trace_id": f"{trace_id:032x}",
        "sample_rate": format_rate(sample_rate),
        "sample_rand": format_rand(sample_rand),
        "sampled": "true" if sampled else "false",
    }
    if public_key:
        dsc["public_key"] = public_key
    if org_id:
        dsc["org_id"] = org_id
    if release:
        dsc["release"] = release
    if environment:
        dsc["environment"] = environment
    if transaction and transaction_source != "url":
        dsc["transaction"] = transaction
    return dsc


def backfill_incoming(
    incoming: Mapping[str, str], trace_id: int, sampled: bool | None
) -> dict[str, str]:
    """The sender's DSC unchanged, plus a ``sample_rand`` when it had none (as sentry-sdk)."""
    dsc = dict(incoming)
    if parse_rand(dsc.get("sample_rand")) is not None:
        return dsc
    rate = parse_unit(dsc.get("sample_rate"))
    if sampled is None or rate is None:
        lower, upper = 0.0, 1.0
    else:
        lower, upper = (0.0, rate) if sampled else (rate, 1.0)
    rand = generate_sample_rand(trace_id, lower, upper)
    if rand is not None:
        dsc["sample_rand"] = format_rand(rand)
    return dsc


def upstream_decision(
    ctx: context_api.Context | None, incoming: Mapping[str, str] | None, flag_sampled: bool
) -> bool | None:
    """What the sender decided, given the remote parent's sampled flag: None where its
    ``sentry-trace`` carried no flag (deferred) and its DSC no ``sampled`` either."""
    if context_api.get_value(DEFERRED_KEY, ctx) is not True:
        return flag_sampled
    return {"true": True, "false": False}.get((incoming or {}).get("sampled") or "")


def serialize_dsc(dsc: Mapping[str, str]) -> str:
    return serialize_baggage(dsc_entries(dsc)) or ""


def parse_dsc(raw: object) -> dict[str, str] | None:
    if not isinstance(raw, str):
        return None
    dsc, _ = split_dsc(parse_baggage(raw))
    return dsc or None


def incoming_dsc(ctx: context_api.Context | None, trace_id: int) -> Mapping[str, str] | None:
    """The extracted DSC in ``ctx`` when it belongs to ``trace_id``."""
    value = context_api.get_value(INCOMING_DSC_KEY, ctx)
    if not isinstance(value, Mapping):
        return None
    own = value.get("trace_id")
    return value if own is None or own == f"{trace_id:032x}" else None


# A frozen DSC as one flat tuple of strings (key, value, key, value, ...); see _Remembered.
_FrozenDsc = tuple[str, ...]
# What the tracker keeps of a trace with no local root open in this process: sample_rand,
# sample_rate, sampled, transaction, frozen DSC, and whether a local root ended (its name is
# then the transaction's for good). Only tuples of strings, numbers and booleans, because
# CPython's collector stops tracking such a tuple when it examines it (a tuple that holds a
# tuple still tracked stays tracked until the next time, hence no deeper nesting). The
# tracker remembers thousands of traces (children may end after their root, unsampled
# traces still propagate); kept as tracked objects (an entry, its list, a mapping proxy),
# each was promoted to the oldest generation, brought the next full collection forward and
# was scanned by every later one: 30-45 µs of collector time per request in the
# benchmark's bursts (2026-11-23).
_Remembered = tuple[float, float, bool, "tuple[str, str] | None", "_FrozenDsc | None", bool]
_REMEMBERED_FROZEN: Final = 4  # where a remembered trace keeps its frozen DSC


def _freeze(dsc: Mapping[str, str]) -> _FrozenDsc:
    return tuple(chain.from_iterable(dsc.items()))


def _thaw(frozen: _FrozenDsc) -> dict[str, str]:
    return dict(zip(frozen[::2], frozen[1::2], strict=True))


@dataclass
class _TraceEntry:
    """A trace with a local root open in this process."""

    sample_rand: float
    sample_rate: float
    sampled: bool
    transaction: tuple[str, str] | None = None
    frozen: _FrozenDsc | None = None
    # A local root ended: `transaction` is its final name, which the DSC carries when it is
    # frozen (at its first use), as if it had been frozen when that root ended.
    named: bool = False
    roots: list[Span] = field(default_factory=list)

    def remembered(self) -> _Remembered:
        return (
            self.sample_rand, self.sample_rate, self.sampled, self.transaction, self.frozen,
            self.named,
        )

    @classmethod
    def reopened(cls, remembered: _Remembered) -> _TraceEntry:
        return cls(*remembered)


class LocalRootTracker(SpanProcessor):
    """Per-trace sampling facts and the frozen DSC; marks local roots for the exporter.

    Work on the request thread is a few dict operations under one lock. State is bounded:
    the oldest traces are forgotten first, those with a local root still open last (see
    ``_insert``). An entry outlives its root on purpose, so children that end later still
    inject the DSC the transaction was sent with; a forgotten trace gets a DSC derived again
    from its trace id.
    """

    def __init__(
        self,
        *,
        public_key: str | None,
        release: str | None,
        environment: str | None,
        sample_rate: float,
        max_traces: int = _MAX_TRACES,
        org_id: str | None = None,
        strict_trace_continuation: bool = False,
    ) -> None:
        self.public_key = public_key
        self.org_id = org_id
        self.strict_trace_continuation = strict_trace_continuation
        self.release = release
        self.environment = environment
        self.sample_rate = sample_rate
        self._max_traces = max_traces
        self._lock = threading.Lock()
        self._traces: OrderedDict[int, _TraceEntry | _Remembered] = OrderedDict()

    @classmethod
    def from_runtime(cls, runtime: Runtime, resource: Resource) -> LocalRootTracker:
        """The tracker for this process, made the active one (the propagator, the sampler
        and sentry-sdk's event processor find it through ``active_tracker()``)."""
        from sentry_sdk.utils import Dsn

        from otel_bridge.pipeline.mapping import event_fields_from_resource

        config = runtime.config
        fields = event_fields_from_resource(
            resource, release=config.release, environment=config.environment
        )
        tracker = cls(
            public_key=Dsn(config.dsn).public_key if config.dsn else None,
            release=fields.get("release"),
            environment=fields.get("environment"),
            sample_rate=config.effective_sample_rate(),
            org_id=config.effective_org_id(),
            strict_trace_continuation=config.strict_trace_continuation,
        )
        set_active_tracker(tracker)
        return tracker

    # -- called by the sampler, before the span exists ---------------------------------

    def record_decision(
        self,
        trace_id: int,
        *,
        sample_rand: float,
        sample_rate: float,
        sampled: bool,
        transaction: tuple[str, str] | None,
        frozen: Mapping[str, str] | None,
    ) -> None:
        with self._lock:
            if trace_id in self._traces:
                self._traces.move_to_end(trace_id)
                return
            self._insert(trace_id, (
                sample_rand, sample_rate, sampled, transaction,
                _freeze(frozen) if frozen is not None else None, False,
            ))

    def _insert(self, trace_id: int, entry: _TraceEntry | _Remembered) -> None:
        self._traces[trace_id] = entry
        # A trace whose local root is still open (a slow request among thousands of quick
        # ones) goes to the back rather than be forgotten: derived again, its DSC would not
        # be the one its transaction is sent with. At most a few per insert, so the work
        # stays bounded, and one trace is still forgotten: roots that never end cannot pin
        # more than the bound.
        requeued = 0
        while len(self._traces) > self._max_traces:
            oldest_id = next(iter(self._traces))
            oldest = self._traces[oldest_id]
            if isinstance(oldest, _TraceEntry) and oldest.roots and requeued < _MAX_REQUEUED:
                self._traces.move_to_end(oldest_id)
                requeued += 1
                continue
            self._traces.popitem(last=False)

    def _open_entry(self, trace_id: int) -> _TraceEntry | None:
        entry = self._traces.get(trace_id)
        if isinstance(entry, tuple):
            entry = _TraceEntry.reopened(entry)
            self._traces[trace_id] = entry
        return entry

    def _settle(self, trace_id: int, entry: _TraceEntry) -> None:
        if not entry.roots:
            self._traces[trace_id] = entry.remembered()

    # -- SpanProcessor -------------------------------------------------------------------

    def on_start(self, span: Span, parent_context: context_api.Context | None = None) -> None:
        # On the request thread: read behind the SDK's properties (see span_attributes.py).
        parent = span._parent
        if parent is not None and not parent[IS_REMOTE]:
            return
        trace_id = span.context.trace_id
        with self._lock:
            entry = self._open_entry(trace_id)
            if entry is None:
                entry = self._entry_without_sampler(span, parent_context)
                self._insert(trace_id, entry)
            entry.roots.append(span)
            frozen = entry.frozen
        if frozen is not None and (span.attributes or {}).get(ATTR_DSC) is None:
            span.set_attribute(ATTR_DSC, serialize_dsc(_thaw(frozen)))

    def _entry_without_sampler(
        self, span: Span, parent_context: context_api.Context | None
    ) -> _TraceEntry:
        # Another sampler decided (BridgeSampler was not configured): derive the same facts.
        trace_id = span.context.trace_id
        sampled = span.context.trace_flags.sampled
        incoming = incoming_dsc(parent_context, trace_id)
        rand = parse_rand((incoming or {}).get("sample_rand"))
        rate = parse_unit((incoming or {}).get("sample_rate"))
        rand, rate = consistent_rand_rate(
            trace_id, sampled, rand, self.sample_rate if rate is None else rate
        )
        frozen = (
            _freeze(backfill_incoming(
                incoming, trace_id, upstream_decision(parent_context, incoming, sampled)
            ))
            if incoming
            else None
        )
        span.set_attributes({ATTR_SAMPLE_RAND: rand, ATTR_SAMPLE_RATE: rate})
        return _TraceEntry(rand, rate, sampled, None, frozen)

    def on_end(self, span: ReadableSpan) -> None:
        parent = span._parent
        if parent is not None and not parent[IS_REMOTE]:
            return
        context = span._context
        assert context is not None  # the SDK's spans always have one
        trace_id = context[TRACE_ID]
        with self._lock:
            entry = self._traces.get(trace_id)
            if not isinstance(entry, _TraceEntry):  # unknown, or no root open
                return
            # on_end receives a ReadableSpan copy, not the Span given to on_start: compare ids.
            ended = context[SPAN_ID]
            entry.roots = [root for root in entry.roots if root.context.span_id != ended]
            if entry.frozen is None and not entry.named:
                # Children that outlive the root must inject what the exporter will send: its
                # name is taken now; the DSC is only built if something asks for it.
                entry.transaction = _transaction_of(span)
                entry.named = True
            self._settle(trace_id, entry)

    def shutdown(self) -> None:
        with self._lock:
            self._traces.clear()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

    # -- the DSC -------------------------------------------------------------------------

    def dsc_for(
        self, span_context: trace.SpanContext, ctx: context_api.Context | None
    ) -> dict[str, str]:
        """The frozen DSC of this span's trace, freezing it now if this is its first use."""
        trace_id = span_context.trace_id
        roots: list[Span] = []
        with self._lock:
            known = self._traces.get(trace_id)
            if isinstance(known, tuple):
                frozen_before = known[_REMEMBERED_FROZEN]
            else:
                frozen_before = known.frozen if known is not None else None
            if frozen_before is not None:
                return _thaw(frozen_before)
            entry = self._open_entry(trace_id)
            incoming = incoming_dsc(ctx, trace_id)
            sampled = span_context.trace_flags.sampled
            if incoming is not None:
                frozen = backfill_incoming(
                    incoming, trace_id, upstream_decision(ctx, incoming, sampled)
                )
            else:
                if entry is None:
                    rand, rate = consistent_rand_rate(trace_id, sampled, None, self.sample_rate)
                    entry = _TraceEntry(rand, rate, sampled)
                    self._insert(trace_id, entry)
                # Once a local root has ended, its name is the one the DSC carries.
                live = None if entry.named else next(
                    (r for r in entry.roots if r.is_recording()), None
                )
                frozen = self._head_dsc(trace_id, entry, live)
            if entry is not None:
                entry.frozen = _freeze(frozen)
                roots = list(entry.roots)
                self._settle(trace_id, entry)
        serialized = serialize_dsc(frozen)
        for root in roots:
            if root.is_recording():
                root.set_attribute(ATTR_DSC, serialized)
        return dict(frozen)

    def _head_dsc(
        self, trace_id: int, entry: _TraceEntry, root: ReadableSpan | None
    ) -> dict[str, str]:
        name = _transaction_of(root) if root is not None else entry.transaction
        rand, rate = consistent_rand_rate(
            trace_id, entry.sampled, entry.sample_rand, entry.sample_rate
        )
        return build_dsc(
            trace_id,
            sample_rand=rand,
            sample_rate=rate,
            sampled=entry.sampled,
            public_key=self.public_key,
            release=self.release,
            environment=self.environment,
            transaction=name[0] if name else None,
            transaction_source=name[1] if name else None,
            org_id=self.org_id,
        )

    def continues(self, incoming: Mapping[str, str] | None) -> bool:
        """Whether a trace whose incoming DSC is ``incoming`` may be continued here: not when
        it names another organization, nor (strict continuation) when only one side names
        one. sentry-sdk's ``_should_continue_trace``: a trace from another organization
        would otherwise carry its DSC, sampling and ids into this one's data."""
        theirs = (incoming or {}).get("org_id")
        ours = self.org_id
        if theirs is not None and ours is not None:
            return theirs == ours
        if self.strict_trace_continuation:
            return theirs is None and ours is None
        return True


def _transaction_of(root: ReadableSpan) -> tuple[str, str]:
    # The exporter's own naming, so a DSC frozen early names what the exporter will send.
    try:
        from otel_bridge.pipeline.mapping import transaction_name_and_source
    except ImportError:
        return transaction_from_span(root.name, root.attributes)
    return transaction_name_and_source(root)


# The one active tracker. Module-level because propagators and samplers named in
# OTEL_PROPAGATORS / OTEL_TRACES_SAMPLER are built from entry points with no arguments and
# must still find the tracker the configurator installed.
_active: LocalRootTracker | None = None


def set_active_tracker(tracker: LocalRootTracker | None) -> None:
    global _active
    _active = tracker


def active_tracker() -> LocalRootTracker | None:
    return _active


def current_dsc(ctx: context_api.Context | None = None) -> dict[str, str] | None:
    """The DSC of the span active in ``ctx`` (default: current context), or None."""
    span_context = trace.get_current_span(ctx).get_span_context()
    if not span_context.is_valid:
        return None
    tracker = _active
    if tracker is not None:
        return tracker.dsc_for(span_context, ctx)
    incoming = incoming_dsc(ctx, span_context.trace_id)
    if incoming is not None:
        return backfill_incoming(incoming, span_context.trace_id, span_context.trace_flags.sampled)
    return None


def dsc_for_finished_root(
    root: ReadableSpan,
    *,
    public_key: str | None,
    release: str | None,
    environment: str | None,
    transaction: str | None,
    transaction_source: str | None,
    org_id: str | None = None,
) -> dict[str, str]:
    """The envelope ``trace`` header of the transaction made from ``root``."""
    attrs: Mapping[str, Any] = span_attributes(root)
    frozen = parse_dsc(attrs.get(ATTR_DSC))
    if frozen is not None:
        return frozen
    context = root._context  # behind the SDK's properties: see span_attributes.py
    assert context is not None
    trace_id = context[TRACE_ID]
    sampled = bool(context[TRACE_FLAGS] & SAMPLED)
    rate = parse_unit(attrs.get(ATTR_SAMPLE_RATE))
    rand, rate = consistent_rand_rate(
        trace_id, sampled, parse_rand(attrs.get(ATTR_SAMPLE_RAND)), 1.0 if rate is None else rate
    )
    return build_dsc(
        trace_id,
        sample_rand=rand,
        sample_rate=rate,
        sampled=sampled,
        public_key=public_key,
        release=release,
        environment=environment,
        transaction=transaction,
        transaction_source=transaction_source,
        org_id=org_id,
    )
