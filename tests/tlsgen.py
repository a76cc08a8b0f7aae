"""Test certificates made with ``cryptography``: CAs, leaves, chains, CRLs, key files.

Shared by the TLS unit tests and the engine's integration tests. Everything returns
PEM bytes (or objects holding them); ``write_*`` helpers put files in a directory
and return their paths, ready for a Spec's ``cert:``/``key:`` fields.

Key generation is the slow part (RSA-2048 takes tens of milliseconds), so keys come
from a small per-process pool: ``issue()`` reuses pooled keys unless ``fresh=True``.
A test that needs a key matching nothing else (a mismatched key) asks for a fresh one.

    ca = make_ca()
    www = issue(ca, ["www.example.com", "example.com"])            # RSA-2048 leaf
    api = issue(ca, ["api.example.com"], key_type="ecdsa")         # ECDSA P-256
    cert_path, key_path = write_pair(tmp_path, "www", www, chain=[ca])
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "Issued",
    "Handshake",
    "chain_pem",
    "client_context",
    "ticket_key_line",
    "issue",
    "key_pem",
    "make_ca",
    "make_crl",
    "memory_handshake",
    "new_key",
    "write_pair",
    "write_ticket_keys",
]

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
_POOL: dict[tuple[str, int], list[PrivateKey]] = {}


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def new_key(key_type: str = "rsa", bits: int = 2048, *, fresh: bool = False, slot: int = 0) -> PrivateKey:
    """A private key: ``rsa`` (``bits``), ``ecdsa`` (P-256, or P-384 with bits=384) or
    ``ed25519``. Pooled by (type, bits, slot) unless ``fresh``."""
    if not fresh:
        pool = _POOL.setdefault((key_type, bits), [])
        while len(pool) <= slot:
            pool.append(new_key(key_type, bits, fresh=True))
        return pool[slot]
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=bits)
    if key_type == "ecdsa":
        return ec.generate_private_key(ec.SECP384R1() if bits == 384 else ec.SECP256R1())
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"unknown key type {key_type!r}")


def key_pem(key: PrivateKey, passphrase: bytes | str | None = None, *, traditional: bool = False) -> bytes:
    """PEM of a private key: PKCS#8 (``-----BEGIN PRIVATE KEY-----``), encrypted with
    ``passphrase`` when given, or the traditional ``BEGIN RSA/EC PRIVATE KEY`` form."""
    if isinstance(passphrase, str):
        passphrase = passphrase.encode()
    encryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    fmt = serialization.PrivateFormat.TraditionalOpenSSL if traditional else serialization.PrivateFormat.PKCS8
    return key.private_bytes(serialization.Encoding.PEM, fmt, encryption)


@dataclass
class Issued:
    """A certificate and its key; ``pem`` is the certificate alone."""

    cert: x509.Certificate
    key: PrivateKey = field(repr=False)

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    def key_pem(self, passphrase: bytes | str | None = None) -> bytes:
        return key_pem(self.key, passphrase)


def _name(common_name: str | None, organization: str | None = None) -> x509.Name:
    attributes = []
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    if common_name is not None:
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def _signing_hash(key: PrivateKey) -> hashes.HashAlgorithm | None:
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def make_ca(
    name: str = "lbcore test CA",
    *,
    key_type: str = "ecdsa",
    issuer: Issued | None = None,
    slot: int = 0,
    days: int = 3650,
    not_after: dt.datetime | None = None,
) -> Issued:
    """A CA certificate: self-signed root, or an intermediate signed by ``issuer``."""
    key = new_key(key_type, slot=slot + (100 if issuer is not None else 50))
    subject = _name(name, "lbcore tests")
    start = now() - dt.timedelta(days=1)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(not_after or start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    signer = issuer.key if issuer else key
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False  # type: ignore[arg-type]
        )
    return Issued(builder.sign(signer, _signing_hash(signer)), key)  # type: ignore[arg-type]


def issue(
    ca: Issued,
    hostnames: Sequence[str] = (),
    *,
    common_name: str | None = "",
    key_type: str = "rsa",
    bits: int = 2048,
    key: PrivateKey | None = None,
    fresh: bool = False,
    slot: int = 0,
    days: int = 365,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    client: bool = False,
    ip_addresses: Iterable[str] = (),
) -> Issued:
    """A leaf certificate for ``hostnames`` (DNS SANs) signed by ``ca``.

    ``common_name`` "" uses the first host name; None leaves the CN out; any other
    string is used as is (an IDNA U-label works: a CN is a UTF8String). ``client``
    makes a client-authentication certificate. ``not_before``/``not_after`` default to
    yesterday and ``days`` from then.
    """
    import ipaddress

    key = key or new_key(key_type, bits, fresh=fresh, slot=slot)
    if common_name == "":
        common_name = hostnames[0] if hostnames else "lbcore test leaf"
    start = not_before or now() - dt.timedelta(days=1)
    end = not_after or start + dt.timedelta(days=days)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH]),
            critical=False,
        )
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)  # type: ignore[arg-type]
    )
    names: list[x509.GeneralName] = [x509.DNSName(name) for name in hostnames]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return Issued(builder.sign(ca.key, _signing_hash(ca.key)), key)  # type: ignore[arg-type]


def chain_pem(*certs: Issued) -> bytes:
    """Certificates concatenated as PEM, in the order given."""
    return b"".join(cert.pem for cert in certs)


def make_crl(ca: Issued, revoked: Iterable[Issued] = (), *, days: int = 7) -> bytes:
    """A PEM CRL signed by ``ca`` revoking ``revoked``."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.cert.subject)
        .last_update(now() - dt.timedelta(hours=1))
        .next_update(now() + dt.timedelta(days=days))
    )
    for item in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(item.cert.serial_number)
            .revocation_date(now() - dt.timedelta(hours=1))
            .build()
        )
    crl = builder.sign(ca.key, _signing_hash(ca.key))  # type: ignore[arg-type]
    return crl.public_bytes(serialization.Encoding.PEM)


