"""Run every benchmark, side by side, and write ``bench/results/latest.md``.

    python -m bench.run            # full: several rounds, 100,000 black-holed requests (~15 min)
    python -m bench.run --quick    # smoke: fewer rounds and requests, < 3 minutes

Sections (``--only django,micro,startup,memory,instructions`` picks some):

- django: the shop's order view (5 SQL queries) under five variants, A/B alternating,
  median of the rounds: server CPU per request including the final flush, and transactions
  delivered to the sink for a 400-request burst;
- micro: per-span cost of on_end + export for three span pipelines;
- startup: ``opentelemetry-instrument python -c pass`` with otel-bridge vs
  opentelemetry-distro alone (in ``var/bench-venv``, made on first use);
- memory: RSS growth of the server while the ingest is black-holed, and how the drops
  were reported (client reports at the sink once it answers again);
- instructions: the django burst's instructions per request under callgrind (floor,
  otel-bridge, native), where CPU time is too noisy to see small changes (full runs only).

Targets are printed as PASS/MISS; nothing here fails on a miss. A run that writes the
default results file keeps its Django rounds in ``bench/results/history.jsonl`` and reports
the 0.5x-native verdict pooled over the runs of the same code (``bench/history.py``). See
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import collections
import compileall
import dataclasses
import datetime
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bench import history
from bench.procs import (
    REPO_ROOT,
    VENV_BIN,
    CpuTimes,
    Server,
    Sink,
    clean_env,
    load,
    rss_bytes,
)
from bench.threads import ThreadSplit, split_between, thread_cpu_ns

RESULTS = REPO_ROOT / "bench" / "results" / "latest.md"
QUICK_RESULTS = REPO_ROOT / "bench" / "results" / "quick.md"  # a smoke run keeps latest.md
HISTORY = REPO_ROOT / "bench" / "results" / "history.jsonl"
BENCH_VENV = REPO_ROOT / "var" / "bench-venv"
DISTRO_VERSION = "0.66b1"

VARIANT_LABELS = {
    "bare": "(a) bare Django",
    "native": "(b) sentry-sdk native",
    "sentry_errors": "(b0) sentry-sdk, errors only (tracing off)",
    "sentry_otel": "(c) OTel + SentrySpanProcessor",
    "otel_null": "(d) OTel + batch + null exporter",
    "bridge": "(e) otel-bridge",
    "bridge_gzip": "(e') otel-bridge, OTEL_BRIDGE_COMPRESSION_THRESHOLD=0 (gzip every envelope)",
}
# Variants that are another variant's server with more environment variables.
VARIANT_SETUPS = {"bridge_gzip": ("bridge", {"OTEL_BRIDGE_COMPRESSION_THRESHOLD": "0"})}
TRANSACTION_MARK = "orders"  # transactions of the measured view; warm-up hits /health/


@dataclasses.dataclass(frozen=True)
class Mode:
    rounds: int
    burst: int
    concurrency: int
    warmup: int
    micro_traces: int
    micro_rounds: int
    startup_runs: int
    memory_requests: int
    instruction_requests: int  # 0: the section is left out


QUICK = Mode(rounds=2, burst=400, concurrency=4, warmup=20, micro_traces=1000, micro_rounds=2,
             startup_runs=5, memory_requests=3000, instruction_requests=0)
# Nine rounds of the Django section: native's CPU per request moves by up to a third between
# rounds (its transport thread against the request thread), and with five the verdict on
# otel-bridge / native flipped between full runs of the same code; a median of nine moves
# about three quarters as much (docs/benchmarks.md).
FULL = Mode(rounds=9, burst=400, concurrency=4, warmup=20, micro_traces=4000, micro_rounds=5,
            startup_runs=15, memory_requests=100_000, instruction_requests=200)


@dataclasses.dataclass
class Report:
    lines: list[str] = dataclasses.field(default_factory=list)

    def add(self, *lines: str) -> None:
        for line in lines:
            print(line, flush=True)
            self.lines.append(line)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def rotated(items: Sequence[str], shift: int) -> list[str]:
    shift %= len(items)
    return [*items[shift:], *items[:shift]]


# -- django ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RunResult:
    cpu: CpuTimes  # from just before the burst until the process was reaped
    delivered: int
    ok: int
    errors: int
    exit_code: int
    # From just before the burst to its last response (bench.threads); None off Linux.
    threads: ThreadSplit | None = None


def orders_transactions(stats: dict[str, Any]) -> int:
    return sum(n for name, n in stats["transactions"].items() if TRANSACTION_MARK in name)


def run_django_once(
    sink: Sink, variant: str, requests: int, mode: Mode, env: dict[str, str] | None = None
) -> RunResult:
    sink.mode("normal", reset=True)
    served, extra_env = VARIANT_SETUPS.get(variant, (variant, {}))
    server = Server(served, sink.dsn, {**extra_env, **(env or {})}, report_cpu=True)
    try:
        load(server.port, mode.warmup, path="/health/", concurrency=1)
        before = server.cpu_mark()
        threads_before = thread_cpu_ns(server.pid)
        if requests:
            summary = load(server.port, requests, concurrency=mode.concurrency)
        else:
            summary = {"ok": 0, "errors": {}}
            time.sleep(0.5)
        threads = split_between(server.pid, threads_before, thread_cpu_ns(server.pid))
        exited = server.terminate()
    finally:
        server.close()
    if exited.returncode not in (0, 143, -15):
        print(f"  ! {variant} exited with {exited.returncode}:\n{server.stderr_text()}")
    if exited.flushed_cpu is None:
        raise RuntimeError(f"{variant} server left without its CPU report:\n{server.stderr_text()}")
    stats = sink.stats()
    return RunResult(
        cpu=exited.flushed_cpu - before,
        delivered=orders_transactions(stats),
        ok=int(summary["ok"]),
        errors=sum(summary["errors"].values()),
        exit_code=exited.returncode,
        threads=threads,
    )


@dataclasses.dataclass(frozen=True)
class HistoryTarget:
    """Where the Django section keeps its rounds, and the fingerprint of what it measures."""

    path: Path
    code: str
    at: str


def bench_django(
    report: Report, sink: Sink, mode: Mode, only: Sequence[str] = (),
    kept: HistoryTarget | None = None,
) -> dict[str, float]:
    variants = [v for v in VARIANT_LABELS if not only or v in only]
    idle: dict[str, list[CpuTimes]] = {v: [] for v in variants}
    burst: dict[str, list[RunResult]] = {v: [] for v in variants}
    for round_index in range(mode.rounds):
        order = rotated(variants, round_index)
        print(f"django round {round_index + 1}/{mode.rounds}: {', '.join(order)}", flush=True)
        for variant in order:
            if round_index == 0 or mode.rounds > QUICK.rounds:
                idle[variant].append(run_django_once(sink, variant, 0, mode).cpu)
            result = run_django_once(sink, variant, mode.burst, mode)
            burst[variant].append(result)
            us = (result.cpu.total - median([i.total for i in idle[variant]])) / mode.burst * 1e6
            print(f"  {variant}: {us:.0f} us/request, delivered {result.delivered}/{mode.burst}",
                  flush=True)

    def per_burst_request(v: str, part: str) -> list[float]:
        spent = median([getattr(i, part) for i in idle[v]])
        return [(getattr(r.cpu, part) - spent) / mode.burst * 1e6 for r in burst[v]]

    rounds_us = {v: per_burst_request(v, "total") for v in variants}
    # Where the time went, user space against the kernel (the view's SQLite writes, sockets):
    # each the median of its own rounds, so the two need not add up to the total's median.
    user_us = {v: median(per_burst_request(v, "user")) for v in variants}
    sys_us = {v: median(per_burst_request(v, "sys")) for v in variants}
    # A subset of the variants (--variants): the lines needing a missing one are left out
    # (_django_summary_lines), the figures returned for the run's summary are nan.
    per_request: dict[str, float] = {v: median(rounds_us[v]) for v in variants}
    delivered: dict[str, float] = collections.defaultdict(
        lambda: float("nan"), {v: median([r.delivered for r in burst[v]]) for v in variants}
    )
    failures = {v: sum(r.errors + (mode.burst - r.ok) for r in burst[v]) for v in variants}
    bare = per_request.get("bare", float("nan"))
    report.add(
        "## Django view, 5 SQL queries, 100% sampling",
        "",
        f"{mode.burst}-request burst ({mode.concurrency} concurrent clients) per run; "
        f"{mode.rounds} round(s), variants alternating; medians. CPU = server process "
        "user+sys (read by the server itself) from just before the burst until its exit "
        "handlers had run after SIGTERM (final flush included, the interpreter's teardown "
        "left out), minus the same for an idle run, divided by the requests. Each server "
        "collects its garbage just before the burst, so no variant pays inside it the full "
        "collection its start-up left owing.",
        "",
        "| variant | CPU µs/request | over bare | user µs | sys µs | transactions delivered "
        "| failed requests |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    )
    for v in variants:
        shown = "n/a" if v in ("bare", "otel_null", "sentry_errors") else (
            f"{delivered[v]:.0f}/{mode.burst} ({delivered[v] / mode.burst:.0%})"
        )
        over_bare = "n/a" if "bare" not in variants else f"{per_request[v] - bare:+,.0f}"
        report.add(
            f"| {VARIANT_LABELS[v]} | {per_request[v]:,.0f} | {over_bare} "
            f"| {user_us[v]:,.0f} | {sys_us[v]:,.0f} | {shown} | {failures[v]} |"
        )
    nan = float("nan")
    vs_native = per_request.get("bridge", nan) / per_request.get("native", nan)
    vs_floor = per_request.get("bridge", nan) / per_request.get("otel_null", nan)
    delivered_ratio = delivered["bridge"] / mode.burst
    report.add(
        "",
        *_django_summary_lines(per_request, delivered_ratio, mode.burst),
        *_paired_ratio_line(rounds_us),
        *_ratio_interval_line(rounds_us),
        "- every round, µs/request: " + "; ".join(
            f"{v} {', '.join(f'{x:,.0f}' for x in rounds_us[v])}" for v in variants
        ),
        "- the garbage collector's full collections in each round's burst (the start-up's "
        "garbage was collected just before it): " + "; ".join(
            f"{v} {', '.join(str(r.cpu.full_collections) for r in burst[v])}" for v in variants
        ),
        *_django_side_lines(per_request),
        *_thread_split_lines(
            {v: [r.threads for r in burst[v]] for v in variants}, mode.burst
        ),
        *_pooled_history_lines(kept, mode, rounds_us),
        "",
    )
    return {"vs_native": vs_native, "vs_floor": vs_floor, "delivered": delivered_ratio}


def _pooled_history_lines(
    kept: HistoryTarget | None, mode: Mode, rounds_us: Mapping[str, Sequence[float]]
) -> list[str]:
    """This run's rounds added to the history, and the verdict over the runs of this code."""
    if kept is None:
        return []
    run = history.run_from_rounds(kept.at, kept.code, mode.burst, mode.concurrency, rounds_us)
    if run is None:
        return []
    shown = kept.path.relative_to(REPO_ROOT) if kept.path.is_relative_to(REPO_ROOT) else kept.path
    try:
        history.append(kept.path, run)
        runs, unreadable = history.load(kept.path)
    except OSError as error:
        return [f"- this run's rounds were not kept in {shown}: {error}"]
    pooled = history.pool(runs, kept.code, mode.burst, mode.concurrency)
    skipped = (
        [f"- {shown}: line(s) {', '.join(map(str, unreadable))} unreadable, left out"]
        if unreadable else []
    )
    return [*history.pooled_lines(pooled, shown.as_posix()), *skipped]


