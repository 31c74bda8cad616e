"""Failure behaviour, with real processes: the shop under ``opentelemetry-instrument`` with
``SENTRY_DSN`` pointing at a RecordingIngest that is down, slow, failing or rate limiting.

What must hold whatever the ingest does: the application answers exactly as with a healthy
ingest, nothing from otel-bridge raises into it (no traceback on stderr), it recovers when
the ingest does, rate limits are honoured per category, shutdown flushes what is pending,
pre-forked workers each export their own transactions once, and spans whose root never ends
do not pile up. No timing is asserted: waits are bounded, outcomes are counted.
"""

from __future__ import annotations

import contextlib
import functools
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
import sentry_sdk
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Span, Tracer, set_span_in_context

from otel_bridge.config import load_config
from otel_bridge.pipeline.batching import AccountedBatchSpanProcessor, report_span_lost
from otel_bridge.pipeline.exporter import SentrySpanExporter
from otel_bridge.runtime import MAX_DROPPED_SPANS, Runtime
from tests.rig.ingest import RecordingIngest
from tests.rig.processes import CompletedRun, InstrumentedServer, run_instrumented

ShopFactory = Callable[..., InstrumentedServer]

# Requests whose answers must not change when the ingest misbehaves (the shop's data is
# seeded identically at every start, so bodies are byte-for-byte comparable).
PATHS = ("/orders/1/", "/orders/4/", "/orders/404/", "/health/", "/not-found/")
FAST_EXPORT = {"OTEL_BSP_SCHEDULE_DELAY": "200"}  # ms: transactions leave within a moment


def shop_env(ingest: RecordingIngest, **extra: str) -> dict[str, str]:
    return {"SENTRY_DSN": ingest.dsn, **extra}


def answers(shop: InstrumentedServer) -> list[tuple[str, int, bytes]]:
    result = []
    for path in PATHS:
        response = requests.get(shop.url(path), timeout=30)
        result.append((path, response.status_code, response.content))
    return result


def orders(ingest: RecordingIngest) -> list[dict[str, Any]]:
    """Accepted transactions of the order view."""
    return [e for e in ingest.events("transaction") if "orders" in str(e.get("transaction"))]


def wait_orders(ingest: RecordingIngest, count: int, timeout: float = 30.0) -> list[Any]:
    def enough(ing: RecordingIngest) -> list[Any] | None:
        found = orders(ing)
        return found if len(found) >= count else None

    enough.__qualname__ = f"at least {count} order transaction(s)"
    return ingest.wait_for(enough, timeout)


def discarded(ingest: RecordingIngest, category: str) -> dict[str, int]:
    """Client-report discards of a category, summed by reason."""
    totals: dict[str, int] = {}
    for report in ingest.events("client_report"):
        for entry in report.get("discarded_events", ()):
            if entry.get("category") == category:
                reason = str(entry.get("reason"))
                totals[reason] = totals.get(reason, 0) + int(entry.get("quantity", 0))
    return totals


def assert_no_traceback(shop: InstrumentedServer) -> None:
    stderr = shop.stderr_text()
    assert "Traceback" not in stderr, stderr[-5000:]


def bridge_tracebacks(stderr: str) -> list[str]:
    """Tracebacks that went through otel-bridge's code."""
    return [block for block in stderr.split("Traceback")[1:] if "otel_bridge" in block]


