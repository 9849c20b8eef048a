"""`python -m extender --metrics-port`: a second plain-HTTP listener with only /healthz, /readyz and
/metrics, while the verbs keep answering on the main port (here behind mTLS, as in the chart)."""

from __future__ import annotations

import asyncio
import signal
import socket
import ssl
import sys
from importlib import resources
from pathlib import Path

import aiohttp
import orjson
import pytest
import trustme

from carbon_common.settings import ConfigError
from extender.__main__ import parse_settings
from tests.integration.extender_process import extender_env, free_port, wait_ready


async def test_ops_port_serves_probes_and_metrics_only(tmp_path: Path) -> None:
    ca = trustme.CA()
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    nodes = tmp_path / "nodes.json"
    nodes.write_bytes(resources.files("extender").joinpath("data/demo-nodes.json").read_bytes())
    port, metrics_port = free_port(), free_port()
    while metrics_port == port:  # the kernel may hand the same free port out twice
        metrics_port = free_port()
    env = extender_env()
    env["CARBON_EXTENDER_METRICS_PORT"] = str(metrics_port)  # the environment variable works too
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "extender", "--nodes-file", str(nodes), "--port", str(port)),
        *("--metrics-host", "127.0.0.1"),
        *("--tls-cert", str(tmp_path / "server.pem"), "--tls-key", str(tmp_path / "server.pem")),
        *("--client-ca", str(tmp_path / "ca.pem")),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        ops = f"http://127.0.0.1:{metrics_port}"
        async with aiohttp.ClientSession() as session:
            await wait_ready(session, ops + "/readyz")
            async with session.get(ops + "/readyz") as resp:
                ready = orjson.loads(await resp.read())
                assert {k: ready[k] for k in ("ready", "nodes", "carbonData")} == {
                    "ready": True,
                    "nodes": 15,
                    "carbonData": False,
                }
            async with session.get(ops + "/healthz") as resp:
                assert (resp.status, orjson.loads(await resp.read())) == (200, {"status": "ok"})

            # The verbs on the main port (mTLS) count into the same registry the ops port exports.
            client = ssl.create_default_context()
            ca.configure_trust(client)
            ca.issue_cert("scheduler").configure_cert(client)
            body = {"Pod": {"metadata": {"uid": "u"}}, "NodeNames": ["fr-worker-1", "pl-worker-1"]}
            url = f"https://127.0.0.1:{port}/prioritize"
            async with session.post(url, json=body, ssl=client) as resp:
                assert resp.status == 200
                assert len(orjson.loads(await resp.read())) == 2
            async with session.get(ops + "/metrics") as resp:
                assert resp.status == 200
                assert resp.content_type.startswith("text/plain")
                text = await resp.text()
            assert 'carbon_extender_requests_total{outcome="ok",verb="prioritize"} 1.0' in text

            # Nothing but the three GETs: the verbs are JSON 404s, a wrong method a JSON 405.
            bind = {"PodName": "p", "PodNamespace": "n", "PodUID": "u", "Node": "fr-worker-1"}
            for verb in ("filter", "prioritize", "bind", "preempt"):
                async with session.post(f"{ops}/{verb}", json=bind) as resp:
                    assert resp.status == 404, verb
                    assert "Not Found" in orjson.loads(await resp.read())["Error"]
            async with session.post(ops + "/metrics", json={}) as resp:
                assert resp.status == 405
                assert "Method Not Allowed" in orjson.loads(await resp.read())["Error"]
            # The ops port never speaks TLS, and the main port still demands a client certificate.
            without_cert = ssl.create_default_context()
            ca.configure_trust(without_cert)
            with pytest.raises((aiohttp.ClientError, ssl.SSLError)):
                async with session.get(f"https://127.0.0.1:{port}/readyz", ssl=without_cert) as resp:
                    await resp.read()
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), timeout=20)
        assert proc.returncode == 0, err.decode()
        lines = [orjson.loads(line) for line in err.decode().splitlines() if line.startswith("{")]
        (serving,) = [line for line in lines if line["msg"] == "carbon extender serving"]
        assert serving["metricsPort"] == metrics_port
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_taken_ops_port_is_a_start_up_error(tmp_path: Path) -> None:
    nodes = tmp_path / "nodes.json"
    nodes.write_bytes(resources.files("extender").joinpath("data/demo-nodes.json").read_bytes())
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "extender", "--nodes-file", str(nodes)),
            *("--port", str(free_port()), "--metrics-host", "127.0.0.1", "--metrics-port", str(busy)),
            env=extender_env(),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            _, err = await asyncio.wait_for(proc.communicate(), timeout=20)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert proc.returncode == 1
    assert "cannot start" in err.decode()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port", "9000", "--metrics-port", "9000"], "--metrics-port must differ from --port"),
        (["--metrics-port", "0"], "--metrics-port 0 is not a TCP port"),
        (["--metrics-port", "65536"], "--metrics-port 65536 is not a TCP port"),
        (["--metrics-port", "9888", "--metrics-host", ""], "--metrics-host must not be empty"),
    ],
)
def test_bad_ops_port_settings_are_refused(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_settings(argv, env={})


def test_ops_port_is_off_unless_set() -> None:
    assert parse_settings([], env={}).metrics_port is None
    assert parse_settings([], env={"CARBON_EXTENDER_METRICS_PORT": ""}).metrics_port is None
    assert parse_settings([], env={"CARBON_EXTENDER_METRICS_PORT": "9888"}).metrics_port == 9888
