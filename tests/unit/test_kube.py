"""carbon_common.kube: client configuration sources, backoff bounds, Status parsing."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import trustme

from carbon_common import kube


def _kubeconfig(path: Path, server: str, token: str = "t0k3n") -> Path:
    path.write_bytes(
        orjson.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {"token": token}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    return path


@pytest.fixture
def no_cluster(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Not in a pod, and HOME pointing at an empty directory."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(kube, "_SA_DIR", tmp_path / "no-sa")
    return tmp_path


async def test_explicit_kubeconfig(no_cluster: Path) -> None:
    path = _kubeconfig(no_cluster / "kc", "http://127.0.0.1:6443", token="abc")
    api = await kube.load_api_client(path)
    try:
        assert api.configuration.host == "http://127.0.0.1:6443"
        assert api.configuration.api_key["BearerToken"] == "Bearer abc"
    finally:
        await api.close()


async def test_connection_pool_size(no_cluster: Path) -> None:
    path = _kubeconfig(no_cluster / "kc", "http://127.0.0.1:6443")
    api = await kube.load_api_client(path, connections=64)
    try:
        # The pool that bounds concurrent requests (the extender's Bindings) is the one asked for.
        assert api.rest_client.pool_manager.connector.limit == 64
    finally:
        await api.close()


async def test_default_kubeconfig_in_home(no_cluster: Path) -> None:
    (no_cluster / ".kube").mkdir()
    _kubeconfig(no_cluster / ".kube" / "config", "http://127.0.0.1:7443")
    api = await kube.load_api_client(None)
    try:
        assert api.configuration.host == "http://127.0.0.1:7443"
    finally:
        await api.close()


async def test_missing_kubeconfig_is_a_clear_error(no_cluster: Path) -> None:
    with pytest.raises(kube.KubeConfigError, match="does not exist"):
        await kube.load_api_client(no_cluster / "nope")
    with pytest.raises(kube.KubeConfigError, match=r"\.kube/config does not exist"):
        await kube.load_api_client(None)
    # A file that is not a usable kubeconfig.
    (no_cluster / "broken").write_text("clusters: [\n")
    with pytest.raises(kube.KubeConfigError, match="cannot load"):
        await kube.load_api_client(no_cluster / "broken")
    (no_cluster / "empty").write_text("apiVersion: v1\nkind: Config\n")
    with pytest.raises(kube.KubeConfigError, match="cannot load"):
        await kube.load_api_client(no_cluster / "empty")
    assert issubclass(kube.KubeConfigError, ValueError)


async def test_in_cluster_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text("pod-token")
    (sa / "ca.crt").write_bytes(trustme.CA().cert_pem.bytes())
    monkeypatch.setattr(kube, "_SA_DIR", sa)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    assert kube.in_cluster()
    api = await kube.load_api_client(None)
    try:
        assert api.configuration.host == "https://10.96.0.1:443"
        assert api.configuration.api_key["BearerToken"] == "Bearer pod-token"
        assert api.configuration.ssl_ca_cert == str(sa / "ca.crt")
    finally:
        await api.close()


async def test_explicit_kubeconfig_wins_in_cluster(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text("pod-token")
    monkeypatch.setattr(kube, "_SA_DIR", sa)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    api = await kube.load_api_client(_kubeconfig(tmp_path / "kc", "http://127.0.0.1:6443"))
    try:
        assert api.configuration.host == "http://127.0.0.1:6443"
    finally:
        await api.close()


def test_backoff_is_bounded_with_jitter() -> None:
    b = kube.Backoff(initial=0.5, maximum=4.0, factor=2.0)
    for attempt, cap in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (10, 4.0), (100, 4.0)]:
        delays = {b.delay(attempt) for _ in range(50)}
        assert all(cap / 2 <= d <= cap for d in delays)
        assert len(delays) > 1  # jittered, not lock-step


def test_status_message() -> None:
    status = {"kind": "Status", "code": 409, "message": 'pod p is already assigned to node "n"'}
    assert kube.status_message(orjson.dumps(status)) == 'pod p is already assigned to node "n"'
    assert kube.status_message(b"<html>bad gateway</html>") == "<html>bad gateway</html>"
    assert len(kube.status_message(b"x" * 1000)) == 200
