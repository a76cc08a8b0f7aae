"""``ssl.SSLContext``s from the Spec's TLS settings, built once per revision.

Listener side (``build_server_contexts``): one context per SNI entry (see
``lbcore.tls.sni``), every one built by the same policy, differing only in the
certificates loaded (an RSA and an ECDSA certificate for the same names go into
one context, and OpenSSL picks per client). The default entry's context is the
one to hand to ``loop.create_server(ssl=...)``: its ``sni_callback`` moves each
connection to its entry's context (``ssl_object.context = ...``), the default
one included, so a server kept across revisions can be pointed at a new
revision's contexts with ``ServerContexts.attach(base)``. The engine itself
terminates TLS with ``lbcore._fastpath.tlsconn``, which takes ``contexts`` and
``store.sni.lookup`` and makes the same switch (in C for the compiled twin).

What a context switch carries (OpenSSL's ``SSL_set_SSL_CTX``): the certificates,
the ALPN choice, the CA store and session-id context come from the switched-to
context; protocol versions, ciphers, groups, options (tickets off), verify mode
and the session cache stay those of the context the connection was accepted on,
and so do ticket callbacks (OpenSSL's ``session_ctx``). Hence every context of a
listener gets the same policy and the same ticket ring, and a revision whose
``TlsSettings.policy`` changed needs a new server (a new base context), while one
that only changed certificates can ``attach``.

The policy: TLS 1.2 minimum (1.3 settable), TLS 1.3 always on; TLS 1.2 ciphers
ECDHE with AES-GCM or ChaCha20-Poly1305 only (Mozilla's "intermediate" list less
DHE: forward secrecy, AEAD, no RC4/3DES/CBC/SHA-1/export); TLS 1.3 suites and
key-exchange groups settable (through ``lbcore._fastpath.sslctx``; Python's own
``set_ecdh_curve`` sets a single curve); no compression, no renegotiation,
server cipher preference; ALPN as the Spec says (http/1.1 by default, never a
protocol lbcore does not speak); client certificates optional or required
against a CA bundle and a CRL; session tickets on or off, with a shared ticket
key ring (``lbcore.tls.tickets``) when the Spec names a key file; the session
cache sized or off; the chain sent is the one loaded with the certificate, never
one OpenSSL completes from the verify store (which holds the client-auth CAs).

Member side (``build_member_tls``): a client context per pool with TLS to its
members: verify (the pool's CA or the system store) or not, SNI, a client
certificate.

Certificates go into OpenSSL from memory: ``load_cert_chain`` wants a path, so
the PEM is written to an anonymous in-memory file (``memfd_create``) and passed
as ``/proc/self/fd/N``; keys never touch a disk. Where that is missing, a private
temporary file is used and removed at once.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import ssl
import tempfile
from dataclasses import dataclass
from typing import Any, Iterator

from cryptography import x509

from lbcore._fastpath import sslctx
from lbcore.spec import ClientAuth, Hsts, Listener, Pool, PoolTls, TlsSettings
from lbcore.spec._tls import DEFAULT_SESSION_CACHE
from lbcore.tls.certs import Certificate, load_certificate_files
from lbcore.tls.errors import TlsError, TlsIssue
from lbcore.tls.store import CertStore, listener_path, resolve_path
from lbcore.tls.tickets import TicketKeys, install_ticket_keys

__all__ = [
    "DEFAULT_CIPHERS",
    "MemberTls",
    "PeerCertificate",
    "ServerContexts",
    "build_member_tls",
    "build_server_contexts",
    "client_cert_headers",
    "hsts_header",
    "load_certificate_into",
    "peer_certificate",
]

# Mozilla "intermediate" (v5.7) TLS 1.2 list without the DHE suites (Python cannot
# enable OpenSSL's automatic DH parameters): ECDHE only, AEAD only; ECDSA first so
# a context with both key types serves ECDSA to clients that can take it.
DEFAULT_CIPHERS = ":".join([
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
])
VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
CLIENT_AUTH_VERIFY = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}
VERIFY_SUCCESS, VERIFY_NONE = "SUCCESS", "NONE"  # verify header values, as nginx's $ssl_client_verify
_SERVER_OPTIONS = ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE | getattr(ssl, "OP_NO_RENEGOTIATION", 0)
_WEAK_KEX = frozenset({"kx-rsa", "kx-psk", "kx-rsa-psk", "kx-srp"})  # no forward secrecy


# -- loading certificates from memory -----------------------------------------------------------


@contextlib.contextmanager
def _memory_path(data: bytes) -> Iterator[str]:
    """A path whose content is ``data``, readable by OpenSSL, for the ``with`` block."""
    memfd = getattr(os, "memfd_create", None)
    if memfd is not None and os.path.isdir("/proc/self/fd"):
        fd = memfd("lbcore-tls", getattr(os, "MFD_CLOEXEC", 0))
        try:
            os.write(fd, data)
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    with tempfile.TemporaryDirectory(prefix="lbcore-tls-") as directory:  # mode 0700
        path = os.path.join(directory, "pem")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        yield path


def load_certificate_into(context: ssl.SSLContext, certificate: Certificate) -> None:
    """``context.load_cert_chain`` from a Certificate in memory. Calling it again
    with a certificate of the other key type adds it beside the first."""
    problem = None
    with _memory_path(certificate.chain_pem + certificate.key_pem) as path:
        try:
            context.load_cert_chain(path)
        except (ssl.SSLError, OSError) as exc:
            problem = f"OpenSSL refused the certificate or key ({getattr(exc, 'reason', None) or type(exc).__name__})"
    if problem is not None:
        raise TlsError(problem)


# -- listener contexts ----------------------------------------------------------------------------


def _cipher_warnings(context: ssl.SSLContext) -> list[str]:
    notes = []
    for cipher in context.get_ciphers():
        if cipher.get("protocol") == "TLSv1.3":
            continue
        weak = []
        if cipher.get("kea") in _WEAK_KEX:
            weak.append("no forward secrecy")
        if not cipher.get("aead") and cipher.get("digest") in ("sha1", "md5"):
            weak.append("CBC with SHA-1")
        if any(bad in (cipher.get("symmetric") or "") for bad in ("rc4", "des", "null")):
            weak.append("a broken cipher")
        if weak:
            notes.append(f"cipher {cipher['name']}: {', '.join(weak)}")
    return notes


def _apply_policy(context: ssl.SSLContext, settings: TlsSettings, base_dir: str, path: str,
                  errors: list[TlsIssue], warnings: list[TlsIssue]) -> None:
    context.minimum_version = VERSIONS[settings.min_version]
    context.maximum_version = ssl.TLSVersion.MAXIMUM_SUPPORTED
    context.options |= _SERVER_OPTIONS
    try:
        context.set_ciphers(settings.ciphers or DEFAULT_CIPHERS)
    except ssl.SSLError:
        errors.append(TlsIssue(f"{path}.ciphers", f"OpenSSL knows no cipher in {settings.ciphers!r}"))
    else:
        if settings.ciphers:
            warnings.extend(TlsIssue(f"{path}.ciphers", note) for note in _cipher_warnings(context))
    for key, setter in (("ciphersuites", sslctx.set_ciphersuites), ("curves", sslctx.set_groups)):
        value = getattr(settings, key)
        if value is None:
            continue
        try:
            setter(context, value)
        except ValueError as exc:
            errors.append(TlsIssue(f"{path}.{key}", f"OpenSSL refused it: {exc}"))
        except sslctx.OpenSSLUnavailable as exc:
            errors.append(TlsIssue(f"{path}.{key}", f"cannot be set here: {exc}"))
    if settings.alpn:
        context.set_alpn_protocols(list(settings.alpn))
    if not settings.session_tickets:
        context.options |= ssl.OP_NO_TICKET
        context.num_tickets = 0  # TLS 1.3: no NewSessionTicket at all (not even stateful ones)
    try:
        sslctx.set_session_cache_size(context, settings.session_cache)
    except sslctx.OpenSSLUnavailable as exc:
        if settings.session_cache != DEFAULT_SESSION_CACHE:
            errors.append(TlsIssue(f"{path}.session_cache", f"cannot be set here: {exc}"))
    try:
        sslctx.send_configured_chain_only(context)
    except sslctx.OpenSSLUnavailable:
        pass  # OpenSSL's default then: a chain completed from the verify store, if it can
    if settings.client_auth is not None:
        _apply_client_auth(context, settings.client_auth, base_dir, f"{path}.client_auth", errors)


def _load_verify_file(context: ssl.SSLContext, file: str, what: str) -> str | None:
    """Load a CA bundle or CRL into ``context``; the problem, or None."""
    try:
        context.load_verify_locations(cafile=file)
    except FileNotFoundError:
        return f"cannot read {file}: no such file"
    except (ssl.SSLError, OSError) as exc:
        return f"{file} is not a PEM {what} ({getattr(exc, 'reason', None) or exc.strerror or type(exc).__name__})"
    return None


def _apply_client_auth(context: ssl.SSLContext, auth: ClientAuth, base_dir: str, path: str, errors: list[TlsIssue]) -> None:
    context.verify_mode = CLIENT_AUTH_VERIFY[auth.mode]
    if auth.mode == "none":
        return
    for key in ("ca", "crl"):
        value = getattr(auth, key)
        if value is None:
            continue
        problem = _load_verify_file(context, resolve_path(base_dir, value), "CA bundle" if key == "ca" else "CRL")
        if problem is not None:
            errors.append(TlsIssue(f"{path}.{key}", problem))
        elif key == "crl":
            context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF


class ServerContexts:
    """One https listener's contexts for one revision.

    ``context``: the one for ``create_server`` (the default entry's, with the SNI
    callback); ``contexts[i]`` serves ``store.sni.entries[i]``. ``client_auth`` and
    ``hsts`` come from the settings, for the engine's per-request headers.
    """

    __slots__ = ("settings", "store", "contexts", "context", "warnings", "_lookup")

    def __init__(self, settings: TlsSettings, store: CertStore, contexts: tuple[ssl.SSLContext, ...], warnings: list[TlsIssue]) -> None:
        self.settings = settings
        self.store = store
        self.contexts = contexts
        self.context = contexts[store.sni.default_index]
        self.warnings = warnings
        self._lookup = store.sni.lookup
        self.context.sni_callback = self.sni_callback

    def sni_callback(self, ssl_object: Any, server_name: str | None, _context: ssl.SSLContext) -> None:
        """Python's ``sni_callback``: move the connection to its name's context."""
        ssl_object.context = self.contexts[self._lookup(server_name)]

    def context_for(self, server_name: str | None) -> ssl.SSLContext:
        return self.contexts[self._lookup(server_name)]

    def attach(self, base: ssl.SSLContext) -> None:
        """Serve this revision's certificates through a server kept from an earlier
        one (its ``base`` context): only when the policy is unchanged."""
        base.sni_callback = self.sni_callback

    def set_ticket_keys(self, keys: TicketKeys) -> None:
        """Rotate: install a new ring on every context (live; takes effect at once)."""
        for context in self.contexts:
            install_ticket_keys(context, keys)

    @property
    def client_auth(self) -> ClientAuth | None:
        return self.settings.client_auth

    @property
    def hsts(self) -> Hsts | None:
        return self.settings.hsts


def build_server_contexts(
    listener: Listener,
    store: CertStore,
    base_dir: str | os.PathLike[str] = ".",
    *,
    ticket_keys: TicketKeys | None = None,
) -> ServerContexts:
    """Every context of an https listener (see the module docstring). TlsError lists
    every problem with its Spec path (a cipher list OpenSSL rejects, an unreadable
    CA or CRL, a certificate OpenSSL refuses); ``ServerContexts.warnings`` holds
    the rest (weak ciphers asked for)."""
    settings = listener.tls
    if settings is None:
        raise TlsError([TlsIssue(listener_path(listener), "the listener has no tls settings")])
    path = f"{listener_path(listener)}.tls"
    base_dir = os.fspath(base_dir)
    errors: list[TlsIssue] = []
    warnings: list[TlsIssue] = []
    contexts = []
    for number, entry in enumerate(store.sni.entries):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        # Policy problems are the same for every context: report them once.
        _apply_policy(context, settings, base_dir, path, errors if number == 0 else [], warnings if number == 0 else [])
        for certificate in entry.certificates:
            try:
                load_certificate_into(context, certificate)
            except TlsError as exc:
                errors.extend(exc.at(store.path_of(certificate)))
        if ticket_keys is not None and settings.session_tickets:
            try:
                install_ticket_keys(context, ticket_keys)
            except TlsError as exc:
                if number == 0:
                    errors.extend(exc.at(f"{path}.ticket_keys"))
        contexts.append(context)
    if errors:
        raise TlsError(errors)
    return ServerContexts(settings, store, tuple(contexts), warnings)


def hsts_header(settings: TlsSettings) -> tuple[str, str] | None:
    """The Strict-Transport-Security header to add to responses, or None."""
    return ("Strict-Transport-Security", settings.hsts.header_value) if settings.hsts else None


# -- client certificates -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PeerCertificate:
    """The verified certificate a peer presented: subject and issuer as RFC 4514
    strings made header-safe (ASCII; other bytes as RFC 4514 ``\\XX`` escapes), the
    SHA-256 fingerprint of its DER (lower-case hex) and its expiry."""

    subject: str
    issuer: str
    fingerprint_sha256: str
    not_after: dt.datetime


def _header_safe(text: str) -> str:
    out = []
    for char in text:
        if " " <= char <= "~":
            out.append(char)
        else:
            out.extend(f"\\{byte:02X}" for byte in char.encode("utf-8"))
    return "".join(out)


def peer_certificate(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> PeerCertificate | None:
    """The peer's certificate after the handshake (None: it sent none). With
    client_auth optional/required OpenSSL has verified it, or the handshake failed."""
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return None
    cert = x509.load_der_x509_certificate(der)
    return PeerCertificate(
        subject=_header_safe(cert.subject.rfc4514_string()),
        issuer=_header_safe(cert.issuer.rfc4514_string()),
        fingerprint_sha256=hashlib.sha256(der).hexdigest(),
        not_after=cert.not_valid_after_utc,
    )


def client_cert_headers(peer: PeerCertificate | None, auth: ClientAuth) -> tuple[tuple[str, str], ...]:
    """The headers to add to every request of a connection (compute ``peer`` once per
    connection with ``peer_certificate``). The engine first removes any header the
    client sent under ``auth.headers``: only the engine says who the client is."""
    headers = []
    if auth.verify_header:
        headers.append((auth.verify_header, VERIFY_SUCCESS if peer is not None else VERIFY_NONE))
    if peer is not None:
        if auth.subject_header:
            headers.append((auth.subject_header, peer.subject))
        if auth.fingerprint_header:
            headers.append((auth.fingerprint_header, peer.fingerprint_sha256))
    return tuple(headers)


# -- member contexts ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class MemberTls:
    """TLS to one pool's members: ``loop.create_connection(..., **member.connect_kwargs())``."""

    context: ssl.SSLContext
    server_hostname: str | None  # SNI sent (and name checked when verifying); None: none
    settings: PoolTls

    def connect_kwargs(self) -> dict[str, Any]:
        # asyncio and uvloop: server_hostname "" sends no SNI and checks no name.
        return {"ssl": self.context, "server_hostname": self.server_hostname or ""}