def ignored_signals(pid: int) -> set[int]:
    """The signals a process ignores (its SigIgn mask in /proc)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("SigIgn:"):
                mask = int(line.split()[1], 16)
                return {bit + 1 for bit in range(64) if mask >> bit & 1}
    return set()


def stop_with(shop: InstrumentedServer, signum: int, timeout: float = 30.0) -> int:
    """Send one signal and wait for a clean exit (no SIGKILL fallback unless it hangs)."""
    assert shop.process is not None
    assert signum not in ignored_signals(shop.pid), (
        f"the shop ignores signal {signum}, inherited from the process that started the tests"
    )
    shop.process.send_signal(signum)
    try:
        return shop.process.wait(timeout=timeout)
    finally:
        shop.stop()


# -- ingest down, slow, failing ------------------------------------------------------------


def _fault_down(ingest: RecordingIngest) -> None:
    ingest.stop()


def _fault_slow(ingest: RecordingIngest) -> None:
    ingest.respond_with(200, delay=5.0)


def _fault_500(ingest: RecordingIngest) -> None:
    ingest.respond_with(500)


def _heal(ingest: RecordingIngest) -> None:
    ingest.respond_with(200)
    ingest.start()


FAULTS = {"down": _fault_down, "slow": _fault_slow, "500": _fault_500}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_app_unaffected_by_ingest_fault_and_recovers(
    fault: str, ingest: RecordingIngest, shop_server: ShopFactory
) -> None:
    shop = shop_server(env=shop_env(ingest, **FAST_EXPORT))
    healthy = answers(shop)
    wait_orders(ingest, 3)  # the pipeline works before the fault

    FAULTS[fault](ingest)
    for _ in range(3):
        assert answers(shop) == healthy
    during = 3 * 3
    # let the exporter meet the fault (it exports every 200 ms) before the ingest heals
    time.sleep(1.5)
    assert answers(shop) == healthy
    during += 3

    _heal(ingest)
    before_recovery = len(orders(ingest))
    for _ in range(2):
        assert answers(shop) == healthy
    # new transactions arrive again (in the slow case, the delayed ones too)
    expected = before_recovery + 6 if fault != "slow" else 3 + during + 6
    wait_orders(ingest, expected, timeout=45)

    assert shop.stop() in (0, 143, -signal.SIGTERM)
    assert_no_traceback(shop)
    if fault != "slow":
        # what was lost during the fault was counted (sentry-sdk says `network_error` for
        # both) and reported once the ingest was back
        lost = discarded(ingest, "transaction")
        assert lost.get("network_error", 0) >= 1, (lost, ingest.dump())
    else:
        assert len(orders(ingest)) == expected  # slow: nothing lost, nothing twice


# Rate-limit windows, tried in turn: the requests meant to fall inside a window must be made
# before it closes. On a machine too busy for 8 s the scenario is started again, from a new
# ingest and shop, with the next; its assertions themselves are never retried.
RATE_LIMIT_WINDOWS = (8, 16, 32)


class _WindowTooShort(Exception):
    """The requests meant to fall inside the rate-limit window took longer than the window."""


def _check_still_inside(limited_at: float, window: int) -> None:
    if time.monotonic() - limited_at >= window:
        raise _WindowTooShort(window)


def _in_a_long_enough_window(
    shop_server: ShopFactory, scenario: Callable[[RecordingIngest, ShopFactory, int], None]
) -> None:
    for window in RATE_LIMIT_WINDOWS:
        with RecordingIngest() as ingest:
            try:
                scenario(ingest, shop_server, window)
                return
            except _WindowTooShort:
                continue
    pytest.fail(f"the machine was too slow even for a {RATE_LIMIT_WINDOWS[-1]} s window")


def _rate_limited_shop(
    ingest: RecordingIngest, shop_server: ShopFactory, headers: dict[str, str]
) -> tuple[InstrumentedServer, list[tuple[str, int, bytes]], float, int]:
    """The shop, its healthy answers, the moment the ingest answered an order's transaction
    with a 429 and these headers (answering 200 again right after), and how many envelopes
    it had accepted by then."""
    shop = shop_server(env=shop_env(ingest, **FAST_EXPORT))
    healthy = answers(shop)
    # Every request's transaction so far accepted before the limit: one still in flight
    # when the test answers 200 again could be sent behind the limited one, in the same
    # pipelined window. (Counted by name: the shop's start-up queries make transactions too.)
    ingest.wait_for(
        lambda ing: sum(
            str(e.get("transaction")).startswith("GET ") for e in ing.events("transaction")
        ) >= len(PATHS)
    )
    ingest.respond_with(429, headers)
    requests.get(shop.url("/orders/2/"), timeout=30)
    ingest.wait_for(
        lambda ing: any(
            env.status == 429
            and any("orders" in str(item.json.get("transaction")) for item in
                    env.items_of("transaction"))
            for env in ing.received
        )
    )
    limited_at = time.monotonic()
    ingest.respond_with(200)
    return shop, healthy, limited_at, len(ingest.envelopes)


def _per_category_limit(ingest: RecordingIngest, shop_server: ShopFactory, window: int) -> None:
    shop, healthy, limited_at, accepted_before = _rate_limited_shop(
        ingest,
        shop_server,
        {"Retry-After": str(window), "X-Sentry-Rate-Limits": f"{window}:transaction:key"},
    )

    def transactions_since_limit() -> list[str]:
        return [
            str(item.json.get("transaction"))
            for env in ingest.envelopes[accepted_before:]
            for item in env.items_of("transaction")
        ]

    # inside the window: the app is unaffected, transactions are held back, errors are not
    try:
        assert answers(shop) == healthy
        boom = requests.get(shop.url("/boom/"), timeout=30)
        assert boom.status_code == 500
        # an error is never held back by a transaction limit: one held back would be
        # dropped, not sent late, and this wait would fail
        errors = ingest.wait_for_items("event", 1)
        _check_still_inside(limited_at, window)
        assert any("boom from shop" in str(e.get("exception")) for e in errors), errors
        time.sleep(1.0)  # the window's transactions have reached the exporter by now
        _check_still_inside(limited_at, window)
    except _WindowTooShort:
        shop.stop()
        raise
    assert transactions_since_limit() == []

    # after the window, transactions flow again
    time.sleep(max(0.0, window + 0.5 - (time.monotonic() - limited_at)))
    count = len(orders(ingest))
    requests.get(shop.url("/orders/3/"), timeout=30)
    wait_orders(ingest, count + 1)

    shop.stop()
    # /boom/'s own traceback is Django's log; none may come from otel-bridge
    assert not bridge_tracebacks(shop.stderr_text()), shop.stderr_text()[-5000:]
    # the ones held back during the window were never sent later
    names = transactions_since_limit()
    assert len(names) == 1 and "orders" in names[0], ingest.dump()
    # the held-back transactions were counted as rate-limit drops
    assert discarded(ingest, "transaction").get("ratelimit_backoff", 0) >= 1, ingest.dump()


def test_rate_limits_are_honoured_per_category(shop_server: ShopFactory) -> None:
    _in_a_long_enough_window(shop_server, _per_category_limit)


def _bare_retry_after(ingest: RecordingIngest, shop_server: ShopFactory, window: int) -> None:
    shop, healthy, limited_at, accepted_before = _rate_limited_shop(
        ingest, shop_server, {"Retry-After": str(window)}
    )

    try:
        assert answers(shop) == healthy
        assert requests.get(shop.url("/boom/"), timeout=30).status_code == 500
        time.sleep(1.0)  # the error went to the transport at once, the transactions by now
        _check_still_inside(limited_at, window)
    except _WindowTooShort:
        shop.stop()
        raise
    held_back = [
        item.type for env in ingest.envelopes[accepted_before:] for item in env.items
    ]
    assert held_back == [], held_back

    time.sleep(max(0.0, window + 0.5 - (time.monotonic() - limited_at)))
    count = len(orders(ingest))
    requests.get(shop.url("/orders/3/"), timeout=30)
    assert requests.get(shop.url("/boom/"), timeout=30).status_code == 500
    wait_orders(ingest, count + 1)
    errors = ingest.wait_for_items("event", 1)
    assert any("boom from shop" in str(e.get("exception")) for e in errors), errors

    shop.stop()
    assert not bridge_tracebacks(shop.stderr_text()), shop.stderr_text()[-5000:]
    assert len(errors) == 1, errors  # the one raised inside the window was never sent
    assert discarded(ingest, "transaction").get("ratelimit_backoff", 0) >= 1, ingest.dump()
    assert discarded(ingest, "error").get("ratelimit_backoff", 0) == 1, ingest.dump()


def test_a_bare_retry_after_holds_back_every_category(shop_server: ShopFactory) -> None:
    # A 429 with Retry-After alone (GlitchTip's answer, or a proxy's) limits everything for
    # the window, errors included; after it, both flow again.
    _in_a_long_enough_window(shop_server, _bare_retry_after)


# -- shutdown ------------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_flushes_everything_pending(
    signum: int, ingest: RecordingIngest, shop_server: ShopFactory
) -> None:
    # default batch delay (5 s): at the signal, nearly everything is still pending
    shop = shop_server(env=shop_env(ingest))
    for index in range(50):
        response = requests.get(shop.url(f"/orders/{index % 10 + 1}/"), timeout=30)
        assert response.status_code == 200
    returncode = stop_with(shop, signum)
    assert returncode in (0, 128 + signum, -signum), shop.output_text()
    delivered = orders(ingest)
    assert len(delivered) == 50, ingest.dump()[-3000:]
    assert len({e["event_id"] for e in delivered}) == 50
    assert not bridge_tracebacks(shop.stderr_text()), shop.stderr_text()[-5000:]


ATEXIT_SCRIPT = """
from opentelemetry import trace
tracer = trace.get_tracer("failures")
for index in range(20):
    with tracer.start_as_current_span(f"job {index}"):
        with tracer.start_as_current_span("step"):
            pass
