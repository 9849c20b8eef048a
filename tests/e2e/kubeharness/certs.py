"""Throwaway PKI for one control plane: a CA (trustme), serving certs, client certs, service-account keys.

Nothing here is ever reused across runs; keys live in the run's temporary folder.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


@dataclass(frozen=True, slots=True)
class CertPair:
    cert: Path
    key: Path


class Pki:
    """A CA whose files sit in ``folder``; issues server and client pairs on demand."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self._ca = trustme.CA()
        self.ca_file = folder / "ca.crt"
        self._ca.cert_pem.write_to_path(str(self.ca_file))

    @property
    def ca_pem(self) -> bytes:
        return bytes(self._ca.cert_pem.bytes())

    @property
    def ca_data_b64(self) -> str:
        """The CA as kube-scheduler's ``tlsConfig.caData`` / a kubeconfig's certificate-authority-data."""
        return base64.b64encode(self.ca_pem).decode("ascii")

    def issue(self, name: str, *identities: str) -> CertPair:
        """A leaf certificate (trustme marks it for both server and client auth) for ``identities``."""
        leaf = self._ca.issue_cert(*(identities or (name,)))
        pair = CertPair(cert=self.folder / f"{name}.crt", key=self.folder / f"{name}.key")
        # The chain (leaf first) so clients that only trust the CA can verify it.
        pair.cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        leaf.private_key_pem.write_to_path(str(pair.key))
        pair.key.chmod(0o600)
        return pair

    def service_account_key(self) -> Path:
        """RSA key the apiserver signs and verifies service-account tokens with (private key serves both)."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        path = self.folder / "sa.key"
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
        path.chmod(0o600)
        return path
