"""Smoke run of the carbon evaluation at tiny sizes: the harness runs end to end and its results hold
together (structure and sanity, never timings)."""

from __future__ import annotations

import io
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from bench import carbon_eval
from bench.evaluation.forecasts import HISTORY_HOURS

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _synthetic_trace(path: Path, days: int) -> Path:
    """Three zones with distinct levels and daily cycles (GREEN < MID < DIRTY at every hour)."""
    start = datetime(2019, 3, 1, tzinfo=UTC)
    lines = ["datetime,zone,intensity"]
    for h in range(days * 24):
        stamp = (start + timedelta(hours=h)).strftime("%Y-%m-%dT%H:%M:%SZ")
        solar = max(0.0, math.sin(math.pi * ((h % 24) - 6) / 12))
        for zone, level in (("GREEN", 60.0), ("MID", 250.0), ("DIRTY", 600.0)):
            lines.append(f"{stamp},{zone},{level * (1 - 0.4 * solar) + (h % 7):.1f}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, object], Path]:
    tmp = tmp_path_factory.mktemp("carbon")
    trace = _synthetic_trace(tmp / "trace.csv", days=HISTORY_HOURS // 24 + 6)
    cfg = carbon_eval.Config(
        quick=True,
        trace_paths=(trace,),
        temporal_stride=12,
        sweep_slacks=(4, 24),
        sweep_stride=24,
        cluster_days=1.0,
        arrivals_per_hour=6.0,
    )
    out = tmp / "results"
    return carbon_eval.run(cfg, out), out


def test_writes_json_and_png_plots(result: tuple[dict[str, object], Path]) -> None:
    doc, out = result
    on_disk = orjson.loads((out / "carbon_eval.json").read_bytes())
    assert on_disk["benchmark"] == "carbon_eval"
    assert on_disk["trace"]["zones"] == ["DIRTY", "GREEN", "MID"]
    assert set(on_disk["plots"]) == {"carbon_policies.png", "carbon_weight.png", "carbon_slack.png"}
    for name in on_disk["plots"]:
        assert (out / name).read_bytes()[:8] == PNG_MAGIC
    assert {t["title"] for t in on_disk["tables"]} >= {
        "Cluster simulation: policies on the same pods and trace"
    }
    assert on_disk == orjson.loads(orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY))


def test_every_policy_ran_the_same_pods_and_ours_saves_carbon(result: tuple[dict[str, object], Path]) -> None:
    doc, _ = result
    cluster = doc["cluster"]
    assert isinstance(cluster, dict)
    rows = {r["policy"]: r for r in cluster["policies"]}
    expected = {"zone-agnostic", "oracle-spatial", "relative-w10-deferral", "optimum-lp"}
    expected |= {"relative-w10-deferral-capacity", "relative-w10-deferral-capacity-best-only"}
    expected |= {f"{s}-w{w}" for s in ("relative", "absolute") for w in (1, 5, 10)}
    assert set(rows) == expected
    assert len({r["pods"] for r in rows.values()}) == 1
    assert rows["zone-agnostic"]["pods"] == cluster["pods"]
    assert rows["zone-agnostic"]["reduction"] == 0
    oracle = rows["oracle-spatial"]["reduction"]
    for w in (1, 5, 10):
        ours = rows[f"relative-w{w}"]
        assert 0 < ours["reduction"] <= oracle + 1e-9
        assert 0 < ours["fraction_of_oracle"] <= 1 + 1e-9
    # More weight never steers less on a trace where one zone is always greenest.
    assert rows["relative-w10"]["reduction"] >= rows["relative-w1"]["reduction"]
    assert rows["relative-w10-deferral"]["deferred"] > 0
    assert rows["relative-w10-deferral-capacity"]["deferred"] > 0
    # The LP bound is at least as good as every simulated schedule.
    assert all(rows["optimum-lp"]["grams"] <= r["grams"] + 1e-6 for r in rows.values())
    assert rows["optimum-lp"]["energy_kwh"] == pytest.approx(rows["zone-agnostic"]["energy_kwh"])


def test_temporal_results_are_bounded_by_the_oracle(result: tuple[dict[str, object], Path]) -> None:
    doc, _ = result
    temporal = doc["temporal"]
    assert isinstance(temporal, dict)
    assert len(temporal["by_forecaster"]) == 3
    for entry in temporal["by_forecaster"].values():
        for zone in entry["zones"]:
            assert zone["oracle"] <= zone["ours"] + 1e-9
            assert zone["oracle"] <= zone["run_now"] + 1e-9
    # The plan-once model is reported beside re-planning, for the headline forecaster only.
    assert list(temporal["one_shot"]) == [next(iter(temporal["by_forecaster"]))]
    for entry in temporal["one_shot"].values():
        for zone in entry["zones"]:
            assert zone["oracle"] <= zone["ours"] + 1e-9
            assert 0 <= zone["mean_wait_h"] <= 24
        # Two weeks of March: nothing after 1 July, so no half-year split is claimed.
        assert "train" not in entry
        assert "held_out" not in entry
    sweep = doc["slack_sweep"]
    assert isinstance(sweep, list)
    assert [s["slack_h"] for s in sweep] == [4, 24]
    assert sweep[0]["oracle_reduction"] <= sweep[1]["oracle_reduction"] + 1e-9  # more slack, more options
    targets = doc["targets"]
    assert isinstance(targets, list)
    assert len(targets) == 2
    assert all(isinstance(t["met"], bool) for t in targets)


def test_cli_reports_a_bad_trace_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("datetime,zone,intensity\n2019-01-01T00:00:00Z,DE,-1\n")
    assert carbon_eval.main(["--quick", "--trace", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "intensity -1.0 is outside" in capsys.readouterr().err
    assert not (tmp_path / "o" / "carbon_eval.json").exists()


def test_cli_reports_a_trace_too_short_for_the_simulation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    short = _synthetic_trace(tmp_path / "short.csv", days=3)
    assert carbon_eval.main(["--quick", "--trace", str(short), "--out", str(tmp_path / "o")]) == 2
    assert "too short" in capsys.readouterr().err


def test_replot_redraws_every_plot_from_the_json(result: tuple[dict[str, object], Path]) -> None:
    _, out = result
    for name in ("carbon_policies.png", "carbon_weight.png", "carbon_slack.png"):
        (out / name).unlink()
    assert carbon_eval.main(["--replot", "--out", str(out)]) == 0
    for name in ("carbon_policies.png", "carbon_weight.png", "carbon_slack.png"):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC


def test_replot_without_results_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert carbon_eval.main(["--replot", "--out", str(tmp_path)]) == 2
    assert "cannot replot" in capsys.readouterr().err


def test_temporal_entry_splits_the_year_on_the_first_of_july(tmp_path: Path) -> None:
    from bench.evaluation import temporal
    from bench.evaluation.forecasts import SeasonalNaive
    from bench.evaluation.trace import load_csv

    # arrivals start after HISTORY_HOURS: four days of them before 1 July, six after
    start = datetime(2019, 7, 1, tzinfo=UTC) - timedelta(hours=HISTORY_HOURS, days=4)
    path = tmp_path / "summer.csv"
    lines = ["datetime,zone,intensity"]
    for h in range(HISTORY_HOURS + 10 * 24):
        stamp = (start + timedelta(hours=h)).strftime("%Y-%m-%dT%H:%M:%SZ")
        lines.append(f"{stamp},Z,{100 + 200 * (h % 24 != 4) + (h % 5):.1f}")
    path.write_text("\n".join(lines) + "\n")
    trace = load_csv([path])
    split = carbon_eval.split_time(trace.time_of(HISTORY_HOURS))
    assert split == datetime(2019, 7, 1, tzinfo=UTC)
    outcomes = temporal.evaluate_outcomes(trace, 1, 24, SeasonalNaive(), stride=5)
    entry = carbon_eval._temporal_entry(trace, outcomes, split)
    train, held = entry["train"]["summary"], entry["held_out"]["summary"]
    whole = entry["summary"]
    assert min(train["reduction"], held["reduction"]) <= whole["reduction"] + 1e-9
    assert whole["reduction"] <= max(train["reduction"], held["reduction"]) + 1e-9
    assert set(entry["train"]["fraction_of_oracle_by_zone"]) == {"Z"}


def test_cli_writes_to_the_cache_unless_told_and_takes_a_start_date() -> None:
    cfg, out, _ = carbon_eval.parse_args([])
    assert out.parts[-2:] == (".cache", "carbon_eval")  # committed results change only through `make bench`
    assert cfg.cluster_start is None
    cfg, _, _ = carbon_eval.parse_args(["--start-date", "2019-03-01"])
    assert cfg.cluster_start == datetime(2019, 3, 1, tzinfo=UTC)
    with pytest.raises(SystemExit):
        carbon_eval.parse_args(["--start-date", "1 March"])


def test_start_date_picks_the_cluster_period_and_refuses_one_without_history(tmp_path: Path) -> None:
    trace = carbon_eval.load_csv([_synthetic_trace(tmp_path / "t.csv", days=HISTORY_HOURS // 24 + 6)])
    later = trace.time_of(HISTORY_HOURS + 30)
    cfg = carbon_eval.Config(cluster_start=later)
    assert carbon_eval.cluster_first_hour(cfg, trace) == HISTORY_HOURS + 30
    assert carbon_eval.cluster_first_hour(carbon_eval.Config(), trace) == HISTORY_HOURS
    with pytest.raises(carbon_eval.TraceError, match="needs 22 days of history first"):
        carbon_eval.cluster_first_hour(carbon_eval.Config(cluster_start=trace.start), trace)
    with pytest.raises(carbon_eval.TraceError, match="after the trace's end"):
        carbon_eval.cluster_first_hour(carbon_eval.Config(cluster_start=later + timedelta(days=30)), trace)


def test_cli_reports_a_start_date_without_history_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = _synthetic_trace(tmp_path / "t.csv", days=HISTORY_HOURS // 24 + 6)
    args = ["--quick", "--trace", str(trace), "--start-date", "2019-03-02", "--out", str(tmp_path / "o")]
    assert carbon_eval.main(args) == 2
    assert "needs 22 days of history first" in capsys.readouterr().err


def test_progress_counts_the_zones_actually_run(tmp_path: Path) -> None:
    trace = _synthetic_trace(tmp_path / "t.csv", days=HISTORY_HOURS // 24 + 6)
    bar = carbon_eval.Progress("carbon", 0, stream=io.StringIO())
    cfg = carbon_eval.Config(
        quick=True,
        trace_paths=(trace,),
        temporal_stride=24,
        sweep_slacks=(4,),
        sweep_stride=48,
        cluster_days=0.5,
        arrivals_per_hour=2.0,
    )
    carbon_eval.run(cfg, tmp_path / "o", progress=bar)
    # The trace's three zones: 4 temporal units and 1 sweep unit each, plus the cluster policies (it
    # used to assume 9 zones when --zones was not given).
    assert bar.total == pytest.approx(11 * 20 + (4 + 1) * 3)
