"""Trace loading for the evaluation: both CSV layouts, alignment, gaps and bad input."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from bench.evaluation.trace import TraceError, load_csv, write_csv


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_project_layout_aligns_zones_on_common_hours(tmp_path: Path) -> None:
    csv = _write(
        tmp_path / "t.csv",
        "datetime,zone,intensity\n"
        "2019-01-01T00:00:00Z,DE,400\n2019-01-01T01:00:00Z,DE,410\n2019-01-01T02:00:00Z,DE,420\n"
        "2019-01-01T01:00:00Z,FR,50\n2019-01-01T02:00:00Z,FR,60\n",
    )
    trace = load_csv([csv])
    assert trace.zones == ("DE", "FR")
    assert trace.start == datetime(2019, 1, 1, 1, tzinfo=UTC)  # FR starts later: only common hours
    assert trace.values.tolist() == [[410.0, 420.0], [50.0, 60.0]]


def test_electricity_maps_export_uses_lifecycle_or_direct_column(tmp_path: Path) -> None:
    header = (
        "Datetime (UTC),Country,Zone Name,Zone Id,Carbon Intensity gCO₂eq/kWh (direct),"
        "Carbon Intensity gCO₂eq/kWh (LCA),Low Carbon Percentage\n"
    )
    rows = (
        "2023-01-01 00:00:00,Germany,Germany,DE,300,350,40\n"
        "2023-01-01 01:00:00,Germany,Germany,DE,310,360,41\n"
    )
    csv = _write(tmp_path / "DE_2023_hourly.csv", header + rows)
    assert load_csv([csv]).values.tolist() == [[350.0, 360.0]]
    assert load_csv([csv], basis="direct").values.tolist() == [[300.0, 310.0]]


def test_sub_hourly_points_average_into_their_hour(tmp_path: Path) -> None:
    csv = _write(
        tmp_path / "t.csv",
        "datetime,zone,intensity\n2019-01-01T00:00:00Z,GB,100\n2019-01-01T00:30:00Z,GB,200\n"
        "2019-01-01T01:00:00Z,GB,300\n",
    )
    assert load_csv([csv]).values.tolist() == [[150.0, 300.0]]


def _hours(zone: str, hours: range, value: float = 500.0) -> str:
    return "".join(f"2019-01-{1 + h // 24:02d}T{h % 24:02d}:00:00Z,{zone},{value}\n" for h in hours)


def test_short_gap_is_interpolated_and_counted(tmp_path: Path) -> None:
    csv = _write(
        tmp_path / "t.csv",
        "datetime,zone,intensity\n2019-01-01T00:00:00Z,NL,100\n2019-01-01T03:00:00Z,NL,400\n"
        + _hours("NL", range(4, 40)),
    )
    trace = load_csv([csv])
    assert trace.values.tolist()[0][:4] == [100.0, 200.0, 300.0, 400.0]
    assert trace.filled_hours == 2


def test_a_zone_needing_more_than_5_percent_interpolated_is_an_error_naming_zone_and_share(
    tmp_path: Path,
) -> None:
    # 40 hours, every 10th missing (4 h, 10 %) in NL; DE complete.
    rows = _hours("NL", range(0, 40, 1)).splitlines(keepends=True)
    nl = "".join(row for h, row in enumerate(rows) if h % 10 != 5)
    csv = _write(tmp_path / "t.csv", "datetime,zone,intensity\n" + nl + _hours("DE", range(40)))
    with pytest.raises(TraceError, match=r"zone NL needs 4 of its 40 h interpolated \(10.0%, more than 5%\)"):
        load_csv([csv])


def test_gap_longer_than_a_day_is_an_error_naming_zone_and_time(tmp_path: Path) -> None:
    csv = _write(
        tmp_path / "t.csv",
        "datetime,zone,intensity\n2019-01-01T00:00:00Z,NL,100\n2019-01-03T00:00:00Z,NL,400\n",
    )
    with pytest.raises(TraceError, match=r"zone NL has a gap of 47 h at 2019-01-01T01:00:00Z"):
        load_csv([csv])


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("2019-01-01T00:00:00Z,DE,abc", r"t\.csv:2: intensity is not a number"),
        ("2019-01-01T00:00:00Z,DE,-5", r"t\.csv:2: intensity -5\.0 is outside"),
        ("2019-01-01T00:00:00Z,DE,nan", r"t\.csv:2: intensity nan is outside"),
        ("2019-01-01 00:00:00,DE,5", r"t\.csv:2: not an RFC 3339 UTC timestamp"),
        ("2019-01-01T00:00:00Z,,5", r"t\.csv:2: empty zone"),
        ("2019-01-01T00:00:00Z,DE", r"t\.csv:2: expected at least 3 columns"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path: Path, row: str, message: str) -> None:
    csv = _write(tmp_path / "t.csv", "datetime,zone,intensity\n" + row + "\n")
    with pytest.raises(TraceError, match=message):
        load_csv([csv])


def test_unknown_header_missing_file_and_unknown_zone(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="unknown CSV header"):
        load_csv([_write(tmp_path / "h.csv", "time,region,value\n")])
    with pytest.raises(TraceError, match="cannot open"):
        load_csv([tmp_path / "absent.csv"])
    csv = _write(tmp_path / "t.csv", "datetime,zone,intensity\n2019-01-01T00:00:00Z,DE,1\n")
    with pytest.raises(TraceError, match=r"zones not in the trace: \['FR'\]"):
        load_csv([csv], zones=["FR"])


def test_write_csv_round_trips(tmp_path: Path) -> None:
    csv = _write(
        tmp_path / "t.csv",
        "datetime,zone,intensity\n2019-01-01T00:00:00Z,DE,400.5\n2019-01-01T01:00:00Z,DE,401\n"
        "2019-01-01T00:00:00Z,FR,50\n2019-01-01T01:00:00Z,FR,51\n",
    )
    trace = load_csv([csv])
    out = tmp_path / "out.csv"
    write_csv(trace, out)
    again = load_csv([out])
    assert again.zones == trace.zones
    assert again.start == trace.start
    np.testing.assert_allclose(again.values, trace.values)
