"""`python -m bench`: each step is its own process; missing, failing and slow steps are reported."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from bench.__main__ import Step, main, run_step
from bench.evaluation.progress import Progress


def _bar() -> Progress:
    return Progress("test", 1.0, stream=io.StringIO())


def test_missing_module_is_reported_not_fatal(tmp_path: Path) -> None:
    step = Step("ghost", "bench.ghost", (), (), (1, 1), (5, 5))
    outcome = run_step(step, True, tmp_path, _bar(), 1.0, logs=tmp_path / "logs")
    assert outcome.status == "missing"
    assert "bench.ghost" in outcome.detail


def test_failing_step_is_reported_with_its_last_log_line(tmp_path: Path) -> None:
    step = Step(
        "carbon_eval",
        "bench.carbon_eval",
        ("--trace", str(tmp_path / "absent.csv")),
        (),
        (1, 1),
        (120, 120),
    )
    outcome = run_step(step, True, tmp_path, _bar(), 1.0, logs=tmp_path / "logs")
    assert outcome.status == "failed"
    assert "cannot open" in outcome.detail
    assert outcome.log is not None
    assert outcome.log.is_file()


def test_step_over_its_time_limit_is_stopped(tmp_path: Path) -> None:
    step = Step("carbon_eval", "bench.carbon_eval", ("--quick",), (), (1, 1), (0.2, 0.2))
    outcome = run_step(step, True, tmp_path, _bar(), 1.0, logs=tmp_path / "logs")
    assert outcome.status == "timeout"
    assert outcome.seconds < 60
    assert not (tmp_path / "carbon_eval.json").exists()


def test_report_only_writes_a_summary_into_the_chosen_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--report-only", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "summary.md").is_file()
    assert "README block updated" not in capsys.readouterr().out


def test_progress_bar_without_a_terminal_prints_lines() -> None:
    stream = io.StringIO()
    bar = Progress("x", 10, stream=stream)
    for _ in range(10):
        bar.advance(1)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert lines[-1].startswith("[x] [##############################] 100.0%")
    assert 2 <= len(lines) <= 12
