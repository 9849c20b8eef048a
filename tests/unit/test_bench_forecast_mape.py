"""bench.forecast_mape reads the same trace files as bench.carbon_eval, with the same checks."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bench import forecast_mape
from bench.outputs import add_out_argument

HEADER = (
    "Datetime (UTC),Country,Zone Name,Zone Id,Carbon Intensity gCO₂eq/kWh (direct),"
    "Carbon Intensity gCO₂eq/kWh (LCA),Low Carbon Percentage\n"
)


def _export(path: Path, days: int, *, skip_every: int = 0) -> Path:
    """An Electricity Maps export of one zone: a daily cycle, optionally with hours left out."""
    start = datetime(2023, 1, 1, tzinfo=UTC)
    rows = []
    for h in range(days * 24):
        if skip_every and h % skip_every == 1:
            continue
        moment = (start + timedelta(hours=h)).strftime("%Y-%m-%d %H:%M:%S")
        value = 300 + 100 * ((h % 24) >= 12)
        rows.append(f"{moment},Germany,Germany,DE,{value - 50},{value},40\n")
    path.write_text(HEADER + "".join(rows), encoding="utf-8")
    return path


def test_an_electricity_maps_export_is_evaluated(tmp_path: Path) -> None:
    trace = _export(tmp_path / "DE_2023_hourly.csv", days=40)
    assert forecast_mape.main(["--quick", "--trace", str(trace), "--out", str(tmp_path / "o")]) == 0
    result = json.loads((tmp_path / "o" / "forecast_mape.json").read_text())
    assert result["trace"] == "DE_2023_hourly.csv"
    assert set(result["zones"]) == {"DE"}
    assert result["zones"]["DE"]["samples"] > 0


def test_a_trace_that_needs_too_much_interpolation_is_a_clean_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Every 10th hour missing: 10% of the zone's hours would be invented, over the 5% allowed.
    trace = _export(tmp_path / "DE_2023_hourly.csv", days=40, skip_every=10)
    assert forecast_mape.main(["--quick", "--trace", str(trace), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "DE" in err
    assert "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_a_missing_file_is_a_clean_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert forecast_mape.main(["--trace", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "o")]) == 2
    assert "nope.csv" in capsys.readouterr().err


def test_results_go_to_the_cache_unless_out_is_given() -> None:
    parser = argparse.ArgumentParser()
    add_out_argument(parser, "forecast_mape")
    assert parser.parse_args([]).out.parts[-2:] == (".cache", "forecast_mape")
