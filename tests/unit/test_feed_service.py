"""The feed service: zone policy, snapshot building, failures that leave the data intact, restart."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from carbon_common.snapshot import parse_snapshot
from carbon_feed.config import FeedSettings, ProviderConfig
from carbon_feed.forecast import ForecastValue
from carbon_feed.http import RateLimitedError
from carbon_feed.metrics import reject_reason
from carbon_feed.model import FetchResult, Reading
from carbon_feed.secrets import Secret
from carbon_feed.service import FeedService, ZoneView, build_snapshot, choose_zone_readings, is_fresh

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
H = timedelta(hours=1)
SECRET = "tok-0123456789"


def reading(provider: str, zone: str, value: float, start: datetime = T0, signal: str = "average") -> Reading:
    return Reading(provider, zone, signal, start, 3600, value)  # type: ignore[arg-type]


def test_average_beats_marginal_then_newest_then_provider_order() -> None:
    latest = [
        reading("wt", "CAISO", 400, T0 + H, "marginal"),
        reading("em", "CAISO", 250, T0),  # older but average: wins
        reading("a", "DE", 300, T0),
        reading("b", "DE", 310, T0 + H),  # newer: wins
        reading("a", "FR", 50, T0),  # same time: first listed provider wins
        reading("b", "FR", 60, T0),
        reading("wt", "IDX", 42, T0, "index"),  # never a zone reading
        reading("wt", "MOER", 500, T0, "marginal"),  # only marginal: kept
    ]
    chosen = choose_zone_readings(latest, {"a": 0, "b": 1, "em": 2, "wt": 3})
    assert {z: (r.provider, r.value) for z, r in chosen.items()} == {
        "CAISO": ("em", 250),
        "DE": ("b", 310),
        "FR": ("a", 50),
        "MOER": ("wt", 500),
    }


def test_freshness_counts_from_the_end_of_the_period() -> None:
    r = reading("em", "DE", 1, T0)
    assert is_fresh(r, T0 + 3 * H, timedelta(hours=2))
    assert not is_fresh(r, T0 + 3 * H + timedelta(seconds=1), timedelta(hours=2))


def test_snapshot_leaves_out_stale_zones_and_past_forecast_points() -> None:
    now = T0 + H / 2
    forecast = (
        ForecastValue(T0 - H, T0, 1.0),  # over
        ForecastValue(T0, T0 + H, 2.0),  # current period: still useful
        ForecastValue(T0 + H, T0 + 2 * H, 3.0),
        ForecastValue(T0 + 2 * H, T0 + 3 * H, 9999.0),  # implausible: dropped
    )
    zones = {
        "DE": ZoneView(reading("em", "DE", 300), True, forecast, "em"),
        "PL": ZoneView(reading("em", "PL", 700, T0 - 9 * H), False),
        "MOER": ZoneView(reading("wt", "MOER", 500, signal="marginal"), True),
    }
    snapshot = build_snapshot(zones, now)
    assert sorted(snapshot.zones) == ["DE", "MOER"]
    assert [p.intensity for p in snapshot.zones["DE"].forecast] == [2.0, 3.0]
    assert snapshot.zones["MOER"].signal == "marginal"


class ScriptedProvider:
    name = "scripted"

    def __init__(self) -> None:
        self.fail: BaseException | None = None
        self.block = asyncio.Event()
        self.blocking = False
        self.value = 300.0

    async def fetch(self, zones: Sequence[str], now: datetime) -> FetchResult:
        if self.blocking:
            await self.block.wait()
        if self.fail is not None:
            raise self.fail
        return FetchResult([reading("scripted", "DE", self.value, T0)])


def make_service(tmp_path: Path, provider: ScriptedProvider) -> tuple[FeedService, ProviderConfig]:
    settings = FeedSettings(
        db=str(tmp_path / "feed.sqlite"),
        snapshot_file=str(tmp_path / "snap.json"),
        refresh_interval_seconds=3600,
    )
    config = ProviderConfig("static", "scripted", {"zones": ["DE"]})
    return FeedService(settings, clock=lambda: T0 + H / 2, providers=[(config, provider)]), config


async def test_failed_refresh_keeps_serving_and_never_logs_secrets(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    provider = ScriptedProvider()
    service, config = make_service(tmp_path, provider)
    await service.start()
    try:
        async with asyncio.timeout(10):
            await service.refreshed.wait()
        etag = service.state.etag
        provider.fail = RuntimeError(f"upstream said no to {Secret(SECRET)}")
        provider.value = 1.0
        with caplog.at_level(logging.WARNING):
            assert not await service.refresh(config, provider)
        assert service.state.zones["DE"].reading.value == 300.0
        assert service.state.etag == etag
        assert "refresh failed" in caplog.text
        assert SECRET not in caplog.text
        samples = {
            (s.labels["provider"], s.labels["outcome"]): s.value
            for metric in service.metrics.fetches.collect()
            for s in metric.samples
            if s.name.endswith("_total")
        }
        assert samples[("scripted", "error")] == 1.0
    finally:
        await service.stop()


async def test_restart_serves_the_store_before_the_first_fetch_completes(tmp_path: Path) -> None:
    provider = ScriptedProvider()
    service, _ = make_service(tmp_path, provider)
    await service.start()
    async with asyncio.timeout(10):
        await service.refreshed.wait()
    await service.stop()
    (tmp_path / "snap.json").unlink()

    stuck = ScriptedProvider()
    stuck.blocking = True  # the provider never answers
    again, _ = make_service(tmp_path, stuck)
    await again.start()
    try:
        assert again.refreshes == 0
        assert again.state.loaded
        assert again.state.zones["DE"].reading.value == 300.0
        assert parse_snapshot((tmp_path / "snap.json").read_bytes()).zones["DE"].intensity == 300.0
    finally:
        await again.stop()


@pytest.mark.parametrize(("days", "warned"), [(7.0, True), (30.0, False)])
async def test_short_retention_is_a_warning_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, days: float, warned: bool
) -> None:
    service, _ = make_service(tmp_path, ScriptedProvider())
    service.settings = dataclasses.replace(service.settings, retention_days=days)
    with caplog.at_level(logging.WARNING):
        await service.start()
    await service.stop()
    assert any("retention_days is shorter" in r.getMessage() for r in caplog.records) == warned


async def test_stop_is_clean_after_a_failed_start(tmp_path: Path) -> None:
    (tmp_path / "feed.sqlite").write_bytes(b"not a database" * 512)
    service, _ = make_service(tmp_path, ScriptedProvider())
    with pytest.raises(sqlite3.DatabaseError, match="not a database"):
        await service.start()
    await service.stop()  # idempotent: nothing left open, no warnings (filterwarnings=error)


class ForecastingProvider:
    """Forecasts 200 for the next hour at T0; an hour later observes 250 for it."""

    name = "fc"

    async def fetch(self, zones: Sequence[str], now: datetime) -> FetchResult:
        if now < T0 + H:
            return FetchResult(
                [
                    reading("fc", "DE", 300, T0),
                    Reading("fc", "DE", "average", T0 + H, 3600, 200.0, True, None, True, T0),
                ]
            )
        return FetchResult([reading("fc", "DE", 250, T0 + H)])


async def test_forecast_error_is_exported_per_lead_once_actuals_arrive(tmp_path: Path) -> None:
    clock = [T0 + timedelta(minutes=5)]
    settings = FeedSettings(db=str(tmp_path / "feed.sqlite"), refresh_interval_seconds=3600)
    config = ProviderConfig("static", "fc", {"zones": ["DE"]})
    provider = ForecastingProvider()
    service = FeedService(settings, clock=lambda: clock[0], providers=[(config, provider)])
    await service.start()
    try:
        async with asyncio.timeout(10):
            await service.refreshed.wait()
        assert service.state.zones["DE"].forecast_source == "fc"
        clock[0] = T0 + H + timedelta(minutes=5)
        assert await service.refresh(config, provider)
        await service.update_forecast_errors(clock[0])
        samples = {
            (s.labels["source"], s.labels["lead"]): s.value
            for m in service.metrics.forecast_mape.collect()
            for s in m.samples
        }
        assert samples[("fc", "1h")] == pytest.approx(0.2)  # |200 - 250| / 250
    finally:
        await service.stop()


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("DE at 2026-11-22T10:00:00Z: value is nan", "nan"),
        ("NANTES at 2026-11-22T10:00:00Z: negative value -5", "negative"),
        ("DE at 2026-11-22T10:00:00Z: value must be a number, got 'x'", "not_a_number"),
        ("DE at 2026-11-22T10:00:00Z: 9000 gCO2eq/kWh is above the plausible maximum 2500", "out_of_range"),
        ("IDX at 2026-11-22T10:00:00Z: index 120 is above 100", "out_of_range"),
        ("DE at 2026-11-22T10:00:00Z: naive start time", "bad_time"),
        ("DE: unknown unit 'tonnes'", "unit"),
        ("XX: not in this provider's zones mapping", "unknown_zone"),
        ("DE: something new", "other"),
    ],
)
def test_rejections_map_to_bounded_reasons(text: str, reason: str) -> None:
    assert reject_reason(text) == reason


class InsaneProvider:
    name = "insane"

    async def fetch(self, zones: Sequence[str], now: datetime) -> FetchResult:
        return FetchResult(
            [
                reading("insane", "DE", float("nan")),
                reading("insane", "DE", -1.0, T0 + H),
                reading("insane", "IDX", 140.0, signal="index"),
                reading("insane", "FR", 55.0),
            ]
        )


async def test_service_guards_the_store_against_bad_values(tmp_path: Path) -> None:
    settings = FeedSettings(db=str(tmp_path / "feed.sqlite"), refresh_interval_seconds=3600)
    config = ProviderConfig("static", "insane", {"zones": ["DE"]})
    service = FeedService(settings, clock=lambda: T0 + H / 2, providers=[(config, InsaneProvider())])
    await service.start()
    try:
        async with asyncio.timeout(10):
            await service.refreshed.wait()
        assert sorted(service.state.zones) == ["FR"]
        assert service.state.indexes == {}
        rejected = {
            s.labels["reason"]: s.value
            for m in service.metrics.rejected.collect()
            for s in m.samples
            if s.name.endswith("_total")
        }
        assert rejected == {"nan": 1.0, "out_of_range": 2.0}
    finally:
        await service.stop()


async def test_a_429_with_retry_after_delays_the_next_round_past_the_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = ScriptedProvider()
    provider.fail = RateLimitedError("slow down", retry_after=7200.0)  # longer than the 3600 s interval
    service, config = make_service(tmp_path, provider)
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        raise asyncio.CancelledError  # stop the loop after its first pause

    monkeypatch.setattr("carbon_feed.service.asyncio.sleep", fake_sleep)
    with pytest.raises(asyncio.CancelledError):
        await service._loop(config, provider)
    assert slept == [7200.0]
    await service.stop()
