"""A local control plane for humans: the e2e harness's etcd + kube-apiserver (+ a kube-scheduler).

    python -m hack.cluster up [--scheduler-name NAME --extender-url URL]   # prints KUBECONFIG=...
    python -m hack.cluster status
    python -m hack.cluster down

The processes outlive this command; their PIDs, logs and the kubeconfig sit in .cache/cluster/
(or --state-dir). `down` stops exactly those PIDs (SIGTERM, then SIGKILL), after checking that each
PID still runs the binary it was started as, so a recycled PID is never signalled.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import TypedDict

from tests.e2e.kubeharness import (  # importable as `python -m hack.cluster` runs from the repo root
    ControlPlane,
    Scheduler,
    locate_binaries,
    plain_scheduler_config,
    render_scheduler_config,
    scheduler_values,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_STATE = REPO_ROOT / ".cache" / "cluster"


class ProcessRecord(TypedDict):
    name: str
    pid: int
    argv0: str
    log: str


class State(TypedDict):
    server: str
    kubeconfig: str
    processes: list[ProcessRecord]


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _stop_pid(pid: int, argv0: str, grace: float = 10.0) -> str:
    if not _cmdline(pid) or _cmdline(pid)[0] != argv0:
        return "not running"
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if _cmdline(pid)[:1] != [argv0]:
            return "stopped"
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    return "killed"


def cmd_up(args: argparse.Namespace) -> int:
    state_file: Path = args.state_dir / "state.json"
    if state_file.exists():
        print(f"a cluster is already recorded in {state_file}: run `down` first", file=sys.stderr)
        return 1
    shutil.rmtree(args.state_dir, ignore_errors=True)
    args.state_dir.mkdir(parents=True)
    plane = ControlPlane(locate_binaries(), args.state_dir, die_with_parent=False)
    plane.start()
    processes = list(plane.processes)
    try:
        if args.scheduler_name:
            if args.extender_url:
                values = scheduler_values(args.scheduler_name, extender_url=args.extender_url)
                config = render_scheduler_config(values, args.state_dir)
            else:
                config = plain_scheduler_config(args.scheduler_name)
            sched = Scheduler(plane.binaries, config, plane.kubeconfig, args.state_dir, die_with_parent=False)
            processes.append(sched.process)
    except BaseException:
        plane.stop()
        raise
    state: State = {
        "server": plane.server,
        "kubeconfig": str(plane.kubeconfig),
        "processes": [
            {"name": p.name, "pid": p.pid, "argv0": p.argv[0], "log": str(p.log_path)} for p in processes
        ],
    }
    state_file.write_text(json.dumps(state, indent=2))
    print(f"export KUBECONFIG={plane.kubeconfig}")
    for proc in processes:
        print(f"# {proc.name}: PID {proc.pid}, log {proc.log_path}")
    return 0


def _load(state_dir: Path) -> State | None:
    state_file = state_dir / "state.json"
    if not state_file.exists():
        print(f"no cluster recorded in {state_file}")
        return None
    loaded: State = json.loads(state_file.read_text())
    return loaded


def cmd_status(args: argparse.Namespace) -> int:
    state = _load(args.state_dir)
    if state is None:
        return 1
    print(f"server {state['server']}, KUBECONFIG={state['kubeconfig']}")
    healthy = True
    for proc in state["processes"]:
        running = _cmdline(proc["pid"])[:1] == [proc["argv0"]]
        healthy &= running
        label = "running" if running else "NOT running"
        print(f"  {proc['name']}: PID {proc['pid']} {label} (log {proc['log']})")
    return 0 if healthy else 2


def cmd_down(args: argparse.Namespace) -> int:
    state = _load(args.state_dir)
    if state is None:
        return 0
    for proc in reversed(state["processes"]):
        print(f"{proc['name']} (PID {proc['pid']}): {_stop_pid(proc['pid'], proc['argv0'])}")
    (args.state_dir / "state.json").unlink()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE, help="PIDs, logs, certs, kubeconfig")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start etcd, kube-apiserver and optionally a kube-scheduler")
    up.add_argument("--scheduler-name", help="also start a kube-scheduler with this schedulerName")
    up.add_argument("--extender-url", help="configure it from the chart with this extender urlPrefix")
    sub.add_parser("status", help="show the recorded processes")
    sub.add_parser("down", help="stop the recorded processes by PID")
    args = parser.parse_args(argv)
    return {"up": cmd_up, "status": cmd_status, "down": cmd_down}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
