"""Our own services as real processes (extender, carbon-feed) and a real Prometheus scraping them."""

from __future__ import annotations

import json
import ssl
import sys
import urllib.parse
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from carbon_common.snapshot import Snapshot, ZoneReading, write_snapshot_atomic
from carbon_common.timeutil import utcnow

from .certs import CertPair
from .controlplane import REPO_ROOT
from .procs import ManagedProcess, free_port, http_get, wait_until

PYTHON = REPO_ROOT / ".venv" / "bin" / "python"
PROMETHEUS = Path("/usr/bin/prometheus")


def write_snapshot(
    path: Path, intensities: Mapping[str, float], *, age: timedelta = timedelta(minutes=5)
) -> None:
    """The feed's file contract, written atomically; ``age`` back-dates observedAt (staleness tests)."""
    observed = utcnow() - age
    zones = {
        zone: ZoneReading(zone=zone, intensity=value, observed_at=observed, source="e2e")
        for zone, value in intensities.items()
    }
    write_snapshot_atomic(path, Snapshot(generated_at=utcnow(), zones=zones))


def _python() -> str:
    return str(PYTHON) if PYTHON.exists() else sys.executable


class HttpService:
    """A Python service of ours started as ``python -m <module> <args>``, ready when /readyz answers 200."""

    def __init__(
        self,
        name: str,
        module: str,
        args: Sequence[str],
        log_path: Path,
        port: int,
        *,
        scheme: str = "http",
        ssl_context: ssl.SSLContext | None = None,
        die_with_parent: bool = True,
        timeout: float = 30.0,
    ) -> None:
        self.name = name
        self.port = port
        self.base_url = f"{scheme}://127.0.0.1:{port}"
        self._ssl = ssl_context
        self._timeout = timeout
        self.process = ManagedProcess(
            name, [_python(), "-m", module, *args], log_path, cwd=REPO_ROOT, die_with_parent=die_with_parent
        )
        self.wait_ready()

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        return http_get(self.base_url + path, context=self._ssl, timeout=timeout)

    def wait_ready(self) -> None:
        wait_until(
            lambda: self.get("/readyz")[0] == 200,
            timeout=self._timeout,
            what=f"{self.name} /readyz",
            watch=[self.process],
            interval=0.1,
        )

    def metrics(self) -> str:
        return self.get("/metrics")[1].decode()

    def restart(self) -> None:
        self.process.start()
        self.wait_ready()

    def kill(self) -> None:
        self.process.kill()

    def stop(self) -> None:
        self.process.stop()


def start_extender(
    *,
    kubeconfig: Path,
    snapshot_file: Path | None,
    log_dir: Path,
    extra_args: Sequence[str] = (),
    tls: CertPair | None = None,
    ca_file: Path | None = None,
    client_ca: Path | None = None,
    probe_cert: CertPair | None = None,
    die_with_parent: bool = True,
) -> HttpService:
    """``python -m extender`` on a free loopback port; flags are the fields of extender.settings.

    ``tls`` serves HTTPS with that pair (verified by the harness against ``ca_file``); ``client_ca``
    turns on mTLS, and then the harness's own probes present ``probe_cert``.
    """
    port = free_port()
    args = ["--host", "127.0.0.1", "--port", str(port), "--kubeconfig", str(kubeconfig)]
    if snapshot_file is not None:
        args += ["--snapshot-file", str(snapshot_file)]
    context = None
    if tls is not None:
        args += ["--tls-cert", str(tls.cert), "--tls-key", str(tls.key)]
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        if probe_cert is not None:
            context.load_cert_chain(str(probe_cert.cert), str(probe_cert.key))
    if client_ca is not None:
        args += ["--client-ca", str(client_ca)]
    return HttpService(
        f"extender:{port}",
        "extender",
        [*args, *extra_args],
        log_dir / f"extender-{port}.log",
        port,
        scheme="https" if tls else "http",
        ssl_context=context,
        die_with_parent=die_with_parent,
    )


class Prometheus:
    """Debian's /usr/bin/prometheus scraping loopback targets every second, queried through its HTTP API."""

    def __init__(self, targets: Mapping[str, Sequence[str]], workdir: Path, *, timeout: float = 30.0) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": list(addresses)}]}
                for job, addresses in targets.items()
            ],
        }
        config_file = workdir / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(config))
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.process = ManagedProcess(
            "prometheus",
            [
                str(PROMETHEUS),
                f"--config.file={config_file}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            workdir / "logs" / "prometheus.log",
        )
        wait_until(
            lambda: self._get("/-/ready") is not None,
            timeout=timeout,
            what="prometheus /-/ready",
            watch=[self.process],
            interval=0.2,
        )

    def _get(self, path: str) -> bytes:
        status, body = http_get(self.base_url + path)
        if status != 200:
            raise AssertionError(f"prometheus {path}: HTTP {status}: {body[:500]!r}")
        return body

    def query(self, promql: str) -> list[dict[str, Any]]:
        """Instant query; the ``result`` vector (raises on a PromQL error)."""
        body = json.loads(self._get("/api/v1/query?" + urllib.parse.urlencode({"query": promql})))
        if body.get("status") != "success":
            raise AssertionError(f"prometheus query {promql!r} failed: {body}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def targets_up(self) -> dict[str, str]:
        body = json.loads(self._get("/api/v1/targets"))
        return {t["scrapeUrl"]: t["health"] for t in body["data"]["activeTargets"]}

    def stop(self) -> None:
        self.process.stop()
