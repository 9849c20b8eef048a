"""Reading the feed's /v1/best answer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from deferral.feed import parse_best

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def test_parse_best_reads_windows_and_current() -> None:
    forecast = parse_best(
        {
            "generatedAt": "2026-11-23T12:00:00Z",
            "windows": [
                {
                    "zone": "DE",
                    "start": "2026-11-23T14:00:00Z",
                    "end": "2026-11-23T15:00:00Z",
                    "intensity": 80,
                }
            ],
            "current": {"DE": 300.5, "FR": None, "PL": True},
        }
    )
    assert forecast.windows[0].zone == "DE"
    assert forecast.windows[0].start == T0 + timedelta(hours=2)
    assert forecast.windows[0].intensity == 80.0
    assert forecast.current == {"DE": 300.5}
    assert forecast.generated_at == T0


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"windows": None},
        {"windows": ["x"]},
        {"windows": [{"zone": "DE", "start": "2026-11-23T14:00:00Z", "end": "2026-11-23T15:00:00Z"}]},
        {
            "windows": [
                {"zone": 5, "start": "2026-11-23T14:00:00Z", "end": "2026-11-23T15:00:00Z", "intensity": 1}
            ]
        },
        {"windows": [{"zone": "DE", "start": "soon", "end": "2026-11-23T15:00:00Z", "intensity": 1}]},
        {"windows": [{"zone": "DE", "start": "2026-11-23T14:00:00Z", "end": "x", "intensity": float("nan")}]},
    ],
)
def test_parse_best_rejects_malformed_answers(body: Any) -> None:
    with pytest.raises(ValueError, match=r"window|windows|object|RFC 3339|number|string"):
        parse_best(body)


def test_index_signal_windows_are_never_ranked_against_intensities() -> None:
    forecast = parse_best(
        {
            "windows": [
                {
                    "zone": "CAISO",
                    "start": "2026-11-23T13:00:00Z",
                    "end": "2026-11-23T14:00:00Z",
                    "intensity": 3,
                },
                {
                    "zone": "DE",
                    "start": "2026-11-23T14:00:00Z",
                    "end": "2026-11-23T15:00:00Z",
                    "intensity": 80,
                },
            ],
            "byZone": {
                "CAISO": {"start": "2026-11-23T13:00:00Z", "end": "2026-11-23T14:00:00Z", "intensity": 3},
                "FR": {"start": "2026-11-23T16:00:00Z", "end": "2026-11-23T17:00:00Z", "intensity": 60},
            },
            "current": {"CAISO": 1, "FR": 90},
            "signals": {"CAISO": "index", "DE": "average", "FR": "average"},
        }
    )
    assert sorted(w.zone for w in forecast.windows) == ["DE", "FR"]
    assert forecast.current == {"FR": 90.0}
