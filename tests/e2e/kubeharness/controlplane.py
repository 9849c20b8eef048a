"""The real control plane: upstream etcd and kube-apiserver on 127.0.0.1, built by hack/build-controlplane.sh.

Certificates, the admin token and the service-account key are generated for each run; RBAC is on,
so anything the extender can do here it was allowed to do through a real authorizer.
"""

from __future__ import annotations

import os
import secrets
import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from .certs import Pki
from .kubeapi import KubeApi
from .procs import ManagedProcess, free_port, http_get, wait_until

REPO_ROOT = Path(__file__).resolve().parents[3]
BUILD_SCRIPT = REPO_ROOT / "hack" / "build-controlplane.sh"
ADMIN_USER = "e2e-admin"


class BinariesUnavailable(RuntimeError):
    """The upstream binaries could not be built or found; the message carries the build's output."""


@dataclass(frozen=True, slots=True)
class Binaries:
    folder: Path

    @property
    def etcd(self) -> Path:
        return self.folder / "etcd"

    @property
    def kube_apiserver(self) -> Path:
        return self.folder / "kube-apiserver"

    @property
    def kube_scheduler(self) -> Path:
        return self.folder / "kube-scheduler"

    @property
    def kube_controller_manager(self) -> Path:
        return self.folder / "kube-controller-manager"

    @property
    def kubelet(self) -> Path:
        return self.folder / "kubelet"


def cache_dir() -> Path:
    """Where Go-built harness binaries are cached: $CARBON_E2E_CACHE, else under ~/.cache (the Makefile's)."""
    default = Path.home() / ".cache/carbon-aware-scheduler/controlplane"
    return Path(os.environ.get("CARBON_E2E_CACHE") or default)


