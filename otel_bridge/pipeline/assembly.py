"""Group finished spans into Sentry transactions: one per local root.

No threads and no I/O here: the exporter feeds spans in the order the SDK finished them and
sends what comes out. Children usually end before their local root, so they wait in a bounded
buffer; a span whose parent was already sent (it ended after its root) becomes a follow-up
transaction on the same trace with its parent set, never lost silently. Spans whose root never
ends are dropped after a TTL and counted; so are, at once, those whose root was dropped before
it reached the exporter (Sentry loses a transaction's spans with it). The descendants of a
dropped child span stay with their transaction: its parent adopts them.

Written by hand because neither the OTel SDK nor sentry-sdk groups OTel spans by local root
(sentry-sdk's SentrySpanProcessor does it inline on the request thread, with shared dicts).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, TypeVar

from opentelemetry.sdk.trace import ReadableSpan

from otel_bridge.span_attributes import IS_REMOTE, SPAN_ID, TRACE_ID

SpanKey = tuple[int, int]  # (trace_id, span_id)
_V = TypeVar("_V")
# A span dropped before it reached the exporter: (trace_id, span_id, parent span id), the
# parent None for a local root.
DroppedSpan = tuple[int, int, int | None]


# Named tuples: made for every transaction and every buffered span on the exporter's thread,
# where a frozen dataclass's __init__ (one object.__setattr__ per field) costs several times
# as much.
class AssembledTransaction(NamedTuple):
    root: ReadableSpan
    descendants: Sequence[ReadableSpan]
    # Set for a follow-up transaction: the already-sent span this subtree hangs from.
    parent_span_id: int | None = None


class _Pending(NamedTuple):
    span: ReadableSpan
    received_at: float


@dataclass
class AssemblyStats:
    dropped_expired: int = 0
    dropped_overflow: int = 0
    # Spans dropped because their local root was (see TransactionAssembler.account_for_dropped).
    dropped_with_root: int = 0
    follow_ups: int = 0
    _taken: int = field(default=0, repr=False)
    _taken_with_root: int = field(default=0, repr=False)

    def take_dropped(self) -> int:
        """Drops not yet reported, so each is reported (as a client report) once."""
        total = self.dropped_expired + self.dropped_overflow
        fresh, self._taken = total - self._taken, total
        return fresh

    def take_dropped_with_root(self) -> int:
        """Like :meth:`take_dropped`, for the spans dropped with their root."""
        fresh = self.dropped_with_root - self._taken_with_root
        self._taken_with_root = self.dropped_with_root
        return fresh


def local_parent_id(span: ReadableSpan) -> int | None:
    """The span id of the span's parent in this process; None for a local root (no parent,
    or a remote one)."""
    parent = span._parent  # behind the SDK's properties: see otel_bridge/span_attributes.py
    return None if parent is None or parent[IS_REMOTE] else parent[SPAN_ID]


def is_local_root(span: ReadableSpan) -> bool:
    return local_parent_id(span) is None


def _start_time(span: ReadableSpan) -> int:
    return span._start_time or 0


def _key(trace_id: int, span_id: int) -> SpanKey:
    return (trace_id, span_id)


def _remember(memory: OrderedDict[int, _V], span_id: int, value: _V, limit: int) -> None:
    """Keep ``span_id`` in a memory of at most ``limit`` ids, forgetting the least recently
    used first. An id found in one is moved to its end (``move_to_end``) where it is looked
    up: a dropped span's own descendants, remembered as they are dropped with it (or
    adopted past it), would otherwise push it out while its next children are still on
    their way (2026-11-24, at the memory's full 20,000)."""
    memory[span_id] = value
    if len(memory) > limit:
        memory.popitem(last=False)


class TransactionAssembler:
    """Buffers finished spans until their local root finishes. Not thread-safe by design:
    only the exporter's thread calls it."""

    def __init__(self, *, max_pending: int, pending_ttl: float, sent_memory: int = 20_000):
        self._max_pending = max_pending
        self._pending_ttl = pending_ttl
        # Insertion-ordered, so the oldest pending spans are the first to expire or overflow.
        self._pending: OrderedDict[SpanKey, _Pending] = OrderedDict()
        self._children: dict[SpanKey, list[SpanKey]] = {}
        # Ids of spans already delivered, to recognise a child that ends after its root (the
        # 64-bit span id alone is enough here), forgotten least recently used first. An
        # OrderedDict, not a plain dict: a dict leaves a hole for each key deleted at its
        # front, and finding its first key again (next(iter(...))) steps over every hole
        # until the dict is next resized, about a thousand of them on average at the default
        # memory (3 µs per span exported, 11-24); OrderedDict.popitem(last=False) takes the
        # oldest at once, and move_to_end keeps one found in use.
        self._sent: OrderedDict[int, None] = OrderedDict()
        # How many ids each of these memories (sent, dropped, adopted) keeps.
        self._memory_limit = sent_memory
        # Span ids of dropped local roots and of the descendants dropped with them, so a
        # descendant that comes later is dropped too; forgotten as `_sent` is.
        self._dropped: OrderedDict[int, None] = OrderedDict()
        # Span id of a dropped child span -> the span that adopted its descendants (its
        # parent, or the nearest ancestor not dropped), forgotten as `_sent` is.
        self._adopted_by: OrderedDict[int, int] = OrderedDict()
        self.stats = AssemblyStats()

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    def add(self, spans: Iterable[ReadableSpan], now: float) -> list[AssembledTransaction]:
        ready: list[AssembledTransaction] = []
        for span in spans:
            # Every span passes here: its fields are read behind the SDK's properties (see
            # otel_bridge/span_attributes.py).
            context = span._context
            if context is None:
                continue
            key = (context[TRACE_ID], context[SPAN_ID])
            parent = span._parent
            if parent is None or parent[IS_REMOTE]:  # is_local_root, for every span
                ready.append(AssembledTransaction(span, self._collect(key)))
                self._remember_sent(key)
                continue
            parent_id = parent[SPAN_ID]
            if self._adopted_by and parent_id in self._adopted_by:
                parent_id = self._adopter(parent_id)
            parent_key = (key[0], parent_id)
            if parent_id in self._sent:
                self._sent.move_to_end(parent_id)  # see _remember
                ready.append(self._follow_up(span, key, parent_id))
                continue
            if self._dropped and parent_id in self._dropped:
                self._dropped.move_to_end(parent_id)
                self.stats.dropped_with_root += 1 + self._discard_subtree(key)
                continue
            # tuple.__new__ makes the named tuple at C level; _Pending(...) would run the
            # Python-level __new__ namedtuple generates, for every child span.
            self._pending[key] = tuple.__new__(_Pending, (span, now))
            self._children.setdefault(parent_key, []).append(key)
        self._enforce_limit()
        return ready

    def account_for_dropped(self, dropped: Iterable[DroppedSpan]) -> list[AssembledTransaction]:
        """Spans dropped before they reached the exporter (a full batch queue), in the
        order they were dropped. A local root's descendants are dropped with it, those
        waiting here now and those that come later: Sentry loses a transaction's spans with
        it. A child span's descendants are adopted by its parent, so they still travel with
        their transaction (their own parent id still names the lost span). Returns the
        follow-up transactions this makes when that parent was sent already."""
        ready: list[AssembledTransaction] = []
        for trace_id, span_id, parent_id in dropped:
            key = (trace_id, span_id)
            if parent_id is None:
                self.stats.dropped_with_root += self._discard_subtree(key)
                continue
            adopter = self._adopter(parent_id)
            if adopter == span_id:
                # Its own ancestor: only an id generator that repeats itself makes one. As
                # its own adopter, looking it up would never end.
                continue
            if adopter in self._dropped:
                self._dropped.move_to_end(adopter)  # see _remember
                self.stats.dropped_with_root += self._discard_subtree(key)
                continue
            _remember(self._adopted_by, span_id, adopter, self._memory_limit)
            orphans = self._children.pop(key, None)
            if not orphans:
                continue
            if adopter in self._sent:
                self._sent.move_to_end(adopter)
                for orphan in orphans:
                    pending = self._pending.pop(orphan, None)
                    if pending is not None:
                        ready.append(self._follow_up(pending.span, orphan, adopter))
            else:
                self._children.setdefault((trace_id, adopter), []).extend(orphans)
        return ready

    def _follow_up(
        self, span: ReadableSpan, key: SpanKey, parent_id: int
    ) -> AssembledTransaction:
        """A subtree whose parent was sent already, as its own transaction hung from it."""
        self.stats.follow_ups += 1
        follow_up = AssembledTransaction(span, self._collect(key), parent_span_id=parent_id)
        self._remember_sent(key)
        return follow_up

    def _adopter(self, span_id: int) -> int:
        """The span standing in for ``span_id``: itself unless it was a dropped child span,
        else the nearest ancestor that was not."""
        adopted_by = self._adopted_by
        while span_id in adopted_by:
            adopted_by.move_to_end(span_id)  # see _remember
            span_id = adopted_by[span_id]
        return span_id

    def _discard_subtree(self, top: SpanKey) -> int:
        """Drop the descendants of ``top`` waiting here, remembering ``top`` and them as
        dropped; returns how many were waiting."""
        _remember(self._dropped, top[1], None, self._memory_limit)
        dropped = 0
        stack = list(self._children.pop(top, ()))
        while stack:
            key = stack.pop()
            if self._pending.pop(key, None) is not None:
                dropped += 1
                _remember(self._dropped, key[1], None, self._memory_limit)
            stack.extend(self._children.pop(key, ()))
        return dropped

    def expire(self, now: float) -> int:
        """Drop pending spans older than the TTL; returns how many were dropped."""
        dropped = 0
        deadline = now - self._pending_ttl
        while self._pending:
            key, pending = next(iter(self._pending.items()))
            if pending.received_at > deadline:
                break
            self._drop(key)
            dropped += 1
        self.stats.dropped_expired += dropped
        return dropped

    def drain(self) -> list[AssembledTransaction]:
        """At shutdown: deliver every pending subtree whose root will never come, as its own
        transaction (parent set), rather than lose it."""
        ready: list[AssembledTransaction] = []
        while self._pending:
            top = next(iter(self._pending))
            climbed = {top}
            # Climb to the highest pending ancestor so each subtree is delivered once. Only
            # an id generator that repeats itself makes a span its own ancestor; the climb
            # stops there rather than go round for ever, and the application's exit with it.
            while True:
                parent_key = _key(top[0], self._parent_id(self._pending[top].span))
                if parent_key not in self._pending or parent_key in climbed:
                    break
                climbed.add(parent_key)
                top = parent_key
            top_span = self._pending.pop(top).span
            ready.append(
                AssembledTransaction(
                    top_span, self._collect(top), parent_span_id=self._parent_id(top_span)
                )
            )
        self._children.clear()
        return ready

    def _collect(self, root_key: SpanKey) -> list[ReadableSpan]:
        collected: list[ReadableSpan] = []
        stack = list(self._children.pop(root_key, ()))
        while stack:
            key = stack.pop()
            pending = self._pending.pop(key, None)
            if pending is not None:
                collected.append(pending.span)
                self._remember_sent(key)
            stack.extend(self._children.pop(key, ()))
        collected.sort(key=_start_time)
        return collected

    def _parent_id(self, span: ReadableSpan) -> int:
        """The id of the span a pending child waits for (see _adopter)."""
        assert span.parent is not None  # a pending span is never a local root
        return self._adopter(span.parent.span_id)

    def _drop(self, key: SpanKey) -> None:
        pending = self._pending.pop(key)
        parent_key = _key(key[0], self._parent_id(pending.span))
        siblings = self._children.get(parent_key)
        if siblings is not None:
            if key in siblings:
                siblings.remove(key)
            if not siblings:
                del self._children[parent_key]

    def _enforce_limit(self) -> None:
        while len(self._pending) > self._max_pending:
            self._drop(next(iter(self._pending)))
            self.stats.dropped_overflow += 1

    def _remember_sent(self, key: SpanKey) -> None:
        _remember(self._sent, key[1], None, self._memory_limit)