print("done")
"""


def test_normal_exit_flushes_through_atexit(ingest: RecordingIngest) -> None:
    result = run_instrumented(
        ["python", "-c", ATEXIT_SCRIPT],
        {"SENTRY_DSN": ingest.dsn, "OTEL_SERVICE_NAME": "failures",
         "OTEL_METRICS_EXPORTER": "none"},
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    names = sorted(str(e.get("transaction")) for e in ingest.events("transaction"))
    assert names == sorted(f"job {index}" for index in range(20)), ingest.dump()[-3000:]
    assert all(len(e["spans"]) == 1 for e in ingest.events("transaction"))


BURST_SCRIPT = """
from opentelemetry import trace
tracer = trace.get_tracer("failures")
for index in range(150):
    tracer.start_span(f"burst {index}").end()
print("done")
"""


def _burst_through_tiny_queues(ingest: RecordingIngest, script: str) -> CompletedRun:
    """A slow ingest and tiny queues: the exporter waits for the transport and the batch
    queue fills within the burst."""
    ingest.respond_with(200, delay=0.05)
    result = run_instrumented(
        ["python", "-c", script],
        {"SENTRY_DSN": ingest.dsn, "OTEL_SERVICE_NAME": "failures",
         "OTEL_METRICS_EXPORTER": "none", "OTEL_BSP_MAX_QUEUE_SIZE": "10",
         "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "5", "OTEL_BRIDGE_TRANSPORT_QUEUE_SIZE": "2"},
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result


def test_spans_the_batch_queue_cannot_hold_are_counted_as_client_reports(
    ingest: RecordingIngest,
) -> None:
    # Every transaction must be delivered or reported lost.
    result = _burst_through_tiny_queues(ingest, BURST_SCRIPT)
    # one warning for the whole burst, instead of the SDK's line per dropped span
    assert result.stderr.count("the span queue is full") == 1, result.stderr
    assert "Queue full" not in result.stderr, result.stderr

    delivered = len(ingest.events("transaction"))
    lost = discarded(ingest, "transaction")
    assert lost.get("queue_overflow", 0) > 0, (lost, ingest.dump()[-3000:])
    assert delivered + sum(lost.values()) == 150, (delivered, lost)


# Three levels, so the queue also drops middle spans whose children found room.
NESTED_BURST_SCRIPT = """
from opentelemetry import trace
tracer = trace.get_tracer("failures")
for index in range(300):
    with tracer.start_as_current_span(f"burst {index}"):
        for step in range(3):
            with tracer.start_as_current_span(f"step {step}"):
                tracer.start_span(f"query {step}").end()