def _django_summary_lines(
    per_request: Mapping[str, float], delivered_ratio: float, burst: int
) -> list[str]:
    """The verdicts and the SentrySpanProcessor comparison, each left out when a variant it
    needs was not run (--variants): a verdict on a figure never measured would read MISS."""
    ran = per_request.keys()
    lines = []
    if {"bridge", "native"} <= ran:
        vs_native = per_request["bridge"] / per_request["native"]
        lines.append(
            f"- otel-bridge / native CPU per request: **{vs_native:.2f}x** (target <= 0.5x) "
            f"{verdict(vs_native <= 0.5)}"
        )
    if {"bridge", "otel_null"} <= ran:
        vs_floor = per_request["bridge"] / per_request["otel_null"]
        lines.append(
            f"- otel-bridge / OTel floor (d): **{vs_floor:.2f}x** (target <= 1.6x) "
            f"{verdict(vs_floor <= 1.6)}"
        )
    if "bridge" in ran:
        lines.append(
            f"- otel-bridge delivered: **{delivered_ratio:.0%}** of {burst} (target 100%) "
            f"{verdict(delivered_ratio >= 1.0)}"
        )
    if {"bridge", "sentry_otel"} <= ran:
        lines.append(
            f"- otel-bridge / SentrySpanProcessor (c): "
            f"{per_request['bridge'] / per_request['sentry_otel']:.2f}x"
        )
    if {"bridge", "otel_null", "bare"} <= ran:
        bare = per_request["bare"]
        overhead = (per_request["bridge"] - bare) / max(per_request["otel_null"] - bare, 1e-9)
        lines.append(f"- overhead over bare Django, otel-bridge / floor: {overhead:.2f}x")
    return lines


