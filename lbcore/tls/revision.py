"""All the TLS of one Spec revision, compiled at once: what the engine calls.

    tls, warnings = compile_tls(spec, base_dir)          # TlsError: every problem, by path
    contexts = tls.listeners["web-tls"]                  # ServerContexts
    terminator = TlsServer(contexts.contexts, contexts.store.sni.lookup,  # lbcore._fastpath.tlsconn
                           contexts.store.sni.default_index, 10.0, loop)
    protocol = terminator.connection(app_protocol)       # per accepted connection
    member = tls.pools["secure"]                         # MemberTls, absent: plain TCP
    ...
    for issue in tls.refresh_ticket_keys():              # every few seconds: rotation
        log.warning("%s", issue)

The supervisor runs ``compile_tls`` to validate a revision before accepting it
(a bad certificate anywhere refuses the whole revision, the running one stays);
each worker runs it again after receiving the revision (contexts cannot cross
processes), and every worker reading the same ticket key file is what lets a
ticket from one resume on another. Key files are read once per path per
revision and shared by the listeners naming them; pass the previous revision's
``ticket_files`` to keep watching the same files without re-reading.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field

from lbcore.spec import Spec
from lbcore.tls.errors import TlsError, TlsIssue
from lbcore.tls.policy import MemberTls, ServerContexts, build_member_tls, build_server_contexts
from lbcore.tls.store import listener_path, load_listener_certificates, resolve_path
from lbcore.tls.tickets import TicketKeyFile

__all__ = ["SpecTls", "compile_tls"]


@dataclass(eq=False)
class SpecTls:
    """The compiled TLS of a revision: contexts by listener name (https listeners),
    member TLS by pool name (pools with TLS enabled), ticket key files by path."""

    listeners: dict[str, ServerContexts] = field(default_factory=dict)
    pools: dict[str, MemberTls] = field(default_factory=dict)
    ticket_files: dict[str, TicketKeyFile] = field(default_factory=dict)
    _users: dict[str, list[str]] = field(default_factory=dict)  # key file -> listener names

    def refresh_ticket_keys(self) -> list[TlsIssue]:
        """Reload changed key files and install their new rings on the listeners
        using them (live). Returns the problems (a file that became bad keeps its
        previous ring, so tickets keep working)."""
        issues: list[TlsIssue] = []
        for path, keyfile in self.ticket_files.items():
            try:
                changed = keyfile.refresh()
                if changed:
                    for name in self._users.get(path, ()):
                        self.listeners[name].set_ticket_keys(keyfile.keys)
            except TlsError as exc:  # the messages name the file
                issues.extend(exc.issues)
        return issues


def compile_tls(
    spec: Spec,
    base_dir: str | os.PathLike[str] = ".",
    *,
    ticket_files: dict[str, TicketKeyFile] | None = None,
    now: dt.datetime | None = None,
) -> tuple[SpecTls, list[TlsIssue]]:
    """Load every certificate, key file, CA and CRL of ``spec`` and build every
    context. One TlsError lists every problem of every listener and pool."""
    result = SpecTls()
    errors: list[TlsIssue] = []
    warnings: list[TlsIssue] = []
    previous = ticket_files or {}
    for listener in spec.listeners:
        if listener.protocol != "https" or listener.tls is None:
            continue
        try:
            store, notes = load_listener_certificates(listener, base_dir, now=now)
        except TlsError as exc:
            errors.extend(exc.issues)
            continue
        warnings.extend(notes)
        keys = None
        if listener.tls.session_tickets and listener.tls.ticket_keys is not None:
            path = resolve_path(base_dir, listener.tls.ticket_keys)
            try:
                keyfile = result.ticket_files.get(path) or previous.get(path) or TicketKeyFile(path)
                if path in previous and path not in result.ticket_files:
                    keyfile.refresh()
            except TlsError as exc:
                errors.extend(exc.at(f"{listener_path(listener)}.tls.ticket_keys"))
                continue
            result.ticket_files[path] = keyfile
            result._users.setdefault(path, []).append(listener.name)
            keys = keyfile.keys
        try:
            contexts = build_server_contexts(listener, store, base_dir, ticket_keys=keys)
        except TlsError as exc:
            errors.extend(exc.issues)
            continue
        warnings.extend(contexts.warnings)
        result.listeners[listener.name] = contexts
    for pool in spec.pools:
        try:
            member, notes = build_member_tls(pool, base_dir, now=now)
        except TlsError as exc:
            errors.extend(exc.issues)
            continue
        warnings.extend(notes)
        if member is not None:
            result.pools[pool.name] = member
    if errors:
        raise TlsError(errors)
    return result, warnings
