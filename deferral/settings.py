"""Typed settings of carbon-deferral, with their documented defaults.

Every field is a CLI flag (``--replan-interval``) and an environment variable
(``CARBON_DEFERRAL_REPLAN_INTERVAL``); ``deferral.__main__`` builds the parser from this dataclass
(carbon_common.settings), with each field's docstring as its --help. The fields of the groups
(``serving``, ``leader``) are flags of their own name: ``leader.lease_duration`` is ``--lease-duration``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from carbon_common.leader import LeaderSettings
from carbon_common.settings import check_log_level

ENV_PREFIX = "CARBON_DEFERRAL_"


@dataclass(frozen=True, slots=True)
class ServingSettings:
    """The one listener: webhook, /healthz, /readyz, /metrics."""

    host: str = "0.0.0.0"
    """The API server calls the webhook through a Service: listen on every interface."""
    port: int = 8443
    """Listen port of the webhook and of /healthz, /readyz, /metrics."""
    tls_cert: Path | None = None
    """PEM certificate chain for the webhook. The API server only calls webhooks over HTTPS."""
    tls_key: Path | None = None
    """PEM private key for --tls-cert. Both are reloaded when cert-manager rotates them."""


@dataclass(frozen=True, slots=True)
class DeferralSettings:
    serving: ServingSettings = ServingSettings()
    """The listener; its flags are --host, --port, --tls-cert and --tls-key."""
    webhook: bool = True
    """Serve POST /mutate."""
    controller: bool = True
    """Run the green-window controller (pod watch, planner, releaser)."""
    kubeconfig: Path | None = None
    """Kubeconfig; default in-cluster config, else ~/.kube/config."""
    feed_url: str = "http://127.0.0.1:8080"
    """carbon-feed base URL; /v1/best is asked for each waiting pod."""
    feed_timeout: float = 5.0
    """Seconds per /v1/best call."""
    zones: str = ""
    """Comma-separated zones the cluster can run in (default: every zone the feed knows)."""
    annotation_prefix: str = "carbon-aware.io/"
    """Prefix of the pod annotations read (deadline, duration) and written (plan)."""
    zone_label: str = "carbon-aware.io/zone"
    """Node label naming a node's zone (the extender's --zone-label): capacity-aware planning counts
    each labelled node's allocatable CPU in its zone."""
    tick: float = 1.0
    """Seconds between release checks: the most a pod starts late past its planned time."""
    replan_interval: float = 900.0
    """Seconds between forecasts for each waiting pod."""
    max_concurrent_releases: int = 16
    """Gate removals (PATCHes) in flight at once: after a failover many pods can be due together."""
    guard_margin: float | None = None
    """Seconds before deadline - duration at which the deadline guard releases a pod, so that a late
    release still finishes in time. Default: --tick + --lease-duration (a tick's lateness plus a
    leader failover after a crash); --tick without leader election."""

    leader: LeaderSettings = field(default_factory=lambda: LeaderSettings(lease_name="carbon-deferral"))
    """Leader election; its flags are --leader-elect, --lease-namespace and so on."""

    log_level: str = "info"
    """debug, info, warning or error."""


def effective_guard_margin(settings: DeferralSettings) -> float:
    """--guard-margin, or its default: how late the controller itself can be (a tick, plus a
    failover after a leader crash when leader election is on)."""
    if settings.guard_margin is not None:
        return settings.guard_margin
    leader = settings.leader
    return settings.tick + (leader.lease_duration if leader.leader_elect else 0.0)


def validate(settings: DeferralSettings) -> list[str]:
    """Every problem with a settings combination, phrased with the flag names; empty when valid."""
    s, leader = settings, settings.leader
    problems: list[str] = []
    if (s.serving.tls_cert is None) != (s.serving.tls_key is None):
        problems.append("--tls-cert and --tls-key go together")
    problems += leader.problems()
    if s.max_concurrent_releases < 1:
        problems.append(f"--max-concurrent-releases must be at least 1, got {s.max_concurrent_releases}")
    if s.tick <= 0 or s.replan_interval <= 0:
        problems.append("--tick and --replan-interval must be positive")
    if s.guard_margin is not None and s.guard_margin < 0:
        problems.append(f"--guard-margin must be zero or more seconds, got {s.guard_margin:g}")
    problems += check_log_level(s.log_level, "--log-level")
    return problems
