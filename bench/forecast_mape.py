"""Day-ahead MAPE of the feed's baseline forecaster on the replay traces, per zone.

    python -m bench.forecast_mape [--quick] [--trace CSV ...] [--zones Z,..] [--basis lca|direct] [--out FILE]

For every issue time (every 6 hours; --quick: every 24 hours over the first 60 days), each method
forecasts the next 24 hours from the history before the issue time only, and the absolute percentage
error against the trace is averaged over all 24 leads and all issue times:

- baseline: carbon_feed.forecast.baseline_forecast (21-day daily profile, a weekly term, decaying persistence)
- persistence: the last observed hour, repeated
- same-hour-yesterday: the value 24 hours before each target hour

The baseline's parameters were chosen on the first half of the trace's year (issue times before
1 July, "train"); the second half ("test") is held out. Both halves are reported, and the whole year.

`--trace` takes the same files as `bench.carbon_eval` (the project's `datetime,zone,intensity` layout or
Electricity Maps exports, repeatable, loaded and validated by `bench.evaluation.trace`); without it, the
feed's embedded ENTSO-E 2019 trace. Writes a table to stdout and forecast_mape.json to --out DIR, by
default .cache/forecast_mape/, so that committed results change only through `make bench` (which passes
bench/results). Nothing is timed or asserted.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.evaluation.trace import TraceError, add_trace_arguments, load_csv
from bench.outputs import add_out_argument
from carbon_feed.forecast import HISTORY_DAYS, PROFILE_DAYS, TAU_HOURS, WEEK_WEIGHT, baseline_forecast
from carbon_feed.traces import default_trace_path, load_trace

H = timedelta(hours=1)
Series = dict[str, list[tuple[datetime, float]]]
HORIZON = 24
METHODS = ("baseline", "persistence", "same_hour_yesterday")
PERIODS = ("train", "test")
Row = dict[str, float | int]


def split_time(first_issue: datetime) -> datetime:
    """Issue times before 1 July of the first issue's year are the training half (the baseline's
    parameters were chosen there); the trace's first hour can be the previous year's last (UTC)."""
    return datetime(first_issue.year, 7, 1, tzinfo=first_issue.tzinfo)


def evaluate(series: dict[datetime, float], issue_every: int, days: int | None) -> dict[str, Row]:
    """MAPE per method for the whole trace ("all") and for its training and held-out halves."""
    hours = sorted(series)
    first, last = hours[0], hours[-1]
    warmup = first + timedelta(days=HISTORY_DAYS)
    end = last - HORIZON * H if days is None else min(last - HORIZON * H, warmup + timedelta(days=days))
    split = split_time(warmup)
    errors: dict[str, dict[str, list[float]]] = {p: {m: [] for m in METHODS} for p in PERIODS}
    issue = warmup
    while issue <= end:
        period = errors["train" if issue < split else "test"]
        # history strictly before the issue time: the hour starting at `issue` is not known yet
        window = [(h, series[h]) for h in _range(issue - timedelta(days=HISTORY_DAYS), issue) if h in series]
        if window:
            last_value = window[-1][1]
            baseline = {p.start: p.intensity for p in baseline_forecast(window, HORIZON)}
            for target in _range(window[-1][0] + H, window[-1][0] + (HORIZON + 1) * H):
                actual = series.get(target)
                yesterday = series.get(target - timedelta(days=1))
                if not actual or yesterday is None or target not in baseline:
                    continue
                period["baseline"].append(abs(baseline[target] - actual) / actual)
                period["persistence"].append(abs(last_value - actual) / actual)
                period["same_hour_yesterday"].append(abs(yesterday - actual) / actual)
        issue += issue_every * H
    merged = {m: errors["train"][m] + errors["test"][m] for m in METHODS}
    return {"all": _mape(merged), **{p: _mape(errors[p]) for p in PERIODS}}


def _mape(errors: dict[str, list[float]]) -> Row:
    result: Row = {m: 100 * sum(v) / len(v) for m, v in errors.items() if v}
    result["samples"] = len(errors["baseline"])
    return result


def _means(rows: dict[str, Row]) -> dict[str, float]:
    complete = [r for r in rows.values() if all(m in r for m in METHODS)]
    return {m: sum(float(r[m]) for r in complete) / len(complete) for m in METHODS} if complete else {}


def _range(start: datetime, stop: datetime) -> list[datetime]:
    out = []
    while start < stop:
        out.append(start)
        start += H
    return out


def _split_label(trace: Series) -> str:
    first = min(points[0][0] for points in trace.values() if points)
    return split_time(first + timedelta(days=HISTORY_DAYS)).date().isoformat()


def load(paths: list[Path], zones: str, basis: str) -> tuple[str, Series]:
    """The traces named (carbon_eval's layouts and checks), else the embedded one: (name, series)."""
    if not paths:
        path = default_trace_path()
        return path.name, load_trace(path)
    trace = load_csv(paths, [z for z in zones.split(",") if z] or None, basis)
    series = {
        zone: [(trace.time_of(h), float(trace.values[z, h])) for h in range(trace.hours)]
        for z, zone in enumerate(trace.zones)
    }
    return trace.source, series


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="60 days, one issue per day")
    add_trace_arguments(parser, "default: the embedded ENTSO-E 2019 trace")
    add_out_argument(parser, "forecast_mape")
    args = parser.parse_args(argv)
    try:
        name, trace = load(args.trace, args.zones, args.basis)
    except (TraceError, OSError) as error:
        print(f"forecast_mape: {error}", file=sys.stderr)
        return 2
    issue_every, days = (24, 60) if args.quick else (6, None)
    by_zone = {zone: evaluate(dict(points), issue_every, days) for zone, points in sorted(trace.items())}
    rows = {zone: r["all"] for zone, r in by_zone.items()}
    periods = {p: {zone: r[p] for zone, r in by_zone.items() if r[p]["samples"]} for p in PERIODS}
    header = f"{'zone':6} {'baseline':>9} {'persistence':>12} {'same-hour-yday':>15} {'samples':>8}"
    print(f"Day-ahead MAPE (%), leads 1-24 h, trace {name}, issue every {issue_every} h")
    print(header)
    for zone, r in rows.items():
        print(
            f"{zone:6} {r['baseline']:9.1f} {r['persistence']:12.1f} {r['same_hour_yesterday']:15.1f}"
            f" {r['samples']:8d}"
        )
    means = _means(rows)
    b, p, y = (means[m] for m in METHODS)
    print(f"{'mean':6} {b:9.1f} {p:12.1f} {y:15.1f}")
    for period, period_rows in periods.items():
        if period_rows:
            b, p, y = (_means(period_rows)[m] for m in METHODS)
            print(f"{period:6} {b:9.1f} {p:12.1f} {y:15.1f}   (mean over zones, issue times in {period})")
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / "forecast_mape.json"
    out.write_text(
        json.dumps(
            {
                "benchmark": "forecast_mape",
                "generatedAt": datetime.now(UTC).isoformat(timespec="seconds"),
                "trace": name,
                "quick": args.quick,
                "issueEveryHours": issue_every,
                "horizonHours": HORIZON,
                "baseline": {"tauHours": TAU_HOURS, "profileDays": PROFILE_DAYS, "weekWeight": WEEK_WEIGHT},
                "unit": "percent",
                "zones": rows,
                "mean": means,
                "periods": {
                    p: {
                        "issuedFrom" if p == "test" else "issuedBefore": _split_label(trace),
                        "zones": r,
                        "mean": _means(r),
                    }
                    for p, r in periods.items()
                },
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
