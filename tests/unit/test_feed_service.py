"""The feed service: zone policy, snapshot building, failures that leave the data intact, restart."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from carbon_common.interval import Interval
from carbon_common.snapshot import parse_snapshot
from carbon_feed.config import ConfigError, FeedSettings, ProviderConfig
from carbon_feed.http import RateLimitedError
from carbon_feed.metrics import reject_reason
from carbon_feed.model import FetchResult, Reading
from carbon_feed.secrets import Secret
from carbon_feed.service import FeedService
from carbon_feed.view import (
    FeedState,
    ZoneView,
    build_snapshot,
    choose_zone_readings,
    is_fresh,
    readiness,
)

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
        Interval(T0 - H, T0, 1.0),  # over
        Interval(T0, T0 + H, 2.0),  # current period: still useful
        Interval(T0 + H, T0 + 2 * H, 3.0),
        Interval(T0 + 2 * H, T0 + 3 * H, 9999.0),  # implausible: dropped
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


async def test_an_unusable_db_is_a_config_error_naming_the_flag(tmp_path: Path) -> None:
    (tmp_path / "feed.sqlite").write_bytes(b"not a database" * 512)
    service, _ = make_service(tmp_path, ScriptedProvider())
    with pytest.raises(ConfigError, match=r"db \(--db, CARBON_FEED_DB\): .*feed.sqlite.*not a database"):
        await service.start()
    await service.stop()  # idempotent: nothing left open, no warnings (filterwarnings=error)


def test_readiness_means_serving_data() -> None:
    fresh = ZoneView(reading("em", "DE", 300), True)
    stale = ZoneView(reading("em", "PL", 700, T0 - 9 * H), False)
    assert readiness(FeedState()) == (False, "starting: the history store is not loaded yet")
    empty = FeedState(snapshot=build_snapshot({}, T0), loaded=True)
    assert readiness(empty) == (
        False,
        "no data: no provider has delivered a reading yet and the history store is empty",
    )
    only_stale = FeedState({"PL": stale}, snapshot=build_snapshot({"PL": stale}, T0), loaded=True)
    assert readiness(only_stale)[0] is False
    assert "stale" in readiness(only_stale)[1]
    serving = FeedState({"DE": fresh, "PL": stale}, snapshot=build_snapshot({"DE": fresh}, T0), loaded=True)
    assert readiness(serving) == (True, "serving 1 fresh zone(s)")


class FarFutureProvider:
    """A provider bug: one reading stamped at the end of time, next to a good one."""

    name = "far"

    async def fetch(self, zones: Sequence[str], now: datetime) -> FetchResult:
        end_of_time = datetime(9999, 12, 31, 23, tzinfo=UTC)
        return FetchResult([reading("far", "XX", 100.0, end_of_time), reading("far", "FR", 55.0)])


async def test_a_reading_at_the_end_of_time_is_rejected_not_fatal(tmp_path: Path) -> None:
    # Stored, it made every rebuild overflow (start + period): the view never updated again, and a
    # restart failed in its first rebuild.
    settings = FeedSettings(db=str(tmp_path / "feed.sqlite"), refresh_interval_seconds=3600)
    config = ProviderConfig("static", "far", {})
    service = FeedService(settings, clock=lambda: T0 + H / 2, providers=[(config, FarFutureProvider())])
    await service.start()
    try:
        async with asyncio.timeout(10):
            await service.refreshed.wait()
        assert sorted(service.state.zones) == ["FR"]
        assert counter(service.metrics.rejected, "reason") == {"bad_time": 1.0}
    finally:
        await service.stop()


def counter(metric: Any, label: str) -> dict[str, float]:
    return {
        s.labels[label]: s.value for m in metric.collect() for s in m.samples if s.name.endswith("_total")
    }


async def test_the_refresh_loop_survives_any_exception_with_backoff(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    provider = ScriptedProvider()
    service, _ = make_service(tmp_path, provider)
    service.backoff_base = 0.01
    real_refresh = service.refresh
    calls = 0

    async def flaky(config: ProviderConfig, provider: Any) -> bool:
        nonlocal calls
        calls += 1
        if calls <= 2:  # what refresh does not expect, e.g. a bug outside its own try
            raise OverflowError("date value out of range")
        return await real_refresh(config, provider)

    service.refresh = flaky  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR):
        await service.start()
        try:
            async with asyncio.timeout(10):
                await service.refreshed.wait()
            assert calls == 3
            assert counter(service.metrics.loop_errors, "task") == {"refresh:scripted": 2.0}
            assert "refresh loop failed; retrying" in caplog.text
        finally:
            await service.stop()


async def test_a_failing_snapshot_write_or_prune_does_not_stop_updates(tmp_path: Path) -> None:
    provider = ScriptedProvider()
    service, config = make_service(tmp_path, provider)

    async def broken_prune(*args: Any) -> int:
        raise sqlite3.OperationalError("disk I/O error")

    service.store.aprune = broken_prune  # type: ignore[method-assign]
    await service.start()
    try:
        provider.value = 280.0
        assert await service.refresh(config, provider)
        assert service.state.zones["DE"].reading.value == 280.0
        assert counter(service.metrics.loop_errors, "task") == {"housekeeping": 1.0}
    finally:
        await service.stop()


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


async def test_a_disabled_provider_is_not_run_and_interval_sets_the_pace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = FeedSettings(
        db=str(tmp_path / "feed.sqlite"),
        refresh_interval_seconds=3600,
        jitter_ratio=0.0,
        providers=(
            ProviderConfig("static", "off", {"path": str(tmp_path / "missing.yaml")}, enabled=False),
            ProviderConfig("replay", "demo", {"path": str(write_trace(tmp_path))}, interval_seconds=60.0),
        ),
    )
    service = FeedService(settings, clock=lambda: T0)
    slept: list[float] = []
    real_sleep = asyncio.sleep

    async def record_sleep(seconds: float) -> None:
        slept.append(seconds)
        await real_sleep(3600)

    monkeypatch.setattr("carbon_feed.service.asyncio.sleep", record_sleep)
    await service.start()  # the disabled entry's missing file is not even looked at
    try:
        assert [c.name for c, _ in service.providers] == ["demo"]
        async with asyncio.timeout(10):
            await service.refreshed.wait()
            while not slept:
                await real_sleep(0.01)
        assert slept == [60.0]
    finally:
        await service.stop()


def write_trace(tmp_path: Path) -> Path:
    path = tmp_path / "trace.csv"
    path.write_text("datetime,zone,intensity\n2019-11-22T10:00:00Z,DE,300\n2019-11-22T11:00:00Z,DE,310\n")
    return path


async def test_provider_mistakes_found_at_start_stop_the_start(tmp_path: Path) -> None:
    # Once: the feed started, and warned on every refresh for ever.
    trace = str(write_trace(tmp_path))
    cases = [
        (
            ProviderConfig("replay", "demo", {"path": trace, "zones": ["DE", "XX"]}),
            r"options: zones: \['XX'\]",
        ),
        (ProviderConfig("replay", "demo", {"path": str(tmp_path / "no.csv")}), "cannot read trace"),
        (ProviderConfig("static", "pinned", {"path": str(tmp_path / "no.yaml")}), "options: path: .*no.yaml"),
    ]
    for config, message in cases:
        settings = FeedSettings(db=str(tmp_path / "feed.sqlite"), providers=(config,))
        service = FeedService(settings, clock=lambda: T0)
        with pytest.raises(
            ConfigError, match=rf"providers\[name={config.name}\] \({config.kind}\)\..*{message}"
        ):
            await service.start()
        await service.stop()


def test_a_snapshot_file_that_can_never_be_written_stops_the_start(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the snapshot's directory should be")
    for path, message in [
        (blocker / "snap.json", "cannot create"),
        (tmp_path, "is a directory"),
    ]:
        settings = FeedSettings(db=str(tmp_path / "feed.sqlite"), snapshot_file=str(path))
        service = FeedService(settings, providers=[(ProviderConfig("static", "s", {}), ScriptedProvider())])
        with pytest.raises(
            ConfigError, match=rf"snapshot_file \(--snapshot-file, CARBON_FEED_SNAPSHOT_FILE\): .*{message}"
        ):
            asyncio.run(service.start())
