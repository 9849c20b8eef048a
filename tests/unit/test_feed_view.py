"""The feed's pure view builder: the whole FeedState from readings and forecasts, without a store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from carbon_common.interval import Interval
from carbon_common.snapshot import parse_snapshot
from carbon_feed.model import Reading
from carbon_feed.view import build_state, choose_zone_readings, readiness

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
H = timedelta(hours=1)


def reading(provider: str, zone: str, value: float, start: datetime = T0, signal: str = "average") -> Reading:
    return Reading(provider, zone, signal, start, 3600, value)  # type: ignore[arg-type]


LATEST = [
    reading("em", "DE", 300),
    reading("em", "PL", 700, T0 - 9 * H),  # stale
    reading("wt", "IDX", 42, signal="index"),
]


def test_build_state_marks_freshness_keeps_indexes_apart_and_serves_only_fresh_zones() -> None:
    now = T0 + H / 2
    chosen = choose_zone_readings(LATEST, {"em": 0, "wt": 1})
    forecast = (Interval(T0 + H, T0 + 2 * H, 250.0),)
    state = build_state(LATEST, chosen, {"DE": (forecast, "em")}, now, timedelta(hours=2), loaded=True)

    assert list(state.zones) == ["DE", "PL"]
    assert {z: (v.fresh, v.forecast, v.forecast_source) for z, v in state.zones.items()} == {
        "DE": (True, forecast, "em"),
        "PL": (False, (), None),
    }
    assert set(state.indexes) == {"IDX"}
    snapshot = parse_snapshot(state.snapshot_bytes)
    assert set(snapshot.zones) == {"DE"}
    assert [p.intensity for p in snapshot.zones["DE"].forecast] == [250.0]
    assert readiness(state) == (True, "serving 1 fresh zone(s)")


def test_the_etag_follows_the_data_not_the_time_it_was_built() -> None:
    chosen = choose_zone_readings(LATEST, {})
    stale_after = timedelta(hours=2)
    first = build_state(LATEST, chosen, {}, T0 + H / 2, stale_after, loaded=True)
    later = build_state(LATEST, chosen, {}, T0 + H, stale_after, loaded=True)
    assert first.snapshot_bytes != later.snapshot_bytes  # generatedAt moved
    assert first.etag == later.etag
    changed = [reading("em", "DE", 301), *LATEST[1:]]
    other = build_state(changed, choose_zone_readings(changed, {}), {}, T0 + H, stale_after, loaded=True)
    assert other.etag != first.etag
