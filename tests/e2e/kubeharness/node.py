"""A real node on 127.0.0.1: containerd and runc from Debian, kubelet and kube-controller-manager built
from the control plane's pin. Together with the control plane it runs real pods (the chart's), with
their probes, security contexts and service-account tokens.

What it took on these machines (cgroup v1, no CAP_SYS_RESOURCE, no bridge networks) is listed in
docs/e2e.md; each setting below says why it is there. Pods that should run here need hostNetwork
(the CNI plugin gives other pods only `lo`): see tests/node/hostnet.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from .controlplane import REPO_ROOT, ControlPlane
from .procs import ManagedProcess, free_port, wait_until

CNI_PLUGIN = REPO_ROOT / "hack" / "node" / "cni-noop"
LOOPBACK_PLUGIN = Path("/usr/lib/cni/loopback")
NODE_NAME = "carbon-node"


def _containerd_config(
    root: Path, state: Path, socket: Path, cni_bin: Path, cni_conf: Path, pause: str
) -> str:
    # TOML by hand: three tables, and no TOML writer in the standard library.
    return f"""version = 2
root = "{root}"
state = "{state}"
[grpc]
  address = "{socket}"
[ttrpc]
  address = "{socket}.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  # No CAP_SYS_RESOURCE in this sandbox: containerd may not lower oom_score_adj below its own.
  restrict_oom_score_adj = true
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        # kubelet runs with cgroupDriver cgroupfs (no systemd here).
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{cni_conf}"
"""


def _kubelet_config(workdir: Path, port: int, healthz_port: int) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": "127.0.0.1",
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        # The host is cgroup v1 (hybrid) without systemd as init.
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "failSwapOn": False,
        "makeIPTablesUtilChains": False,
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": False}},
        "authorization": {"mode": "AlwaysAllow"},
        "staticPodPath": str(workdir / "manifests"),
        "serializeImagePulls": False,
        # A shared CI disk is often past the default 85% image-GC and 10% eviction thresholds.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "1Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "evictionPressureTransitionPeriod": "5s",
        "containerLogMaxSize": "10Mi",
        "syncFrequency": "5s",
        "nodeStatusUpdateFrequency": "5s",
        "fileCheckFrequency": "5s",
        "resolvConf": "/etc/resolv.conf",
    }


class Node:
    """containerd + kubelet + kube-controller-manager for ``control``; stop() takes everything down."""

    def __init__(self, control: ControlPlane, workdir: Path, *, timeout: float = 120.0) -> None:
        self.control = control
        self.workdir = workdir
        self.logs = workdir / "logs"
        self.processes: list[ManagedProcess] = []
        # Unix socket paths are limited to 107 bytes: keep them short.
        self.run_dir = Path(f"/run/carbon-node-{os.getpid()}")
        self.socket = self.run_dir / "containerd.sock"
        self.kubelet_root = workdir / "kubelet"
        try:
            self._start_containerd(timeout)
        except BaseException:
            self.stop()
            raise

    # --- containerd -------------------------------------------------------------------------------

    def _start_containerd(self, timeout: float) -> None:
        from .docker import PAUSE_IMAGE

        self.run_dir.mkdir(parents=True, exist_ok=True)
        cni_bin = self.workdir / "cni" / "bin"
        cni_conf = self.workdir / "cni" / "conf"
        cni_bin.mkdir(parents=True, exist_ok=True)
        cni_conf.mkdir(parents=True, exist_ok=True)
        (cni_bin / "noop").write_bytes(CNI_PLUGIN.read_bytes())
        (cni_bin / "noop").chmod(0o755)
        # containerd brings up `lo` in every pod namespace with the standard loopback plugin.
        if not LOOPBACK_PLUGIN.exists():
            raise RuntimeError(f"{LOOPBACK_PLUGIN} is missing: apt-get install containernetworking-plugins")
        shutil.copy2(LOOPBACK_PLUGIN, cni_bin / "loopback")
        (cni_conf / "10-noop.conf").write_text(
            json.dumps({"cniVersion": "0.4.0", "name": "carbon-noop", "type": "noop"})
        )
        config = self.workdir / "containerd.toml"
        config.write_text(
            _containerd_config(
                self.workdir / "containerd",
                self.run_dir / "state",
                self.socket,
                cni_bin,
                cni_conf,
                PAUSE_IMAGE,
            )
        )
        containerd = ManagedProcess(
            "containerd",
            ["containerd", f"--config={config}", "--log-level=warn"],
            self.logs / "containerd.log",
        )
        self.processes.append(containerd)
        wait_until(
            lambda: self.ctr("version", check=False).returncode == 0,
            timeout=timeout,
            what="containerd to answer",
            watch=[containerd],
            interval=0.5,
        )

    def ctr(self, *args: str, check: bool = True, timeout: float = 600.0) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            ["ctr", "--address", str(self.socket), "--namespace", "k8s.io", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"ctr {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
        return proc

    def import_images(self, tarball: Path) -> None:
        """Load a `docker save` tarball; its images keep their (fully normalised) names."""
        self.ctr("images", "import", "--no-unpack", str(tarball))

    # --- kubelet and kube-controller-manager ------------------------------------------------------

    def start_kubernetes(self, kubelet: Path, controller_manager: Path, timeout: float = 120.0) -> None:
        try:
            self._start_controller_manager(controller_manager)
            self._start_kubelet(kubelet)
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def _start_controller_manager(self, binary: Path) -> None:
        self.processes.append(start_controller_manager(self.control, binary, self.workdir))

    def _start_kubelet(self, binary: Path) -> None:
        self.kubelet_root.mkdir(parents=True, exist_ok=True)
        (self.workdir / "manifests").mkdir(exist_ok=True)
        config = self.workdir / "kubelet.yaml"
        config.write_text(yaml.safe_dump(_kubelet_config(self.workdir, free_port(), free_port())))
        kubelet = ManagedProcess(
            "kubelet",
            [
                str(binary),
                f"--config={config}",
                f"--kubeconfig={self.control.kubeconfig}",
                f"--container-runtime-endpoint=unix://{self.socket}",
                f"--root-dir={self.kubelet_root}",
                f"--cert-dir={self.workdir / 'kubelet-certs'}",
                f"--hostname-override={NODE_NAME}",
                # kubelet refuses a loopback node IP for status.addresses; _wait_ready patches it in.
                "--node-ip=127.0.0.1",
                "--v=1",
            ],
            self.logs / "kubelet.log",
        )
        self.processes.append(kubelet)

    def _node(self) -> dict[str, Any] | None:
        try:
            node: dict[str, Any] = self.control.api.request("GET", f"/api/v1/nodes/{NODE_NAME}")
        except Exception:
            return None
        return node

    def _wait_ready(self, timeout: float) -> None:
        def registered() -> bool:
            return self._node() is not None

        wait_until(registered, timeout=timeout, what=f"node {NODE_NAME} to register", watch=self.processes)
        self._patch_address()

        def ready() -> bool:
            node = self._node() or {}
            conditions = node.get("status", {}).get("conditions", [])
            is_ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
            taints = node.get("spec", {}).get("taints") or []
            # The not-ready taint goes only once kube-controller-manager saw the Ready condition.
            return is_ready and not any(t["key"].startswith("node.kubernetes.io/") for t in taints)

        wait_until(ready, timeout=timeout, what=f"node {NODE_NAME} Ready and untainted", watch=self.processes)

    def _patch_address(self) -> None:
        # A single InternalIP: with a Hostname address the API server would resolve the node by DNS.
        body = {"status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}]}}
        self.control.api.request(
            "PATCH",
            f"/api/v1/nodes/{NODE_NAME}/status",
            body,
            content_type="application/strategic-merge-patch+json",
        )

    # --- teardown ---------------------------------------------------------------------------------

    def _task_pids(self) -> list[int]:
        if not self.socket.exists():
            return []
        listing = self.ctr("tasks", "list", "--quiet", check=False, timeout=30)
        pids = []
        for task in listing.stdout.split():
            info = self.ctr("tasks", "ps", task, check=False, timeout=30)
            pids += [int(line.split()[0]) for line in info.stdout.splitlines()[1:] if line.split()]
        return pids

    def _shim_pids(self) -> list[int]:
        """containerd-shim processes serving our socket: they outlive containerd by design."""
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if (
                cmdline
                and cmdline[0].endswith(b"containerd-shim-runc-v2")
                and str(self.socket).encode() in cmdline
            ):
                pids.append(int(entry.name))
        return pids

    def stop(self) -> None:
        """kubelet and the controller manager first, then every container (by PID), then containerd."""
        for process in reversed(self.processes):
            if process.name != "containerd":
                process.stop()
        for pid in self._task_pids():
            _kill(pid)
        time.sleep(0.5)
        for pid in self._shim_pids():
            _kill(pid)
        for process in self.processes:
            process.stop()
        unmount_below(self.workdir)
        unmount_below(self.run_dir)
        subprocess.run(["rm", "-rf", str(self.run_dir)], check=False, timeout=60)

    def describe(self) -> str:
        return "\n".join(p.describe(30) for p in self.processes)


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def unmount_below(folder: Path) -> None:
    """Lazily unmount what kubelet and containerd mounted under ``folder`` (deepest first)."""
    prefix = str(folder.resolve())
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            mounts.append(point)
    for point in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True, timeout=30)


def start_controller_manager(control: ControlPlane, binary: Path, workdir: Path) -> ManagedProcess:
    """kube-controller-manager alone, without containerd or a kubelet: ReplicaSets recreate pods, the
    disruption controller computes PodDisruptionBudget status and the node-lifecycle controller lifts
    the not-ready taint. Pair it with kwok (tests/node/clusterops.py: `Kwok.start`), which keeps its
    annotated nodes Ready and their pods Running; the caller stops the returned process."""
    pki = control.pki
    return ManagedProcess(
        "kube-controller-manager",
        [
            str(binary),
            f"--kubeconfig={control.kubeconfig}",
            f"--authentication-kubeconfig={control.kubeconfig}",
            f"--authorization-kubeconfig={control.kubeconfig}",
            f"--service-account-private-key-file={pki.folder / 'sa.key'}",
            f"--root-ca-file={pki.ca_file}",
            "--use-service-account-credentials=false",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={free_port()}",
            # Nodes without heartbeats (kwok's keep theirs) are marked NotReady after this long.
            "--node-monitor-grace-period=40s",
            f"--cert-dir={workdir / 'kcm-certs'}",
        ],
        workdir / "logs" / "kube-controller-manager.log",
    )
