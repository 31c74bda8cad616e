"""Grouping of finished spans into transactions, fed with real SDK spans."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from otel_bridge.pipeline.assembly import DroppedSpan, TransactionAssembler, is_local_root


@pytest.fixture
def tracer_and_spans() -> Iterator[tuple[trace.Tracer, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("test"), exporter
    provider.shutdown()


def _names(spans: Sequence[ReadableSpan]) -> list[str]:
    return sorted(span.name for span in spans)


def test_children_wait_for_their_local_root(tracer_and_spans) -> None:
    tracer, exporter = tracer_and_spans
    with tracer.start_as_current_span("root"):
        with tracer.start_as_current_span("child"), tracer.start_as_current_span("grandchild"):
            pass
        with tracer.start_as_current_span("sibling"):
            pass
    finished = exporter.get_finished_spans()
    assembler = TransactionAssembler(max_pending=100, pending_ttl=60)
    ready = []
    for span in finished:  # one at a time, in the order the SDK ended them
        ready += assembler.add([span], now=0.0)
    assert len(ready) == 1
    assert ready[0].root.name == "root"
    assert _names(ready[0].descendants) == ["child", "grandchild", "sibling"]
    assert ready[0].parent_span_id is None
    assert assembler.pending_count == 0


def test_remote_parent_makes_a_local_root(tracer_and_spans) -> None:
    tracer, exporter = tracer_and_spans
    remote = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(1))
    ctx = trace.set_span_in_context(NonRecordingSpan(remote))
    with tracer.start_as_current_span("server", context=ctx), tracer.start_as_current_span("db"):
        pass
    spans = exporter.get_finished_spans()
    assert is_local_root(spans[1]) and not is_local_root(spans[0])
    ready = TransactionAssembler(max_pending=100, pending_ttl=60).add(spans, now=0.0)
    assert [t.root.name for t in ready] == ["server"]
    assert _names(ready[0].descendants) == ["db"]


def test_child_ending_after_root_becomes_a_follow_up(tracer_and_spans) -> None:
    tracer, exporter = tracer_and_spans
    root = tracer.start_span("root")
    late = tracer.start_span("late", context=trace.set_span_in_context(root))
    late_child = tracer.start_span("late-child", context=trace.set_span_in_context(late))
    late_child.end()
    root.end()
    late.end()
    assembler = TransactionAssembler(max_pending=100, pending_ttl=60)
    first = assembler.add(exporter.get_finished_spans()[:2], now=0.0)
    assert [t.root.name for t in first] == ["root"]
    assert first[0].descendants == []
    second = assembler.add(exporter.get_finished_spans()[2:], now=1.0)
    assert [t.root.name for t in second] == ["late"]
    assert _names(second[0].descendants) == ["late-child"]
    assert second[0].parent_span_id == root.get_span_context().span_id
    assert assembler.stats.follow_ups == 1


def test_sent_spans_are_forgotten_oldest_first(tracer_and_spans) -> None:
    tracer, exporter = tracer_and_spans
    late_children = []
    for name in ("first", "second", "third"):
        root = tracer.start_span(name)
        context = trace.set_span_in_context(root)
        late_children.append(tracer.start_span(f"{name}-late", context=context))
        root.end()
    assembler = TransactionAssembler(max_pending=100, pending_ttl=60, sent_memory=2)
    assembler.add(exporter.get_finished_spans(), now=0.0)
    exporter.clear()
    for child in late_children:
        child.end()
    first_late, _, third_late = exporter.get_finished_spans()
    # the first root was forgotten: its late child waits as if its root were still open
    assert assembler.add([first_late], now=1.0) == []
    assert assembler.pending_count == 1
    # the last one sent is remembered: its late child becomes a follow-up
    assert [t.root.name for t in assembler.add([third_late], now=1.0)] == ["third-late"]
    assert assembler.stats.follow_ups == 1


def test_a_root_whose_late_children_keep_coming_is_remembered_the_longest(
    tracer_and_spans,
) -> None:
    tracer, exporter = tracer_and_spans
    root = tracer.start_span("root")
    context = trace.set_span_in_context(root)
    late = [tracer.start_span(f"late {index}", context=context) for index in range(2)]
    root.end()
    other = tracer.start_span("other")
    other.end()
    assembler = TransactionAssembler(max_pending=100, pending_ttl=60, sent_memory=3)
    assembler.add(exporter.get_finished_spans(), now=0.0)  # remembered: root, other
    exporter.clear()
    late[0].end()
    # found: root moves behind `other`, then its child is remembered
    assert [t.root.name for t in assembler.add(exporter.get_finished_spans(), 1.0)] == [
        "late 0"
    ]
    exporter.clear()
    newer = tracer.start_span("newer")
    newer.end()
    late[1].end()
    # `newer` pushed out `other`, the least recently used; forgotten oldest first, it
    # would have been the root, and `late 1` would wait for it
    ready = assembler.add(exporter.get_finished_spans(), now=2.0)
    assert [t.root.name for t in ready] == ["newer", "late 1"]
    assert ready[1].parent_span_id == root.get_span_context().span_id
    assert assembler.pending_count == 0
    assert assembler.stats.follow_ups == 2


def test_spans_whose_root_never_ends_expire_and_are_counted(tracer_and_spans) -> None:
    tracer, exporter = tracer_and_spans
    root = tracer.start_span("never-ends")
    for index in range(3):
        tracer.start_span(f"child-{index}", context=trace.set_span_in_context(root)).end()
    assembler = TransactionAssembler(max_pending=100, pending_ttl=10)
    assert assembler.add(exporter.get_finished_spans(), now=0.0) == []
    assert assembler.expire(now=5.0) == 0
    assert assembler.pending_count == 3
    assert assembler.expire(now=10.5) == 3
    assert assembler.pending_count == 0
    assert assembler.stats.take_dropped() == 3
    assert assembler.stats.take_dropped() == 0  # reported once
    root.end()


def test_pending_spans_are_bounded(tracer_and_spans) -> None:
    tracer, exporter = tracer_and_spans
    root = tracer.start_span("long-running")
    for index in range(50):
        tracer.start_span(f"child-{index}", context=trace.set_span_in_context(root)).end()
    assembler = TransactionAssembler(max_pending=10, pending_ttl=60)
    assembler.add(exporter.get_finished_spans(), now=0.0)
    assert assembler.pending_count == 10
    assert assembler.stats.dropped_overflow == 40
    root.end()
    ready = assembler.add(exporter.get_finished_spans()[-1:], now=1.0)
    # The newest ten survived and travel with their root.
    assert _names(ready[0].descendants) == sorted(f"child-{i}" for i in range(40, 50))


def test_drain_delivers_orphans_at_shutdown(tracer_and_spans) -> None:
    tracer, exporter = tracer_and_spans
    root = tracer.start_span("root-still-running")
    middle = tracer.start_span("middle", context=trace.set_span_in_context(root))
    tracer.start_span("leaf", context=trace.set_span_in_context(middle)).end()
    middle.end()
    assembler = TransactionAssembler(max_pending=100, pending_ttl=60)
    assembler.add(exporter.get_finished_spans(), now=0.0)
    drained = assembler.drain()
    assert [t.root.name for t in drained] == ["middle"]
    assert _names(drained[0].descendants) == ["leaf"]
    assert drained[0].parent_span_id == root.get_span_context().span_id
    assert assembler.pending_count == 0
    root.end()


def test_interleaved_traces_stay_apart(tracer_and_spans) -> None:
    tracer, exporter = tracer_and_spans
    first = tracer.start_span("first")
    second = tracer.start_span("second")
    tracer.start_span("a", context=trace.set_span_in_context(first)).end()
    tracer.start_span("b", context=trace.set_span_in_context(second)).end()
    second.end()
    first.end()
    ready = TransactionAssembler(max_pending=100, pending_ttl=60).add(
        exporter.get_finished_spans(), now=0.0
    )
    assert {t.root.name: _names(t.descendants) for t in ready} == {
        "first": ["a"],
        "second": ["b"],
    }


def _key(span: trace.Span) -> tuple[int, int]:
    context = span.get_span_context()
    return (context.trace_id, context.span_id)


def _dropped(span: trace.Span, parent: trace.Span | None = None) -> DroppedSpan:
    """What the batch processor records for a span it had no room for."""
    parent_id = None if parent is None else parent.get_span_context().span_id
    return (*_key(span), parent_id)


def test_what_waits_for_a_dropped_root_is_dropped_with_it(tracer_and_spans) -> None:
    """A root the batch queue had no room for: its descendants waiting now, and those that
    come later, are dropped and counted, never sent on their own at shutdown."""
    tracer, exporter = tracer_and_spans
    dropped_root = tracer.start_span("dropped-root")
    kept_root = tracer.start_span("kept-root")
    under_dropped = trace.set_span_in_context(dropped_root)
    middle = tracer.start_span("middle", context=under_dropped)
    tracer.start_span("leaf", context=trace.set_span_in_context(middle)).end()
    middle.end()
    tracer.start_span("query", context=under_dropped).end()
    tracer.start_span("kept-child", context=trace.set_span_in_context(kept_root)).end()
    assembler = TransactionAssembler(max_pending=100, pending_ttl=60)
    assert assembler.add(exporter.get_finished_spans(), now=0.0) == []
    assert assembler.pending_count == 4
    exporter.clear()

    assert assembler.account_for_dropped([_dropped(dropped_root)]) == []
    assert assembler.pending_count == 1  # the other trace's child still waits
    assert assembler.stats.dropped_with_root == 3
    # a descendant ending after the drop was learnt: dropped as it comes, children included
    late = tracer.start_span("late", context=under_dropped)
    tracer.start_span("late-leaf", context=trace.set_span_in_context(late)).end()
    late.end()
    assert assembler.add(exporter.get_finished_spans(), now=1.0) == []
    assert assembler.pending_count == 1
    assert assembler.stats.take_dropped_with_root() == 5
    assert assembler.stats.take_dropped_with_root() == 0  # reported once
    assert assembler.stats.take_dropped() == 0  # not counted as expired or overflowed
    assert assembler.drain()[0].root.name == "kept-child"  # nothing of the dropped root
    dropped_root.end()
    kept_root.end()


def _child(tracer: trace.Tracer, name: str, parent: trace.Span) -> trace.Span:
    return tracer.start_span(name, context=trace.set_span_in_context(parent))


def test_the_descendants_of_a_dropped_child_span_are_adopted_by_its_parent(
    tracer_and_spans,
) -> None:
    """A middle span the batch queue had no room for: what waits for it, and what comes for
    it later, travels in its root's transaction; dropped spans in a chain hand on to the
    nearest ancestor that got in."""
    tracer, exporter = tracer_and_spans
    root = tracer.start_span("root")
    view = _child(tracer, "view", root)
    render = _child(tracer, "render", view)
    _child(tracer, "query", render).end()
    _child(tracer, "cache", view).end()
    assembler = TransactionAssembler(max_pending=100, pending_ttl=60)
    assert assembler.add(exporter.get_finished_spans(), now=0.0) == []
    exporter.clear()

    # render, then view, found the queue full (they end in that order)
    assert assembler.account_for_dropped([_dropped(render, view), _dropped(view, root)]) == []
    _child(tracer, "late", render).end()  # ends after its parent was dropped
    render.end()
    view.end()
    root.end()
    finished = [span for span in exporter.get_finished_spans() if span.name in ("late", "root")]
    [transaction] = assembler.add(finished, now=1.0)
    assert transaction.root.name == "root"
    assert _names(transaction.descendants) == ["cache", "late", "query"]
    assert assembler.pending_count == 0
    assert assembler.stats.dropped_with_root == 0
    assert assembler.drain() == []


def test_a_dropped_child_spans_descendants_follow_a_parent_already_sent(
    tracer_and_spans,
) -> None:
    tracer, exporter = tracer_and_spans
    root = tracer.start_span("root")
    task = _child(tracer, "task", root)  # outlives its root, as a background task may
    _child(tracer, "step", task).end()
    root.end()
    assembler = TransactionAssembler(max_pending=100, pending_ttl=60)
    [transaction] = assembler.add(exporter.get_finished_spans(), now=0.0)
    assert transaction.root.name == "root" and transaction.descendants == []

    [follow_up] = assembler.account_for_dropped([_dropped(task, root)])
    assert follow_up.root.name == "step"
    assert follow_up.parent_span_id == root.get_span_context().span_id
    assert assembler.stats.follow_ups == 1
    assert assembler.pending_count == 0


def test_a_dropped_child_span_whose_children_keep_coming_is_remembered_the_longest(
    tracer_and_spans,
) -> None:
    """Its own dropped children, remembered as adopted past it, must not push it out while
    its other children are still on their way."""
    tracer, exporter = tracer_and_spans
    root = tracer.start_span("root")
    batch = _child(tracer, "batch", root)
    steps = [_child(tracer, f"step {index}", batch) for index in range(4)]
    assembler = TransactionAssembler(max_pending=100, pending_ttl=60, sent_memory=3)
    assembler.account_for_dropped([_dropped(batch, root)])
    # three of its children find the queue full too: each is adopted by `root`, past it
    assembler.account_for_dropped([_dropped(step, batch) for step in steps[:3]])
    steps[3].end()  # got in; forgotten oldest first, `batch` would be gone, and it would wait
    batch.end()
    root.end()
    finished = [span for span in exporter.get_finished_spans() if span.name in ("step 3", "root")]
    [transaction] = assembler.add(finished, now=1.0)
    assert transaction.root.name == "root"
    assert _names(transaction.descendants) == ["step 3"]
    assert assembler.pending_count == 0
    for step in steps[:3]:
        step.end()


def test_adopted_descendants_are_dropped_with_a_dropped_root(tracer_and_spans) -> None:
    tracer, exporter = tracer_and_spans
    root = tracer.start_span("root")
    view = _child(tracer, "view", root)
    _child(tracer, "query", view).end()
    assembler = TransactionAssembler(max_pending=100, pending_ttl=60)
    assembler.add(exporter.get_finished_spans(), now=0.0)
    exporter.clear()

    assembler.account_for_dropped([_dropped(view, root), _dropped(root)])
    _child(tracer, "late", view).end()
    assert assembler.add(exporter.get_finished_spans(), now=1.0) == []
    assert assembler.pending_count == 0
    assert assembler.stats.take_dropped_with_root() == 2  # query, then late
    assert assembler.drain() == []


class _OneSpanId(RandomIdGenerator):
    """Hands out one span id for ever, as a test fixture's generator might: each child span
    is then its own parent."""

    SPAN_ID = 0x5EED

    def generate_span_id(self) -> int:
        return self.SPAN_ID


@pytest.fixture
def one_span_id_tracer() -> Iterator[tuple[trace.Tracer, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(id_generator=_OneSpanId())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("test"), exporter
    provider.shutdown()


@pytest.mark.timeout(10)
def test_a_span_that_is_its_own_parent_is_drained_at_shutdown(one_span_id_tracer) -> None:
    """Climbing to its highest pending ancestor must not go round for ever: that would hang
    the application's exit."""
    tracer, exporter = one_span_id_tracer
    root = tracer.start_span("root-still-running")
    tracer.start_span("child", context=trace.set_span_in_context(root)).end()
    assembler = TransactionAssembler(max_pending=100, pending_ttl=60)
    assert assembler.add(exporter.get_finished_spans(), now=0.0) == []
    drained = assembler.drain()
    assert [t.root.name for t in drained] == ["child"]
    assert drained[0].parent_span_id == _OneSpanId.SPAN_ID
    assert assembler.pending_count == 0
    root.end()


@pytest.mark.timeout(10)
def test_a_dropped_span_that_is_its_own_parent_adopts_nothing(one_span_id_tracer) -> None:
    """Remembered as its own adopter, looking its adopter up would go round for ever on the
    exporter's thread, holding the export lock."""
    tracer, exporter = one_span_id_tracer
    root = tracer.start_span("root")
    dropped = _child(tracer, "dropped", root)
    assembler = TransactionAssembler(max_pending=100, pending_ttl=60)
    assert assembler.account_for_dropped([_dropped(dropped, root)]) == []
    _child(tracer, "late", dropped).end()
    root.end()
    finished = [span for span in exporter.get_finished_spans() if span.name != "dropped"]
    [transaction] = assembler.add(finished, now=1.0)
    assert transaction.root.name == "root"
    assert _names(transaction.descendants) == ["late"]
    assert assembler.pending_count == 0
    dropped.end()
