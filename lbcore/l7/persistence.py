"""Session persistence: send a client back to the member that served it (sans-IO).

Theory of operation
-------------------
Persistence is consulted before the balancer. The engine asks ``lookup()`` first; a
member it returns is used as long as it is *reachable* (healthy and not in
maintenance), which is what lets a draining member finish its sticky sessions while
the balancer gives it no new ones. Otherwise the balancer picks, and the engine then
records the choice: ``response_cookie()`` for cookie persistence, ``record()`` for the
source stick table.

``CookiePersistence`` is haproxy's ``cookie SRV insert indirect nocache``:

* insert - the load balancer adds ``Set-Cookie: SRV=<member name>`` to the response
  when the request did not already carry that value; the member never sees or sets it.
* indirect - the cookie is removed from the request before it is forwarded, so the
  application never sees it (``strip_request_cookie``).
* nocache - a response that inserts a cookie also gets
  ``Cache-Control: no-cache="set-cookie"`` so a shared cache does not hand one
  client's cookie to everyone (``nocache_header``).

Cookie names are matched case-sensitively (RFC 6265 5.3 compares names exactly, and
so does haproxy); header names (``Cookie``, ``cookie``) case-insensitively.

``SourcePersistence`` is a stick table on the client address (haproxy
``stick-table type ip`` + ``stick on src``): an ``OrderedDict`` from address to
(member name, expiry), ordered by last ``record()``. Because every entry lives for the
same ``timeout``, that order is also expiry order, so expired entries are popped from
the front and, past ``max_entries``, the least recently recorded go first: O(1)
amortised per call. Entries name members, not ``MemberState`` objects, so a table
outlives configuration revisions that rebuild a pool.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import Mapping, Sequence

from lbcore.l7.balance import MemberState
from lbcore.l7.facts import IPAddress, RequestFacts

__all__ = ["CookiePersistence", "SourcePersistence", "COOKIE_TOKEN"]

# RFC 6265 4.1.1: cookie-name is an RFC 2616 token; a member name used as the value
# must be a cookie-octet run (no space, quote, comma, semicolon or backslash). The
# token alphabet satisfies both, and is what the Spec allows for member names.
COOKIE_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


class CookiePersistence:
    """haproxy's ``cookie NAME insert indirect nocache``."""

    __slots__ = ("cookie_name", "max_age", "secure", "httponly", "nocache_header", "_attributes")

    def __init__(
        self,
        cookie_name: str = "SRV",
        *,
        max_age: int | None = None,
        secure: bool = False,
        httponly: bool = True,
    ) -> None:
        if not COOKIE_TOKEN.fullmatch(cookie_name):
            raise ValueError(f"cookie name {cookie_name!r} is not an RFC 6265 token")
        if max_age is not None and max_age < 0:
            raise ValueError(f"cookie max_age {max_age} must not be negative")
        self.cookie_name = cookie_name
        self.max_age = max_age
        self.secure = secure
        self.httponly = httponly
        self.nocache_header: tuple[str, str] = ("Cache-Control", 'no-cache="set-cookie"')
        attributes = "; Path=/"
        if max_age is not None:
            attributes += f"; Max-Age={max_age}"
        if secure:
            attributes += "; Secure"
        if httponly:
            attributes += "; HttpOnly"
        self._attributes = attributes

    def lookup(
        self, facts: RequestFacts, members_by_name: Mapping[str, MemberState]
    ) -> MemberState | None:
        """The member the request's cookie names, if it is reachable (drain is); else None."""
        value = facts.cookie(self.cookie_name)
        if not value:
            return None
        member = members_by_name.get(value)
        if member is None or not member.reachable:
            return None
        return member

    def response_cookie(self, facts: RequestFacts | None, member: MemberState) -> tuple[str, str] | None:
        """The Set-Cookie header binding the client to ``member``, or None if it already is."""
        if facts is not None and facts.cookie(self.cookie_name) == member.name:
            return None
        if not COOKIE_TOKEN.fullmatch(member.name):
            # The Spec validates member names; this guards the response against header
            # injection should an unvalidated name ever get here.
            raise ValueError(f"member name {member.name!r} cannot be a cookie value")
        return ("Set-Cookie", f"{self.cookie_name}={member.name}{self._attributes}")

    def strip_request_cookie(self, headers: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
        """The request headers without our cookie ("indirect").

        Other cookies keep their order; a Cookie header left empty is dropped; headers
        that did not carry our cookie are passed through unchanged.
        """
        name = self.cookie_name
        out: list[tuple[str, str]] = []
        for header, value in headers:
            if name not in value or header.lower() != "cookie":
                out.append((header, value))
                continue
            kept = []
            removed = False
            for part in value.split(";"):
                part = part.strip()
                if not part:
                    continue
                if part.partition("=")[0].rstrip() == name:
                    removed = True
                else:
                    kept.append(part)
            if not removed:
                out.append((header, value))
            elif kept:
                out.append((header, "; ".join(kept)))
        return out

    def __repr__(self) -> str:
        return f"CookiePersistence({self.cookie_name!r}{self._attributes!r})"


class SourcePersistence:
    """A stick table on the client address, with expiry and a size bound."""

    __slots__ = ("timeout", "max_entries", "_table")

    def __init__(self, timeout: float = 1800.0, max_entries: int = 1_000_000) -> None:
        if timeout <= 0:
            raise ValueError(f"stick table timeout {timeout} must be positive")
        if max_entries < 1:
            raise ValueError(f"stick table max_entries {max_entries} must be at least 1")
        self.timeout = timeout
        self.max_entries = max_entries
        self._table: OrderedDict[IPAddress, tuple[str, float]] = OrderedDict()

    def lookup(
        self, facts: RequestFacts, members_by_name: Mapping[str, MemberState], now: float
    ) -> MemberState | None:
        """The reachable member recorded for this client, if its entry has not expired."""
        ip = facts.client_ip
        if ip is None:
            return None
        entry = self._table.get(ip)
        if entry is None:
            return None
        name, expires = entry
        if expires <= now:
            del self._table[ip]
            return None
        member = members_by_name.get(name)
        if member is None or not member.reachable:
            return None
        return member

    def record(self, facts: RequestFacts, member: MemberState, now: float) -> None:
        """Bind this client to ``member`` for ``timeout`` seconds from ``now``."""
        ip = facts.client_ip
        if ip is None:
            return
        table = self._table
        table[ip] = (member.name, now + self.timeout)
        table.move_to_end(ip)
        self._evict(now)

    def expire(self, now: float) -> None:
        """Drop expired entries (``record`` does this too; call it from a timer if idle)."""
        self._evict(now)

    def _evict(self, now: float) -> None:
        table = self._table
        while table:
            ip, (_name, expires) = next(iter(table.items()))
            if expires > now and len(table) <= self.max_entries:
                break
            table.popitem(last=False)

    def __len__(self) -> int:
        return len(self._table)

    def __repr__(self) -> str:
        return f"SourcePersistence({len(self._table)} entries, timeout={self.timeout})"
