"""What an ACL can look at: the facts of one request, extracted lazily.

The engine builds one RequestFacts per request from the parsed request head and
the connection; the ACL matchers (lbcore.l7.acl) and the balancers read it. Work
that not every rule needs (cookie parsing, query parsing, lower-casing header
names) is done on first use and cached, so a listener whose rules only look at
the path pays for nothing else.

All text is ``str``: header bytes are decoded as latin-1, which is lossless for
HTTP/1.1 field values (RFC 9110 5.5 allows obs-text, and latin-1 maps every byte).
"""

from __future__ import annotations

import ipaddress
from ipaddress import IPv4Address, IPv6Address  # by name: compiled, ipaddress.IPv6Address is a lookup per request
from typing import Iterable, Sequence
from urllib.parse import unquote

__all__ = ["RequestFacts", "new_request_facts", "split_host"]

# Field names in lower case, by name as sent: clients send the same few names, and a
# dictionary read costs less than str.lower() (a method call, compiled or not). Bounded:
# past _LOWERED_MAX names, new ones are lowered each time and not kept.
_LOWERED: dict[str, str] = {}
_LOWERED_MAX = 512
# SNI names as received -> normalised (lower case, no trailing dot), bounded as _LOWERED:
# under TLS every request's facts carry its connection's name, two string methods each.
_SNI_NAMES: dict[str, str] = {}


def lower_kept(kept: dict[str, str], value: str) -> str:
    """``value.lower()``, by way of ``kept`` (value as sent -> lowered), which keeps
    up to _LOWERED_MAX values: past that, new ones are lowered each time."""
    lowered = kept.get(value)
    if lowered is None:
        lowered = value.lower()
        if len(kept) < _LOWERED_MAX:
            kept[value] = lowered
    return lowered

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def split_host(value: str) -> str:
    """Normalise a Host header or authority: lower case, no port, no trailing dot.

    ``[::1]:8080`` gives ``::1``; ``Example.COM.:80`` gives ``example.com``.
    """
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        host = value[1:end] if end != -1 else value[1:]
    else:
        host = value.rsplit(":", 1)[0] if value.count(":") == 1 else value
    return host.rstrip(".")


