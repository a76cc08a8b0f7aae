"""The TLS part of the Spec: a listener's certificates and policy, a pool's TLS to members.

In a file::

    defaults:
      tls: {min_version: "1.2", ticket_keys: /etc/lbcore/tickets.keys}   # what https listeners inherit
    listeners:
      - name: web-tls
        protocol: https
        tls:
          certificates:                         # one default; the others chosen by SNI
            - {cert: certs/www.pem, key: certs/www.key, default: true}
            - {cert: certs/www-ecdsa.pem, key: certs/www-ecdsa.key}     # same names, ECDSA
            - {cert: certs/api.pem, key: certs/api.key, passphrase: s3cret}
            - {cert: certs/all-in-one.pem}      # no key: the key is in the cert file
          min_version: "1.2"                    # 1.2 | 1.3 (1.0 and 1.1 are never offered)
          ciphers: null                         # TLS 1.2 list, OpenSSL syntax; null: lbcore's default
          ciphersuites: null                    # TLS 1.3, e.g. TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384
          curves: null                          # key exchange groups, e.g. X25519:P-256; null: OpenSSL's
          alpn: [http/1.1]                      # [] offers none; only protocols lbcore speaks
          hsts: {max_age: 365d, include_subdomains: true, preload: false}   # null: no header
          client_auth: {mode: required, ca: certs/clients-ca.pem, crl: certs/clients.crl}
          session_tickets: true
          ticket_keys: /etc/lbcore/tickets.keys # shared by every worker and node; null: per process
          session_cache: 20480                  # session-ID cache entries per worker; 0: off
    pools:
      - name: secure
        tls: {verify: required, ca: certs/members-ca.pem, sni: app.internal,
              cert: certs/lb-client.pem, key: certs/lb-client.key}

Cascade: every key of a listener's ``tls`` except ``certificates`` comes from
``defaults.tls`` when the listener does not write it (``hsts: null`` in a listener
turns off an inherited one); ``defaults.tls`` takes no certificates. Pools do not
inherit. Paths are strings here; relative ones are relative to the Spec file's
directory, and files are read, keys matched and expiry checked when the engine
loads them (``lbcore.tls.load_listener_certificates``), which reports every bad
certificate with its path.

Full-handshake benchmark mode: ``session_tickets: false`` with ``session_cache: 0``
(tickets off alone still lets TLS 1.2 resume by session ID on the same worker).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from lbcore.spec import _checks as v
from lbcore.spec._checks import FAILED, Issues, known, ok, settle
from lbcore.spec._values import Invalid

__all__ = [
    "ALPN_PROTOCOLS",
    "CLIENT_AUTH_MODES",
    "ClientAuth",
    "DEFAULT_SESSION_CACHE",
    "Hsts",
    "MEMBER_VERIFY",
    "POLICY_KEYS",
    "PoolTls",
    "TLS_VERSIONS",
    "TlsCertificate",
    "TlsPolicy",
    "TlsSettings",
]

TLS_VERSIONS = ("1.2", "1.3")
# ALPN ids an https listener may offer: what its HTTP/1.x engine speaks (RFC 7301 registry
# names). Offering h2 without speaking it breaks clients, so nothing else is accepted.
ALPN_PROTOCOLS = ("http/1.1", "http/1.0")
CLIENT_AUTH_MODES = ("none", "optional", "required")
MEMBER_VERIFY = ("none", "required")
DEFAULT_SESSION_CACHE = 20480  # OpenSSL's SSL_SESSION_CACHE_MAX_SIZE_DEFAULT (1024 * 20)
HSTS_DEFAULT_MAX_AGE = 31536000  # one year, in seconds
HSTS_PRELOAD_MIN_AGE = 31536000  # hstspreload.org: max-age of at least one year to be preloaded
# OpenSSL cipher/suite/group list syntax: names, ':' or ',' separators, '+', '!', '-', '@STRENGTH'.
_OPENSSL_LIST_RE = re.compile(r"[A-Za-z0-9_.+:!@=,-]+\Z")


def tls_version(value: Any) -> str:
    # YAML reads `min_version: 1.2` as a float.
    if isinstance(value, float) and not isinstance(value, bool):
        value = f"{value:.1f}"
    return v.choice(TLS_VERSIONS)(value)


def openssl_list(what: str) -> v.Validator:
    """A non-empty OpenSSL list string; whether OpenSSL knows every name is checked
    when the engine builds its contexts (it depends on the OpenSSL build)."""

    def check(value: Any) -> str:
        v.text(value)
        if not _OPENSSL_LIST_RE.match(value):
            raise Invalid(f"invalid {what} list {value[:60]!r} (OpenSSL syntax: NAME:NAME:...)")
        return value

    return check


def alpn_id(value: Any) -> str:
    if not isinstance(value, str) or not 0 < len(value.encode()) < 256:
        raise Invalid(f"invalid ALPN protocol id {value!r}")
    if value not in ALPN_PROTOCOLS:
        raise Invalid(f"{value!r} is not a protocol lbcore speaks (ALPN may offer {', '.join(ALPN_PROTOCOLS)})")
    return value


def alpn_list(value: Any) -> tuple[str, ...]:
    ids = v.strings(alpn_id)(value)
    for index, item in enumerate(ids):
        if item in ids[:index]:
            raise Invalid(f"{item} is listed twice", f"[{index}]")
    return ids


def whole_seconds(value: Any) -> int:
    seconds = v.duration(positive=False)(value)
    if seconds != int(seconds):
        raise Invalid(f"must be whole seconds, got {value!r}")
    return int(seconds)


def header_name_or_none(value: Any) -> str | None:
    if value is None:
        return None
    v.header_name(value)
    if value.lower() in v.FORBIDDEN_SET_HEADERS:
        raise Invalid(f"{value} is a hop-by-hop or framing header: the engine sets it")
    return value


@dataclass(frozen=True, slots=True)
class TlsCertificate:
    """A PEM certificate chain file (leaf and intermediates, any order) and its key
    file (RSA or ECDSA; ``key`` None: the key is in ``cert``). ``passphrase``
    decrypts an encrypted key; it never shows in a repr, a diff or an error."""

    cert: str
    key: str | None = None
    default: bool = False
    passphrase: str | None = field(default=None, repr=False)

    _FIELDS: ClassVar[dict[str, v.Validator]] = {
        "cert": v.text,
        "key": v.optional(v.text),
        "default": v.boolean,
        "passphrase": v.optional(v.text),
    }

    def __post_init__(self) -> None:
        settle(self)

    def to_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in self._FIELDS}


@dataclass(frozen=True, slots=True)
class Hsts:
    """The Strict-Transport-Security header an https listener adds to responses
    (RFC 6797): ``max_age`` seconds (``365d`` works; 0 tells browsers to forget),
    ``includeSubDomains`` and ``preload`` as asked. Preload needs includeSubDomains
    and a max_age of at least a year (hstspreload.org's rules)."""

    max_age: int = HSTS_DEFAULT_MAX_AGE
    include_subdomains: bool = False
    preload: bool = False

    _FIELDS: ClassVar[dict[str, v.Validator]] = {
        "max_age": whole_seconds,
        "include_subdomains": v.boolean,
        "preload": v.boolean,
    }

    def __post_init__(self) -> None:
        settle(self)

    @staticmethod
    def _finish(values: dict[str, Any]) -> Issues:
        if values["preload"] is not True:
            return []
        issues: Issues = []
        if values["include_subdomains"] is False:
            issues.append(("preload", "preload needs include_subdomains: true"))
        if ok(values["max_age"]) and values["max_age"] < HSTS_PRELOAD_MIN_AGE:
            issues.append(("preload", f"preload needs max_age of at least one year ({HSTS_PRELOAD_MIN_AGE}s)"))
        return issues

    @property
    def header_value(self) -> str:
        """``max-age=31536000; includeSubDomains; preload``."""
        parts = [f"max-age={self.max_age}"]
        if self.include_subdomains:
            parts.append("includeSubDomains")
        if self.preload:
            parts.append("preload")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in self._FIELDS}


