"""Typed settings of carbon-rebalancer, with their documented defaults.

Every field is a CLI flag (``--margin-abs``) and an environment variable (``CARBON_REBALANCER_MARGIN_ABS``);
``rebalancer.__main__`` builds the parser from this dataclass (carbon_common.settings), with each
field's docstring as its --help. The fields of the groups (``serving``, ``leader``) are flags of their
own name: ``leader.lease_duration`` is ``--lease-duration``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from carbon_common.leader import LeaderSettings
from carbon_common.settings import check_log_level
from rebalancer.policy import PolicyConfig

ENV_PREFIX = "CARBON_REBALANCER_"


@dataclass(frozen=True, slots=True)
class ServingSettings:
    """The one listener: /healthz, /readyz, /metrics."""

    host: str = "0.0.0.0"
    """Listen address of /healthz, /readyz and /metrics (probes and Prometheus reach it by pod IP)."""
    port: int = 8095
    """Listen port of /healthz, /readyz and /metrics."""


@dataclass(frozen=True, slots=True)
class RebalancerSettings:
    serving: ServingSettings = ServingSettings()
    """The listener; its flags are --host and --port."""
    kubeconfig: Path | None = None
    """Kubeconfig; default in-cluster config, else ~/.kube/config."""
    feed_url: str = "http://127.0.0.1:8080"
    """carbon-feed base URL; /v1/snapshot (current readings and forecasts) is read every --interval."""
    feed_timeout: float = 5.0
    """Seconds per /v1/snapshot call; a failed call counts as "no data" for that run (nothing moves)."""
    max_data_age: float = 10800.0
    """Seconds a reading stays usable, measured from the end of its period (the extender's default)."""
    zone_label: str = "carbon-aware.io/zone"
    """Node label naming a node's zone (the extender's --zone-label)."""
    dry_run: bool = True
    """Only report (log, Events, metrics) what would be evicted; --no-dry-run evicts."""
    interval: float = 60.0
    """Seconds between runs (read the feed, decide, evict)."""
    margin_abs: float = 50.0
    """g/kWh by which a target zone must beat the pod's zone."""
    margin_rel: float = 0.2
    """Fraction of the pod's zone intensity by which a target must beat it too (0.2: 20% greener)."""
    sustain: float = 1800.0
    """Seconds a target must have beaten the pod's zone, in every run's reading, before a move."""
    horizon: float = 7200.0
    """Seconds ahead in which the forecast must not show the target as dirty as the pod's zone."""
    cooldown: float = 21600.0
    """Seconds a pod is left alone after it started (a moved pod is a new pod)."""
    max_per_run: int = 2
    """Evictions per run, cluster-wide."""
    max_per_namespace: int = 1
    """Evictions per namespace per run."""
    max_per_owner: int = 1
    """Evictions per owner (ReplicaSet, StatefulSet, Job) per run; an owner with a pod not Ready or
    terminating gets none."""
    allow_local_storage: bool = False
    """Also move pods with emptyDir or hostPath volumes (their data is lost)."""

    leader: LeaderSettings = field(default_factory=lambda: LeaderSettings(lease_name="carbon-rebalancer"))
    """Leader election; its flags are --leader-elect, --lease-namespace and so on."""

    log_level: str = "info"
    """debug, info, warning or error."""


def policy_config(settings: RebalancerSettings) -> PolicyConfig:
    s = settings
    return PolicyConfig(
        margin_abs=s.margin_abs,
        margin_rel=s.margin_rel,
        sustain=timedelta(seconds=s.sustain),
        horizon=timedelta(seconds=s.horizon),
        cooldown=timedelta(seconds=s.cooldown),
        max_per_run=s.max_per_run,
        max_per_namespace=s.max_per_namespace,
        max_per_owner=s.max_per_owner,
    )


def validate(settings: RebalancerSettings) -> list[str]:
    """Every problem with a settings combination, phrased with the flag names; empty when valid."""
    s, leader = settings, settings.leader
    problems: list[str] = []
    problems += leader.problems()
    if s.interval <= 0 or s.feed_timeout <= 0 or s.max_data_age <= 0:
        problems.append("--interval, --feed-timeout and --max-data-age must be positive")
    if s.margin_abs < 0 or not 0 <= s.margin_rel < 1:
        problems.append("need --margin-abs >= 0 and 0 <= --margin-rel < 1")
    if min(s.sustain, s.horizon, s.cooldown) < 0:
        problems.append("--sustain, --horizon and --cooldown must be zero or more seconds")
    if min(s.max_per_run, s.max_per_namespace, s.max_per_owner) < 0:
        problems.append("--max-per-run, --max-per-namespace and --max-per-owner must be zero or more")
    if not s.feed_url.startswith(("http://", "https://")):
        problems.append(f"--feed-url must be an http(s) URL, got {s.feed_url!r}")
    problems += check_log_level(s.log_level, "--log-level")
    return problems
