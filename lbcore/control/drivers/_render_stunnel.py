"""Spec -> stunnel.conf, for https listeners whose TLS stunnel terminates.

Each such listener becomes a stunnel service that accepts on the listener's
address, terminates TLS with the listener's default certificate and policy, and
connects to haproxy's unix socket for that listener (``tls-NAME.sock`` in the
runtime directory) sending the PROXY protocol header, so haproxy sees the client's
address (``accept-proxy`` on its bind). Each name another certificate serves gets
an SNI service (``sni = SERVICE:NAME``): exact names first, then one-label
wildcards, as lbcore selects (stunnel takes the first pattern that matches).

What stunnel cannot do is refused by the renderer with the field's path: ALPN
other than HTTP/1.x (stunnel offers no ALPN; an HTTP/1.1 client needs none), TLS
session ticket key files, a disabled session cache (stunnel's size 0 means
unlimited), client certificates and SNI-based ACLs (haproxy would not see them).
A name served by both an RSA and an ECDSA certificate gets the ECDSA one (stunnel
cannot choose by what the client supports).
"""

from __future__ import annotations

from lbcore.spec import Listener, Spec, SpecIssue
from lbcore.tls import DEFAULT_CIPHERS, CertStore

from ._material import Material

__all__ = ["TLS_VERSION", "render_stunnel", "sni_services"]

TLS_VERSION = {"1.2": "TLSv1.2", "1.3": "TLSv1.3"}  # the names stunnel and haproxy both use

# ALPN ids an HTTP/1.x client does without: offering none of them changes nothing.
_HTTP1_ALPN = {"http/1.1", "http/1.0"}


def _value(text: str) -> str:
    """A stunnel option value: stunnel reads to the end of the line, trimmed."""
    if any(ch in text for ch in "\r\n") or text != text.strip():
        raise ValueError(f"cannot write {text!r} in stunnel.conf")
    return text


def sni_services(store: CertStore) -> list[tuple[str, int]]:
    """(server name pattern, certificate index) in the order stunnel must try them:
    exact names, then wildcards; each name goes to the certificate lbcore gives it
    (first in Spec order per key type, ECDSA preferred when both). One certificate
    needs no SNI service: it is the default."""
    if len(store.certificates) == 1:
        return []
    owner: dict[str, dict[str, int]] = {}
    for index, cert in enumerate(store.certificates):
        for name in cert.hostnames:
            owner.setdefault(name, {}).setdefault(cert.key_type, index)
    out = []
    for wildcard in (False, True):
        for name in sorted(owner):
            if name.startswith("*.") == wildcard:
                by_type = owner[name]
                out.append((name, by_type.get("ecdsa", by_type.get("rsa", 0))))
    return out


def _tls_lines(listener: Listener, issues: list[SpecIssue]) -> list[str]:
    tls = listener.tls
    assert tls is not None
    path = f"listeners[{listener.name}].tls"
    lines = [f"sslVersionMin = {TLS_VERSION[tls.min_version]}", f"ciphers = {_value(tls.ciphers or DEFAULT_CIPHERS)}"]
    if tls.ciphersuites:
        lines.append(f"ciphersuites = {_value(tls.ciphersuites)}")
    if tls.curves:
        lines.append(f"curves = {_value(tls.curves)}")
    if set(tls.alpn) - _HTTP1_ALPN:
        issues.append(SpecIssue(f"{path}.alpn", "stunnel offers no ALPN: only HTTP/1.x (which needs none) can be expressed"))
    if not tls.session_tickets:
        lines.append("options = NO_TICKET")
    elif tls.ticket_keys is not None:
        issues.append(SpecIssue(f"{path}.ticket_keys", "stunnel cannot load a shared ticket key file"))
    if tls.session_cache == 0:
        issues.append(SpecIssue(f"{path}.session_cache", "stunnel cannot turn its session cache off (0 means unlimited there)"))
    else:
        lines.append(f"sessionCacheSize = {tls.session_cache}")
    if tls.client_auth is not None and tls.client_auth.mode != "none":
        issues.append(SpecIssue(f"{path}.client_auth", "client certificates cannot be expressed when stunnel terminates TLS"))
    return lines


def render_stunnel(spec: Spec, material: Material, cert_paths: dict[tuple[str, int], str], runtime: str) -> tuple[str, list[SpecIssue]]:
    """stunnel.conf's text and the issues found. ``cert_paths``: (listener, certificate
    index) -> the combined PEM file haproxy's renderer wrote."""
    issues: list[SpecIssue] = []
    out = [
        f"; stunnel.conf for lbcore revision {spec.revision}: TLS for https listeners,",
        "; handed to haproxy over unix sockets with the PROXY protocol. Generated.",
        "foreground = yes",
        "pid =",
        "syslog = no",
        "debug = info",  # info logs each listening socket bound: what a reload waits for
    ]
    for listener in spec.listeners:
        if listener.protocol != "https" or listener.tls is None:
            continue
        store = material.stores[listener.name]
        tls_lines = _tls_lines(listener, issues)
        connect = f"{runtime}/tls-{listener.name}.sock"
        bind = listener.bind
        accept = f"{bind.host}:{bind.port}"
        out += [
            "",
            f"[{listener.name}]",
            f"accept = {accept}",
            f"connect = {connect}",
            "protocol = proxy",
            f"cert = {cert_paths[(listener.name, store.default_index)]}",
            *tls_lines,
        ]
        for number, (name, index) in enumerate(sni_services(store), start=1):
            out += [
                "",
                f"[{listener.name}.sni{number}]",
                f"sni = {listener.name}:{name}",
                f"connect = {connect}",
                "protocol = proxy",
                f"cert = {cert_paths[(listener.name, index)]}",
                *tls_lines,
            ]
    return "\n".join(out) + "\n", issues
