"""What a render needs from disk: certificates, keys, ticket key files, CA and CRL paths.

The renderers are pure: they turn a Spec and a ``Material`` into file contents.
``load_material`` does the reading, with lbcore's own TLS loader
(``lbcore.tls.load_listener_certificates``), so a certificate the native engine
refuses is refused here with the same message, and the host names each certificate
serves (CN and SANs, normalised) are the ones lbcore's SNI table uses.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from lbcore.spec import Spec, SpecIssue
from lbcore.tls import (
    Certificate,
    CertStore,
    TlsError,
    load_certificate_files,
    load_listener_certificates,
    load_ticket_keys,
)
from lbcore.tls.store import resolve_path

__all__ = ["Material", "RenderError", "load_material"]


class RenderError(ValueError):
    """A Spec the driver cannot serve faithfully; ``issues`` names every field."""

    def __init__(self, issues: list[SpecIssue]) -> None:
        self.issues = list(issues)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(issue) for issue in self.issues)


@dataclass(frozen=True)
class Material:
    """Everything read from disk for one render. ``stores``: https listener name ->
    its certificates; ``ticket_keys``: listener -> keys, oldest first; ``pool_client``:
    pool -> the client certificate it presents to members; ``spec_dir``: the
    directory relative Spec paths start from (made absolute)."""

    spec_dir: str = "/"
    stores: Mapping[str, CertStore] = field(default_factory=dict)
    ticket_keys: Mapping[str, tuple[bytes, ...]] = field(default_factory=dict)
    pool_client: Mapping[str, Certificate] = field(default_factory=dict)

    def path(self, spec_path: str) -> str:
        """A path from the Spec, absolute."""
        return os.path.normpath(resolve_path(self.spec_dir, spec_path))


def load_material(spec: Spec, spec_dir: str | os.PathLike[str] = ".") -> Material:
    """Read every certificate, key and ticket key file ``spec`` names (relative paths
    from ``spec_dir``, the Spec file's directory). Raises RenderError listing every
    file that cannot be used."""
    base = os.path.abspath(os.fspath(spec_dir))
    issues: list[SpecIssue] = []
    stores: dict[str, CertStore] = {}
    tickets: dict[str, tuple[bytes, ...]] = {}
    clients: dict[str, Certificate] = {}
    for listener in spec.listeners:
        if listener.tls is None:
            continue
        where = f"listeners[{listener.name}].tls"
        try:
            stores[listener.name], _warnings = load_listener_certificates(listener, base)
        except TlsError as exc:
            issues.extend(SpecIssue(issue.path, issue.message) for issue in exc.issues)
        if listener.tls.ticket_keys is not None:
            try:
                tickets[listener.name] = load_ticket_keys(resolve_path(base, listener.tls.ticket_keys)).keys
            except TlsError as exc:
                issues.extend(SpecIssue(f"{where}.ticket_keys", issue.message) for issue in exc.issues)
    for pool in spec.pools:
        tls = pool.tls
        if tls is None or not tls.enabled or tls.cert is None:
            continue
        key = resolve_path(base, tls.key) if tls.key is not None else None
        try:
            clients[pool.name], _warnings = load_certificate_files(
                resolve_path(base, tls.cert), key, tls.passphrase, usage="client"
            )
        except TlsError as exc:
            issues.extend(SpecIssue(f"pools[{pool.name}].tls.cert", issue.message) for issue in exc.issues)
    if issues:
        raise RenderError(issues)
    return Material(base, stores, tickets, clients)
