"""The benchmark's history of Django rounds and the verdict pooled over runs of the same code
(bench/history.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from bench import history
from bench.run import QUICK, HistoryTarget, _pooled_history_lines


def _tree(root: Path) -> None:
    (root / "otel_bridge" / "pipeline").mkdir(parents=True)
    (root / "otel_bridge" / "pipeline" / "mapping.py").write_text("MAPPING = 1\n")
    (root / "samples" / "shop").mkdir(parents=True)
    (root / "samples" / "shop" / "views.py").write_text("VIEW = 1\n")
    (root / "constraints.txt").write_text("sentry-sdk==2.75.0\n")
    (root / "bench").mkdir()
    (root / "bench" / "run.py").write_text("REPORT = 1\n")


def _code(root: Path) -> str:
    return history.fingerprint(history.fingerprinted_files(root))


def test_an_edit_to_measured_code_or_pins_starts_a_new_pool(tmp_path: Path) -> None:
    _tree(tmp_path)
    before = _code(tmp_path)
    assert before == _code(tmp_path)
    (tmp_path / "otel_bridge" / "pipeline" / "mapping.py").write_text("MAPPING = 2\n")
    after_code = _code(tmp_path)
    assert after_code != before
    (tmp_path / "constraints.txt").write_text("sentry-sdk==2.76.0\n")
    assert _code(tmp_path) not in (before, after_code)


def test_bytecode_databases_and_the_report_code_do_not_count(tmp_path: Path) -> None:
    _tree(tmp_path)
    before = _code(tmp_path)
    cache = tmp_path / "otel_bridge" / "pipeline" / "__pycache__"
    cache.mkdir()
    (cache / "mapping.cpython-311.pyc").write_bytes(b"\x00compiled")
    (tmp_path / "samples" / "shop" / "db.sqlite3").write_bytes(b"SQLite format 3")
    (tmp_path / "bench" / "run.py").write_text("REPORT = 2\n")
    assert _code(tmp_path) == before


def test_a_file_moved_changes_the_fingerprint(tmp_path: Path) -> None:
    _tree(tmp_path)
    before = _code(tmp_path)
    (tmp_path / "otel_bridge" / "pipeline" / "mapping.py").rename(
        tmp_path / "otel_bridge" / "mapping.py"
    )
    assert _code(tmp_path) != before


def _run(code: str, native: list[float], bridge: list[float], at: str = "t") -> history.Run:
    run = history.run_from_rounds(at, code, 400, 4, {"native": native, "bridge": bridge})
    assert run is not None
    return run


def test_only_runs_of_both_variants_over_three_rounds_are_kept() -> None:
    two_rounds = {"native": [1.0, 2.0], "bridge": [1.0, 2.0]}
    assert history.run_from_rounds("t", "c", 400, 4, two_rounds) is None
    assert history.run_from_rounds("t", "c", 400, 4, {"bridge": [1.0, 2.0, 3.0]}) is None
    run = _run("c", [3000.0, 2000.0, 4000.0], [1500.0, 1400.0, 1600.0])
    assert run.ratio == pytest.approx(1500.0 / 3000.0)


def test_runs_survive_the_file(tmp_path: Path) -> None:
    path = tmp_path / "results" / "history.jsonl"
    first = _run("a", [3000.0] * 3, [1400.0] * 3, at="2026-11-24 08:11 UTC")
    second = _run("b", [2600.0, 2700.0, 2800.0], [1400.0, 1410.0, 1420.0])
    history.append(path, first)
    history.append(path, second)
    assert history.load(path) == ([first, second], [])
    assert history.load(tmp_path / "missing.jsonl") == ([], [])


def test_runs_of_other_code_or_another_load_are_not_pooled() -> None:
    runs = [
        _run("current", [3000.0] * 3, [1400.0] * 3),
        _run("older", [3000.0] * 3, [2000.0] * 3),
        history.Run("t", "current", 200, 4, (3000.0,) * 3, (2000.0,) * 3),
    ]
    pooled = history.pool(runs, "current", 400, 4)
    assert pooled is not None and pooled.runs == (runs[0],)
    assert history.pool(runs, "unseen", 400, 4) is None


def test_a_clear_margin_in_every_run_is_met_reliably() -> None:
    runs = [
        _run("c", [3000.0, 3100.0, 2900.0, 3050.0], [1300.0, 1350.0, 1320.0, 1310.0]),
        _run("c", [2700.0, 2800.0, 2750.0], [1250.0, 1260.0, 1240.0]),
        _run("c", [3300.0, 3200.0, 3400.0], [1450.0, 1500.0, 1480.0]),
    ]
    pooled = history.pool(runs, "c", 400, 4)
    assert pooled is not None
    assert pooled.high < 0.5 and pooled.share_at_or_under == 1.0 and pooled.reliably_met
    assert "**met reliably**" in history.pooled_lines(pooled, "h.jsonl")[0]


def test_runs_either_side_of_the_line_are_not_met_reliably() -> None:
    runs = [
        _run("c", [3000.0] * 3, [1380.0, 1400.0, 1420.0]),  # 0.47
        _run("c", [2650.0] * 3, [1420.0, 1430.0, 1440.0]),  # 0.54
        _run("c", [3100.0] * 3, [1500.0, 1520.0, 1540.0]),  # 0.49
    ]
    pooled = history.pool(runs, "c", 400, 4)
    assert pooled is not None
    assert pooled.low < 0.5 < pooled.high and 0 < pooled.share_at_or_under < 1
    assert pooled.low <= pooled.mean_ratio <= pooled.high
    assert not pooled.reliably_met
    assert "**not met reliably**" in history.pooled_lines(pooled, "h.jsonl")[0]


def test_fewer_than_three_runs_are_not_judged_even_well_under_the_line() -> None:
    runs = [_run("c", [3000.0] * 3, [1000.0] * 3), _run("c", [3000.0] * 3, [1100.0] * 3)]
    pooled = history.pool(runs, "c", 400, 4)
    assert pooled is not None and pooled.high < 0.5 and not pooled.reliably_met
    line = history.pooled_lines(pooled, "bench/results/history.jsonl")[0]
    assert "2 run(s) of this code in bench/results/history.jsonl (0.33, 0.37)" in line
    assert "**not yet judged: 3 runs needed**" in line


def test_the_django_section_appends_its_rounds_and_reports_the_pool(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    history.append(path, _run("c", [3000.0] * 3, [1400.0] * 3))
    history.append(path, _run("other", [3000.0] * 3, [1000.0] * 3))
    kept = HistoryTarget(path=path, code="c", at="2026-11-24 09:00 UTC")
    mode = dataclasses.replace(QUICK, rounds=3)
    lines = _pooled_history_lines(
        kept, mode, {"native": [2800.0, 2900.0, 3000.0], "bridge": [1450.0, 1460.0, 1470.0],
                     "otel_null": [1300.0] * 3}
    )
    runs, unreadable = history.load(path)
    assert len(runs) == 3 and unreadable == []
    assert runs[-1].at == "2026-11-24 09:00 UTC"
    assert "the 2 run(s) of this code" in lines[0]
    # A quick run's two rounds are not kept.
    assert _pooled_history_lines(kept, QUICK, {"native": [1.0, 2.0], "bridge": [1.0, 2.0]}) == []
    assert len(history.load(path)[0]) == 3
    assert _pooled_history_lines(None, mode, {"native": [1.0] * 3, "bridge": [1.0] * 3}) == []


def test_an_unreadable_line_is_named_and_the_rest_still_pooled(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    history.append(path, _run("c", [3000.0] * 3, [1400.0] * 3))
    with path.open("a") as kept:
        kept.write('{"at": "cut short by a kill\n\n{"at": "t", "code": "c"}\n')
    lines = _pooled_history_lines(
        HistoryTarget(path=path, code="c", at="later"),
        dataclasses.replace(QUICK, rounds=3),
        {"native": [3000.0] * 3, "bridge": [1450.0] * 3},
    )
    assert "the 2 run(s) of this code" in lines[0]
    assert lines[1] == f"- {path}: line(s) 2, 4 unreadable, left out"


def test_a_history_that_cannot_be_written_costs_the_run_only_that_line(tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    lines = _pooled_history_lines(
        HistoryTarget(path=blocked / "history.jsonl", code="c", at="t"),
        dataclasses.replace(QUICK, rounds=3),
        {"native": [3000.0] * 3, "bridge": [1450.0] * 3},
    )
    assert len(lines) == 1 and lines[0].startswith("- this run's rounds were not kept in ")


def test_a_run_appended_after_a_line_cut_short_is_still_read(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    history.append(path, _run("c", [3000.0] * 3, [1400.0] * 3))
    with path.open("a") as kept:
        kept.write('{"at": "killed mid-wri')
    after = _run("c", [2900.0] * 3, [1450.0] * 3, at="after")
    history.append(path, after)
    runs, unreadable = history.load(path)
    assert runs[-1] == after and len(runs) == 2 and unreadable == [2]
