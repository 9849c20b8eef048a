"""The placement policy: scores, caps, neutral handling and annotations (pure, no I/O)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from carbon_common.snapshot import Snapshot, ZoneReading
from extender.policy import PodPolicy, evaluate, pod_policy
from extender.settings import ExtenderSettings
from extender.view import CarbonView

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
P = "carbon-aware.io/"


def view(ages: dict[str, float] | None = None, **zones: float) -> CarbonView:
    ages = ages or {}
    readings = {
        z: ZoneReading(z, i, NOW - timedelta(seconds=ages.get(z, 600)), "test") for z, i in zones.items()
    }
    return CarbonView(Snapshot(NOW, readings), NOW)


S = ExtenderSettings()


def scores(
    ev_zones: dict[str | None, int],
    v: CarbonView | None,
    pod: PodPolicy | None = None,
    s: ExtenderSettings = S,
) -> dict[str | None, int]:
    ev = evaluate(pod or PodPolicy(), ev_zones, v, NOW, s)
    return {z: d.score for z, d in ev.zones.items()}


def test_relative_greenest_ten_dirtiest_zero_linear_between() -> None:
    v = view(SE=20.0, FR=60.0, DE=420.0, PL=820.0)
    assert scores({"SE": 1, "FR": 1, "DE": 1, "PL": 1}, v) == {"SE": 10, "FR": 10, "DE": 5, "PL": 0}


def test_relative_all_equal_is_all_ten() -> None:
    v = view(DE=300.0, FR=300.0)
    assert scores({"DE": 3, "FR": 1}, v) == {"DE": 10, "FR": 10}


def test_relative_single_zone_is_ten() -> None:
    assert scores({"DE": 5}, view(DE=400.0)) == {"DE": 10}


def test_absolute_mode_uses_fixed_scale_and_clamps() -> None:
    s = dataclasses.replace(S, scoring="absolute", absolute_best=100.0, absolute_worst=600.0)
    v = view(SE=20.0, FR=100.0, DE=350.0, PL=900.0)
    assert scores({"SE": 1, "FR": 1, "DE": 1, "PL": 1}, v, s=s) == {"SE": 10, "FR": 10, "DE": 5, "PL": 0}


def test_unknown_zone_missing_zone_and_stale_data_are_neutral() -> None:
    v = view({"DE": 4 * 3600.0}, SE=20.0, DE=400.0, FR=100.0)
    ev = evaluate(PodPolicy(), {"SE": 1, "FR": 1, "DE": 1, "XX": 1, None: 2}, v, NOW, S)
    z = ev.zones
    assert (z["SE"].score, z["FR"].score) == (10, 0)  # stale DE no longer sets the dirty end
    assert z["DE"].status == "stale"
    assert z["DE"].score == S.neutral_score
    assert z["DE"].neutral
    assert z["XX"].status == "missing"
    assert z["XX"].score == S.neutral_score
    assert z[None].status == "unknown_zone"
    assert z[None].score == S.neutral_score
    assert z["DE"].intensity == 400.0
    assert z["DE"].age == pytest.approx(4 * 3600.0)


def test_a_long_period_reading_is_fresh_until_its_period_ends_plus_max_age() -> None:
    # issue 12 item 9: a static zone with a one-day period, observed 20 h ago, is fresh (age 0), as
    # the feed says; measured from observedAt it used to be stale and scored neutrally.
    day = ZoneReading("ST", 50.0, NOW - timedelta(hours=20), "static", period_seconds=86400.0)
    hourly = ZoneReading("DE", 400.0, NOW - timedelta(minutes=10), "test")
    v = CarbonView(Snapshot(NOW, {"ST": day, "DE": hourly}), NOW)
    ev = evaluate(PodPolicy(), {"ST": 1, "DE": 1}, v, NOW, S)
    assert ev.zones["ST"].status == "fresh"
    assert ev.zones["ST"].age == 0.0
    assert (ev.zones["ST"].score, ev.zones["DE"].score) == (10, 0)


def test_no_data_at_all_is_neutral_everywhere() -> None:
    assert scores({"DE": 1, "FR": 1}, None) == {"DE": 5, "FR": 5}
    all_stale = view({"DE": 1e6, "FR": 1e6}, DE=100.0, FR=500.0)
    assert scores({"DE": 1, "FR": 1}, all_stale) == {"DE": 5, "FR": 5}


def test_neutral_score_is_configurable() -> None:
    s = dataclasses.replace(S, neutral_score=3)
    assert scores({"DE": 1}, None, s=s) == {"DE": 3}


def test_opt_out_is_neutral_and_never_filtered() -> None:
    v = view(SE=20.0, PL=800.0)
    ev = evaluate(PodPolicy(opt_out=True, max_intensity=100.0), {"SE": 1, "PL": 1}, v, NOW, S)
    assert all(d.passed and d.score == S.neutral_score and d.neutral for d in ev.zones.values())


def test_cap_fails_zones_above_it_with_a_reason_naming_zone_and_intensity() -> None:
    v = view(SE=20.0, PL=812.4)
    ev = evaluate(PodPolicy(max_intensity=300.0), {"SE": 1, "PL": 1}, v, NOW, S)
    assert ev.zones["SE"].passed
    assert not ev.zones["PL"].passed
    reason = ev.zones["PL"].reason or ""
    assert "PL" in reason
    assert "812" in reason
    assert "300" in reason
    assert "max-intensity" in reason


def test_cap_equal_to_intensity_passes() -> None:
    ev = evaluate(PodPolicy(max_intensity=300.0), {"DE": 1}, view(DE=300.0), NOW, S)
    assert ev.zones["DE"].passed


@pytest.mark.parametrize(("cap_unknown", "passed"), [("allow", True), ("deny", False)])
def test_cap_with_unknown_data_follows_setting(cap_unknown: str, passed: bool) -> None:
    s = dataclasses.replace(S, cap_unknown=cap_unknown)  # type: ignore[arg-type]
    v = view({"DE": 1e6}, DE=100.0)
    ev = evaluate(PodPolicy(max_intensity=300.0), {"DE": 1, "XX": 1, None: 1}, v, NOW, s)
    assert {d.passed for d in ev.zones.values()} == {passed}
    if not passed:
        assert "stale" in (ev.zones["DE"].reason or "")
        assert "no carbon zone" in (ev.zones[None].reason or "")


def test_mean_intensity_is_node_weighted_over_fresh_zones() -> None:
    v = view({"PL": 1e6}, SE=20.0, DE=420.0, PL=800.0)
    ev = evaluate(PodPolicy(), {"SE": 1, "DE": 3, "PL": 5, None: 7}, v, NOW, S)
    assert ev.mean_intensity == pytest.approx((20.0 + 3 * 420.0) / 4)
    assert evaluate(PodPolicy(), {"XX": 1}, v, NOW, S).mean_intensity is None


def test_future_observation_counts_as_fresh() -> None:
    v = view({"DE": -120.0}, DE=100.0)
    ev = evaluate(PodPolicy(), {"DE": 1}, v, NOW, S)
    assert ev.zones["DE"].status == "fresh"
    assert ev.zones["DE"].age == 0.0


# --- annotations --------------------------------------------------------------------------------


def test_no_annotations() -> None:
    assert pod_policy({}, P) == PodPolicy()


@pytest.mark.parametrize(
    ("value", "opt_out"), [("true", True), ("True", True), (" yes ", True), ("false", False)]
)
def test_opt_out_values(value: str, opt_out: bool) -> None:
    policy = pod_policy({P + "opt-out": value}, P)
    assert policy.opt_out is opt_out
    assert policy.problems == ()


@pytest.mark.parametrize("value", ["300", "300.5", " 42 ", "0"])
def test_max_intensity_values(value: str) -> None:
    policy = pod_policy({P + "max-intensity": value}, P)
    assert policy.max_intensity == float(value)
    assert policy.problems == ()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("max-intensity", "lots"),
        ("max-intensity", "-5"),
        ("max-intensity", "nan"),
        ("max-intensity", "inf"),
        ("max-intensity", 300),
        ("opt-out", "maybe"),
        ("opt-out", True),
    ],
)
def test_malformed_annotation_is_reported_and_ignored(key: str, value: object) -> None:
    policy = pod_policy({P + key: value}, P)
    assert policy.opt_out is False
    assert policy.max_intensity is None
    assert len(policy.problems) == 1
    assert key in policy.problems[0]


def test_prefix_is_configurable() -> None:
    assert pod_policy({"x.io/max-intensity": "5", P + "opt-out": "true"}, "x.io/") == PodPolicy(
        max_intensity=5.0
    )


def _extender_imports(module: str) -> set[str]:
    """The extender modules `module` imports, directly or through other extender modules (parsed)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        tree = ast.parse((root / (name.replace(".", "/") + ".py")).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            found = node.module if isinstance(node, ast.ImportFrom) else None
            if found is not None and found.startswith("extender.") and found not in seen:
                seen.add(found)
                todo.append(found)
    return seen


def test_the_pure_policy_does_not_import_the_carbon_sources() -> None:
    # extender.carbon holds the HTTP poller and the file watcher: the policy needs only the view type.
    imported = _extender_imports("extender.policy")
    assert "extender.view" in imported
    assert "extender.carbon" not in imported