def _thread_split_lines(
    splits: Mapping[str, Sequence[ThreadSplit | None]], burst: int
) -> list[str]:
    """Each variant's CPU on its request thread and on its other threads during the burst
    (medians of the rounds), and otel-bridge's surplus over the floor split the same way.
    A variant with any round unread (no schedstat) is left out rather than half-counted."""
    read: dict[str, list[ThreadSplit]] = {}
    for v, rounds in splits.items():
        known = [s for s in rounds if s is not None]
        if known and len(known) == len(rounds):
            read[v] = known
    if not read:
        return []
    per_request = {
        v: (median([s.request for s in rounds]) / burst * 1e6,
            median([s.others for s in rounds]) / burst * 1e6)
        for v, rounds in read.items()
    }
    shown = "; ".join(
        f"{v} {request:,.0f} / {others:,.0f}" for v, (request, others) in per_request.items()
    )
    lines = [
        "- CPU by thread during the burst, µs/request, request thread / other threads "
        "(each thread's time on the CPU, read by the runner just before the burst and just "
        f"after its last response: the final flush and the idle run not counted): {shown}"
    ]
    if {"bridge", "otel_null"} <= per_request.keys():
        bridge, floor = per_request["bridge"], per_request["otel_null"]
        lines.append(
            f"- otel-bridge over the floor (d), by thread: request thread "
            f"{bridge[0] - floor[0]:+,.0f} µs/request, other threads "
            f"{bridge[1] - floor[1]:+,.0f}"
        )
    return lines


