"""The benchmark server's own CPU readings (bench.serve --cpu-report), on real processes."""

from __future__ import annotations

import pytest

from bench.procs import Server, Sink, load
from bench.run import orders_transactions


def test_marks_grow_with_the_work_done_and_the_exit_reading_comes_last(bench_sink: Sink) -> None:
    server = Server("bare", bench_sink.dsn, report_cpu=True)
    try:
        first = server.cpu_mark()
        load(server.port, 200, concurrency=2)
        second = server.cpu_mark()
        exited = server.terminate()
    finally:
        server.close()
    assert exited.returncode == 143  # SIGTERM, through SystemExit
    assert second.total > first.total  # 200 requests of Django cost CPU
    assert exited.flushed_cpu is not None
    assert exited.flushed_cpu.total >= second.total
    # wait4's figure adds what the kernel spent tearing the process down
    assert exited.cpu.total >= exited.flushed_cpu.total


def test_each_mark_collects_the_garbage_before_its_reading(bench_sink: Sink) -> None:
    """A full collection owed by start-up must not land inside the measured burst."""
    server = Server("bridge", bench_sink.dsn, report_cpu=True)
    try:
        first = server.cpu_mark()
        second = server.cpu_mark()
        load(server.port, 20, concurrency=1)
        third = server.cpu_mark()
        exited = server.terminate()
    finally:
        server.close()
    assert first.full_collections >= 1  # the mark's own, at least
    assert second.full_collections == first.full_collections + 1  # nothing allocated between
    assert third.full_collections >= second.full_collections + 1
    assert exited.flushed_cpu is not None
    # the exit reading does not collect: it counts what the burst and the flush caused
    assert exited.flushed_cpu.full_collections - third.full_collections <= 1


def test_the_exit_reading_is_taken_after_the_final_flush(bench_sink: Sink) -> None:
    """os._exit skips the interpreter's teardown, not the exit handlers: what otel-bridge
    still holds when SIGTERM comes reaches the ingest before the reading."""
    bench_sink.mode("normal", reset=True)
    server = Server("bridge", bench_sink.dsn, {"OTEL_BSP_SCHEDULE_DELAY": "60000"}, report_cpu=True)
    try:
        load(server.port, 30, concurrency=1)
        exited = server.terminate()
    finally:
        server.close()
    assert exited.returncode == 143
    assert exited.flushed_cpu is not None
    assert orders_transactions(bench_sink.stats()) == 30


def test_without_the_option_the_process_exits_as_usual(bench_sink: Sink) -> None:
    server = Server("bare", bench_sink.dsn)
    try:
        exited = server.terminate()
    finally:
        server.close()
    assert exited.returncode == 143
    assert exited.flushed_cpu is None
    with pytest.raises(RuntimeError, match="report_cpu"):
        server.cpu_mark()
