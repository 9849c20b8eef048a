"""`python -m extender` as a process: static nodes + snapshot file, serves, stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import aiohttp
import orjson

from carbon_common.snapshot import Snapshot, ZoneReading, write_snapshot_atomic
from tests.integration.extender_process import extender_env, free_port, wait_ready


async def test_process_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    nodes = tmp_path / "nodes.json"
    nodes.write_bytes(resources.files("extender").joinpath("data/demo-nodes.json").read_bytes())
    snapshot = tmp_path / "snapshot.json"
    now = datetime.now(UTC)
    write_snapshot_atomic(
        snapshot,
        Snapshot(now, {"PL": ZoneReading("PL", 700.0, now, "t"), "FR": ZoneReading("FR", 50.0, now, "t")}),
    )
    port = free_port()
    env = extender_env()
    env["CARBON_EXTENDER_PORT"] = str(port)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "extender",
        "--nodes-file",
        str(nodes),
        "--snapshot-file",
        str(snapshot),
        "--log-level",
        "debug",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as session:
            await wait_ready(session, base + "/readyz")
            body = {
                "Pod": {"metadata": {"uid": "u"}},
                "NodeNames": ["fr-worker-1", "pl-worker-1", "edge-worker-1"],
            }
            async with session.post(base + "/prioritize", json=body) as resp:
                assert resp.status == 200
                scores = orjson.loads(await resp.read())
            assert scores == [
                {"Host": "fr-worker-1", "Score": 10},
                {"Host": "pl-worker-1", "Score": 0},
                {"Host": "edge-worker-1", "Score": 5},
            ]
            bind = {"PodName": "p", "PodNamespace": "n", "PodUID": "u", "Node": "fr-worker-1"}
            async with session.post(base + "/bind", json=bind) as resp:
                assert "not enabled" in orjson.loads(await resp.read())["Error"]  # no API server configured
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), timeout=20)
        assert proc.returncode == 0, err.decode()
        lines = [orjson.loads(line) for line in err.decode().splitlines() if line.startswith("{")]
        decisions = [line for line in lines if line["msg"] == "decision"]
        assert decisions
        assert decisions[0]["zones"]["PL"]["intensity"] == 700.0
        assert any(line["msg"] == "shutting down" for line in lines)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_process_serves_mtls_when_configured(tmp_path: Path) -> None:
    import ssl

    import trustme

    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1")
    server_cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    nodes = tmp_path / "nodes.json"
    nodes.write_bytes(resources.files("extender").joinpath("data/demo-nodes.json").read_bytes())
    port = free_port()
    env = extender_env()
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "extender", "--nodes-file", str(nodes), "--port", str(port)),
        *("--tls-cert", str(tmp_path / "server.pem"), "--tls-key", str(tmp_path / "server.pem")),
        *("--client-ca", str(tmp_path / "ca.pem")),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        client_cert = ca.issue_cert("scheduler")
        with_cert = ssl.create_default_context()
        ca.configure_trust(with_cert)
        client_cert.configure_cert(with_cert)
        without_cert = ssl.create_default_context()
        ca.configure_trust(without_cert)
        url = f"https://127.0.0.1:{port}/readyz"
        async with aiohttp.ClientSession() as session:
            await wait_ready(session, url, ssl_context=with_cert)
        async with aiohttp.ClientSession() as session:
            rejected = False
            try:
                async with session.get(url, ssl=without_cert) as resp:
                    await resp.read()
            except (aiohttp.ClientError, ssl.SSLError):
                rejected = True
            assert rejected, "a client without a certificate must be refused"
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.communicate(), timeout=20)
        assert proc.returncode == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_sigterm_with_a_stalled_upload_exits_within_the_grace_period(tmp_path: Path) -> None:
    # issue 12 item 3: one stalled upload held shutdown for 60.5 s, past Kubernetes' 30 s grace. The
    # read timeout is raised here so that only the shutdown bound can end the upload.
    nodes = tmp_path / "nodes.json"
    nodes.write_bytes(resources.files("extender").joinpath("data/demo-nodes.json").read_bytes())
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "extender", "--nodes-file", str(nodes), "--port", str(port)),
        *("--read-timeout", "300"),
        env=extender_env(),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    writer: asyncio.StreamWriter | None = None
    try:
        async with aiohttp.ClientSession() as session:
            await wait_ready(session, f"http://127.0.0.1:{port}/readyz")
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /prioritize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100000\r\n\r\n{"Pod": '
        )
        await writer.drain()
        await asyncio.sleep(0.2)  # let the handler start reading the body
        proc.send_signal(signal.SIGTERM)
        # 25 s: inside the 30 s grace with room for a loaded machine (it takes about 5 s).
        _, err = await asyncio.wait_for(proc.communicate(), timeout=25)
        assert proc.returncode == 0, err.decode()
    finally:
        if writer is not None:
            writer.close()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
