"""PNG plots of the evaluation (matplotlib, Agg: no display needed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
# The backend is chosen before pyplot loads so no display is ever needed.
import matplotlib.pyplot as plt

COLORS = {"baseline": "#888888", "ours": "#2a9d8f", "defer": "#264653", "oracle": "#e9c46a"}


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def policy_bars(policies: Sequence[Mapping[str, Any]], path: Path, title: str) -> Path:
    """Mean intensity per policy, with the reduction vs zone-agnostic written on each bar."""
    names = [p["label"] for p in policies]
    values = [p["mean_intensity"] for p in policies]
    colors = [COLORS.get(p["family"], "#2a9d8f") for p in policies]
    fig, ax = plt.subplots(figsize=(9, 4.8))
    bars = ax.barh(names[::-1], values[::-1], color=colors[::-1])
    for bar, policy in zip(bars, policies[::-1], strict=True):
        text = f"{policy['mean_intensity']:.0f}"
        if policy["family"] != "baseline":
            text += f"  (-{policy['reduction']:.1%})"
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, " " + text, va="center", fontsize=9)
    ax.set_xlabel("energy-weighted mean carbon intensity (gCO2eq/kWh), lower is better")
    ax.set_title(title, fontsize=10)
    ax.set_xlim(0, max(values) * 1.3)
    return _save(fig, path)


def savings_vs_weight(
    series: Mapping[str, Sequence[tuple[int, float]]], oracle: float, path: Path, title: str
) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, points in series.items():
        xs, ys = zip(*points, strict=True)
        ax.plot(xs, [y * 100 for y in ys], marker="o", label=name)
        ax.set_xticks(list(xs))
    ax.axhline(oracle * 100, color=COLORS["oracle"], linestyle="--", label="oracle (greenest feasible zone)")
    ax.set_xlabel("extender weight in KubeSchedulerConfiguration")
    ax.set_ylabel("CO2 reduction vs zone-agnostic (%)")
    ax.set_title(title, fontsize=10)
    ax.set_ylim(0, oracle * 100 * 1.15)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def savings_vs_slack(rows: Sequence[Mapping[str, Any]], path: Path, title: str) -> Path:
    slacks = [r["slack_h"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot(
        slacks,
        [r["reduction"] * 100 for r in rows],
        marker="o",
        color=COLORS["defer"],
        label="ours: deferral planner on the feed's baseline forecast",
    )
    ax.plot(
        slacks,
        [r["oracle_reduction"] * 100 for r in rows],
        marker="s",
        linestyle="--",
        color=COLORS["oracle"],
        label="oracle: greenest start in the slack (actual values)",
    )
    ax.set_xscale("log", base=2)
    ax.set_xticks(slacks, [str(s) for s in slacks])
    ax.set_xlabel("slack (hours a 1-hour job may wait)")
    ax.set_ylabel("CO2 reduction vs running at once (%)")
    ax.set_title(title, fontsize=10)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    return _save(fig, path)


def latency_vs_nodes(
    series: Mapping[str, Sequence[tuple[int, float]]],
    path: Path,
    title: str,
    ylabel: str,
    log_y: bool = False,
) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, points in series.items():
        xs, ys = zip(*sorted(points), strict=True)
        ax.plot(xs, ys, marker="o", label=name)
    ax.set_xscale("log")
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel("nodes per request")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)