def write_pair(
    directory: str | os.PathLike[str],
    name: str,
    leaf: Issued,
    *,
    chain: Sequence[Issued] = (),
    passphrase: bytes | str | None = None,
    combined: bool = False,
) -> tuple[str, str]:
    """Write ``NAME.pem`` (leaf then ``chain``) and ``NAME.key``; return their paths.
    ``combined`` also puts the key in ``NAME.pem`` (haproxy's crt file form)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cert_path = directory / f"{name}.pem"
    key_path = directory / f"{name}.key"
    key_bytes = leaf.key_pem(passphrase)
    cert_path.write_bytes(chain_pem(leaf, *chain) + (key_bytes if combined else b""))
    key_path.write_bytes(key_bytes)
    os.chmod(key_path, 0o600)
    return str(cert_path), str(key_path)


def ticket_key_line(bits: int = 256) -> str:
    """One line of a ticket key file: base64 of 80 random bytes (48 for ``bits=128``),
    what ``openssl rand 80 | openssl base64 -A`` gives."""
    return base64.b64encode(os.urandom(80 if bits == 256 else 48)).decode()


def write_ticket_keys(path: str | os.PathLike[str], lines: Sequence[str]) -> str:
    """Write a ticket key file (one base64 key per line, newest last); return its path."""
    Path(path).write_text("".join(line + "\n" for line in lines))
    os.chmod(path, 0o600)
    return str(path)


# -- handshakes in memory -----------------------------------------------------------------------


def client_context(ca: Issued | None = None, *, maximum: ssl.TLSVersion | None = None,
                   ciphers: str | None = None, alpn: Sequence[str] = ()) -> ssl.SSLContext:
    """A client context trusting ``ca`` (None: verifying nothing)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca is None:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context.load_verify_locations(cadata=ca.pem.decode())
    if maximum is not None:
        context.maximum_version = maximum
    if ciphers is not None:
        context.set_ciphers(ciphers)
    if alpn:
        context.set_alpn_protocols(list(alpn))
    return context


@dataclass
class Handshake:
    """Both ends of a finished in-memory handshake."""

    client: ssl.SSLObject
    server: ssl.SSLObject
    bios: tuple[ssl.MemoryBIO, ssl.MemoryBIO, ssl.MemoryBIO, ssl.MemoryBIO]

    def close(self) -> None:
        """A clean close (close_notify both ways). OpenSSL drops a session from the
        server's cache when its connection ends without one, so a test of
        session-ID resumption closes the first connection like this."""
        c_in, c_out, s_in, s_out = self.bios
        for obj, out, peer_in in ((self.client, c_out, s_in), (self.server, s_out, c_in), (self.client, c_out, s_in)):
            try:
                obj.unwrap()
            except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                pass
            if out.pending:
                peer_in.write(out.read())

    @property
    def peer_cert(self) -> x509.Certificate:
        """The certificate the client received."""
        return x509.load_der_x509_certificate(self.client.getpeercert(binary_form=True))

    @property
    def key_type(self) -> str:
        key = self.peer_cert.public_key()
        return "ecdsa" if isinstance(key, ec.EllipticCurvePublicKey) else "rsa"


def memory_handshake(
    client: ssl.SSLContext,
    server: ssl.SSLContext,
    server_hostname: str | None = "www.example.com",
    *,
    session: ssl.SSLSession | None = None,
    exchange: bool = True,
) -> Handshake:
    """A TLS handshake between two contexts through ssl.MemoryBIO pairs; raises the
    ssl.SSLError of whichever side fails. ``exchange`` then sends one byte each way,
    which makes a TLS 1.3 client take in its session tickets (``client.session``)."""
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    cli = client.wrap_bio(c_in, c_out, server_hostname=server_hostname, session=session)
    srv = server.wrap_bio(s_in, s_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(20):
        for name, obj, out, peer_in in (("client", cli, c_out, s_in), ("server", srv, s_out, c_in)):
            if not done[name]:
                try:
                    obj.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
                finally:
                    if out.pending:
                        peer_in.write(out.read())
        if all(done.values()) and not c_out.pending and not s_out.pending:
            break
    else:
        raise AssertionError("handshake did not finish")
    if exchange:
        srv.write(b"s")
        c_in.write(s_out.read())
        assert cli.read(1) == b"s"
        cli.write(b"c")
        s_in.write(c_out.read())
        assert srv.read(1) == b"c"
    return Handshake(cli, srv, (c_in, c_out, s_in, s_out))
