"""SNI certificate selection: a table built once per revision, looked up per handshake.

Theory of operation. A listener's certificates are grouped into *entries*: an
entry is at most one RSA and at most one ECDSA certificate that serve the same
names. Every name a certificate carries maps to an entry, in three tiers:

    exact name        www.example.com        -> entry
    one-label wildcard *.example.com         -> entry (matches a.example.com, not
                                                a.b.example.com nor example.com)
    default           the default certificate (and the certificate of the other
                      key type with exactly the same names, if there is one)

``lookup(server_name)`` tries the tiers in that order and returns an entry index;
no SNI, or a name nothing covers, gives the default. Within a tier the first
certificate of each key type (in Spec order) wins; a later one of the same type
for the same name is shadowed (a warning). The tier decides before the key type,
as in haproxy: an exact RSA match beats a wildcard ECDSA one.

Choosing between the RSA and the ECDSA certificate of an entry is left to the
handshake when the engine uses Python's ``ssl``: it builds one SSLContext per
entry with both certificates loaded (``load_cert_chain`` twice), and its
``sni_callback`` (which only learns the name) switches the connection to that
context; OpenSSL then picks ECDSA when the client's signature algorithms (TLS
1.3, 1.2) or cipher suites (TLS 1.2) allow it, else RSA. A caller that has the
parsed ClientHello instead (``lbcore.tls.clienthello``) can choose itself:
``select(name, offers_ecdsa=hello.offers_ecdsa)`` (the same rule: ECDSA when the
client can verify it, else RSA, else whatever there is).

Pure: no I/O, no ssl.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from lbcore.tls.certs import Certificate, normalize_hostname

__all__ = ["MATCH_KINDS", "Shadowed", "SniEntry", "SniMatch", "SniTable"]

MATCH_KINDS = ("exact", "wildcard", "default", "no-sni")


@dataclass(frozen=True, slots=True)
class SniEntry:
    """At most one certificate of each key type, serving the same names."""

    rsa: Certificate | None
    ecdsa: Certificate | None

    def choose(self, offers_ecdsa: bool) -> Certificate:
        """ECDSA for a client that offers it, else RSA, else the one there is."""
        if offers_ecdsa and self.ecdsa is not None:
            return self.ecdsa
        if self.rsa is not None:
            return self.rsa
        assert self.ecdsa is not None  # an entry holds at least one certificate
        return self.ecdsa

    @property
    def certificates(self) -> tuple[Certificate, ...]:
        """RSA first, then ECDSA: the order to load them into one context."""
        return tuple(cert for cert in (self.rsa, self.ecdsa) if cert is not None)


@dataclass(frozen=True, slots=True)
class SniMatch:
    """Why a name got its entry: ``how`` is one of MATCH_KINDS, ``key`` the table key
    that matched (the name, ``*.parent``, or None for the default)."""

    index: int
    entry: SniEntry
    how: str
    key: str | None


@dataclass(frozen=True, slots=True)
class Shadowed:
    """A certificate that a name does not select, because an earlier certificate of
    the same key type (``winner``, an index into the certificates) has that name."""

    certificate: int
    name: str
    winner: int

    def __str__(self) -> str:
        return f"host name {self.name} is also on certificates[{self.winner}], which is used for it"


class SniTable:
    """The selection table of one listener's certificates (see the module docstring).

    ``entries`` lists the distinct entries, the default's at ``default_index``; the
    engine builds one SSLContext per entry, in this order.
    """

    __slots__ = ("certificates", "entries", "default_index", "shadowed", "_exact", "_wildcard")

    def __init__(self, certificates: Sequence[Certificate], default: int = 0) -> None:
        if not certificates:
            raise ValueError("an SNI table needs at least one certificate")
        if not 0 <= default < len(certificates):
            raise ValueError(f"default index {default} out of range")
        self.certificates = tuple(certificates)
        # name -> {key type: certificate index}, first wins
        tiers: dict[str, dict[str, int]] = {}
        shadowed: list[Shadowed] = []
        for index, cert in enumerate(self.certificates):
            for name in cert.hostnames:
                slots = tiers.setdefault(name, {})
                winner = slots.setdefault(cert.key_type, index)
                if winner != index:
                    shadowed.append(Shadowed(index, name, winner))
        entries: dict[tuple[int | None, int | None], int] = {}

        def entry_index(slots: dict[str, int]) -> int:
            pair = (slots.get("rsa"), slots.get("ecdsa"))
            return entries.setdefault(pair, len(entries))

        default_cert = self.certificates[default]
        twin_type = "ecdsa" if default_cert.key_type == "rsa" else "rsa"
        default_slots = {default_cert.key_type: default}
        if default_cert.hostnames:
            twin = next(
                (i for i, c in enumerate(self.certificates)
                 if c.key_type == twin_type and set(c.hostnames) == set(default_cert.hostnames)),
                None,
            )
            if twin is not None:
                default_slots[twin_type] = twin
        self.default_index = entry_index(default_slots)
        self._exact: dict[str, int] = {}
        self._wildcard: dict[str, int] = {}
        for name, slots in tiers.items():
            if name.startswith("*."):
                self._wildcard[name[2:]] = entry_index(slots)
            else:
                self._exact[name] = entry_index(slots)
        self.entries = tuple(
            SniEntry(
                self.certificates[rsa] if rsa is not None else None,
                self.certificates[ecdsa] if ecdsa is not None else None,
            )
            for (rsa, ecdsa) in entries
        )
        self.shadowed = tuple(shadowed)

    def lookup(self, server_name: str | None) -> int:
        """The entry index for a ClientHello's server name (None: no SNI). The hot
        path of an ``sni_callback``: two dict lookups at most."""
        if not server_name:
            return self.default_index
        name = server_name.lower()
        if name.endswith("."):
            name = name[:-1]
        if not name.isascii():
            try:
                name = normalize_hostname(name)
            except ValueError:
                return self.default_index
        index = self._exact.get(name)
        if index is not None:
            return index
        head, dot, parent = name.partition(".")
        if dot and head and head != "*":
            index = self._wildcard.get(parent)
            if index is not None:
                return index
        return self.default_index

    def match(self, server_name: str | None) -> SniMatch:
        """``lookup`` with the reason, for explain and tests."""
        if not server_name:
            return SniMatch(self.default_index, self.entries[self.default_index], "no-sni", None)
        try:
            name = normalize_hostname(server_name)
        except ValueError:
            return SniMatch(self.default_index, self.entries[self.default_index], "default", None)
        if name in self._exact:
            return SniMatch(self._exact[name], self.entries[self._exact[name]], "exact", name)
        head, dot, parent = name.partition(".")
        if dot and head != "*" and parent in self._wildcard:
            index = self._wildcard[parent]
            return SniMatch(index, self.entries[index], "wildcard", f"*.{parent}")
        return SniMatch(self.default_index, self.entries[self.default_index], "default", None)

    def select(self, server_name: str | None, *, offers_ecdsa: bool = True) -> Certificate:
        """The certificate a client gets: by name, then by what it can verify."""
        return self.entries[self.lookup(server_name)].choose(offers_ecdsa)

    @property
    def default(self) -> SniEntry:
        return self.entries[self.default_index]

    def names(self) -> tuple[str, ...]:
        """Every name the table answers for, exact names then wildcards, sorted."""
        return tuple(sorted(self._exact)) + tuple(sorted(f"*.{parent}" for parent in self._wildcard))
