"""The instructions section's reading of callgrind's per-thread dumps."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench import instructions
from bench.instructions import Counted, thread_totals


def _dump(path: Path, total: int | None) -> None:
    lines = ["# callgrind format", "version: 1", "cmd: python", "part: 1"]
    if total is not None:
        lines.append(f"totals: {total}")
    path.write_text("\n".join(lines) + "\n")


def test_main_thread_apart_from_the_others_of_the_largest_process(tmp_path: Path) -> None:
    # The wrapper's image, replaced by exec, leaves an empty dump under the same pid.
    (tmp_path / "callgrind.200").write_text("")
    _dump(tmp_path / "callgrind.200-01", 5_000)
    _dump(tmp_path / "callgrind.200-02", 700)
    _dump(tmp_path / "callgrind.200-03", 300)
    # A short-lived child (git, run by sentry-sdk for a release) counts for nothing.
    _dump(tmp_path / "callgrind.300-01", 900)
    _dump(tmp_path / "unrelated.txt", 10**9)

    assert thread_totals(tmp_path) == Counted(main=5_000, background=1_000)


def test_dumps_without_thread_numbers_count_as_the_main_thread(tmp_path: Path) -> None:
    _dump(tmp_path / "callgrind.200", 4_000)
    assert thread_totals(tmp_path) == Counted(main=4_000, background=0)


def test_per_request_arithmetic() -> None:
    busy, idle = Counted(main=9_000, background=2_500), Counted(main=1_000, background=500)
    per = (busy - idle) / 100
    assert per == Counted(main=80, background=20)
    assert per.total == 100


@pytest.mark.skipif(not instructions.available(), reason="valgrind is not installed")
def test_a_real_callgrind_run_is_split_by_thread(tmp_path: Path) -> None:
    # A second thread doing far more work than the main one: the split must say so.
    program = (
        "import threading\n"
        "def work():\n"
        "    total = 0\n"
        "    for i in range(500_000):\n"
        "        total += i * i\n"
        "thread = threading.Thread(target=work)\n"
        "thread.start()\n"
        "thread.join()\n"
    )
    subprocess.run(
        [*instructions._callgrind(tmp_path), sys.executable, "-c", program],
        check=True, capture_output=True, timeout=300,
    )
    counted = thread_totals(tmp_path)
    assert counted.main > 0
    assert counted.background > counted.main
