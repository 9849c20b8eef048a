"""TLS serving, mTLS and certificate rotation, with a throwaway trustme CA on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import trustme
from aiohttp import web

from carbon_common.tls import CertReloader, server_ssl_context


def _write_pair(ca: trustme.CA, directory: Path, cn: str) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    leaf = ca.issue_cert("127.0.0.1", "localhost", common_name=cn)
    cert, key = directory / "tls.crt", directory / "tls.key"
    cert.write_bytes(b"".join(b.bytes() for b in leaf.cert_chain_pems))
    key.write_bytes(leaf.private_key_pem.bytes())
    return cert, key


async def _ok(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def _serve(ctx: ssl.SSLContext) -> AsyncIterator[int]:
    app = web.Application()
    app.router.add_get("/healthz", _ok)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
    await site.start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


def _client_ctx(ca: trustme.CA, client_cert: trustme.LeafCert | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    if client_cert is not None:
        client_cert.configure_cert(ctx)
    return ctx


async def _get(port: int, ctx: ssl.SSLContext) -> int:
    timeout = aiohttp.ClientTimeout(total=5)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(f"https://127.0.0.1:{port}/healthz", ssl=ctx) as resp,
    ):
        await resp.read()
        return resp.status


async def _peer_cn(port: int, ctx: ssl.SSLContext) -> str:
    _reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port, ssl=ctx), 5)
    try:
        cert = writer.get_extra_info("ssl_object").getpeercert()
        subject = dict(x[0] for x in cert["subject"])
        return str(subject["commonName"])
    finally:
        writer.close()
        await writer.wait_closed()


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


async def test_https_serving_tls12_minimum(ca: trustme.CA, tmp_path: Path) -> None:
    cert, key = _write_pair(ca, tmp_path, "server-1")
    ctx = server_ssl_context(cert, key)
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.verify_mode == ssl.CERT_NONE
    async for port in _serve(ctx):
        assert await _get(port, _client_ctx(ca)) == 200
        # A client that does not trust our CA refuses us (the certificate really is ca's).
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await _get(port, ssl.create_default_context())


async def test_tls12_offers_only_aead_suites(ca: trustme.CA, tmp_path: Path) -> None:
    # issue 12 item 7: TLS 1.2 offered CBC suites.
    cert, key = _write_pair(ca, tmp_path, "server-1")
    ctx = server_ssl_context(cert, key)
    tls12 = [c for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert tls12
    assert all(c["aead"] for c in tls12), [c["name"] for c in tls12 if not c["aead"]]
    async for port in _serve(ctx):
        cbc_only = _client_ctx(ca)
        cbc_only.maximum_version = ssl.TLSVersion.TLSv1_2
        cbc_only.set_ciphers("ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA:AES128-SHA256:AES256-SHA")
        with pytest.raises((aiohttp.ClientError, ssl.SSLError, ConnectionError)):
            await _get(port, cbc_only)
        aead12 = _client_ctx(ca)
        aead12.maximum_version = ssl.TLSVersion.TLSv1_2
        assert await _get(port, aead12) == 200


async def test_mtls_requires_client_certificate(ca: trustme.CA, tmp_path: Path) -> None:
    cert, key = _write_pair(ca, tmp_path, "server-1")
    client_ca = trustme.CA()
    ca_file = tmp_path / "client-ca.pem"
    ca_file.write_bytes(client_ca.cert_pem.bytes())
    ctx = server_ssl_context(cert, key, client_ca=ca_file)
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    async for port in _serve(ctx):
        with pytest.raises((aiohttp.ClientError, ssl.SSLError, ConnectionError)):
            await _get(port, _client_ctx(ca))
        # A certificate from another CA is refused too.
        with pytest.raises((aiohttp.ClientError, ssl.SSLError, ConnectionError)):
            await _get(port, _client_ctx(ca, trustme.CA().issue_cert("kube-scheduler")))
        assert await _get(port, _client_ctx(ca, client_ca.issue_cert("kube-scheduler"))) == 200


async def test_reload_picks_up_rotated_cert_without_restart(ca: trustme.CA, tmp_path: Path) -> None:
    # The kubelet/cert-manager layout: tls.crt -> ..data/tls.crt, ..data -> a timestamped directory.
    _write_pair(ca, tmp_path / "v1", "server-1")
    (tmp_path / "..data").symlink_to("v1")
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.symlink_to("..data/tls.crt")
    key.symlink_to("..data/tls.key")
    ctx = server_ssl_context(cert, key)
    reloader = CertReloader(ctx, cert, key, interval=0.02)
    await reloader.start()
    try:
        async for port in _serve(ctx):
            client = _client_ctx(ca)
            assert await _peer_cn(port, client) == "server-1"
            _write_pair(ca, tmp_path / "v2", "server-2")
            (tmp_path / "..data.tmp").symlink_to("v2")
            os.replace(tmp_path / "..data.tmp", tmp_path / "..data")  # atomic swap, as kubelet does
            async with asyncio.timeout(5):
                while reloader.reloads < 1:  # noqa: ASYNC110 (the reloader is a polling loop itself)
                    await asyncio.sleep(0.01)
            assert await _peer_cn(port, client) == "server-2"
            assert await _get(port, client) == 200
    finally:
        await reloader.stop()


async def test_bad_pair_keeps_old_cert(ca: trustme.CA, tmp_path: Path) -> None:
    cert, key = _write_pair(ca, tmp_path, "server-1")
    ctx = server_ssl_context(cert, key)
    reloader = CertReloader(ctx, cert, key, interval=3600)
    async for port in _serve(ctx):
        client = _client_ctx(ca)
        # A key that does not match the certificate (e.g. a rotation caught half-way).
        other = ca.issue_cert("127.0.0.1", common_name="server-2")
        cert.write_bytes(b"".join(b.bytes() for b in other.cert_chain_pems))
        assert reloader.check() is False
        assert reloader.failures == 1
        assert await _peer_cn(port, client) == "server-1"
        assert await _get(port, client) == 200
        # Garbage is rejected the same way.
        key.write_bytes(b"not a key")
        assert reloader.check() is False
        assert reloader.failures == 2
        assert await _peer_cn(port, client) == "server-1"
        # Once the pair is consistent again, it is loaded.
        other_key = other.private_key_pem.bytes()
        key.write_bytes(other_key)
        assert reloader.check() is True
        assert await _peer_cn(port, client) == "server-2"


def test_startup_errors_name_the_files(ca: trustme.CA, tmp_path: Path) -> None:
    cert, key = _write_pair(ca, tmp_path, "server-1")
    with pytest.raises(OSError, match=r"missing\.key"):
        server_ssl_context(cert, tmp_path / "missing.key")
    key.write_bytes(b"junk")
    with pytest.raises(ssl.SSLError, match="do not form a valid pair"):
        server_ssl_context(cert, key)
    cert2, key2 = _write_pair(ca, tmp_path / "ok", "server-1")
    bad_ca = tmp_path / "ca.pem"
    bad_ca.write_bytes(b"junk")
    with pytest.raises(ssl.SSLError, match="client CA"):
        server_ssl_context(cert2, key2, client_ca=bad_ca)


async def test_client_ca_rotation_adds_new_ca(ca: trustme.CA, tmp_path: Path) -> None:
    cert, key = _write_pair(ca, tmp_path, "server-1")
    old_ca, new_ca = trustme.CA(), trustme.CA()
    ca_file = tmp_path / "client-ca.pem"
    ca_file.write_bytes(old_ca.cert_pem.bytes())
    ctx = server_ssl_context(cert, key, client_ca=ca_file)
    reloader = CertReloader(ctx, cert, key, client_ca=ca_file, interval=3600)
    async for port in _serve(ctx):
        new_client = _client_ctx(ca, new_ca.issue_cert("kube-scheduler"))
        with pytest.raises((aiohttp.ClientError, ssl.SSLError, ConnectionError)):
            await _get(port, new_client)
        ca_file.write_bytes(new_ca.cert_pem.bytes())
        reloader.check()
        assert await _get(port, new_client) == 200
        # Overlap: clients still holding a certificate from the old CA keep working until restart.
        assert await _get(port, _client_ctx(ca, old_ca.issue_cert("kube-scheduler"))) == 200