print("done")
"""


def test_what_the_batch_queue_cannot_hold_is_lost_by_whole_transactions(
    ingest: RecordingIngest,
) -> None:
    # As above, with children: whichever of a trace's spans find the queue full, every
    # transaction and every span is delivered or reported lost once, and no child arrives
    # as a transaction of its own.
    _burst_through_tiny_queues(ingest, NESTED_BURST_SCRIPT)
    transactions = ingest.events("transaction")
    names = [str(e.get("transaction")) for e in transactions]
    assert all(name.startswith("burst ") for name in names), names
    lost = discarded(ingest, "transaction")
    assert lost.get("queue_overflow", 0) > 0, (lost, ingest.dump()[-3000:])
    assert len(transactions) + sum(lost.values()) == 300, (len(transactions), lost)
    # A root that found room travels with the children that did (the others counted).
    delivered_spans = sum(1 + len(e["spans"]) for e in transactions)
    lost_spans = discarded(ingest, "span")
    assert delivered_spans + sum(lost_spans.values()) == 2100, (delivered_spans, lost_spans)


# -- pre-fork servers --------------------------------------------------------------------


def _pid(event: dict[str, Any]) -> Any:
    return (event.get("contexts", {}).get("otel", {}).get("resource") or {}).get("process.pid")


def test_gunicorn_workers_each_export_once(
    ingest: RecordingIngest, shop_server: ShopFactory
) -> None:
    shop = shop_server(env=shop_env(ingest, **FAST_EXPORT), server="gunicorn", workers=3)
    sent = 0

    def get(index: int) -> int:
        return requests.get(shop.url(f"/orders/{index % 10 + 1}/"), timeout=30).status_code

    # concurrent requests spread over the workers; bounded bursts until all three served
    with ThreadPoolExecutor(max_workers=12) as pool:
        for _ in range(15):
            assert set(pool.map(get, range(12))) == {200}
            sent += 12
            events = wait_orders(ingest, sent)
            if len({_pid(e) for e in events}) >= 3:
                break
    events = orders(ingest)
    pids = {_pid(e) for e in events}
    assert len(pids) == 3 and None not in pids, pids
    assert shop.pid not in pids  # the master serves nothing and exports nothing

    shop.stop()
    events = orders(ingest)
    assert len(events) == sent, f"{len(events)} transactions for {sent} requests"
    assert len({e["event_id"] for e in events}) == sent
    span_ids = [e["contexts"]["trace"]["span_id"] for e in events]
    assert len(set(span_ids)) == sent
    assert_no_traceback(shop)


# -- a root that never ends ----------------------------------------------------------------


def test_spans_of_a_root_that_never_ends_are_dropped_and_counted(
    ingest: RecordingIngest,
) -> None:
    config = load_config({"SENTRY_DSN": ingest.dsn, "OTEL_BRIDGE_PENDING_SPAN_TTL": "30"})
    client = sentry_sdk.Client(
        dsn=ingest.dsn, default_integrations=False, auto_enabling_integrations=False
    )
    now = [1000.0]
    exporter = SentrySpanExporter(
        runtime=Runtime(config), transport_source=lambda: client.transport,
        clock=lambda: now[0],
    )
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("failures")
    try:
        never_ending = tracer.start_span("stuck request")
        parent = set_span_in_context(never_ending)
        for index in range(25):
            tracer.start_span(f"child {index}", context=parent).end()
        assembler = exporter._assembler  # no public view of the buffer yet
        assert assembler.pending_count == 25

        now[0] += 31  # past the TTL; the next export expires what waited too long
        with tracer.start_as_current_span("healthy request"):
            pass
        assert assembler.pending_count == 0
        assert assembler.stats.dropped_expired == 25
        client.flush(timeout=10)
        [transaction] = ingest.wait_for_items("transaction", 1)
        assert transaction["transaction"] == "healthy request"
        ingest.wait_for(lambda ing: discarded(ing, "span"))
        assert sum(discarded(ingest, "span").values()) == 25, ingest.dump()
    finally:
        provider.shutdown()
        client.close(timeout=2)


class _HeldFirstExport(SpanExporter):
    """Holds the batch thread inside its first export until released, so the batch queue
    fills behind it at a known moment."""

    def __init__(self, exporter: SpanExporter) -> None:
        self.exporter = exporter
        self.entered = threading.Event()
        self.release = threading.Event()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.entered.set()
        self.release.wait(30)
        return self.exporter.export(spans)

    def shutdown(self) -> None:
        self.exporter.shutdown()


@contextlib.contextmanager
def _held_pipeline(
    ingest: RecordingIngest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Tracer, TracerProvider, _HeldFirstExport]]:
    """The configurator's pipeline with a 4-span batch queue whose first export is held."""
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "4")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "1")
    runtime = Runtime(load_config({"SENTRY_DSN": ingest.dsn}))
    sentry_sdk.init(dsn=ingest.dsn, default_integrations=False, auto_enabling_integrations=False)
    held = _HeldFirstExport(SentrySpanExporter(runtime=runtime))
    provider = TracerProvider()
    provider.add_span_processor(
        AccountedBatchSpanProcessor(
            held, on_drop=functools.partial(report_span_lost, dropped_spans=runtime.dropped_spans)
        )
    )
    try:
        yield provider.get_tracer("failures"), provider, held
    finally:
        held.release.set()
        provider.shutdown()
        sentry_sdk.get_client().close(timeout=2)
        # No client left behind for other tests; init(dsn=None) would leave one that still
        # adds sentry-trace and baggage to every http.client request of this process.
        sentry_sdk.get_global_scope().set_client(None)


