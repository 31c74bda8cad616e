"""The Django section's rounds, kept run after run, and the verdict pooled over runs of the
same code.

One run's verdict on otel-bridge / native can flip with the machine: on the development
machine nine-round runs of the same code gave 0.46x to 0.54x (docs/benchmarks.md). Whether
the target is met *reliably* is a question about several runs, so each run that measures
both variants over three or more rounds appends its rounds to ``bench/results/history.jsonl``
with a fingerprint of what it measured, and the report pools the runs whose fingerprint
matches the current checkout.

The fingerprint hashes the files that decide the measured request's cost: otel-bridge's and
its instrumentations' sources, the pinned package versions, the shop sample and the
benchmark's server and load generator. Any edit starts a new pool; no one has to judge
whether a change was "on the burst's path".
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import statistics
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

FINGERPRINTED = (
    "otel_bridge",
    "instrumentations",
    "samples/shop",
    "constraints.txt",
    "pyproject.toml",
    "bench/serve.py",
    "bench/load.py",
    "bench/procs.py",
)
MIN_ROUNDS = 3  # fewer give only a handful of distinct bootstrap draws (a quick run has 2)
MIN_RUNS = 3  # a pooled interval over fewer runs says little about the next run
RESAMPLES = 2000
SEED = 20261124  # fixed: the same rounds always give the same interval


def resampled_ratio(rng: random.Random, bridge: Sequence[float], native: Sequence[float]) -> float:
    """The ratio of medians of one bootstrap draw of a run's rounds, drawn in pairs: each
    round brings both its otel-bridge and its native figure, measured a minute apart."""
    drawn = rng.choices(range(len(native)), k=len(native))
    return statistics.median(bridge[i] for i in drawn) / statistics.median(
        native[i] for i in drawn
    )


def percentile_interval(values: Sequence[float], confidence: float) -> tuple[float, float]:
    ordered = sorted(values)
    tail = (1 - confidence) / 2
    return ordered[int(tail * (len(ordered) - 1))], ordered[int((1 - tail) * (len(ordered) - 1))]


def fingerprinted_files(root: Path) -> list[tuple[str, bytes]]:
    """The files that decide the benchmark's request cost, as (relative path, contents)."""
    files: list[tuple[str, bytes]] = []
    for name in FINGERPRINTED:
        path = root / name
        candidates = [path] if path.is_file() else sorted(path.rglob("*"))
        for candidate in candidates:
            if candidate.is_file() and _counts(candidate):
                files.append((candidate.relative_to(root).as_posix(), candidate.read_bytes()))
    return files


def _counts(path: Path) -> bool:
    # Bytecode and the sample's database are made by running, not by writing code.
    return "__pycache__" not in path.parts and path.suffix not in (".pyc", ".sqlite3")


def fingerprint(files: Iterable[tuple[str, bytes]]) -> str:
    digest = hashlib.sha256()
    for relative, contents in sorted(files):
        digest.update(relative.encode() + b"\0" + hashlib.sha256(contents).digest())
    return digest.hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class Run:
    at: str
    code: str
    burst: int
    concurrency: int
    native: tuple[float, ...]
    bridge: tuple[float, ...]

    @property
    def ratio(self) -> float:
        """The run's own verdict figure: the ratio of the medians."""
        return statistics.median(self.bridge) / statistics.median(self.native)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str) -> Run:
        fields: dict[str, Any] = json.loads(line)
        return cls(
            at=str(fields["at"]),
            code=str(fields["code"]),
            burst=int(fields["burst"]),
            concurrency=int(fields["concurrency"]),
            native=tuple(float(x) for x in fields["native"]),
            bridge=tuple(float(x) for x in fields["bridge"]),
        )


def run_from_rounds(
    at: str, code: str, burst: int, concurrency: int, rounds_us: Mapping[str, Sequence[float]]
) -> Run | None:
    """The run to keep, or None when it did not measure both variants over enough rounds."""
    native, bridge = rounds_us.get("native"), rounds_us.get("bridge")
    if not native or not bridge or len(native) < MIN_ROUNDS or len(native) != len(bridge):
        return None
    return Run(at, code, burst, concurrency, tuple(native), tuple(bridge))


def load(path: Path) -> tuple[list[Run], list[int]]:
    """The runs kept, and the numbers of the lines that could not be read (a hand edit, a
    run killed while writing): those are left out and named, not fatal after a long run."""
    if not path.exists():
        return [], []
    runs, unreadable = [], []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            runs.append(Run.from_json(line))
        except (ValueError, KeyError, TypeError):
            unreadable.append(number)
    return runs, unreadable


def append(path: Path, run: Run) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as history:
        # A line cut short (a run killed while writing) must not swallow this one too.
        cut_short = history.tell() > 0 and not _ends_with_newline(path)
        history.write(b"\n" * cut_short + run.to_json().encode() + b"\n")


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as kept:
        kept.seek(-1, 2)
        return kept.read(1) == b"\n"


@dataclasses.dataclass(frozen=True)
class Pooled:
    runs: tuple[Run, ...]
    low: float
    high: float
    share_at_or_under: float

    @property
    def mean_ratio(self) -> float:
        return statistics.fmean(run.ratio for run in self.runs)

    @property
    def reliably_met(self) -> bool:
        return len(self.runs) >= MIN_RUNS and self.high <= 0.5


def pool(
    runs: Sequence[Run], code: str, burst: int, concurrency: int, confidence: float = 0.9
) -> Pooled | None:
    """The runs of this code and load, with a two-level bootstrap of the mean of their
    ratios: runs drawn with replacement, then each drawn run's rounds drawn in pairs. The
    runs level carries what moves between runs (the shared machine getting quieter or
    busier: native cost 2.1x to 2.7x the floor in runs of 11-24 with the same code on the
    measured request), the rounds level what moves within one."""
    same = tuple(r for r in runs if (r.code, r.burst, r.concurrency) == (code, burst, concurrency))
    if not same:
        return None
    rng = random.Random(SEED)
    means = [
        statistics.fmean(
            resampled_ratio(rng, run.bridge, run.native)
            for run in rng.choices(same, k=len(same))
        )
        for _ in range(RESAMPLES)
    ]
    low, high = percentile_interval(means, confidence)
    return Pooled(same, low, high, sum(m <= 0.5 for m in means) / len(means))


def pooled_lines(pooled: Pooled | None, history_name: str) -> list[str]:
    if pooled is None:
        return []
    ratios = ", ".join(f"{run.ratio:.2f}" for run in pooled.runs)
    count = len(pooled.runs)
    verdict = (
        "met reliably" if pooled.reliably_met
        else f"not yet judged: {MIN_RUNS} runs needed" if count < MIN_RUNS
        else "not met reliably"
    )
    return [
        f"- otel-bridge / native over the {count} run(s) of this code in {history_name} "
        f"({ratios}): mean {pooled.mean_ratio:.2f}x, 90% interval {pooled.low:.2f}-"
        f"{pooled.high:.2f}x (runs and their rounds resampled, {RESAMPLES:,} times); at or "
        f"under 0.5x in {pooled.share_at_or_under:.0%} of the resamples: **{verdict}** "
        f"(an interval wholly at or under 0.5x over at least {MIN_RUNS} runs)"
    ]
