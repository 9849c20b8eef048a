"""Static provider: zones from a YAML/JSON file, reloaded on change, last good content kept."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest

from carbon_feed.http import MalformedError, UnavailableError
from carbon_feed.providers import ConfigError, build_provider
from carbon_feed.providers.static import StaticProvider
from tests.fakes.provider_emulators import NOW

AT = NOW + timedelta(minutes=20)


def write(path: Path, text: str, bump: int) -> None:
    path.write_text(text)
    # Same-second rewrites of the same size must still be noticed: move mtime explicitly.
    stamp = 1_700_000_000 + bump
    os.utime(path, (stamp, stamp))


async def make(path: Path) -> StaticProvider:
    async with aiohttp.ClientSession() as session:
        provider = build_provider("static", "cm", {"path": str(path)}, session, None)
    assert isinstance(provider, StaticProvider)
    return provider


async def test_plain_and_detailed_zones(tmp_path: Path) -> None:
    path = tmp_path / "zones.yaml"
    write(
        path,
        "FR: 55\n"
        "PL:\n  intensity: 700\n  estimated: true\n  forecast: [690, 680]\n"
        "US-CAL-CISO:\n  intensity: 300\n  signal: marginal\n"
        "  forecast:\n    - {start: '2026-11-22T12:00:00Z', intensity: 250}\n",
        1,
    )
    result = await (await make(path)).fetch([], AT)
    assert result.rejected == ()
    now = {r.zone: r for r in result.readings if not r.forecast}
    assert now["FR"].value == 55.0
    assert now["FR"].start == NOW  # the current hour
    assert now["PL"].estimated is True
    assert now["US-CAL-CISO"].signal == "marginal"
    pl = [(r.start, r.value) for r in result.readings if r.forecast and r.zone == "PL"]
    assert pl == [(NOW, 690.0), (NOW + timedelta(hours=1), 680.0)]
    ca = [(r.start, r.value) for r in result.readings if r.forecast and r.zone == "US-CAL-CISO"]
    assert ca == [(NOW + timedelta(hours=2), 250.0)]


async def test_json_file_and_requested_zones(tmp_path: Path) -> None:
    path = tmp_path / "zones.json"
    write(path, '{"DE": 380, "FR": 55}', 1)
    result = await (await make(path)).fetch(["DE", "SE"], AT)
    assert [(r.zone, r.value) for r in result.readings] == [("DE", 380.0)]
    assert result.rejected[0].startswith("SE: not in")


async def test_reload_on_change(tmp_path: Path) -> None:
    path = tmp_path / "zones.yaml"
    write(path, "FR: 55\n", 1)
    provider = await make(path)
    assert [r.value for r in (await provider.fetch(["FR"], AT)).readings] == [55.0]
    write(path, "FR: 66\n", 2)
    assert [r.value for r in (await provider.fetch(["FR"], AT)).readings] == [66.0]


async def test_configmap_style_symlink_swap_is_noticed(tmp_path: Path) -> None:
    (tmp_path / "v1").mkdir()
    (tmp_path / "v2").mkdir()
    write(tmp_path / "v1" / "zones.yaml", "FR: 55\n", 1)
    write(tmp_path / "v2" / "zones.yaml", "FR: 77\n", 1)  # same size and mtime, other inode
    (tmp_path / "..data").symlink_to("v1")
    link = tmp_path / "zones.yaml"
    link.symlink_to(tmp_path / "..data" / "zones.yaml")
    provider = await make(link)
    assert [r.value for r in (await provider.fetch(["FR"], AT)).readings] == [55.0]
    (tmp_path / "..data_tmp").symlink_to("v2")
    os.replace(tmp_path / "..data_tmp", tmp_path / "..data")
    assert [r.value for r in (await provider.fetch(["FR"], AT)).readings] == [77.0]


async def test_bad_edit_keeps_last_good_content(tmp_path: Path) -> None:
    path = tmp_path / "zones.yaml"
    write(path, "FR: 55\n", 1)
    provider = await make(path)
    await provider.fetch(["FR"], AT)
    write(path, "FR: [unclosed\n", 2)
    result = await provider.fetch(["FR"], AT)
    assert [r.value for r in result.readings] == [55.0]
    assert "invalid" in result.rejected[0]
    assert "last good" in result.rejected[0]
    path.unlink()
    result = await provider.fetch(["FR"], AT)
    assert [r.value for r in result.readings] == [55.0]
    assert "cannot read" in result.rejected[0]
    write(path, "FR: 60\n", 3)
    result = await provider.fetch(["FR"], AT)
    assert [r.value for r in result.readings] == [60.0]
    assert result.rejected == ()


async def test_first_read_failures_raise(tmp_path: Path) -> None:
    with pytest.raises(UnavailableError, match="cannot read"):
        await (await make(tmp_path / "absent.yaml")).fetch([], AT)
    bad = tmp_path / "bad.yaml"
    write(bad, "- just\n- a list\n", 1)
    with pytest.raises(MalformedError, match="mapping"):
        await (await make(bad)).fetch([], AT)
    wrong = tmp_path / "wrong.yaml"
    write(wrong, "FR: {intensity: 5, signal: percentile}\n", 1)
    with pytest.raises(MalformedError, match="signal"):
        await (await make(wrong)).fetch([], AT)


async def test_bad_values_are_rejected_one_by_one(tmp_path: Path) -> None:
    path = tmp_path / "zones.yaml"
    write(path, "A: .nan\nB: -5\nC: 1.0e9\nD: 200\nE: {intensity: 5, forecast: ['x', 7]}\n", 1)
    result = await (await make(path)).fetch([], AT)
    assert sorted((r.zone, r.value, r.forecast) for r in result.readings) == [
        ("D", 200.0, False),
        ("E", 5.0, False),
        ("E", 7.0, True),
    ]
    assert len(result.rejected) == 4


def test_path_is_required() -> None:
    with pytest.raises(ConfigError, match="path"):
        StaticProvider.from_options("cm", {})
    with pytest.raises(ConfigError, match="period_seconds"):
        StaticProvider.from_options("cm", {"path": "x", "period_seconds": 1})