def _django_side_lines(per_request: Mapping[str, float]) -> list[str]:
    """What errors-only sentry-sdk and gzip on every envelope cost, when they were run."""
    ran = per_request.keys()
    lines = []
    if {"sentry_errors", "bare"} <= ran:
        lines.append(
            f"- sentry-sdk started for errors with its own Django integration (b0) costs "
            f"{per_request['sentry_errors'] - per_request['bare']:+,.0f} µs/request over "
            "bare Django; otel-bridge replaces that integration with its own error capture "
            "(OTEL_BRIDGE_DJANGO_ERRORS=lean)."
        )
    if {"bridge_gzip", "native", "otel_null"} <= ran:
        gzip = per_request["bridge_gzip"]
        lines.append(
            f"- gzip on every envelope (e'): {gzip:,.0f} µs/request, "
            f"{gzip / per_request['native']:.2f}x native, "
            f"{gzip / per_request['otel_null']:.2f}x the floor."
        )
    return lines


def _paired_ratio_line(rounds_us: dict[str, list[float]]) -> list[str]:
    """otel-bridge / native round by round. The two run a minute or two apart in each round,
    so what drifts on a shared machine over the whole run cancels in each ratio; native's
    own round-to-round spread (its transport thread against the request thread) does not,
    and this line shows how far the verdict's ratio of medians could move with it."""
    bridge, native = rounds_us.get("bridge"), rounds_us.get("native")
    if not bridge or not native:
        return []
    ratios = [b / n for b, n in zip(bridge, native, strict=True)]
    return [
        f"- otel-bridge / native round by round: {', '.join(f'{r:.2f}' for r in ratios)} "
        f"(median {median(ratios):.2f}, {min(ratios):.2f}-{max(ratios):.2f}; "
        f"{sum(r <= 0.5 for r in ratios)} of {len(ratios)} rounds at or under 0.5x)"
    ]


def _ratio_interval_line(
    rounds_us: Mapping[str, Sequence[float]], confidence: float = 0.9
) -> list[str]:
    """How far otel-bridge / native could move with the rounds: a paired bootstrap of the
    verdict's own figure, the ratio of the medians. Rounds are drawn with replacement, each
    bringing both its runs, and the share of draws at or under 0.5x is listed beside the
    interval: on a machine where single rounds move by a third, a PASS or MISS by 0.01 says
    little; the share says how often a run made of these same rounds, drawn again, would
    have met the target. Left out under three rounds (a quick run's two): so few rounds
    give only a handful of distinct draws."""
    bridge, native = rounds_us.get("bridge"), rounds_us.get("native")
    if not bridge or not native or len(bridge) < history.MIN_ROUNDS:
        return []
    rng = random.Random(history.SEED)
    ratios = [history.resampled_ratio(rng, bridge, native) for _ in range(history.RESAMPLES)]
    low, high = history.percentile_interval(ratios, confidence)
    share = sum(r <= 0.5 for r in ratios) / len(ratios)
    return [
        f"- otel-bridge / native, {confidence:.0%} interval of the ratio of medians (rounds "
        f"resampled in pairs, {len(ratios):,} times): {low:.2f}-{high:.2f}x; at or under "
        f"0.5x in {share:.0%} of the resamples"
    ]


