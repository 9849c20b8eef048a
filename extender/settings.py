"""Typed settings of the extender, with their documented defaults.

Every field is a CLI flag (``--max-data-age``) and an environment variable (``CARBON_EXTENDER_MAX_DATA_AGE``);
``extender.__main__`` builds the parser from this dataclass so the three never drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

ScoringMode = Literal["relative", "absolute"]
CapUnknown = Literal["allow", "deny"]


@dataclass(frozen=True, slots=True)
class ExtenderSettings:
    # --- serving ---
    host: str = "127.0.0.1"
    """Listen address: loopback suits the sidecar shape (scheduler in the same pod); 0.0.0.0 a Service."""
    port: int = 8888
    tls_cert: Path | None = None
    """PEM certificate chain; with --tls-key enables HTTPS. Reloaded when the file changes."""
    tls_key: Path | None = None
    client_ca: Path | None = None
    """PEM CA bundle: when set, clients must present a certificate it signed (mTLS)."""
    max_body_bytes: int = 256 * 1024 * 1024
    """Request body limit. 5,000 full Node objects with image lists reach ~100 MiB."""

    # --- nodes ---
    zone_label: str = "carbon-aware.io/zone"
    """Node label that names the node's carbon zone (e.g. DE, US-CAL-CISO). Wins over the region map."""
    region_label: str = "topology.kubernetes.io/region"
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
    max_data_age: float = 3 * 3600.0
    """Seconds after a zone's observedAt when its reading is too old to steer by (hourly data, ~1 h lag)."""

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

    # --- binding ---
    annotate_decision: bool = True
    """Patch the bound pod with a carbon-aware.io/decision annotation (zone, intensity, time)."""
    bind_timeout: float = 4.0
    """Seconds for the Binding call; below the scheduler's 5 s extender httpTimeout."""

    log_level: str = "info"
