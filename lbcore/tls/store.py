"""A listener's certificates, loaded and checked together: the ``CertStore``.

``load_listener_certificates(listener, base_dir)`` reads every certificate a
listener's Spec names (paths relative to ``base_dir``, the Spec file's directory),
checks each (``lbcore.tls.certs``) and builds the SNI table. A listener with any
bad certificate is refused whole, with one ``TlsError`` listing *every* failing
certificate by its Spec path::

    listeners[web-tls].tls.certificates[1]: key does not match certificate
    listeners[web-tls].tls.certificates[3]: certificate expired on 2024-05-01 00:00 UTC

Warnings (expiring within 30 days, names shadowed by an earlier certificate of
the same key type, stray certificates in a chain file) come back with the same
paths. ``build_cert_store`` does the same from Certificates already parsed.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from typing import Sequence

from lbcore.spec import Listener, TlsCertificate
from lbcore.tls.certs import Certificate, load_certificate_files
from lbcore.tls.errors import TlsError, TlsIssue
from lbcore.tls.sni import SniMatch, SniTable

__all__ = ["CertStore", "build_cert_store", "listener_path", "load_listener_certificates", "resolve_path"]


def resolve_path(base_dir: str | os.PathLike[str], path: str) -> str:
    """``path`` from a Spec: absolute as is, relative to ``base_dir`` otherwise."""
    return path if os.path.isabs(path) else os.path.join(os.fspath(base_dir), path)


def listener_path(listener: Listener) -> str:
    """``listeners[NAME]``: how TLS problems name a listener (as ``lbcore diff`` does)."""
    return f"listeners[{listener.name}]"


@dataclass(frozen=True, slots=True, eq=False)
class CertStore:
    """One listener's certificates in Spec order, the default's index, each one's Spec
    path, and the SNI table over them."""

    certificates: tuple[Certificate, ...]
    default_index: int
    paths: tuple[str, ...]
    sni: SniTable

    @property
    def default(self) -> Certificate:
        return self.certificates[self.default_index]

    def path_of(self, certificate: Certificate) -> str:
        return self.paths[self.certificates.index(certificate)]

    def explain(self, server_name: str | None, *, offers_ecdsa: bool = True) -> str:
        """Which certificate a client gets, and why (for ``explain`` and logs)."""
        found: SniMatch = self.sni.match(server_name)
        chosen = found.entry.choose(offers_ecdsa)
        reason = {
            "exact": f"exact name {found.key}",
            "wildcard": f"wildcard {found.key}",
            "default": f"no certificate names {server_name!r}: the default",
            "no-sni": "no SNI: the default",
        }[found.how]
        other = [cert for cert in found.entry.certificates if cert is not chosen]
        pick = f", {chosen.key_type} (also {other[0].key_type} for clients without {chosen.key_type})" if other else ""
        return f"{self.path_of(chosen)} {chosen.subject!r}: {reason}{pick}"


def build_cert_store(
    certificates: Sequence[Certificate], default_index: int = 0, paths: Sequence[str] | None = None
) -> tuple[CertStore, list[TlsIssue]]:
    """A CertStore from parsed certificates; the warnings are shadowed names."""
    paths = tuple(paths) if paths is not None else tuple(f"certificates[{i}]" for i in range(len(certificates)))
    table = SniTable(certificates, default_index)
    warnings = [TlsIssue(paths[item.certificate], str(item)) for item in table.shadowed]
    return CertStore(tuple(certificates), default_index, paths, table), warnings


def load_listener_certificates(
    listener: Listener, base_dir: str | os.PathLike[str] = ".", *, now: dt.datetime | None = None
) -> tuple[CertStore, list[TlsIssue]]:
    """Read and check every certificate of an https listener (see the module docstring)."""
    if listener.tls is None:
        raise TlsError([TlsIssue(listener_path(listener), "the listener has no tls settings")])
    prefix = f"{listener_path(listener)}.tls"
    errors: list[TlsIssue] = []
    warnings: list[TlsIssue] = []
    loaded: list[Certificate] = []
    paths: list[str] = []
    for index, spec_cert in enumerate(listener.tls.certificates):
        path = f"{prefix}.certificates[{index}]"
        try:
            certificate, notes = _load(spec_cert, base_dir, now)
        except TlsError as exc:
            errors.extend(exc.at(path))
            continue
        warnings.extend(TlsIssue(path, note) for note in notes)
        loaded.append(certificate)
        paths.append(path)
    if errors:
        raise TlsError(errors)
    store, shadowed = build_cert_store(loaded, listener.tls.default_index, paths)
    return store, warnings + shadowed


def _load(spec_cert: TlsCertificate, base_dir: str | os.PathLike[str], now: dt.datetime | None) -> tuple[Certificate, list[str]]:
    key = resolve_path(base_dir, spec_cert.key) if spec_cert.key is not None else None
    return load_certificate_files(resolve_path(base_dir, spec_cert.cert), key, spec_cert.passphrase, now=now)