# -- micro -------------------------------------------------------------------------------


def run_micro(variant: str, traces: int) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, "-m", "bench.micro", "--variant", variant, "--traces", str(traces)],
        cwd=REPO_ROOT, env=clean_env(), capture_output=True, text=True, check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"bench.micro {variant} failed:\n{completed.stderr[-3000:]}")
    return dict(json.loads(completed.stdout.strip().splitlines()[-1]))


def bench_micro(report: Report, mode: Mode) -> dict[str, float]:
    variants = ["none", "batch_null", "sentry_processor", "bridge"]
    cpu: dict[str, list[float]] = {v: [] for v in variants}
    delivered: dict[str, Any] = {}
    spans = 0
    for round_index in range(mode.micro_rounds):
        for variant in rotated(variants, round_index):
            result = run_micro(variant, mode.micro_traces)
            cpu[variant].append(result["cpu_s"])
            delivered[variant] = result["delivered"]
            spans = int(result["spans"])
    base = median(cpu["none"])
    per_span = {v: (median(cpu[v]) - base) / spans * 1e6 for v in variants if v != "none"}
    report.add(
        "## Per-span cost of the span pipeline (in-process)",
        "",
        f"{mode.micro_traces} traces of 6 spans (1 server + 5 SQL), {mode.micro_rounds} "
        "round(s), medians; CPU of every thread until the pipeline handed everything to the "
        "transport (each pipeline's own HTTP transport minus the request: queue, serialisation, "
        "compression), minus the cost of making the spans with no processor "
        f"({base / spans * 1e6:.1f} µs/span).",
        "",
        "| pipeline | µs/span | vs batch+null | handed on |",
        "| --- | ---: | ---: | --- |",
    )
    labels = {
        "batch_null": "BatchSpanProcessor + null exporter",
        "sentry_processor": "sentry-sdk SentrySpanProcessor",
        "bridge": "otel-bridge (its processors + batch + `sentry` exporter)",
    }
    for v in ("batch_null", "sentry_processor", "bridge"):
        report.add(
            f"| {labels[v]} | {per_span[v]:.1f} | {per_span[v] / per_span['batch_null']:.1f}x "
            f"| {json.dumps(delivered.get(v, {}))} |"
        )
    ratio = per_span["bridge"] / per_span["sentry_processor"]
    report.add("", f"- otel-bridge / SentrySpanProcessor per span: **{ratio:.2f}x**", "")
    return {"micro_vs_sentry": ratio}


# -- startup -----------------------------------------------------------------------------


def compile_checkout() -> None:
    """Byte-compile this checkout's packages, as pip does for the packages it installs.

    otel-bridge runs from this checkout (an editable install), and the benchmark's processes
    never write bytecode (PYTHONDONTWRITEBYTECODE: a run leaves nothing behind). A module
    edited since Python last wrote its bytecode was then compiled again at every start, and
    the start-up figure counted it against otel-bridge alone: 1.14x against 1.00x for the
    same code with its bytecode current (2026-11-23)."""
    for package in ("otel_bridge", "instrumentations", "samples", "bench"):
        compileall.compile_dir(REPO_ROOT / package, quiet=1)


