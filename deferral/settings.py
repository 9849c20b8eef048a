"""Typed settings of carbon-deferral, with their documented defaults.

Every field is a CLI flag (``--replan-interval``) and an environment variable
(``CARBON_DEFERRAL_REPLAN_INTERVAL``); ``deferral.__main__`` builds the parser from this dataclass.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class DeferralSettings:
    # --- serving (webhook, /healthz, /readyz, /metrics) ---
    host: str = "0.0.0.0"
    """The API server calls the webhook through a Service: listen on every interface."""
    port: int = 8443
    tls_cert: Path | None = None
    """PEM certificate chain for the webhook. The API server only calls webhooks over HTTPS."""
    tls_key: Path | None = None
    webhook: bool = True
    """Serve POST /mutate."""

    # --- controller ---
    controller: bool = True
    """Run the green-window controller (pod watch, planner, releaser)."""
    kubeconfig: Path | None = None
    """Kubeconfig; default in-cluster config, else ~/.kube/config."""
    feed_url: str = "http://127.0.0.1:8080"
    """carbon-feed base URL; /v1/best is asked for each waiting pod."""
    feed_timeout: float = 5.0
    zones: str = ""
    """Comma-separated zones the cluster can run in (default: every zone the feed knows)."""
    annotation_prefix: str = "carbon-aware.io/"
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

    # --- leader election (coordination.k8s.io/v1 Lease) ---
    leader_elect: bool = True
    lease_namespace: str = "default"
    """Usually the controller's own namespace (set from the downward API)."""
    lease_name: str = "carbon-deferral"
    identity: str = ""
    """Unique per replica; default: the host name (the pod name in a Deployment)."""
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    log_level: str = "info"


def effective_guard_margin(settings: DeferralSettings) -> float:
    """--guard-margin, or its default: how late the controller itself can be (a tick, plus a
    failover after a leader crash when leader election is on)."""
    if settings.guard_margin is not None:
        return settings.guard_margin
    return settings.tick + (settings.lease_duration if settings.leader_elect else 0.0)
