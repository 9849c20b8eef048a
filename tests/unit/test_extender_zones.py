"""Node labels → carbon zone, and the bundled/user region maps."""

from __future__ import annotations

from pathlib import Path

import pytest

from extender.zones import RegionMapError, ZoneResolver, bundled_region_map, load_region_map

Z, R = "carbon-aware.io/zone", "topology.kubernetes.io/region"


@pytest.mark.parametrize(
    ("region", "zone"),
    [
        ("eu-central-1", "DE"),
        ("us-west-1", "US-CAL-CISO"),
        ("europe-west1", "BE"),
        ("europe-west4", "NL"),
        ("europe-north1", "FI"),
        ("francecentral", "FR"),
        ("uksouth", "GB"),
        ("eu-north-1", "SE-SE3"),
    ],
)
def test_bundled_map_knows_the_main_regions(region: str, zone: str) -> None:
    assert bundled_region_map()[region] == zone


def test_bundled_map_has_no_comment_keys_and_covers_three_clouds() -> None:
    regions = bundled_region_map()
    assert not any(key.startswith("_") for key in regions)
    assert {"us-east-1", "us-central1", "eastus"} <= set(regions)


def test_zone_label_wins_over_region() -> None:
    r = ZoneResolver(Z, R, {"eu-central-1": "DE"})
    assert r.zone_of_labels({Z: "FR", R: "eu-central-1"}) == "FR"
    assert r.zone_of_labels({R: "eu-central-1"}) == "DE"
    assert r.zone_of_labels({R: "mars-1"}) is None
    assert r.zone_of_labels({}) is None


def test_non_string_or_empty_labels_mean_no_zone() -> None:
    r = ZoneResolver(Z, R, {"eu-central-1": "DE"})
    assert r.zone_of_labels({Z: 5, R: ["x"]}) is None  # type: ignore[dict-item]
    assert r.zone_of_labels({Z: "", R: "eu-central-1"}) == "DE"


def test_user_map_merges_over_bundled(tmp_path: Path) -> None:
    path = tmp_path / "regions.json"
    path.write_text('{"eu-central-1": "DE-LU", "my-dc": "PL"}')
    merged = load_region_map(path)
    assert merged["eu-central-1"] == "DE-LU"
    assert merged["my-dc"] == "PL"
    assert merged["us-west-1"] == "US-CAL-CISO"


@pytest.mark.parametrize(
    ("text", "message"), [("[]", "JSON object"), ('{"a": 1}', "'a'"), ("{", "not valid JSON")]
)
def test_bad_user_map_is_a_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "regions.json"
    path.write_text(text)
    with pytest.raises(RegionMapError, match=message):
        load_region_map(path)


def test_missing_user_map(tmp_path: Path) -> None:
    with pytest.raises(RegionMapError, match="cannot read"):
        load_region_map(tmp_path / "nope.json")


def test_label_values_longer_than_kubernetes_allows_mean_no_zone() -> None:
    # issue 12 item 2: a label value is at most 63 characters; a longer one cannot come from a real
    # Node, so it is read as "no zone" (neutral score) and never kept in a cache.
    r = ZoneResolver(Z, R, {"r" * 64: "DE"})
    assert r.zone_of_labels({Z: "Z" * 63}) == "Z" * 63
    assert r.zone_of_labels({Z: "Z" * 64}) is None
    assert r.zone_of_labels({Z: "Z" * 10_000, R: "eu-central-1"}) is None
    assert r.zone_of_labels({R: "r" * 64}) is None
