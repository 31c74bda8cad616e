"""CPU time of a process's request thread apart from its other threads, read from outside.

The Django section's figure is the whole process's CPU. Where otel-bridge's surplus over the
floor sits decides what could cut it: the request thread's processors, or the batch and
transport threads beside it. Linux keeps each thread's time on the CPU in nanoseconds
(``/proc/<pid>/task/<tid>/schedstat``, first field), which the runner reads just before and
just after a burst without touching the server. ``getrusage(RUSAGE_THREAD)`` would be read
from inside, on each thread, and the 10 ms ticks of ``/proc/<pid>/task/<tid>/stat`` are
too coarse for a 400-request burst (25 µs per request).

The benchmark's server answers one request at a time on its main thread, whose thread id is
the process id: that is the request thread. Threads that start during the burst count from
zero; threads that end during it are lost (none of the variants ends one before SIGTERM).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_PROC = Path("/proc")


def thread_cpu_ns(pid: int, proc: Path = _PROC) -> dict[int, int]:
    """Each live thread's time on the CPU so far, in nanoseconds, by thread id. Empty where
    the kernel keeps no schedstat (not Linux, or schedstats compiled out)."""
    times: dict[int, int] = {}
    try:
        tids = os.listdir(proc / str(pid) / "task")
    except OSError:
        return times
    for tid in tids:
        try:
            text = (proc / str(pid) / "task" / tid / "schedstat").read_text()
        except OSError:  # the thread ended between the listing and the read
            continue
        fields = text.split()
        if fields and fields[0].isdigit():
            times[int(tid)] = int(fields[0])
    return times


@dataclass(frozen=True)
class ThreadSplit:
    """CPU seconds between two readings: the request (main) thread, and all the others."""

    request: float
    others: float


def split_between(pid: int, before: dict[int, int], after: dict[int, int]) -> ThreadSplit | None:
    """The CPU each side spent between ``before`` and ``after``; None when either reading is
    empty or the main thread is missing from one (the figure would be made up)."""
    if pid not in before or pid not in after:
        return None
    request = after[pid] - before[pid]
    others = sum(ns - before.get(tid, 0) for tid, ns in after.items() if tid != pid)
    return ThreadSplit(request / 1e9, others / 1e9)
