"""Config entries of the providers package's kinds, built and run through the feed service."""

from __future__ import annotations

import asyncio
from pathlib import Path

from carbon_common.snapshot import parse_snapshot
from carbon_feed.config import load_settings
from carbon_feed.service import FeedService


async def test_static_kind_through_config_service_and_snapshot(tmp_path: Path) -> None:
    zones = tmp_path / "zones.yaml"
    zones.write_text("DE: {intensity: 350, forecast: [340, 300]}\nFR: 55\n")
    config = tmp_path / "feed.yaml"
    config.write_text(
        f"db: {tmp_path / 'feed.sqlite'}\nsnapshot_file: {tmp_path / 'snap.json'}\n"
        f"providers:\n  - kind: static\n    name: cm\n    options: {{path: {zones}}}\n"
    )
    settings = load_settings(str(config), {}, environ={})
    service = FeedService(settings)
    await service.start()
    try:
        async with asyncio.timeout(10):
            await service.refreshed.wait()
        assert {z: v.reading.value for z, v in service.state.zones.items()} == {"DE": 350.0, "FR": 55.0}
        assert service.state.zones["DE"].forecast_source == "cm"
        assert service.state.zones["FR"].forecast_source == "baseline"
        snapshot = parse_snapshot((tmp_path / "snap.json").read_bytes())
        assert snapshot.zones["DE"].source == "cm"
        assert [p.intensity for p in snapshot.zones["DE"].forecast][:2] == [340.0, 300.0]
    finally:
        await service.stop()