@dataclass(frozen=True, slots=True)
class ClientAuth:
    """Client-certificate authentication. ``mode``: none, optional (a certificate is
    asked for; one that is sent must verify) or required (no certificate, no
    handshake). ``ca``: the PEM bundle client certificates must chain to; ``crl``: a
    PEM CRL file checked for the client's certificate. The verified subject (RFC
    4514), the certificate's SHA-256 fingerprint and the verification result
    (SUCCESS or NONE) go to the member in the headers named here (null: not sent);
    the engine removes these headers from what the client sent."""

    mode: str
    ca: str | None = None
    crl: str | None = None
    subject_header: str | None = "X-SSL-Client-DN"
    fingerprint_header: str | None = "X-SSL-Client-SHA256"
    verify_header: str | None = "X-SSL-Client-Verify"

    HEADER_KEYS: ClassVar[tuple[str, ...]] = ("subject_header", "fingerprint_header", "verify_header")
    _FIELDS: ClassVar[dict[str, v.Validator]] = {
        "mode": v.choice(CLIENT_AUTH_MODES),
        "ca": v.optional(v.text),
        "crl": v.optional(v.text),
        "subject_header": header_name_or_none,
        "fingerprint_header": header_name_or_none,
        "verify_header": header_name_or_none,
    }

    def __post_init__(self) -> None:
        settle(self)

    @staticmethod
    def _finish(values: dict[str, Any]) -> Issues:
        issues: Issues = []
        mode = values["mode"]
        if mode in ("optional", "required") and values["ca"] is None:
            issues.append(("ca", f"client_auth {mode} needs a ca (the bundle client certificates must chain to)"))
        if mode == "none":
            for key in ("ca", "crl"):
                if values[key] not in (None, FAILED):
                    issues.append((key, "client_auth none checks no certificate: it takes no ca or crl"))
        seen: dict[str, str] = {}
        for key in ClientAuth.HEADER_KEYS:
            name = values[key]
            if name in (None, FAILED):
                continue
            if name.lower() in seen:
                issues.append((key, f"{name} is also the {seen[name.lower()]}"))
            else:
                seen[name.lower()] = key
        return issues

    @property
    def headers(self) -> tuple[str, ...]:
        """The header names in use (what the engine strips from client requests)."""
        return tuple(name for name in (self.subject_header, self.fingerprint_header, self.verify_header) if name)

    def to_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in self._FIELDS}