def ensure_bench_venv() -> Path:
    """``var/bench-venv``: the project venv's packages (same OTel, contrib, libraries) minus
    otel-bridge, plus opentelemetry-distro. Rebuilt when the project venv's set changes."""
    freeze = subprocess.run(
        [str(VENV_BIN / "python"), "-m", "pip", "freeze", "--exclude-editable"],
        check=True, capture_output=True, text=True,
    ).stdout
    wanted = "".join(
        line + "\n" for line in freeze.splitlines()
        if line and not line.startswith(("-e", "#")) and " @ " not in line
    )
    wanted += f"opentelemetry-distro=={DISTRO_VERSION}\n"
    requirements = BENCH_VENV / "requirements.txt"
    if requirements.exists() and requirements.read_text() == wanted:
        return BENCH_VENV / "bin"
    print(f"creating {BENCH_VENV} (once; a minute or two)...", flush=True)
    shutil.rmtree(BENCH_VENV, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
    pending = BENCH_VENV / "requirements.pending"
    pending.write_text(wanted)
    subprocess.run(
        [str(BENCH_VENV / "bin" / "python"), "-m", "pip", "install", "-q", "-r", str(pending)],
        check=True, capture_output=True,
    )
    pending.rename(requirements)
    return BENCH_VENV / "bin"


def _wall_medians(commands: list[tuple[list[str], dict[str, str]]], runs: int) -> list[float]:
    times: list[list[float]] = [[] for _ in commands]
    for _ in range(runs):
        for index, (args, env) in enumerate(commands):
            start = time.perf_counter()
            subprocess.run(args, env=env, check=True, capture_output=True)
            times[index].append(time.perf_counter() - start)
    return [median(t) for t in times]


def _hyperfine(commands: list[tuple[list[str], dict[str, str]]], runs: int) -> list[float]:
    out = REPO_ROOT / "var" / "bench-hyperfine.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    shell_commands = [
        " ".join(["env", "-i", *(f"{k}={v}" for k, v in env.items()), *args])
        for args, env in commands
    ]
    subprocess.run(
        ["hyperfine", "--warmup", "2", "--runs", str(runs), "--style", "none",
         "--export-json", str(out), *shell_commands],
        check=True, capture_output=True,
    )
    results = json.loads(out.read_text())["results"]
    return [float(r["median"]) for r in results]


def bench_startup(report: Report, sink: Sink, mode: Mode) -> dict[str, float]:
    other_bin = ensure_bench_venv()
    common = {"OTEL_SERVICE_NAME": "bench", "OTEL_METRICS_EXPORTER": "none",
              "OTEL_LOGS_EXPORTER": "none"}
    ours_env = clean_env({**common, "SENTRY_DSN": sink.dsn})
    ours_env.pop("PYTHONPATH", None)
    theirs_env = clean_env({**common, "OTEL_TRACES_EXPORTER": "otlp"}, other_bin)
    theirs_env.pop("PYTHONPATH", None)
    commands = [
        ([str(VENV_BIN / "opentelemetry-instrument"), str(VENV_BIN / "python"), "-c", "pass"],
         ours_env),
        ([str(other_bin / "opentelemetry-instrument"), str(other_bin / "python"), "-c", "pass"],
         theirs_env),
        ([str(VENV_BIN / "python"), "-c", "pass"], clean_env()),
    ]
    tool = "hyperfine" if shutil.which("hyperfine") else "wall clock"
    measure: Callable[[list[tuple[list[str], dict[str, str]]], int], list[float]] = (
        _hyperfine if tool == "hyperfine" else _wall_medians
    )
    # A/B alternating at the granularity of rounds; hyperfine takes the median within each
    rounds: list[list[float]] = []
    for round_index in range(2):
        order = [0, 1, 2] if round_index % 2 == 0 else [1, 0, 2]
        timed = measure([commands[i] for i in order], mode.startup_runs)
        rounds.append([timed[order.index(i)] for i in range(3)])
    ours, theirs, python = (median([r[i] for r in rounds]) for i in range(3))
    ratio = ours / theirs
    report.add(
        "## Start-up: `opentelemetry-instrument python -c pass`",
        "",
        f"Median wall time ({tool}, {mode.startup_runs} runs x 2 rounds, alternating).",
        "",
        "| command | ms |",
        "| --- | ---: |",
        f"| otel-bridge distro (SENTRY_DSN set, `sentry` exporter) | {ours * 1000:.0f} |",
        f"| opentelemetry-distro {DISTRO_VERSION} alone (`otlp` exporter) | "
        f"{theirs * 1000:.0f} |",
        f"| plain `python -c pass` | {python * 1000:.0f} |",
        "",
        f"- otel-bridge / opentelemetry-distro: **{ratio:.2f}x** (target <= 1.1x) "
        f"{verdict(ratio <= 1.1)}",
        "",
    )
    return {"startup": ratio}


# -- memory ------------------------------------------------------------------------------


