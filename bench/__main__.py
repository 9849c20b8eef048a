"""`python -m bench` (= `make bench`): run every benchmark, then regenerate the report.

    python -m bench [--quick] [--only NAME ...] [--skip NAME ...] [--out DIR]

Each benchmark runs as its own process (`python -m bench.<name>`), so one that fails or is missing
(e.g. scheduler_throughput without a built control plane) is reported and the others still run. Its
output goes to a log under .cache/bench-logs/. A full run writes JSON and PNGs into bench/results/ (the
committed results) and regenerates bench/results/summary.md and the README's bench block. `--quick`
runs smoke sizes (a few minutes on 2 cores) into .cache/bench-quick/ and leaves the README alone.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.evaluation.progress import Progress
from bench.report import write_report

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
QUICK_RESULTS = ROOT / ".cache" / "bench-quick"
LOGS = ROOT / ".cache" / "bench-logs"
STOP_GRACE_S = 20.0


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    module: str
    quick_args: tuple[str, ...]
    full_args: tuple[str, ...]
    expected_s: tuple[float, float]
    """Rough (quick, full) durations, only to pace the progress bar."""
    timeout_s: tuple[float, float]


STEPS: tuple[Step, ...] = (
    # Every step takes `--out DIR` (bench.outputs) and writes <DIR>/<name>.json there.
    Step("carbon_eval", "bench.carbon_eval", ("--quick",), (), (60, 1900), (300, 7200)),
    Step("extender_load", "bench.evaluation.load", ("--quick",), (), (40, 200), (300, 1800)),
    Step("extender_latency", "bench.extender_latency", ("--quick",), (), (40, 300), (300, 3600)),
    Step("forecast_mape", "bench.forecast_mape", ("--quick",), (), (20, 120), (300, 3600)),
    Step("deferral_eval", "bench.deferral_eval", ("--step", "97"), (), (20, 300), (300, 3600)),
    Step("fuzz_http", "bench.fuzz_http", ("--quick",), (), (15, 150), (300, 1800)),
    Step("scheduler_throughput", "bench.scheduler_throughput", ("--quick",), (), (90, 900), (240, 7200)),
)


@dataclass(frozen=True, slots=True)
class Outcome:
    name: str
    status: str  # ok | failed | missing | timeout
    seconds: float
    log: Path | None = None
    detail: str = ""


def _module_file(module: str) -> Path:
    return ROOT.joinpath(*module.split(".")).with_suffix(".py")


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the step's process group (its id is the step's PID), then SIGKILL after a grace period."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def run_step(step: Step, quick: bool, out: Path, bar: Progress, share: float, logs: Path = LOGS) -> Outcome:
    if not _module_file(step.module).is_file():
        bar.advance(share)
        return Outcome(step.name, "missing", 0.0, detail=f"{step.module} is not in this checkout")
    out.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    args = [*(step.quick_args if quick else step.full_args), "--out", str(out)]
    log = logs / f"{step.name}.log"
    env = dict(
        os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), MPLBACKEND="Agg"
    )
    expected = step.expected_s[0 if quick else 1]
    timeout = step.timeout_s[0 if quick else 1]
    started = time.monotonic()
    shown = 0.0
    with log.open("wb") as handle:
        proc = subprocess.Popen(
            [sys.executable, "-m", step.module, *args],
            cwd=ROOT,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            # Its own session, so a timeout can stop what it started too (control planes, extenders).
            start_new_session=True,
        )
        status = "ok"
        while proc.poll() is None:
            elapsed = time.monotonic() - started
            if elapsed > timeout:
                _stop_group(proc)
                status = "timeout"
                break
            # Pace the bar by the expected duration, never past 95 % of the step until it ends.
            want = share * min(0.95, elapsed / expected)
            if want > shown:
                bar.advance(want - shown, note=f"{step.name} {elapsed:.0f}s")
                shown = want
            time.sleep(0.5)
    bar.advance(share - shown, note=f"{step.name} done")
    seconds = time.monotonic() - started
    if status == "ok" and proc.returncode != 0:
        status = "failed"
    tail = ""
    if status != "ok":
        lines = log.read_text(errors="replace").strip().splitlines()
        tail = lines[-1] if lines else ""
    return Outcome(step.name, status, seconds, log, tail)


def main(argv: Sequence[str] | None = None) -> int:
    names = [s.name for s in STEPS]
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke sizes into .cache/bench-quick")
    parser.add_argument(
        "--only", action="append", choices=names, default=[], help="run only these (repeatable)"
    )
    parser.add_argument("--skip", action="append", choices=names, default=[], help="skip these (repeatable)")
    parser.add_argument(
        "--out", type=Path, help="results directory (default: bench/results, quick: .cache/bench-quick)"
    )
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument(
        "--report-only", action="store_true", help="only regenerate summary.md and the README block"
    )
    args = parser.parse_args(argv)
    out = (args.out or (QUICK_RESULTS if args.quick else RESULTS)).resolve()
    steps = [s for s in STEPS if (not args.only or s.name in args.only) and s.name not in args.skip]
    outcomes: list[Outcome] = []
    if not args.report_only:
        weights = {s.name: s.expected_s[0 if args.quick else 1] for s in steps}
        total = sum(weights.values()) or 1.0
        bar = Progress("bench", 1.0)
        for step in steps:
            outcome = run_step(step, args.quick, out, bar, weights[step.name] / total)
            outcomes.append(outcome)
        bar.close()
    # The README shows the committed full results only; a quick or custom run writes just its summary.
    readme = args.readme if out == RESULTS.resolve() else None
    summary, updated = write_report(out, readme)
    for o in outcomes:
        where = f" (log {o.log})" if o.log else ""
        print(f"{o.name:22} {o.status:8} {o.seconds:7.1f}s{where} {o.detail}")
    print(f"report: {summary}" + ("; README block updated" if updated else ""))
    return 0 if all(o.status in ("ok", "missing") for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
