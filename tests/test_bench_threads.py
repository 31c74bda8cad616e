"""CPU by thread, read from outside the process (bench/threads.py), on real processes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bench.run import _thread_split_lines
from bench.threads import ThreadSplit, split_between, thread_cpu_ns

if not thread_cpu_ns(os.getpid()):
    pytest.skip("no per-thread schedstat on this kernel", allow_module_level=True)

# One thread spins while the main thread sleeps, or the other way round. The spin is
# measured in the thread's own CPU time, not the wall clock, so a busy machine lengthens it
# rather than shortening what is read. Both threads are still alive at the second reading:
# one that has ended is no longer listed.
_SPINNER = """
import sys, threading, time
SPIN = float(sys.argv[2])
spun, never = threading.Event(), threading.Event()
def spin():
    end = time.thread_time() + SPIN
    while time.thread_time() < end:
        pass
    spun.set()
if sys.argv[1] == "other":
    threading.Thread(target=lambda: (spin(), never.wait()), daemon=True).start()
    spun.wait()
else:
    threading.Thread(target=never.wait, daemon=True).start()
    spin()
print("done", flush=True)
sys.stdin.read()
"""


SPIN_SECONDS = 0.3


def _split_of(busy: str) -> ThreadSplit:
    process = subprocess.Popen(
        [sys.executable, "-c", _SPINNER, busy, str(SPIN_SECONDS)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        before = thread_cpu_ns(process.pid)
        assert process.stdout is not None
        assert process.stdout.readline() == "done\n"
        after = thread_cpu_ns(process.pid)
    finally:
        process.kill()
        process.wait()
    split = split_between(process.pid, before, after)
    assert split is not None
    return split


def test_a_busy_thread_beside_an_idle_main_thread_counts_as_other_threads() -> None:
    split = _split_of("other")
    assert split.others >= SPIN_SECONDS
    # the main thread's share is the interpreter's start-up, a fraction of the spin
    assert split.request < split.others / 3


def test_a_busy_main_thread_counts_as_the_request_thread() -> None:
    split = _split_of("main")
    assert split.request >= SPIN_SECONDS
    assert split.others < split.request / 3


def test_no_reading_of_a_process_that_is_gone() -> None:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    assert thread_cpu_ns(process.pid) == {}
    assert split_between(process.pid, {}, {}) is None


def test_the_report_splits_the_surplus_over_the_floor_by_thread() -> None:
    burst = 400
    lines = _thread_split_lines(
        {
            "otel_null": [ThreadSplit(0.480, 0.002), ThreadSplit(0.500, 0.002)],
            "bridge": [ThreadSplit(0.520, 0.034), ThreadSplit(0.532, 0.038)],
        },
        burst,
    )
    assert lines[0].endswith("otel_null 1,225 / 5; bridge 1,315 / 90")
    assert lines[1] == (
        "- otel-bridge over the floor (d), by thread: request thread +90 µs/request, "
        "other threads +85"
    )


def test_a_variant_with_an_unread_round_is_left_out() -> None:
    lines = _thread_split_lines(
        {"otel_null": [ThreadSplit(0.5, 0.0), None], "bridge": [ThreadSplit(0.5, 0.04)]}, 400
    )
    assert lines == [lines[0]]  # no surplus line without the floor
    assert "otel_null" not in lines[0]
    assert _thread_split_lines({"bridge": [None]}, 400) == []


def test_threads_started_after_the_first_reading_count_from_zero() -> None:
    split = split_between(10, {10: 5}, {10: 7, 11: 3_000_000_000})
    assert split == ThreadSplit(2e-9, 3.0)

