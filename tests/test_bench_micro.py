"""The per-span micro-benchmark's pipelines, each in a process of its own as the report runs
them: every pipeline must hand on what it was given, or the ratios it prints compare
pipelines doing different work."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.micro import SPANS_PER_TRACE

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("variant", "handed_on"),
    [
        ("batch_null", {"spans": 40 * SPANS_PER_TRACE}),
        ("bridge", {"transaction": 40}),
        ("sentry_processor", {"transaction": 40}),
    ],
)
def test_each_pipeline_hands_on_everything(variant: str, handed_on: dict[str, int]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.micro", "--variant", variant, "--traces", "40"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    assert measured["delivered"] == handed_on, result.stderr
