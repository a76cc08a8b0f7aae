"""Self-signed server certificates for the TLS scenarios, made with ``cryptography``.

One certificate per key type the scenarios use: RSA-2048 and ECDSA P-256, for the
name ``bench.local`` (plus ``localhost`` and 127.0.0.1). The load generators do not
verify certificates, so a self-signed leaf is all the servers need; what matters is
the key type, which sets the cost of the handshake's signature.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

__all__ = ["KEY_TYPES", "SERVER_NAME", "CertFiles", "make_cert", "make_ticket_keys"]

SERVER_NAME = "bench.local"
KEY_TYPES = ("rsa2048", "ecdsa-p256")


@dataclass(frozen=True, slots=True)
class CertFiles:
    """``cert`` and ``key`` as separate PEM files (lbcore, nginx, stunnel, the naive
    proxy) and ``combined`` (certificate then key, as haproxy's ``crt`` wants)."""

    key_type: str
    cert: Path
    key: Path
    combined: Path


def make_cert(directory: Path, key_type: str) -> CertFiles:
    if key_type == "rsa2048":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif key_type == "ecdsa-p256":
        key = ec.generate_private_key(ec.SECP256R1())
    else:
        raise ValueError(f"unknown key type {key_type!r} (known: {', '.join(KEY_TYPES)})")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SERVER_NAME)])
    now = dt.datetime.now(dt.timezone.utc)
    san = x509.SubjectAlternativeName([
        x509.DNSName(SERVER_NAME),
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(san, critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    directory.mkdir(parents=True, exist_ok=True)
    files = CertFiles(
        key_type,
        directory / f"{key_type}.crt",
        directory / f"{key_type}.key",
        directory / f"{key_type}.pem",
    )
    files.cert.write_bytes(cert_pem)
    files.key.write_bytes(key_pem)
    files.key.chmod(0o600)
    files.combined.write_bytes(cert_pem + key_pem)
    files.combined.chmod(0o600)
    return files


def make_ticket_keys(directory: Path, count: int = 3) -> Path:
    """A session-ticket key file in haproxy's ``tls-ticket-keys`` format, which lbcore's
    ``ticket_keys`` reads too: one base64 line of 80 random bytes per key (16 name,
    32 HMAC, 32 AES). Three keys: haproxy encrypts with the second to last of them."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "tickets.keys"
    path.write_text("".join(base64.b64encode(os.urandom(80)).decode() + "\n" for _ in range(count)))
    path.chmod(0o600)
    return path