# The policy: what a listener's tls block holds besides certificates, and all that
# defaults.tls holds. One table, used by TlsPolicy and TlsSettings.
_POLICY_FIELDS: dict[str, v.Validator] = {
    "min_version": tls_version,
    "ciphers": v.optional(openssl_list("cipher")),
    "ciphersuites": v.optional(openssl_list("TLS 1.3 cipher suite")),
    "curves": v.optional(openssl_list("curve")),
    "alpn": alpn_list,
    "hsts": v.optional(v.instance(Hsts)),
    "client_auth": v.optional(v.instance(ClientAuth)),
    "session_tickets": v.boolean,
    "ticket_keys": v.optional(v.text),
    "session_cache": v.integer(0, 10_000_000),
}
POLICY_KEYS = tuple(_POLICY_FIELDS)


def _policy_issues(values: dict[str, Any]) -> Issues:
    if values["session_tickets"] is False and values["ticket_keys"] not in (None, FAILED):
        return [("ticket_keys", "ticket keys are only used with session_tickets: true")]
    return []


def _policy_dict(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in POLICY_KEYS:
        value = getattr(obj, key)
        if key == "alpn":
            value = list(value)
        elif hasattr(value, "to_dict"):
            value = value.to_dict()
        out[key] = value
    return out


@dataclass(frozen=True, slots=True)
class TlsPolicy:
    """Every TLS setting of an https listener except its certificates: what
    ``defaults.tls`` holds and listeners inherit (see the module docstring for each)."""

    min_version: str = "1.2"
    ciphers: str | None = None
    ciphersuites: str | None = None
    curves: str | None = None
    alpn: tuple[str, ...] = ("http/1.1",)
    hsts: Hsts | None = None
    client_auth: ClientAuth | None = None
    session_tickets: bool = True
    ticket_keys: str | None = None
    session_cache: int = DEFAULT_SESSION_CACHE

    _FIELDS: ClassVar[dict[str, v.Validator]] = _POLICY_FIELDS

    def __post_init__(self) -> None:
        settle(self)

    _finish = staticmethod(_policy_issues)

    def to_dict(self) -> dict[str, Any]:
        return _policy_dict(self)


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """An https listener's certificates (one default, the others chosen by SNI:
    exact name, then a one-label wildcard, then the default) and its policy:
    ``min_version`` (1.2 or 1.3; TLS 1.3 is always on), ``ciphers`` (TLS 1.2,
    OpenSSL syntax; None: ECDHE with AES-GCM or ChaCha20 only), ``ciphersuites``
    (TLS 1.3), ``curves`` (key exchange groups), ``alpn`` (what is offered; only
    http/1.1 and http/1.0), ``hsts``, ``client_auth``, ``session_tickets``,
    ``ticket_keys`` (a key file shared by every worker and node, like haproxy's
    tls-ticket-keys: base64 keys one per line, newest last) and ``session_cache``
    (entries, 0 = off)."""

    certificates: tuple[TlsCertificate, ...]
    min_version: str = "1.2"
    ciphers: str | None = None
    ciphersuites: str | None = None
    curves: str | None = None
    alpn: tuple[str, ...] = ("http/1.1",)
    hsts: Hsts | None = None
    client_auth: ClientAuth | None = None
    session_tickets: bool = True
    ticket_keys: str | None = None
    session_cache: int = DEFAULT_SESSION_CACHE

    _FIELDS: ClassVar[dict[str, v.Validator]] = {"certificates": v.tuple_of(TlsCertificate), **_POLICY_FIELDS}

    def __post_init__(self) -> None:
        settle(self)

    @staticmethod
    def _finish(values: dict[str, Any]) -> Issues:
        issues = _policy_issues(values)
        certs = values["certificates"]
        if certs is FAILED:
            return issues
        if not certs:
            return issues + [("certificates", "at least one certificate is needed")]
        seen: dict[str, int] = {}
        for index, cert in enumerate(certs):
            path = cert.cert
            if known(path) and path in seen:
                issues.append((f"certificates[{index}].cert", f"duplicate certificate {path!r} (first at certificates[{seen[path]}])"))
            elif known(path):
                seen[path] = index
        flags = [cert.default for cert in certs]
        if len(certs) == 1 and ok(certs[0]):
            values["certificates"] = (replace(certs[0], default=True),)
        elif len(certs) > 1 and all(known(flag) for flag in flags) and sum(flags) != 1:
            issues.append(
                ("certificates", f"exactly one certificate must be the default when there are several (found {sum(flags)})")
            )
        return issues

    @property
    def default_certificate(self) -> TlsCertificate:
        return next(cert for cert in self.certificates if cert.default)

    @property
    def default_index(self) -> int:
        return next(index for index, cert in enumerate(self.certificates) if cert.default)

    @property
    def policy(self) -> TlsPolicy:
        """Everything but the certificates: two revisions with equal policies differ
        only in certificates (and the engine may keep its listening contexts)."""
        return TlsPolicy(**{key: getattr(self, key) for key in POLICY_KEYS})

    def to_dict(self) -> dict[str, Any]:
        return {"certificates": [cert.to_dict() for cert in self.certificates], **_policy_dict(self)}


@dataclass(frozen=True, slots=True)
class PoolTls:
    """TLS from the engine to a pool's members (re-encryption). ``verify``: required
    (the member's chain must verify against ``ca``, or the system's trust store when
    ``ca`` is None, and its name must match ``sni`` when set) or none. ``sni``: the
    server name sent to members (None: none is sent). ``cert``/``key``/``passphrase``:
    a client certificate for members that ask for one (``key`` None: in ``cert``).
    ``enabled: false`` keeps the block but speaks plain TCP."""

    enabled: bool = True
    verify: str = "required"
    ca: str | None = None
    sni: str | None = None
    cert: str | None = None
    key: str | None = None
    passphrase: str | None = field(default=None, repr=False)
    min_version: str = "1.2"

    _FIELDS: ClassVar[dict[str, v.Validator]] = {
        "enabled": v.boolean,
        "verify": v.choice(MEMBER_VERIFY),
        "ca": v.optional(v.text),
        "sni": v.optional(v.hostname),
        "cert": v.optional(v.text),
        "key": v.optional(v.text),
        "passphrase": v.optional(v.text),
        "min_version": tls_version,
    }

    def __post_init__(self) -> None:
        settle(self)

    @staticmethod
    def _finish(values: dict[str, Any]) -> Issues:
        issues: Issues = []
        sni = values["sni"]
        if isinstance(sni, str) and sni.startswith("["):
            issues.append(("sni", "a server name is a DNS name, not an address"))
        if values["verify"] == "none" and values["ca"] not in (None, FAILED):
            issues.append(("ca", "verify none checks no certificate: set verify: required to use a ca"))
        if values["cert"] is None:
            for key in ("key", "passphrase"):
                if values[key] not in (None, FAILED):
                    issues.append((key, f"{key} without cert (the client certificate)"))
        return issues

    def to_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in self._FIELDS}
