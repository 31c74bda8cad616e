"""The Django section's summary lines (bench/run.py)."""

from __future__ import annotations

import re
import statistics

from bench.run import (
    _django_side_lines,
    _django_summary_lines,
    _paired_ratio_line,
    _ratio_interval_line,
)


def test_each_round_pairs_bridge_with_the_native_run_of_the_same_round() -> None:
    line = _paired_ratio_line(
        {"native": [4000.0, 3000.0, 5000.0], "bridge": [1800.0, 1800.0, 2000.0]}
    )
    assert line == [
        "- otel-bridge / native round by round: 0.45, 0.60, 0.40 "
        "(median 0.45, 0.40-0.60; 2 of 3 rounds at or under 0.5x)"
    ]


def test_left_out_without_both_variants() -> None:
    assert _paired_ratio_line({"bridge": [1800.0]}) == []
    assert _paired_ratio_line({"native": [4000.0], "otel_null": [1500.0]}) == []


ALL = {
    "bare": 1000.0,
    "native": 4000.0,
    "sentry_errors": 1400.0,
    "sentry_otel": 6000.0,
    "otel_null": 1600.0,
    "bridge": 1900.0,
    "bridge_gzip": 2000.0,
}


def test_every_verdict_and_comparison_with_all_variants() -> None:
    lines = _django_summary_lines(ALL, 1.0, 400)
    assert lines == [
        "- otel-bridge / native CPU per request: **0.47x** (target <= 0.5x) PASS",
        "- otel-bridge / OTel floor (d): **1.19x** (target <= 1.6x) PASS",
        "- otel-bridge delivered: **100%** of 400 (target 100%) PASS",
        "- otel-bridge / SentrySpanProcessor (c): 0.32x",
        "- overhead over bare Django, otel-bridge / floor: 1.50x",
    ]
    side = _django_side_lines(ALL)
    assert side[0].startswith("- sentry-sdk started for errors") and "+400 µs" in side[0]
    assert side[1] == (
        "- gzip on every envelope (e'): 2,000 µs/request, 0.50x native, 1.25x the floor."
    )


def test_a_subset_of_variants_leaves_out_what_was_not_measured() -> None:
    subset = {v: ALL[v] for v in ("native", "otel_null", "bridge")}
    lines = _django_summary_lines(subset, 0.5, 400)
    assert lines == [
        "- otel-bridge / native CPU per request: **0.47x** (target <= 0.5x) PASS",
        "- otel-bridge / OTel floor (d): **1.19x** (target <= 1.6x) PASS",
        "- otel-bridge delivered: **50%** of 400 (target 100%) MISS",
    ]
    assert _django_side_lines(subset) == []
    assert not any("nan" in line for line in lines)
    assert _django_summary_lines({"native": 4000.0, "bare": 1000.0}, float("nan"), 400) == []


def _interval(line: str) -> tuple[float, float, int]:
    found = re.search(r": (\d\.\d\d)-(\d\.\d\d)x; at or under 0\.5x in (\d+)% ", line)
    assert found, line
    return float(found[1]), float(found[2]), int(found[3])


def test_the_interval_brackets_the_ratio_of_medians_and_counts_the_resamples_under_half() -> None:
    # The 11-24 03:23 full run's rounds: its ratio of medians was 0.5005, a MISS by a hair.
    native = [3838.0, 3497.0, 4300.0, 3194.0, 3748.0, 4079.0, 4245.0, 4158.0, 3219.0]
    bridge = [1905.0, 1921.0, 1985.0, 1660.0, 2134.0, 1757.0, 1943.0, 1809.0, 2000.0]
    [line] = _ratio_interval_line({"native": native, "bridge": bridge})
    low, high, share = _interval(line)
    verdict_ratio = statistics.median(bridge) / statistics.median(native)
    assert low < verdict_ratio < high
    assert low < 0.5 < high and 20 < share < 80  # on the boundary, and the line says so
    assert _ratio_interval_line({"native": native, "bridge": bridge}) == [line]  # repeatable


def test_a_clear_margin_leaves_every_resample_on_one_side() -> None:
    native = [4000.0, 3000.0, 5000.0, 4500.0, 3500.0]
    [under] = _ratio_interval_line({"native": native, "bridge": [n * 0.3 for n in native]})
    assert _interval(under) == (0.3, 0.3, 100)
    [over] = _ratio_interval_line({"native": native, "bridge": [n * 0.7 for n in native]})
    assert _interval(over)[2] == 0


def test_no_interval_from_too_few_rounds_or_without_both_variants() -> None:
    assert _ratio_interval_line({"native": [4000.0, 3000.0], "bridge": [1800.0, 1700.0]}) == []
    assert _ratio_interval_line({"native": [4000.0] * 5, "otel_null": [1500.0] * 5}) == []
