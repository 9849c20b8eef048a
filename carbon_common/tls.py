"""Server TLS and mTLS with certificate rotation without a restart.

cert-manager and kubelet rotate mounted certificates by swapping a symlink (`..data`), so the files
change under a running server. `CertReloader` polls their contents and loads the new pair into the *same*
`SSLContext`: aiohttp keeps using that object, and new handshakes pick up the new certificate while
established connections keep theirs.

A half-written or mismatched pair must never reach the live context: OpenSSL drops the old private key
as soon as a certificate that does not match it is loaded, leaving the server unable to handshake. So
each candidate pair is first copied to a private temporary directory (one consistent snapshot even
if a swap happens mid-read), checked on a scratch context, and only then loaded into the live one.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import ssl
import tempfile
from pathlib import Path

from carbon_common.loops import run_forever
from carbon_common.tasks import cancel_and_wait

log = logging.getLogger(__name__)

_Stamp = tuple[bytes, ...]


# TLS 1.2 suites offered: forward-secret key exchange with AEAD ciphers only (AES-GCM, ChaCha20-
# Poly1305); CBC suites (Lucky13-style padding oracles) and RSA key exchange are left out. Every TLS 1.3
# suite is AEAD and is not affected by this list. Go clients (kube-scheduler, the API server) and
# Prometheus speak TLS 1.3 or offer these suites.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL:!eNULL"


def _new_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(TLS12_CIPHERS)
    return ctx


def server_ssl_context(cert: Path, key: Path, client_ca: Path | None = None) -> ssl.SSLContext:
    """A TLS 1.2+ server context offering only AEAD suites; with `client_ca`, clients must present a
    certificate it signed.

    Raises ssl.SSLError / OSError with the file named when the pair or the CA cannot be loaded.
    """
    ctx = _new_context()
    _load_pair(ctx, cert, key)
    if client_ca is not None:
        try:
            ctx.load_verify_locations(cafile=str(client_ca))
        except (ssl.SSLError, OSError) as exc:
            raise ssl.SSLError(f"cannot load client CA {client_ca}: {exc}") from exc
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _load_pair(ctx: ssl.SSLContext, cert: Path, key: Path) -> None:
    """Validate the pair on a scratch context from one snapshot of both files, then load it into ctx."""
    try:
        cert_pem, key_pem = cert.read_bytes(), key.read_bytes()
    except OSError as exc:
        raise OSError(f"cannot read TLS certificate/key ({cert}, {key}): {exc.strerror or exc}") from exc
    with tempfile.TemporaryDirectory(prefix="tls-") as tmp:
        c, k = Path(tmp) / "tls.crt", Path(tmp) / "tls.key"
        c.write_bytes(cert_pem)
        fd = os.open(k, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key_pem)
        try:
            _new_context().load_cert_chain(str(c), str(k))
        except ssl.SSLError as exc:
            raise ssl.SSLError(
                f"TLS certificate {cert} and key {key} do not form a valid pair: {exc}"
            ) from exc
        ctx.load_cert_chain(str(c), str(k))


def _stamp(paths: list[Path]) -> _Stamp:
    # A digest of the contents, not the stat: certificates are tiny, and two rotations within one
    # timestamp tick (or a copy that keeps size and mtime) must still be seen. Reading through the
    # path follows kubelet's `..data` symlink swaps.
    return tuple(hashlib.sha256(p.read_bytes()).digest() for p in paths)


class CertReloader:
    """Reloads cert/key (and the client CA) into `ctx` when the files change.

    `reloads` and `failures` count outcomes for metrics. On a bad pair the old certificate stays in
    service and the error is logged; the next change of the files is tried again.
    A rotated client CA is *added* to the trust store (OpenSSL cannot remove one): the old CA stays
    trusted until restart, which is what an overlapping CA rotation needs anyway.
    """

    def __init__(
        self,
        ctx: ssl.SSLContext,
        cert: Path,
        key: Path,
        client_ca: Path | None = None,
        interval: float = 10.0,
    ) -> None:
        self._ctx = ctx
        self._cert, self._key, self._client_ca = cert, key, client_ca
        self._interval = interval
        self._pair_stamp = self._safe_stamp([cert, key])
        self._ca_stamp = self._safe_stamp([client_ca]) if client_ca else None
        self._task: asyncio.Task[None] | None = None
        self.reloads = 0
        self.failures = 0

    @staticmethod
    def _safe_stamp(paths: list[Path]) -> _Stamp | None:
        try:
            return _stamp(paths)
        except OSError:
            return None

    def check(self) -> bool:
        """Reload if the files changed since the last check; True when a new pair was loaded."""
        loaded = False
        stamp = self._safe_stamp([self._cert, self._key])
        if stamp is not None and stamp != self._pair_stamp:
            self._pair_stamp = stamp  # a bad pair is reported once, not at every poll
            try:
                _load_pair(self._ctx, self._cert, self._key)
            except (ssl.SSLError, OSError) as exc:
                self.failures += 1
                log.error(
                    "TLS certificate reload failed; keeping the previous one", extra={"error": str(exc)}
                )
            else:
                self.reloads += 1
                loaded = True
                log.info("TLS certificate reloaded", extra={"cert": str(self._cert)})
        if self._client_ca is not None:
            ca_stamp = self._safe_stamp([self._client_ca])
            if ca_stamp is not None and ca_stamp != self._ca_stamp:
                self._ca_stamp = ca_stamp
                try:
                    self._ctx.load_verify_locations(cafile=str(self._client_ca))
                except (ssl.SSLError, OSError) as exc:
                    self.failures += 1
                    log.error("client CA reload failed", extra={"error": str(exc)})
                else:
                    log.info("client CA reloaded", extra={"client_ca": str(self._client_ca)})
        return loaded

    async def start(self) -> None:
        if self._task is None:
            # The reloader must outlive any surprise (the old cert keeps serving): a failed check is
            # counted and logged, and the next one comes at the usual interval.
            loop = run_forever(
                self._step,
                log=log,
                message="TLS reload check failed",
                on_error=self._count_failure,
                backoff=lambda _: self._interval,
                pause_first=self._interval,
            )
            self._task = asyncio.create_task(loop, name="tls-reloader")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _step(self) -> float:
        self.check()
        return self._interval

    def _count_failure(self, _: Exception) -> None:
        self.failures += 1