class RequestFacts:
    """One request as the ACL language sees it.

    ``headers`` is the request's header list as received: (name, value) pairs,
    names in any case, in order, repeated names kept.
    """

    __slots__ = (
        "method",
        "target",
        "headers",
        "client_ip",
        "client_port",
        "sni",
        "_path",
        "_query",
        "_host",
        "_by_name",
        "_cookies",
        "_params",
    )

    def __init__(
        self,
        method: str = "GET",
        target: str = "/",
        headers: Sequence[tuple[str, str]] = (),
        client_ip: str | IPAddress | None = None,
        client_port: int = 0,
        sni: str | None = None,
    ) -> None:
        self._setup(method, target, headers, client_ip, client_port, sni)

    def _setup(self, method, target, headers, client_ip, client_port, sni) -> None:
        # (__init__'s body; new_request_facts calls it without the type call.)
        self.method = method
        self.target = target
        self.headers = headers
        if isinstance(client_ip, str):
            client_ip = ipaddress.ip_address(client_ip)
        # An IPv4 client reached over a v6 socket arrives as ::ffff:a.b.c.d;
        # rules are written against the v4 address.
        # (The type test first: an isinstance() that fails looks up ``__class__`` by name.)
        if type(client_ip) is not IPv4Address and isinstance(client_ip, IPv6Address) and client_ip.ipv4_mapped is not None:
            client_ip = client_ip.ipv4_mapped
        self.client_ip: IPAddress | None = client_ip
        self.client_port = client_port
        if sni:
            name = _SNI_NAMES.get(sni)
            if name is None:
                name = sni.lower().rstrip(".")
                if len(_SNI_NAMES) < _LOWERED_MAX:
                    _SNI_NAMES[sni] = name
            self.sni = name
        else:
            self.sni = None
        self._path: str | None = None
        self._query: str | None = None
        self._host: str | None = None
        self._by_name: dict[str, list[str]] | None = None
        self._cookies: dict[str, str] | None = None
        self._params: dict[str, list[str]] | None = None

    # -- target -----------------------------------------------------------------
    def _split_target(self) -> None:
        target = self.target
        if target[:1] != "/" and target.startswith(("http://", "https://")):
            # absolute-form (RFC 9112 3.2.2): the authority is the host.
            rest = target.split("://", 1)[1]
            slash = rest.find("/")
            authority, target = (rest, "/") if slash == -1 else (rest[:slash], rest[slash:])
            if self._host is None:
                self._host = split_host(authority)
        # The path ends at the first "?" (the query follows, "#" and all) and, within
        # it, at a "#"; found, not split: most targets have neither and stay as they are.
        question = target.find("?")
        if question < 0:
            path = target
            self._query = ""
        else:
            path = target[:question]
            self._query = target[question + 1 :]
        fragment = path.find("#")
        self._path = path if fragment < 0 else path[:fragment]

    # Each property has a method twin (``fetch_*``): the compiled router, matchers and
    # engine call it as a C method, where reading a property is a generic attribute
    # lookup (~100 instructions a time).
    @property
    def path(self) -> str:
        """The path as sent (percent-encoding kept, as haproxy's ``path``)."""
        return self.fetch_path()

    def fetch_path(self) -> str:
        if self._path is None:
            self._split_target()
        return self._path  # type: ignore[return-value]

    @property
    def query(self) -> str:
        return self.fetch_query()

    def fetch_query(self) -> str:
        if self._query is None:
            self._split_target()
        return self._query  # type: ignore[return-value]

    # -- headers -----------------------------------------------------------------
    def _headers_by_name(self) -> dict[str, list[str]]:
        by_name: dict[str, list[str]] = {}
        for key, value in self.headers:
            by_name.setdefault(lower_kept(_LOWERED, key), []).append(value)
        self._by_name = by_name
        return by_name

    def header_values(self, name: str) -> list[str]:
        """Every value of header ``name`` (lower case), one per header line."""
        by_name = self._by_name
        if by_name is None:
            by_name = self._headers_by_name()
        values = by_name.get(name)
        return values if values is not None else []

    def header(self, name: str) -> str | None:
        """The last value of header ``name`` (lower case), or None."""
        by_name = self._by_name
        if by_name is None:
            by_name = self._headers_by_name()
        values = by_name.get(name)
        return values[-1] if values else None

    @property
    def host(self) -> str:
        """Normalised host: from an absolute-form target, else the Host header."""
        return self.fetch_host()

    def fetch_host(self) -> str:
        if self._host is None:
            if self.target.startswith(("http://", "https://")):
                self._split_target()
            if self._host is None:
                value = self.header("host")
                self._host = split_host(value) if value else ""
        return self._host

    # -- cookies and query parameters ---------------------------------------------
    @property
    def cookies(self) -> dict[str, str]:
        """Request cookies by name; with a repeated name, the first wins (RFC 6265 5.4)."""
        return self.fetch_cookies()

    def fetch_cookies(self) -> dict[str, str]:
        if self._cookies is None:
            jar: dict[str, str] = {}
            for line in self.header_values("cookie"):
                for part in line.split(";"):
                    name, sep, value = part.strip().partition("=")
                    if sep and name and name not in jar:
                        value = value.strip()
                        if len(value) >= 2 and value[0] == value[-1] == '"':
                            value = value[1:-1]
                        jar[name] = value
            self._cookies = jar
        return self._cookies

    def cookie(self, name: str) -> str | None:
        cookies = self._cookies
        if cookies is None:
            by_name = self._by_name
            if by_name is None:
                by_name = self._headers_by_name()
            if "cookie" not in by_name:
                return None  # no Cookie line: no jar to make (a cookie rule asks every request)
            cookies = self.fetch_cookies()
        return cookies.get(name)

    @property
    def params(self) -> dict[str, list[str]]:
        """Query parameters by name, percent-decoded, all values in order."""
        return self.fetch_params()

    def fetch_params(self) -> dict[str, list[str]]:
        if self._params is None:
            params: dict[str, list[str]] = {}
            query = self.fetch_query()
            if query:
                for part in query.split("&"):
                    if not part:
                        continue
                    name, _, value = part.partition("=")
                    params.setdefault(unquote(name.replace("+", " ")), []).append(
                        unquote(value.replace("+", " "))
                    )
            self._params = params
        return self._params

    def param(self, name: str) -> str | None:
        values = self.fetch_params().get(name)
        return values[0] if values else None

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"RequestFacts({self.method} {self.target} host={self.host!r} client={self.client_ip})"

    @classmethod
    def from_pairs(
        cls,
        method: str,
        target: str,
        headers: Iterable[tuple[str, str]],
        **kw: object,
    ) -> "RequestFacts":
        return cls(method, target, list(headers), **kw)  # type: ignore[arg-type]


def new_request_facts(method: str, target: str, headers: Sequence[tuple[str, str]], client_ip, client_port: int,
                      sni: str | None) -> RequestFacts:
    """``RequestFacts(method, target, headers, client_ip, client_port, sni)``, made
    without the type call: the engine makes one per proxied request, and compiled, the
    call's argument parsing (six arguments, each with a default) cost ~300 instructions."""
    facts = RequestFacts.__new__(RequestFacts)
    facts._setup(method, target, headers, client_ip, client_port, sni)
    return facts
