"""Instructions per request of the Django burst, counted by valgrind's callgrind.

CPU time on a shared machine moves by 10-30% from one run to the next; the number of
instructions a process executes hardly moves at all. This section runs the same burst as the
Django section for the floor, otel-bridge and native sentry-sdk, each server under
``valgrind --tool=callgrind``, and counts the user-space instructions of all its threads from
just before the burst until it has exited after SIGTERM (final flush included), minus the
same for an idle server.

What it does not count is as telling: the kernel's share (the view's SQLite writes, the
sockets), which costs every variant the same; and how fast the instructions run (a second
thread's cache misses, hand-overs of the GIL). The CPU-time figures of the Django section stay
the ones the targets are judged on; these explain them.

callgrind_control zeroes the counters of the running server after its warm-up: a tool of
valgrind's own. Just before, the server collects the garbage its start-up left (the CPU
mark of bench.serve), as it does before the timed bursts, and it leaves the same way too:
its exit handlers, then ``os._exit`` without the interpreter's teardown.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.procs import Server, Sink, load

VARIANTS = ("otel_null", "bridge", "native")
# Start-up under valgrind (Django, OpenTelemetry and sentry-sdk imported, every instruction
# simulated) takes 20-60 s on the benchmark's machine.
READY_TIMEOUT = 600.0
EXIT_TIMEOUT = 900.0


def available() -> bool:
    return shutil.which("valgrind") is not None and shutil.which("callgrind_control") is not None


def _callgrind(out_dir: Path) -> list[str]:
    return [
        "valgrind", "--tool=callgrind",
        # opentelemetry-instrument execs the interpreter; sentry-sdk may run git for a release
        "--trace-children=yes", "--trace-children-skip=*git*,*uname*,*ldconfig*",
        f"--callgrind-out-file={out_dir}/callgrind.%p", "--dump-instr=no",
        # one dump per thread (callgrind.<pid>-01 is the main one): the request thread's
        # share apart from the batch processor's and the transport's
        "--separate-threads=yes",
    ]


@dataclass(frozen=True)
class Counted:
    """Instructions of one server process: its main thread (which serves the requests: the
    benchmark's server handles one at a time) and all its other threads (the batch
    processor's, the transport's, sentry-sdk's session flusher)."""

    main: float
    background: float

    @property
    def total(self) -> float:
        return self.main + self.background

    def __sub__(self, other: Counted) -> Counted:
        return Counted(self.main - other.main, self.background - other.background)

    def __truediv__(self, divisor: float) -> Counted:
        return Counted(self.main / divisor, self.background / divisor)


_DUMP_NAME = re.compile(r"callgrind\.(?P<pid>\d+)(?:-(?P<thread>\d+))?$")


def _dump_total(dump: Path) -> int:
    with open(dump) as lines:
        for line in lines:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    return 0


def thread_totals(out_dir: Path) -> Counted:
    """The server interpreter's instructions by thread, from ``callgrind.<pid>-<thread>``
    dumps: the process with the largest total (the wrapper script's image, replaced by
    exec, leaves a small one)."""
    by_pid: dict[str, dict[int, int]] = {}
    for dump in out_dir.glob("callgrind.*"):
        match = _DUMP_NAME.match(dump.name)
        if match is None:
            continue
        # An image replaced by exec leaves an empty `callgrind.<pid>` beside the new image's
        # per-thread dumps of the same pid: thread 0 here, so it never stands for thread 1.
        thread = int(match.group("thread") or 0)
        by_pid.setdefault(match.group("pid"), {})[thread] = _dump_total(dump)
    if not by_pid:
        return Counted(0, 0)
    threads = max(by_pid.values(), key=lambda counts: sum(counts.values()))
    main = threads.get(1, threads.get(0, 0))
    return Counted(main, sum(threads.values()) - main)


def count_once(
    sink: Sink, variant: str, requests: int, warmup: int, concurrency: int
) -> Counted:
    """Instructions of one server from just before a burst of ``requests`` to its exit."""
    sink.mode("normal", reset=True)
    out_dir = Path(tempfile.mkdtemp(prefix="bench-callgrind-"))
    try:
        server = Server(
            variant, sink.dsn, {"PYTHONHASHSEED": "0"},
            wrapper=_callgrind(out_dir), ready_timeout=READY_TIMEOUT, report_cpu=True,
        )
        try:
            load(server.port, warmup, path="/health/", concurrency=1)
            # The mark collects the start-up's garbage (see bench.serve), as before the
            # timed bursts; its CPU reading is not used here.
            server.cpu_mark(timeout=READY_TIMEOUT)
            subprocess.run(["callgrind_control", "-z", str(server.pid)], check=True,
                           capture_output=True, timeout=120)
            if requests:
                load(server.port, requests, concurrency=concurrency)
            else:
                time.sleep(0.5)
            exited = server.terminate(timeout=EXIT_TIMEOUT)
        finally:
            server.close()
        if exited.returncode not in (0, 143, -15):
            raise RuntimeError(f"{variant} under valgrind exited with {exited.returncode}:\n"
                               f"{server.stderr_text()}")
        return thread_totals(out_dir)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


def per_request(
    sink: Sink,
    requests: int,
    warmup: int,
    concurrency: int,
    variants: Sequence[str] = VARIANTS,
    progress: Callable[[str], None] = print,
) -> dict[str, Counted]:
    """Instructions per request of each variant: (burst - idle) / requests, by thread."""
    counted: dict[str, Counted] = {}
    for variant in variants:
        idle = count_once(sink, variant, 0, warmup, concurrency)
        busy = count_once(sink, variant, requests, warmup, concurrency)
        counted[variant] = per = (busy - idle) / requests
        progress(
            f"  {variant}: {per.total / 1e3:,.0f}K instructions/request "
            f"({per.main / 1e3:,.0f}K main thread, {per.background / 1e3:,.0f}K other threads)"
        )
    return counted