def _delivered_after_shutdown(ingest: RecordingIngest, provider: TracerProvider) -> list[Any]:
    provider.shutdown()
    sentry_sdk.get_client().flush(timeout=10)
    ingest.wait_for(lambda ing: discarded(ing, "span"))
    return ingest.events("transaction")


def _drop_a_request_behind_its_queries(tracer: Tracer, held: _HeldFirstExport) -> Span:
    """With the first export held: a request whose four queries fill the queue, so that
    the request itself finds no room and is dropped. Returns the request span."""
    tracer.start_span("first request").end()
    assert held.entered.wait(10)
    request = tracer.start_span("request")
    for index in range(4):  # the queue's four places
        tracer.start_span(f"query {index}", context=set_span_in_context(request)).end()
    request.end()  # no room left
    return request


def test_the_children_of_a_root_the_batch_queue_dropped_are_dropped_with_it(
    ingest: RecordingIngest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sentry loses a transaction's spans with it: queries whose request span found the
    queue full are counted lost with it, not sent on their own at shutdown."""
    with _held_pipeline(ingest, monkeypatch) as (tracer, provider, held):
        _drop_a_request_behind_its_queries(tracer, held)
        held.release.set()
        transactions = _delivered_after_shutdown(ingest, provider)
        names = [e.get("transaction") for e in transactions]
        assert names == ["first request"], ingest.dump()[-3000:]
        assert discarded(ingest, "transaction") == {"queue_overflow": 1}
        assert discarded(ingest, "span") == {"queue_overflow": 5}, ingest.dump()[-3000:]


def _drop_a_request_then_more_roots(
    ingest: RecordingIngest, monkeypatch: pytest.MonkeyPatch, more_roots: int
) -> tuple[Span, list[Any]]:
    """A request dropped behind its queries, the oldest drop record, then ``more_roots``
    other roots dropped before the exporter learns of any: the request span and the
    transactions delivered once everything is shut down."""
    with _held_pipeline(ingest, monkeypatch) as (tracer, provider, held):
        request = _drop_a_request_behind_its_queries(tracer, held)
        for index in range(more_roots):
            tracer.start_span(f"later request {index}").end()
        held.release.set()
        return request, _delivered_after_shutdown(ingest, provider)


def test_up_to_the_bound_on_drop_records_the_oldest_root_takes_its_queries_with_it(
    ingest: RecordingIngest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MAX_DROPPED_SPANS records in all (the process's own bound, 20,000): the oldest is
    still there when the exporter learns of the drops, and its queries are lost with it."""
    _, transactions = _drop_a_request_then_more_roots(
        ingest, monkeypatch, MAX_DROPPED_SPANS - 1
    )
    assert [e.get("transaction") for e in transactions] == ["first request"]
    assert discarded(ingest, "transaction") == {"queue_overflow": MAX_DROPPED_SPANS}
    assert discarded(ingest, "span") == {"queue_overflow": MAX_DROPPED_SPANS + 4}


def test_past_the_bound_on_drop_records_the_children_are_sent_on_their_own_not_lost(
    ingest: RecordingIngest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One record more than the bound: the oldest is pushed out, so its root's queries wait
    for a root that never comes and go at shutdown as transactions of their own, parent
    set. The root itself is still counted lost; nothing vanishes."""
    request, transactions = _drop_a_request_then_more_roots(
        ingest, monkeypatch, MAX_DROPPED_SPANS
    )
    names = sorted(str(e.get("transaction")) for e in transactions)
    assert names == ["first request", *(f"query {i}" for i in range(4))], names[:10]
    request_id = format(request.get_span_context().span_id, "016x")
    follow_ups = [e for e in transactions if e.get("transaction") != "first request"]
    assert {e["contexts"]["trace"]["parent_span_id"] for e in follow_ups} == {request_id}
    assert discarded(ingest, "transaction") == {"queue_overflow": MAX_DROPPED_SPANS + 1}
    assert discarded(ingest, "span") == {"queue_overflow": MAX_DROPPED_SPANS + 1}


def test_the_children_of_a_span_the_batch_queue_dropped_stay_with_their_transaction(
    ingest: RecordingIngest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A middle span finds the queue full after its queries got in: they travel in their
    request's transaction (their parent id naming the lost span), not on their own."""
    with _held_pipeline(ingest, monkeypatch) as (tracer, provider, held):
        tracer.start_span("first request").end()
        assert held.entered.wait(10)
        request = tracer.start_span("request")
        render = tracer.start_span("render", context=set_span_in_context(request))
        for index in range(4):  # the queue's four places
            tracer.start_span(f"query {index}", context=set_span_in_context(render)).end()
        render.end()  # no room left
        held.release.set()
        assert provider.force_flush(10_000)  # room again for the request span
        request.end()
        transactions = _delivered_after_shutdown(ingest, provider)
        names = [e.get("transaction") for e in transactions]
        assert names == ["first request", "request"], ingest.dump()[-3000:]
        spans = transactions[1]["spans"]
        assert sorted(span["description"] for span in spans) == [
            f"query {index}" for index in range(4)
        ]
        render_id = format(render.get_span_context().span_id, "016x")
        assert {span["parent_span_id"] for span in spans} == {render_id}
        assert discarded(ingest, "transaction") == {}
        assert discarded(ingest, "span") == {"queue_overflow": 1}, ingest.dump()[-3000:]