def bench_memory(report: Report, sink: Sink, mode: Mode) -> dict[str, float]:
    requests = mode.memory_requests
    sink.mode("blackhole", reset=True)
    server = Server("bridge", sink.dsn)
    rss: list[int] = []
    marks: list[int] = []
    sent = 0
    started = time.monotonic()
    try:
        load(server.port, mode.warmup, path="/health/")
        baseline = rss_bytes(server.pid)
        chunk = max(requests // 20, 100)
        while sent < requests:
            count = min(chunk, requests - sent)
            load(server.port, count, concurrency=mode.concurrency)
            sent += count
            rss.append(rss_bytes(server.pid))
            marks.append(sent)
            print(f"  memory: {sent}/{requests} requests, RSS "
                  f"{(rss[-1] - baseline) / 2**20:+.1f} MB", flush=True)
        held = sink.stats()["held"]
        sink.mode("normal")  # the outage ends: held requests are cut, the next ones answered
        time.sleep(1.0)
        exited = server.terminate(timeout=120)
    finally:
        server.close()
        sink.mode("normal")
    stats = sink.stats()
    delivered = orders_transactions(stats)
    discarded = {k: v for k, v in stats["discarded"].items() if k.endswith(":transaction")}
    reported = sum(discarded.values())
    # The warm-up requests and the readiness check (/health/) met the black hole too; client
    # reports do not say which transaction they lost, so every request's transaction is
    # accounted for. Follow-ups (spans sent apart from their request's transaction: children
    # that ended after it, subtrees still waiting for it at shutdown) are counted apart.
    made = requests + mode.warmup + server.readiness_requests
    follow_ups = sum(stats["follow_ups"].values())
    unaccounted = made - (sum(stats["transactions"].values()) - follow_ups) - reported
    growth = (max(rss) - baseline) / 2**20
    report.add(
        "## Memory with the ingest black-holed",
        "",
        f"{requests:,} requests to otel-bridge while the sink accepts connections and never "
        f"answers ({time.monotonic() - started:.0f} s); then the sink answers again and the "
        "server is stopped with SIGTERM.",
        "",
        "| figure | value |",
        "| --- | ---: |",
        f"| RSS growth over the run (max) | {growth:.1f} MB |",
        f"| RSS at the end vs after warm-up | {(rss[-1] - baseline) / 2**20:+.1f} MB |",
        f"| envelopes held by the black hole at the end | {held} |",
        f"| transactions delivered after the outage | {delivered:,} |",
        f"| transaction drops reported in client reports | {reported:,} "
        f"({', '.join(f'{k} {v}' for k, v in sorted(discarded.items())) or 'none'}) |",
        f"| transactions neither delivered nor reported (of {made:,}: warm-up and readiness "
        f"check included) | {unaccounted:,} |",
        f"| follow-up transactions: spans delivered at shutdown apart from their request's "
        f"transaction | {follow_ups:,} "
        f"({', '.join(f'{k} {v}' for k, v in sorted(stats['follow_ups'].items())) or 'none'}) |",
        f"| server exit code | {exited.returncode} |",
        "",
        "- RSS along the run: " + ", ".join(
            f"{(value - baseline) / 2**20:+.1f} MB at {mark:,}"
            for mark, value in list(zip(marks, rss, strict=True))[1::4]
        ),
        f"- RSS growth: **{growth:.1f} MB** (target <= 30 MB) {verdict(growth <= 30)}",
        f"- every lost transaction reported, none twice: {verdict(unaccounted == 0)}"
        + (f" ({-unaccounted} counted twice)" if unaccounted < 0 else "")
        + (f" ({unaccounted} lost unreported)" if unaccounted > 0 else ""),
        "",
    )
    return {"rss_growth_mb": growth, "unaccounted": float(unaccounted)}


# -- instructions --------------------------------------------------------------------------


def bench_instructions(report: Report, sink: Sink, mode: Mode) -> dict[str, float]:
    from bench import instructions

    report.add("## Instructions per request (callgrind)", "")
    if not mode.instruction_requests:
        report.add("Left out of a quick run (`--instruction-requests N` runs it).", "")
        return {}
    if not instructions.available():
        report.add("valgrind is not installed (Debian: `apt-get install valgrind`): left out.", "")
        return {}
    try:
        counted = instructions.per_request(
            sink, mode.instruction_requests, mode.warmup, mode.concurrency,
            progress=lambda line: print(line, flush=True),
        )
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        # The other sections' figures are still written.
        report.add(f"Counting failed: {exc}", "")
        return {}
    floor, bridge, native = counted["otel_null"], counted["bridge"], counted["native"]
    surplus = bridge - floor
    report.add(
        f"The Django section's burst ({mode.instruction_requests} requests, "
        f"{mode.concurrency} concurrent clients), each server under valgrind's callgrind: "
        "user-space instructions of all its threads from just before the burst until it "
        "exited after SIGTERM, minus the same for an idle server, divided by the requests. "
        "The main thread serves the requests (one at a time); the other threads are the "
        "batch processor's, the transport's and sentry-sdk's. "
        "One run each; the count hardly varies between runs where CPU time varies by 10-30%. "
        "Not counted: the kernel's share and how fast the instructions run (see "
        "docs/benchmarks.md). The targets are judged on CPU time, above.",
        "",
        "| variant | instructions/request | main thread | other threads |",
        "| --- | ---: | ---: | ---: |",
        *(
            f"| {VARIANT_LABELS[v]} | {counted[v].total / 1e3:,.0f}K "
            f"| {counted[v].main / 1e3:,.0f}K | {counted[v].background / 1e3:,.0f}K |"
            for v in instructions.VARIANTS
        ),
        "",
        f"- otel-bridge / native, instructions: {bridge.total / native.total:.2f}x",
        f"- otel-bridge / floor (d), instructions: {bridge.total / floor.total:.2f}x",
        f"- otel-bridge over the floor: {surplus.total / 1e3:,.0f}K per request, "
        f"{surplus.main / 1e3:,.0f}K of it on the main thread and "
        f"{surplus.background / 1e3:,.0f}K on the others",
        "",
    )
    return {
        "vs_native": bridge.total / native.total,
        "vs_floor": bridge.total / floor.total,
        "surplus_main": surplus.main,
        "surplus_background": surplus.background,
    }


# -- main --------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="otel-bridge benchmarks")
    parser.add_argument("--quick", action="store_true", help="smoke mode, < 3 minutes")
    parser.add_argument("--rounds", type=int, default=None, help="django/micro rounds")
    parser.add_argument("--only", default="django,micro,startup,memory,instructions",
                        help="comma-separated sections to run")
    parser.add_argument("--output", type=Path, default=None,
                        help="results file (default: bench/results/latest.md, quick.md if --quick)")
    parser.add_argument("--variants", default="",
                        help="comma-separated django variants to run (default: all)")
    parser.add_argument("--memory-requests", type=int, default=None,
                        help="requests for the memory section (default: 3,000 quick, 100,000 full)")
    parser.add_argument("--instruction-requests", type=int, default=None,
                        help="requests for the instructions section (default: 200 full, "
                             "left out quick)")
    args = parser.parse_args(argv)
    mode = QUICK if args.quick else FULL
    if args.rounds:
        mode = dataclasses.replace(mode, rounds=args.rounds, micro_rounds=args.rounds)
    if args.memory_requests:
        mode = dataclasses.replace(mode, memory_requests=args.memory_requests)
    if args.instruction_requests is not None:
        mode = dataclasses.replace(mode, instruction_requests=args.instruction_requests)
    sections = {s.strip() for s in args.only.split(",") if s.strip()}
    only = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(only) - set(VARIANT_LABELS))
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANT_LABELS)}")

    report = Report()
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    report.add(
        f"# otel-bridge benchmarks ({'quick' if args.quick else 'full'})",
        "",
        f"{now}; {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}; `python -m bench.run{' --quick' if args.quick else ''}`",
        "",
    )
    started = time.monotonic()
    compile_checkout()
    # Only runs that write the default results file are kept: an A/B written elsewhere
    # (--output) measures code that is usually never committed.
    kept = None if args.quick or args.output else HistoryTarget(
        HISTORY, history.fingerprint(history.fingerprinted_files(REPO_ROOT)), now
    )
    sink = Sink()
    try:
        if "django" in sections:
            bench_django(report, sink, mode, only, kept)
        if "micro" in sections:
            bench_micro(report, mode)
        if "startup" in sections:
            bench_startup(report, sink, mode)
        if "memory" in sections:
            bench_memory(report, sink, mode)
        if "instructions" in sections:
            bench_instructions(report, sink, mode)
    finally:
        sink.stop()
    report.add(f"_Total time: {time.monotonic() - started:.0f} s._")
    output = args.output or (QUICK_RESULTS if args.quick else RESULTS)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("\n".join(report.lines) + "\n")
    print(f"\nwritten to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
