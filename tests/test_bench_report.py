"""The Django section's round-by-round ratio line (bench/run.py)."""

from __future__ import annotations

from bench.run import _paired_ratio_line


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