def locate_binaries(timeout: float = 3600.0) -> Binaries:
    """Run the build script: a cache hit prints the folder at once, a cold cache builds (with progress).

    ``CARBON_E2E_BIN_DIR`` points at a folder of prebuilt binaries instead (no Go toolchain needed).
    """
    prebuilt = os.environ.get("CARBON_E2E_BIN_DIR")
    if prebuilt:
        binaries = Binaries(Path(prebuilt))
    else:
        if shutil.which("go") is None:
            raise BinariesUnavailable("`go` is not on PATH: hack/build-controlplane.sh needs Go 1.25+")
        env = {**os.environ, "CARBON_E2E_CACHE": str(cache_dir())}
        proc = subprocess.run(
            [str(BUILD_SCRIPT)], capture_output=True, text=True, env=env, timeout=timeout, check=False
        )
        if proc.returncode != 0:
            raise BinariesUnavailable(f"{BUILD_SCRIPT} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
        binaries = Binaries(Path(proc.stdout.strip().splitlines()[-1]))
    missing = [
        p
        for p in (binaries.etcd, binaries.kube_apiserver, binaries.kube_scheduler)
        if not os.access(p, os.X_OK)
    ]
    if missing:
        raise BinariesUnavailable(f"missing binaries: {', '.join(map(str, missing))}")
    return binaries


def _get_ok(url: str, token: str | None = None, ca_file: Path | None = None, timeout: float = 2.0) -> bool:
    context = ssl.create_default_context(cafile=str(ca_file)) if ca_file else None
    headers = {"Authorization": f"Bearer {token}"} if token else None
    return http_get(url, headers=headers, context=context, timeout=timeout)[0] == 200


class ControlPlane:
    """etcd + kube-apiserver under ``workdir`` (data, certs, logs); a context manager, or call stop()."""

    def __init__(
        self,
        binaries: Binaries,
        workdir: Path,
        *,
        die_with_parent: bool = True,
        apiserver_args: tuple[str, ...] = (),
    ) -> None:
        self.binaries = binaries
        self._apiserver_args = apiserver_args
        self.workdir = workdir
        self.logs = workdir / "logs"
        self._die_with_parent = die_with_parent
        self.processes: list[ManagedProcess] = []
        self.pki = Pki(workdir / "pki")
        self.token = secrets.token_hex(24)
        self.etcd_port = free_port()
        self.apiserver_port = free_port()
        self.server = f"https://127.0.0.1:{self.apiserver_port}"
        self.kubeconfig = workdir / "kubeconfig.yaml"
        self.api = KubeApi(self.server, self.token, self.pki.ca_file)

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 90.0) -> None:
        try:
            self._start_etcd(timeout)
            self._start_apiserver(timeout)
        except BaseException:
            self.stop()
            raise
        self._write_kubeconfig()

    def _start_etcd(self, timeout: float) -> None:
        peer = free_port()
        client_url = f"http://127.0.0.1:{self.etcd_port}"
        peer_url = f"http://127.0.0.1:{peer}"
        etcd = ManagedProcess(
            "etcd",
            [
                str(self.binaries.etcd),
                "--name=e2e",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=e2e={peer_url}",
                # Test data is thrown away: skipping fsync makes the apiserver several times faster on
                # a shared CI disk. Never in production.
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
            self.logs / "etcd.log",
            die_with_parent=self._die_with_parent,
        )
        self.processes.append(etcd)
        wait_until(
            lambda: _get_ok(f"{client_url}/health"), timeout=timeout, what="etcd /health", watch=[etcd]
        )

    def _start_apiserver(self, timeout: float) -> None:
        serving = self.pki.issue(
            "apiserver", "127.0.0.1", "localhost", "kubernetes", "kubernetes.default.svc"
        )
        sa_key = self.pki.service_account_key()
        tokens = self.workdir / "tokens.csv"
        # token,user,uid,"groups": system:masters bypasses RBAC, like a cluster-admin kubeconfig.
        tokens.write_text(f'{self.token},{ADMIN_USER},{ADMIN_USER},"system:masters"\n')
        tokens.chmod(0o600)
        apiserver = ManagedProcess(
            "kube-apiserver",
            [
                str(self.binaries.kube_apiserver),
                f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.apiserver_port}",
                f"--tls-cert-file={serving.cert}",
                f"--tls-private-key-file={serving.key}",
                f"--client-ca-file={self.pki.ca_file}",
                f"--token-auth-file={tokens}",
                "--authorization-mode=RBAC",
                "--service-cluster-ip-range=10.96.0.0/16",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-account-key-file={sa_key}",
                f"--service-account-signing-key-file={sa_key}",
                # No kubelet can be reached at 127.0.0.1 as the "kubernetes" Service endpoint; with
                # the reconciler on, the apiserver would log an error for it every 10 s.
                "--endpoint-reconciler-type=none",
                f"--cert-dir={self.workdir / 'apiserver-certs'}",
                *self._apiserver_args,
            ],
            self.logs / "kube-apiserver.log",
            die_with_parent=self._die_with_parent,
        )
        self.processes.append(apiserver)
        wait_until(
            lambda: _get_ok(f"{self.server}/readyz", self.token, self.pki.ca_file),
            timeout=timeout,
            what="kube-apiserver /readyz",
            watch=self.processes,
            interval=0.25,
            context=self._readyz_verbose,
        )

    def _readyz_verbose(self) -> str:
        """Which readiness checks still fail: the one thing worth reading when the apiserver is slow."""
        headers = {"Authorization": f"Bearer {self.token}"}
        context = ssl.create_default_context(cafile=str(self.pki.ca_file))
        try:
            status, body = http_get(f"{self.server}/readyz?verbose", headers=headers, context=context)
        except OSError as exc:
            return f"/readyz?verbose: {exc}"
        failing = [line for line in body.decode(errors="replace").splitlines() if "[-]" in line]
        return f"/readyz?verbose answered {status}; failing checks: {failing or 'none listed'}"

    def _write_kubeconfig(self) -> None:
        self.write_kubeconfig(self.kubeconfig, self.token, ADMIN_USER)

    def write_kubeconfig(self, path: Path, token: str, user: str) -> Path:
        """A kubeconfig for this apiserver that authenticates with ``token`` (admin or a ServiceAccount)."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "e2e",
                    "cluster": {"server": self.server, "certificate-authority": str(self.pki.ca_file)},
                }
            ],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": user}}],
            "current-context": "e2e",
        }
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path

    def stop(self) -> None:
        """Stop in reverse start order (apiserver before etcd), each by PID."""
        for process in reversed(self.processes):
            process.stop()

    def describe(self) -> str:
        return "\n".join(p.describe(20) for p in self.processes)
