"""The feed's HTTP API on loopback: /v1/best against hand-computed windows, bad input, ETag/304,
the snapshot file, stale zones, index signals and the metrics exposition."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from asyncio.subprocess import PIPE, STDOUT
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from carbon_common.snapshot import parse_snapshot
from carbon_common.timeutil import format_rfc3339
from carbon_feed.api import create_app
from carbon_feed.config import FeedSettings, ProviderConfig
from carbon_feed.model import FetchResult, Reading
from carbon_feed.service import FeedService

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
NOW = T0 + timedelta(minutes=30)
H = timedelta(hours=1)
DE_FORECAST = [200.0, 100.0, 100.0, 250.0, 300.0, 300.0]
FR_FORECAST = [50.0, 40.0, 45.0, 50.0, 60.0, 70.0]


class FakeProvider:
    name = "fake"

    def __init__(self) -> None:
        self.de_now = 300.0
        self.rejected: tuple[str, ...] = ("PL: intensity nan is not a number",)

    async def fetch(self, zones: Sequence[str], now: datetime) -> FetchResult:
        readings = [
            Reading("fake", "DE", "average", T0, 3600, self.de_now),
            Reading("fake", "FR", "average", T0, 3600, 60.0, estimated=True),
            Reading("fake", "PL", "average", T0 - 5 * H, 3600, 700.0),  # stale
            Reading("fake", "IDX", "index", T0, 300, 42.0),
        ]
        for zone, values in (("DE", DE_FORECAST), ("FR", FR_FORECAST)):
            readings += [
                Reading("fake", zone, "average", T0 + (i + 1) * H, 3600, v, True, None, True, T0)
                for i, v in enumerate(values)
            ]
        return FetchResult(readings, self.rejected)


Feed = tuple[TestClient[Any, Any], FeedService, FakeProvider, Path]


@pytest.fixture
async def feed(aiohttp_client: Any, tmp_path: Path) -> Feed:
    settings = FeedSettings(
        db=str(tmp_path / "feed.sqlite"),
        snapshot_file=str(tmp_path / "snapshot.json"),
        refresh_interval_seconds=3600,
        stale_after_seconds=7200,
    )
    fake = FakeProvider()
    config = ProviderConfig("static", "fake", {"zones": ["DE", "FR", "PL", "IDX"]})
    service = FeedService(settings, clock=lambda: NOW, providers=[(config, fake)])
    client = await aiohttp_client(create_app(service))
    async with asyncio.timeout(10):
        await service.refreshed.wait()
    return client, service, fake, tmp_path


async def get(client: TestClient[Any, Any], path: str, status: int = 200, **params: str) -> Any:
    response = await client.get(path, params=params)
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    return await response.json()


async def test_best_window_across_zones(feed: Feed) -> None:
    client = feed[0]
    # 2 h windows from 11:00: DE 150, 100, 175, 275, 300; FR 45, 42.5, 47.5, 55, 65
    body = await get(
        client,
        "/v1/best",
        duration="2h",
        start=format_rfc3339(T0 + H),
        deadline=format_rfc3339(T0 + 7 * H),
        zones="DE,FR",
    )
    assert body["duration"] == 7200
    window = {"zone": "FR", "start": "2026-11-22T12:00:00Z", "end": "2026-11-22T14:00:00Z", "intensity": 42.5}
    assert body["windows"] == [window]
    assert body["byZone"]["DE"] == {
        "zone": "DE",
        "start": "2026-11-22T12:00:00Z",
        "end": "2026-11-22T14:00:00Z",
        "intensity": 100.0,
    }
    assert body["current"] == {"DE": 300.0, "FR": 60.0}


async def test_best_returns_ties(feed: Feed) -> None:
    body = await get(
        feed[0],
        "/v1/best",
        duration="3600",
        start=format_rfc3339(T0 + H),
        deadline=format_rfc3339(T0 + 7 * H),
        zones="DE",
    )
    assert [w["start"] for w in body["windows"]] == ["2026-11-22T12:00:00Z", "2026-11-22T13:00:00Z"]
    assert {w["intensity"] for w in body["windows"]} == {100.0}


async def test_best_from_now_includes_the_current_period(feed: Feed) -> None:
    # from 10:30: 10:30-11:30 = (60+50)/2 = 55, 11:00-12:00 = 50, 12:00-13:00 = 40
    body = await get(feed[0], "/v1/best", duration="1h", deadline=format_rfc3339(T0 + 4 * H), zones="FR")
    assert body["start"] == format_rfc3339(NOW)
    assert body["windows"] == [
        {"zone": "FR", "start": "2026-11-22T12:00:00Z", "end": "2026-11-22T13:00:00Z", "intensity": 40.0}
    ]


async def test_best_job_longer_than_its_span_is_no_window_not_an_error(feed: Feed) -> None:
    body = await get(feed[0], "/v1/best", duration="5h", deadline=format_rfc3339(T0 + 2 * H))
    assert body["windows"] == []
    assert body["reason"] == "the duration is longer than the span between start and deadline"


async def test_best_without_coverage_says_why(feed: Feed) -> None:
    body = await get(feed[0], "/v1/best", duration="8h", deadline=format_rfc3339(T0 + 12 * H))
    assert body["staleZones"] == ["PL"]  # its baseline would cover the span, but it is stale
    assert body["byZone"] == {}
    assert body["windows"] == []
    assert "no forecast covers" in body["reason"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "duration: required"),
        ({"duration": "soon"}, "duration: not a duration"),
        ({"duration": "-1h"}, "duration"),
        # docs/fuzz.md finding 2: positive, but zero once a timedelta (was a 500).
        ({"duration": "0.0000001"}, "duration: duration shorter than a microsecond"),
        ({"duration": "1h", "start": "tomorrow"}, "start: not an RFC 3339"),
        ({"duration": "1h", "deadline": "2026-11-22T09:00:00Z"}, "deadline: must be after start"),
        ({"duration": "1h", "deadline": "2026-12-30T00:00:00Z"}, "deadline: more than 14 days"),
        ({"duration": "1h", "zones": "DE,XX"}, r"zones: unknown zone\(s\) \['XX'\]"),
        ({"duration": "1h", "zones": ","}, "zones: empty list"),
    ],
)
async def test_best_bad_parameters(feed: Feed, params: dict[str, str], message: str) -> None:
    body = await get(feed[0], "/v1/best", 400, **params)
    assert list(body) == ["error"]
    assert re.search(message, body["error"]), body["error"]


@pytest.mark.parametrize(
    ("path", "params", "status", "message"),
    [
        ("/v1/intensity/XX", {}, 404, "unknown zone 'XX'"),
        ("/v1/forecast/XX", {}, 404, "unknown zone 'XX'"),
        ("/v1/intensity/DE", {"from": "yesterday"}, 400, "from: not an RFC 3339"),
        ("/v1/intensity/DE", {"to": "2026-11-22T10:00:00Z"}, 400, "to: given without from"),
        (
            "/v1/intensity/DE",
            {"from": "2026-11-22T10:00:00Z", "to": "2026-11-22T09:00:00Z"},
            400,
            "to: must be after",
        ),
        ("/v1/intensity/DE", {"from": "2026-01-01T00:00:00Z"}, 400, "longer than 31 days"),
        ("/v1/forecast/IDX", {}, 400, "only has an index signal"),
        ("/v1/nothing", {}, 404, "Not Found"),
    ],
)
async def test_bad_requests_get_json_errors(
    feed: Feed, path: str, params: dict[str, str], status: int, message: str
) -> None:
    body = await get(feed[0], path, status, **params)
    assert message in body["error"]


OUT_OF_RANGE = [
    "9999-12-31T23:59:59-12:00",  # parses, but its UTC instant is past datetime's range
    "0001-01-01T00:00:00+01:00",  # before it
    "9999-12-31T23:00:00Z",  # in range, but start + 24 h (the default deadline) is not
    "0001-01-01T00:00:00Z",
]


@pytest.mark.parametrize("value", OUT_OF_RANGE)
@pytest.mark.parametrize(
    ("path", "key", "extra"),
    [
        ("/v1/best", "start", {"duration": "1h"}),
        ("/v1/best", "deadline", {"duration": "1h"}),
        ("/v1/intensity/DE", "from", {}),
        ("/v1/intensity/DE", "to", {"from": "2026-11-22T09:00:00Z"}),
    ],
)
async def test_out_of_range_times_are_400_not_500(
    feed: Feed, path: str, key: str, extra: dict[str, str], value: str
) -> None:
    body = await get(feed[0], path, 400, **extra, **{key: value})
    assert body["error"].startswith(f"{key}: "), body


async def test_intensity_history_and_forecast(feed: Feed) -> None:
    client = feed[0]
    span = {"from": format_rfc3339(T0 - H), "to": format_rfc3339(T0 + H)}
    de = await get(client, "/v1/intensity/DE", 200, **span)
    assert de["intensity"] == 300.0
    assert de["ageSeconds"] == 0  # its hour is still running: age counts from the end of the period
    assert de["fresh"] is True
    assert [(h["start"], h["intensity"]) for h in de["history"]] == [("2026-11-22T10:00:00Z", 300.0)]
    forecast = await get(client, "/v1/forecast/DE")
    assert forecast["source"] == "fake"
    assert [p["intensity"] for p in forecast["forecast"]] == DE_FORECAST
    # PL offers no forecast: the baseline (from its one observation: persistence) fills in
    pl = await get(client, "/v1/forecast/PL")
    assert pl["source"] == "baseline"
    assert pl["forecast"][0]["intensity"] == pytest.approx(700.0)
    idx = await get(client, "/v1/intensity/IDX")
    assert (idx["unit"], idx["value"]) == ("percentile", 42.0)


async def test_stale_zone_is_listed_but_not_in_snapshot(feed: Feed) -> None:
    client, _, _, tmp_path = feed
    zones = await get(client, "/v1/zones")
    assert {z["zone"]: z["fresh"] for z in zones["zones"]} == {"DE": True, "FR": True, "PL": False}
    assert [i["zone"] for i in zones["indexes"]] == ["IDX"]
    snapshot = parse_snapshot((tmp_path / "snapshot.json").read_bytes())
    assert sorted(snapshot.zones) == ["DE", "FR"]
    assert snapshot.zones["FR"].estimated is True
    # periodSeconds is published, so the extender measures age from the same end of period
    assert {z: r.period_seconds for z, r in snapshot.zones.items()} == {"DE": 3600.0, "FR": 3600.0}
    pl = next(z for z in zones["zones"] if z["zone"] == "PL")
    assert (pl["periodSeconds"], pl["ageSeconds"]) == (3600, 4.5 * 3600)  # ended 4 h 30 min ago
    assert [p.intensity for p in snapshot.zones["DE"].forecast] == DE_FORECAST
    assert (await get(client, "/v1/intensity"))["zones"].keys() == {"DE", "FR", "PL"}


async def test_snapshot_etag_and_304(feed: Feed) -> None:
    client, service, fake, _ = feed
    first = await client.get("/v1/snapshot")
    assert first.status == 200
    etag = first.headers["ETag"]
    assert parse_snapshot(await first.read()).zones["DE"].intensity == 300.0
    cached = await client.get("/v1/snapshot", headers={"If-None-Match": etag})
    assert cached.status == 304
    assert cached.headers["ETag"] == etag
    # the same data again: still 304 (generatedAt does not change the ETag)
    config, provider = service.providers[0]
    assert await service.refresh(config, provider)
    assert (await client.get("/v1/snapshot", headers={"If-None-Match": etag})).status == 304
    fake.de_now = 280.0
    assert await service.refresh(config, provider)
    changed = await client.get("/v1/snapshot", headers={"If-None-Match": etag})
    assert changed.status == 200
    assert changed.headers["ETag"] != etag
    assert parse_snapshot(await changed.read()).zones["DE"].intensity == 280.0


async def test_health_ready_and_metrics(feed: Feed) -> None:
    client = feed[0]
    assert (await get(client, "/healthz"))["status"] == "ok"
    assert await get(client, "/readyz") == {"ready": True, "reason": "serving 2 fresh zone(s)"}
    response = await client.get("/metrics")
    assert response.status == 200
    text = await response.text()
    assert 'carbon_feed_fetches_total{outcome="ok",provider="fake"} 1.0' in text
    assert 'carbon_feed_intensity_grams_per_kwh{signal="average",zone="DE"} 300.0' in text
    assert 'carbon_feed_signal_index_percent{zone="IDX"} 42.0' in text
    assert 'carbon_feed_rejected_values_total{provider="fake",reason="nan"} 1.0' in text
    assert 'carbon_feed_forecast_grams_per_kwh{lead="1h",zone="DE"} 200.0' in text
    assert "carbon_feed_store_rows " in text


async def test_metrics_pass_promtool(feed: Feed) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is required on CI (Debian package 'prometheus')")
        pytest.skip("promtool not installed (hack/install-tools.sh installs it)")
    response = await feed[0].get("/metrics", headers={"Accept": "text/plain; version=0.0.4"})
    text = await response.read()
    process = await asyncio.create_subprocess_exec(
        promtool, "check", "metrics", stdin=PIPE, stdout=PIPE, stderr=STDOUT
    )
    async with asyncio.timeout(30):
        output, _ = await process.communicate(text)
    assert process.returncode == 0, output.decode()


async def test_a_feed_with_no_data_is_not_ready_and_says_why(aiohttp_client: Any, tmp_path: Path) -> None:
    class Silent:
        name = "silent"

        async def fetch(self, zones: Sequence[str], now: datetime) -> FetchResult:
            return FetchResult((), ("DE: upstream has nothing",))

    settings = FeedSettings(db=str(tmp_path / "feed.sqlite"), snapshot_file=str(tmp_path / "snap.json"))
    config = ProviderConfig("static", "silent", {"zones": ["DE"]})
    service = FeedService(settings, clock=lambda: NOW, providers=[(config, Silent())])
    client = await aiohttp_client(create_app(service))
    async with asyncio.timeout(10):
        await service.refreshed.wait()
    ready = await get(client, "/readyz", 503)
    assert ready == {
        "ready": False,
        "reason": "no data: no provider has delivered a reading yet and the history store is empty",
    }
    assert await get(client, "/v1/zones") == {"zones": [], "indexes": []}
    snapshot = await get(client, "/v1/snapshot")
    assert (snapshot["schemaVersion"], snapshot["zones"]) == (1, {})
    assert parse_snapshot((tmp_path / "snap.json").read_bytes()).zones == {}
