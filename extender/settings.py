"""Typed settings of the extender, with their documented defaults.

Every field is a CLI flag (``--max-data-age``) and an environment variable (``CARBON_EXTENDER_MAX_DATA_AGE``);
``extender.__main__`` builds the parser from this dataclass (carbon_common.settings), with each field's
docstring as its --help, so the three never drift apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from carbon_common.settings import check_log_level

ScoringMode = Literal["relative", "absolute"]
CapUnknown = Literal["allow", "deny"]
EventLoop = Literal["auto", "uvloop", "asyncio"]


@dataclass(frozen=True, slots=True)
class ExtenderSettings:
    # --- serving ---
    host: str = "127.0.0.1"
    """Listen address: loopback suits the sidecar shape (scheduler in the same pod); 0.0.0.0 a Service."""
    port: int = 8888
    """Listen port (kube-scheduler's urlPrefix points here)."""
    tls_cert: Path | None = None
    """PEM certificate chain; with --tls-key enables HTTPS. Reloaded when the file changes."""
    tls_key: Path | None = None
    """PEM private key for --tls-cert. Reloaded when the file changes."""
    client_ca: Path | None = None
    """PEM CA bundle: when set, clients must present a certificate it signed (mTLS)."""
    max_body_bytes: int = 64 * 1024 * 1024
    """Request body limit. 5,000 full Node objects with kubelet's maximum of 50 images each take
    50 MiB; one request at the limit peaks the process near 500 MiB (docs/extender.md)."""
    metrics_port: int | None = None
    """Plain-HTTP port serving only /healthz, /readyz and /metrics, for probes and Prometheus when
    the verbs listen on loopback or behind mTLS; off when unset."""
    metrics_host: str = "0.0.0.0"
    """Listen address of --metrics-port (never the verbs: those stay on --host/--port). All addresses
    by default: the kubelet's probes and Prometheus connect to the pod IP, never to loopback."""
    read_timeout: float = 10.0
    """Seconds a client gets to send a request's headers, and again its body; slower connections are
    closed (a slow-client defence), on both ports."""
    max_connections: int = 1000
    """Open connections per listener; connections beyond it are closed as soon as they are accepted."""

    # --- nodes ---
    zone_label: str = "carbon-aware.io/zone"
    """Node label that names the node's carbon zone (e.g. DE, US-CAL-CISO). Wins over the region map."""
    region_label: str = "topology.kubernetes.io/region"
    """Node label with the cloud region, mapped to a zone when the zone label is absent."""
    region_map_file: Path | None = None
    """JSON object {cloud region: carbon zone} merged over the bundled map for AWS, GCP and Azure."""
    nodes_file: Path | None = None
    """Static mode: a v1 NodeList (`kubectl get nodes -o json`) instead of watching the API server."""
    kubeconfig: Path | None = None
    """Kubeconfig for the node cache and binding; default in-cluster config, else ~/.kube/config."""

    # --- carbon data ---
    snapshot_file: Path | None = None
    """Snapshot JSON written by carbon-feed (shared volume). Reloaded when it changes."""
    feed_url: str | None = None
    """carbon-feed base URL; /v1/snapshot is polled with ETag."""
    feed_poll_interval: float = 30.0
    """Seconds between polls of --feed-url (errors retry sooner, with backoff)."""
    max_data_age: float = 3 * 3600.0
    """Seconds after the end of a zone's reading period (observedAt + periodSeconds) when the reading is
    too old to steer by."""

    # --- policy ---
    scoring: ScoringMode = "relative"
    """relative: greenest candidate 10, dirtiest 0, linear between. absolute: fixed g/kWh scale below."""
    absolute_best: float = 50.0
    """absolute mode: intensity (gCO2eq/kWh) at or below which a node scores 10."""
    absolute_worst: float = 800.0
    """absolute mode: intensity at or above which a node scores 0."""
    neutral_score: int = 5
    """Score for nodes whose zone or data is unknown or stale, and for every node when nothing is known."""
    cap_unknown: CapUnknown = "allow"
    """With a max-intensity annotation, what happens to nodes whose intensity is unknown."""
    annotation_prefix: str = "carbon-aware.io/"
    """Prefix of the pod annotations read (opt-out, max-intensity) and written (decision)."""

    # --- binding ---
    annotate_decision: bool = True
    """Patch the bound pod with a carbon-aware.io/decision annotation (zone, intensity, time)."""
    bind_timeout: float = 4.0
    """Seconds for the Binding call; below the scheduler's 5 s extender httpTimeout."""
    api_connections: int = 64
    """Keep-alive HTTP/1.1 connections to the API server, so Bindings in flight at once. kube-scheduler
    binds concurrently over HTTP/2; a smaller pool queues Bindings whenever the API server is slow."""

    log_level: str = "info"
    """debug, info, warning or error. debug logs one line per decision with the numbers behind it."""
    event_loop: EventLoop = "auto"
    """auto: uvloop when it is installed (it is a dependency on Linux), else asyncio's own loop.
    Each scheduling cycle waits for our answers, so loop overhead is scheduler latency."""


ENV_PREFIX = "CARBON_EXTENDER_"


def validate(settings: ExtenderSettings) -> list[str]:
    """Every problem with a settings combination, phrased with the flag names; empty when valid."""
    problems: list[str] = []
    s = settings
    if not 0 <= s.port <= 65535:
        problems.append(f"--port {s.port} is not a TCP port")
    if s.metrics_port is not None:
        if not 1 <= s.metrics_port <= 65535:
            problems.append(f"--metrics-port {s.metrics_port} is not a TCP port (1..65535)")
        elif s.metrics_port == s.port:
            problems.append(f"--metrics-port must differ from --port (both {s.port})")
    if not s.metrics_host:
        problems.append("--metrics-host must not be empty")
    if (s.tls_cert is None) != (s.tls_key is None):
        problems.append("--tls-cert and --tls-key must be given together")
    if s.client_ca is not None and s.tls_cert is None:
        problems.append("--client-ca needs --tls-cert and --tls-key (mTLS runs over TLS)")
    if s.max_body_bytes <= 0:
        problems.append("--max-body-bytes must be positive")
    if s.max_connections < 1:
        problems.append(f"--max-connections must be at least 1, got {s.max_connections}")
    if s.api_connections < 2:
        # One connection is held by the node watch; binds need at least one more.
        problems.append(f"--api-connections must be at least 2, got {s.api_connections}")
    if s.snapshot_file is not None and s.feed_url is not None:
        problems.append("give either --snapshot-file or --feed-url, not both")
    if s.feed_url is not None and not s.feed_url.startswith(("http://", "https://")):
        problems.append(f"--feed-url must be an http:// or https:// URL, got {s.feed_url!r}")
    for name in ("feed_poll_interval", "max_data_age", "bind_timeout", "read_timeout"):
        value = getattr(s, name)
        if not math.isfinite(value) or value <= 0:
            problems.append(f"--{name.replace('_', '-')} must be a positive number of seconds, got {value}")
    if not 0 <= s.neutral_score <= 10:
        problems.append(f"--neutral-score must be within 0..10, got {s.neutral_score}")
    if not (math.isfinite(s.absolute_best) and math.isfinite(s.absolute_worst)) or not (
        0 <= s.absolute_best < s.absolute_worst
    ):
        problems.append("--absolute-best must be below --absolute-worst (both gCO2eq/kWh, non-negative)")
    if s.scoring not in ("relative", "absolute"):
        problems.append(f"--scoring must be relative or absolute, got {s.scoring!r}")
    if s.cap_unknown not in ("allow", "deny"):
        problems.append(f"--cap-unknown must be allow or deny, got {s.cap_unknown!r}")
    problems += check_log_level(s.log_level, "--log-level")
    if not s.zone_label or not s.annotation_prefix:
        problems.append("--zone-label and --annotation-prefix must not be empty")
    return problems
