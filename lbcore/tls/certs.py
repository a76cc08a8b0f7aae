"""Certificates and keys from PEM bytes: parse, match, order the chain, check, name.

``parse_certificate(chain_pem, key_pem, passphrase)`` turns what an operator gives
(a PEM file holding a leaf and its intermediates in any order, possibly the key
too; a key file, RSA or ECDSA, possibly encrypted) into a ``Certificate``: the
leaf first then its issuers, the key as unencrypted PKCS#8 in memory, the host
names it serves (CN and every DNS SAN, normalised: lower case, IDNA A-labels, no
trailing dot), its key type and validity. Problems raise ``TlsError``; things to
know (expiring within 30 days, unrelated certificates in the file) come back as
warnings.

How the chain is ordered: the leaf is the certificate whose public key is the
private key's (so a key that matches nothing is caught here); then, repeatedly,
the issuer is the certificate in the file whose subject is the current one's
issuer and whose key verifies its signature, until a self-signed certificate or
no issuer. Certificates left over are dropped with a warning.

Sans-IO: only ``load_certificate_files`` reads files. No message ever includes
key material (see ``lbcore.tls.errors``): exceptions from the crypto library are
translated, never chained.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from lbcore.tls.errors import TlsError, TlsIssue

__all__ = [
    "Certificate",
    "EXPIRY_WARNING_DAYS",
    "KEY_TYPES",
    "load_certificate_files",
    "normalize_hostname",
    "parse_certificate",
]

KEY_TYPES = ("rsa", "ecdsa")
EXPIRY_WARNING_DAYS = 30
# OpenSSL's default security level (2, Debian's and Python's) refuses RSA keys under
# 2048 bits when the context loads them; say so here, with the certificate's path.
MIN_RSA_BITS = 2048
# The curves TLS clients support for ECDSA certificates (RFC 8446 4.2.3 ecdsa_secp*).
ECDSA_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
MAX_PEM_BYTES = 1 << 20  # a chain or key file over 1 MiB is not one
MAX_HOSTNAME = 253  # RFC 1035 2.3.4, without the trailing dot

_PEM_RE = re.compile(rb"-----BEGIN ([A-Z0-9 ]{1,40})-----\r?\n.*?-----END \1-----", re.S)
_KEY_LABELS = frozenset({b"PRIVATE KEY", b"RSA PRIVATE KEY", b"EC PRIVATE KEY", b"ENCRYPTED PRIVATE KEY"})
_IGNORED_LABELS = frozenset({b"EC PARAMETERS", b"DH PARAMETERS"})  # haproxy-style crt files carry these
_LABEL_RE = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\Z")
_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def normalize_hostname(name: str) -> str:
    """A host name as the SNI table keys it: lower case, IDNA A-labels (``bücher`` ->
    ``xn--bcher-kva``, Python's IDNA 2003 codec), one trailing dot dropped; a leading
    ``*.`` (a one-label wildcard) is kept. ValueError if it is not a host name (an IP
    address, a partial wildcard like ``w*.example.com``, ``*.com``, bad labels)."""
    if not isinstance(name, str):
        raise ValueError(f"expected a host name, got {type(name).__name__}")
    text = name.strip()
    if text.endswith("."):
        text = text[:-1]
    if not text:
        raise ValueError("empty host name")
    labels = text.split(".")
    wildcard = labels[0] == "*"
    if wildcard:
        labels = labels[1:]
        if len(labels) < 2:
            raise ValueError(f"wildcard {name!r} must have at least two labels after '*.'")
    out = []
    for label in labels:
        if not label.isascii():
            try:
                label = label.encode("idna").decode("ascii")
            except UnicodeError:
                raise ValueError(f"{name!r} is not a valid internationalised host name") from None
        label = label.lower()
        if not _LABEL_RE.match(label):
            raise ValueError(f"{name!r} is not a host name (label {label[:63]!r})")
        out.append(label)
    result = ".".join(out)
    try:
        ipaddress.ip_address(result)
    except ValueError:
        pass
    else:
        raise ValueError(f"{name!r} is an IP address, not a host name")
    if wildcard:
        result = "*." + result
    if len(result) > MAX_HOSTNAME:
        raise ValueError(f"host name of {len(result)} characters is too long (at most {MAX_HOSTNAME})")
    return result


@dataclass(frozen=True, slots=True, eq=False)
class Certificate:
    """A usable certificate: the chain (leaf first, PEM) and its key (unencrypted
    PKCS#8 PEM, never in a repr), what it serves and until when. Compared and
    hashed by identity: one object per certificate loaded."""

    chain_pem: bytes = field(repr=False)
    key_pem: bytes = field(repr=False)
    key_type: str  # "rsa" | "ecdsa"
    key_bits: int
    hostnames: tuple[str, ...]  # normalised; "*.example.com" for a wildcard
    subject: str  # RFC 4514, like "CN=www.example.com,O=Example"
    issuer: str
    not_before: dt.datetime  # aware, UTC
    not_after: dt.datetime
    fingerprint_sha256: str  # of the leaf's DER, lower-case hex
    chain_length: int  # certificates sent, leaf included

    def __repr__(self) -> str:
        names = ", ".join(self.hostnames) or "no host names"
        return (
            f"<Certificate {self.key_type}-{self.key_bits} {self.subject!r} [{names}] "
            f"until {self.not_after:%Y-%m-%d} sha256:{self.fingerprint_sha256[:16]}>"
        )

    @property
    def leaf(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.chain_pem)

    def covers(self, hostname: str) -> bool:
        """Whether this certificate is valid for ``hostname`` (exact or one-label wildcard)."""
        try:
            name = normalize_hostname(hostname)
        except ValueError:
            return False
        if name in self.hostnames:
            return True
        head, dot, rest = name.partition(".")
        return bool(dot) and f"*.{rest}" in self.hostnames


# -- parsing ------------------------------------------------------------------------------------


def _as_bytes(data: Any, what: str) -> bytes:
    if isinstance(data, str):
        data = data.encode("utf-8")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"{what} must be PEM bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > MAX_PEM_BYTES:
        raise TlsError(f"{what} of {len(data)} bytes is too large for PEM (at most {MAX_PEM_BYTES})")
    return data


def _blocks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(label, whole block) for every PEM block."""
    return [(match.group(1), match.group(0)) for match in _PEM_RE.finditer(data)]


def _load_key(block: bytes, label: bytes, passphrase: bytes | None, warnings: list[str]) -> Any:
    encrypted = label == b"ENCRYPTED PRIVATE KEY" or b"Proc-Type: 4,ENCRYPTED" in block
    if encrypted and not passphrase:
        raise TlsError("the key is encrypted: a passphrase is needed")
    if passphrase and not encrypted:
        warnings.append("a passphrase was given but the key is not encrypted")
        passphrase = None
    problem = None
    try:
        key = serialization.load_pem_private_key(block, passphrase)
    except UnsupportedAlgorithm:
        problem = "the private key uses an unsupported algorithm"
    except (ValueError, TypeError):
        problem = "cannot decrypt the key (wrong passphrase?)" if encrypted else "the private key is not valid (corrupt or unsupported PEM)"
    # Raised here, outside the except block: no crypto-library exception is chained.
    if problem is not None:
        raise TlsError(problem)
    return key


def _key_kind(key: Any) -> tuple[str, int]:
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise TlsError(f"RSA key of {key.key_size} bits is too small (at least {MIN_RSA_BITS})")
        return "rsa", key.key_size
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.name not in ECDSA_CURVES:
            raise TlsError(f"ECDSA curve {key.curve.name} is not usable for TLS (P-256, P-384 or P-521)")
        return "ecdsa", key.curve.key_size
    kind = type(key).__name__.replace("PrivateKey", "").lstrip("_").lower() or "unknown"
    raise TlsError(f"unsupported key type {kind} (RSA or ECDSA)")


def _spki(cert: x509.Certificate) -> bytes | None:
    try:
        return cert.public_key().public_bytes(*_SPKI)
    except (ValueError, UnsupportedAlgorithm):
        return None


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _order_chain(leaf: x509.Certificate, others: list[x509.Certificate]) -> tuple[list[x509.Certificate], list[x509.Certificate]]:
    """(chain from the leaf up, certificates not in it)."""
    chain = [leaf]
    pool = list(others)
    current = leaf
    while pool and not (current.issuer == current.subject and _issued_by(current, current)):
        issuer = next((cert for cert in pool if cert.subject == current.issuer and _issued_by(current, cert)), None)
        if issuer is None:
            break
        pool.remove(issuer)
        chain.append(issuer)
        current = issuer
    return chain, pool


def _when(moment: dt.datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def _validity(chain: list[x509.Certificate], now: dt.datetime, warnings: list[str]) -> list[TlsIssue]:
    problems = []
    soon = now + dt.timedelta(days=EXPIRY_WARNING_DAYS)
    for index, cert in enumerate(chain):
        what = "certificate" if index == 0 else f"intermediate certificate {cert.subject.rfc4514_string()!r}"
        start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
        if end < now:
            problems.append(TlsIssue("", f"{what} expired on {_when(end)}"))
        elif start > now:
            problems.append(TlsIssue("", f"{what} is not valid before {_when(start)}"))
        elif end < soon:
            days = (end - now).days
            warnings.append(f"{what} expires in {days} day{'s' if days != 1 else ''} ({_when(end)})")
    return problems


def _hostnames(leaf: x509.Certificate, warnings: list[str]) -> tuple[str, ...]:
    raw: list[str] = []
    for attribute in leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
        value = attribute.value if isinstance(attribute.value, str) else attribute.value.decode("utf-8", "replace")
        raw.append(value)
    common_names = len(raw)
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        raw.extend(san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        pass
    names: list[str] = []
    for index, value in enumerate(raw):
        try:
            name = normalize_hostname(value)
        except ValueError as exc:
            if index >= common_names:  # a CN need not be a host name ("Example Ltd"); a DNS SAN must
                warnings.append(f"DNS name ignored: {exc}")
            continue
        if name not in names:
            names.append(name)
    if not names:
        warnings.append("the certificate names no host: it can only serve as the default")
    return tuple(names)


_USAGES = {"server": (ExtendedKeyUsageOID.SERVER_AUTH, "serverAuth"), "client": (ExtendedKeyUsageOID.CLIENT_AUTH, "clientAuth")}


def _check_usage(leaf: x509.Certificate, usage: str, warnings: list[str]) -> None:
    try:
        extended = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return
    oid, name = _USAGES[usage]
    if oid not in extended and ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in extended:
        warnings.append(f"the certificate's extended key usage lacks {name}: peers will refuse it")


def parse_certificate(
    chain_pem: bytes | str,
    key_pem: bytes | str | None = None,
    passphrase: bytes | str | None = None,
    *,
    now: dt.datetime | None = None,
    usage: str = "server",
) -> tuple[Certificate, list[str]]:
    """A checked Certificate and warnings, from a PEM chain and key (``key_pem``
    None: the key is in ``chain_pem``). Raises TlsError: no certificate, no key or
    several, key encrypted without (or with a wrong) passphrase, unsupported key,
    key matching no certificate, expired or not yet valid. ``usage`` "client" is
    for a client certificate (no host names expected, clientAuth usage)."""
    if usage not in _USAGES:
        raise ValueError(f"usage must be server or client, not {usage!r}")
    now = now or dt.datetime.now(dt.timezone.utc)
    warnings: list[str] = []
    chain_bytes = _as_bytes(chain_pem, "certificate file")
    certs: list[x509.Certificate] = []
    key_blocks: list[tuple[bytes, bytes]] = []
    for label, block in _blocks(chain_bytes):
        if label == b"CERTIFICATE":
            cert = None
            try:
                cert = x509.load_pem_x509_certificate(block)
            except ValueError:
                pass
            if cert is None:
                raise TlsError(f"certificate {len(certs) + 1} in the file is not a valid X.509 certificate")
            certs.append(cert)
        elif label in _KEY_LABELS:
            key_blocks.append((label, block))
        elif label not in _IGNORED_LABELS:
            warnings.append(f"ignored a PEM block of type {label.decode('ascii')}")
    if not certs:
        raise TlsError("no PEM certificate found (the file is empty, DER or not a certificate)")
    if key_pem is not None:
        key_blocks = [(label, block) for label, block in _blocks(_as_bytes(key_pem, "key file")) if label in _KEY_LABELS]
        if not key_blocks:
            raise TlsError("no PEM private key found in the key file")
    elif not key_blocks:
        raise TlsError("no private key: give a key file or put the key in the certificate file")
    if len(key_blocks) > 1:
        raise TlsError(f"{len(key_blocks)} private keys found where one is expected")
    secret = passphrase.encode("utf-8") if isinstance(passphrase, str) else passphrase
    key = _load_key(key_blocks[0][1], key_blocks[0][0], secret, warnings)
    key_type, key_bits = _key_kind(key)

    public = key.public_key().public_bytes(*_SPKI)
    leaf = next((cert for cert in certs if _spki(cert) == public), None)
    if leaf is None:
        raise TlsError(
            "key does not match certificate" if len(certs) == 1
            else f"key matches none of the {len(certs)} certificates in the file"
        )
    others = [cert for cert in certs if cert is not leaf]
    chain, unused = _order_chain(leaf, others)
    if unused:
        subjects = ", ".join(repr(cert.subject.rfc4514_string()) for cert in unused)
        warnings.append(f"{len(unused)} certificate(s) in the file are not in the leaf's chain, ignored: {subjects}")
    problems = _validity(chain, now, warnings)
    if problems:
        raise TlsError(problems)
    names: list[str] = []
    unreadable = False
    try:
        _check_usage(leaf, usage, warnings)
        names = list(_hostnames(leaf, warnings if usage == "server" else []))
    except ValueError:  # a malformed or repeated extension
        unreadable = True
    if unreadable:
        raise TlsError("the certificate's extensions cannot be read (malformed or repeated)")
    encoding = serialization.Encoding.PEM
    certificate = Certificate(
        chain_pem=b"".join(cert.public_bytes(encoding) for cert in chain),
        key_pem=key.private_bytes(encoding, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        key_type=key_type,
        key_bits=key_bits,
        hostnames=tuple(names),
        subject=leaf.subject.rfc4514_string(),
        issuer=leaf.issuer.rfc4514_string(),
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
        fingerprint_sha256=hashlib.sha256(leaf.public_bytes(serialization.Encoding.DER)).hexdigest(),
        chain_length=len(chain),
    )
    return certificate, warnings


def _read(path: str, what: str) -> bytes:
    problem = None
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_PEM_BYTES + 1)
    except OSError as exc:
        problem = f"cannot read {what} {path}: {exc.strerror or type(exc).__name__}"
    if problem is not None:
        raise TlsError(problem)
    if len(data) > MAX_PEM_BYTES:
        raise TlsError(f"{what} {path} is larger than {MAX_PEM_BYTES} bytes: not a PEM file")
    return data


def load_certificate_files(
    cert_path: str,
    key_path: str | None = None,
    passphrase: bytes | str | None = None,
    *,
    now: dt.datetime | None = None,
    usage: str = "server",
) -> tuple[Certificate, list[str]]:
    """``parse_certificate`` on the content of files (the one reading helper)."""
    chain = _read(cert_path, "certificate file")
    key = _read(key_path, "key file") if key_path is not None else None
    return parse_certificate(chain, key, passphrase, now=now, usage=usage)