def build_member_tls(
    pool: Pool, base_dir: str | os.PathLike[str] = ".", *, now: dt.datetime | None = None
) -> tuple[MemberTls | None, list[TlsIssue]]:
    """The client context for a pool's members; (None, []) when the pool speaks plain
    TCP (no tls block, or ``enabled: false``). TlsError lists every problem."""
    settings = pool.tls
    if settings is None or not settings.enabled:
        return None, []
    path = f"pools[{pool.name}].tls"
    base_dir = os.fspath(base_dir)
    errors: list[TlsIssue] = []
    warnings: list[TlsIssue] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = VERSIONS[settings.min_version]
    context.options |= ssl.OP_NO_COMPRESSION
    if settings.verify == "none":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context.verify_mode = ssl.CERT_REQUIRED
        context.check_hostname = settings.sni is not None
        if settings.ca is None:
            context.load_default_certs(ssl.Purpose.SERVER_AUTH)
        else:
            problem = _load_verify_file(context, resolve_path(base_dir, settings.ca), "CA bundle")
            if problem is not None:
                errors.append(TlsIssue(f"{path}.ca", problem))
    if settings.cert is not None:
        key = resolve_path(base_dir, settings.key) if settings.key is not None else None
        try:
            certificate, notes = load_certificate_files(
                resolve_path(base_dir, settings.cert), key, settings.passphrase, now=now, usage="client"
            )
            load_certificate_into(context, certificate)
        except TlsError as exc:
            errors.extend(exc.at(f"{path}.cert"))
        else:
            warnings.extend(TlsIssue(f"{path}.cert", note) for note in notes)
    if errors:
        raise TlsError(errors)
    return MemberTls(context, settings.sni, settings), warnings
