"""A Spec compiled into the objects a worker routes with: one Revision per Spec.

A Revision is immutable once built: routers, balancers and persistence tables are
created here once, so the request path never compiles anything. Requests capture
the Revision current when they start and finish on it, even if a newer one is
swapped in meanwhile.

Member state (health, in-flight count, runtime admin overrides) is *not* part of a
revision: it lives in the MemberRegistry, keyed by pool and member name, and the
same MemberState object is handed to every revision that still has that member.
That is what lets a reload keep health results and connection counts.
"""

from __future__ import annotations

import ipaddress
from typing import Iterable

from lbcore import spec as S
from lbcore.l7.balance import Balancer, MemberState, make_balancer
from lbcore.l7.frozen import FrozenInstanceError, set_field
from lbcore.l7.persistence import CookiePersistence, SourcePersistence
from lbcore.l7.rewrite import ForwardingPolicy
from lbcore.l7.router import Router
from lbcore.tls.policy import hsts_header
from lbcore.tls.revision import SpecTls

__all__ = ["MemberInfo", "MemberRegistry", "PoolRuntime", "ListenerRuntime", "Revision", "compile_revision",
           "client_v4", "parse_client", "parse_client_text"]


class MemberInfo:
    """What the engine needs to reach a member (MemberState.data).

    A frozen value (``lbcore.l7.frozen``): equal to another with the same pool, name,
    host and port, and refusing assignment. Compiled, an extension type whose fields
    the engine reads as C fields (``runtime.pxd``).
    """

    __slots__ = ("pool", "name", "host", "port", "authority")

    def __init__(self, pool: str, name: str, host: str, port: int) -> None:
        set_field(self, "pool", pool)
        set_field(self, "name", name)
        set_field(self, "host", host)
        set_field(self, "port", port)
        # The Host header for a request that came without one (HTTP/1.0): host:port,
        # an IPv6 address in brackets; made once, not per request.
        set_field(self, "authority", f"[{host}]:{port}" if ":" in host else f"{host}:{port}")

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    @property
    def key(self) -> tuple[str, int]:
        return (self.host, self.port)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MemberInfo):
            return NotImplemented
        return (self.pool, self.name, self.host, self.port) == (other.pool, other.name, other.host, other.port)

    def __hash__(self) -> int:
        return hash((self.pool, self.name, self.host, self.port))

    def __repr__(self) -> str:
        return f"MemberInfo(pool={self.pool!r}, name={self.name!r}, host={self.host!r}, port={self.port!r})"

    def __str__(self) -> str:
        return f"{self.pool}/{self.name}({self.authority})"


class MemberRegistry:
    """MemberState objects that outlive revisions, keyed by (pool, member)."""

    def __init__(self) -> None:
        self._states: dict[tuple[str, str], MemberState] = {}

    def state_for(self, pool: S.Pool, member: S.Member) -> MemberState:
        key = (pool.name, member.name)
        info = MemberInfo(pool.name, member.name, member.address.host, member.address.port)
        state = self._states.get(key)
        if state is None or state.data != info:
            # New member, or same name moved to another address: fresh state.
            state = MemberState(member.name, weight=member.weight, backup=member.backup, admin=member.admin_state, data=info)
            self._states[key] = state
        else:
            state.weight = member.weight
            state.backup = member.backup
            state.admin = member.admin_state
        return state

    def retain(self, keys: Iterable[tuple[str, str]]) -> None:
        """Forget members no longer in any revision."""
        keep = set(keys)
        for key in list(self._states):
            if key not in keep:
                del self._states[key]

    def get(self, pool: str, member: str) -> MemberState | None:
        return self._states.get((pool, member))


class PoolRuntime:
    __slots__ = ("spec", "name", "members", "by_name", "balancer", "persistence", "connect_kwargs", "conn_key",
                 "idle_per_member", "max_conns_per_member", "retries", "connect_timeout", "server_timeout",
                 "keepalive_timeout", "tunnel_timeout", "strip_cookie", "counters", "member_counters",
                 "member_pools")

    def __init__(self, pool: S.Pool, registry: MemberRegistry, tls: SpecTls | None = None) -> None:
        self.spec = pool
        self.name = pool.name
        # Re-encryption to members: create_connection(ssl=..., server_hostname=...).
        member_tls = tls.pools.get(pool.name) if tls is not None else None
        self.connect_kwargs = member_tls.connect_kwargs() if member_tls is not None else {}
        # Member connections are pooled by address, and by TLS settings when there are
        # some: a plain and a TLS pool to one address never share a connection.
        self.conn_key = f"tls:{pool.name}:{id(member_tls)}" if member_tls is not None else ""
        self.members: tuple[MemberState, ...] = tuple(registry.state_for(pool, m) for m in pool.members)
        self.by_name = {m.name: m for m in self.members}
        self.balancer: Balancer = make_balancer(pool.algorithm, self.members, hash_header=pool.hash_header)
        self.persistence: CookiePersistence | SourcePersistence | None = None
        if pool.persistence is not None:
            if pool.persistence.type == "cookie":
                self.persistence = CookiePersistence(pool.persistence.name)
            else:
                self.persistence = SourcePersistence(timeout=pool.persistence.timeout)
        # What the request path reads on every request, copied out of the spec once:
        # compiled, these are C fields (runtime.pxd), not attribute chains.
        self.idle_per_member = pool.idle_connections_per_member
        self.max_conns_per_member = pool.max_connections_per_member
        self.retries = pool.retries
        timeouts = pool.timeouts
        self.connect_timeout = timeouts.connect
        self.server_timeout = timeouts.server
        self.keepalive_timeout = timeouts.keepalive
        self.tunnel_timeout = timeouts.tunnel
        # The persistence cookie to strip from requests to members, or None.
        persistence = self.persistence
        self.strip_cookie = persistence.strip_request_cookie if isinstance(persistence, CookiePersistence) else None
        # The worker's counters and connection pool of each member, by member name,
        # filled by the request path on first use (lbcore.proxy.http): a dict lookup by
        # a str instead of a tuple key made and hashed per request in WorkerStats and
        # BackendPools (neither ever drops an entry, so what is kept here stays theirs).
        self.member_counters: dict[str, object] = {}
        self.member_pools: dict[str, object] = {}
        self.counters: object = None  # and the worker's PoolCounters of the pool itself, likewise


class ListenerRuntime:
    __slots__ = ("spec", "name", "protocol", "serves_http", "https", "router", "pools", "policy", "tls",
                 "response_headers", "client_auth",
                 "client_timeout", "http_request_timeout", "keepalive_timeout", "max_body", "max_request_line",
                 "max_header_bytes", "max_headers", "redirect")

    def __init__(self, listener: S.Listener, pools: dict[str, PoolRuntime], tls: SpecTls | None = None) -> None:
        self.spec = listener
        self.name = listener.name
        self.protocol = listener.protocol
        # What the protocol factory asks of each connection, answered once: compiled, a
        # test of a str against a literal it is not costs a PyUnicode_Compare call.
        self.serves_http = listener.protocol in ("http", "https")
        self.https = listener.protocol == "https"
        self.router = Router([(a.name, a.condition, a.pool) for a in listener.acls], listener.default_pool)
        self.pools = pools
        fh = set(listener.forwarded_headers)
        self.policy = ForwardingPolicy(
            "https" if listener.protocol == "https" else "http",
            listener.bind.port,
            xff="x-forwarded-for" in fh,
            xfp="x-forwarded-proto" in fh,
            xfport="x-forwarded-port" in fh,
            forwarded="forwarded" in fh,
            add_headers=listener.add_headers,
        )
        # https: the compiled contexts, HSTS, client-certificate headers
        self.tls = tls.listeners.get(listener.name) if tls is not None else None
        response_headers = tuple(listener.response_headers)
        self.client_auth = None
        if self.tls is not None:
            hsts = self.tls.hsts
            if hsts is not None and listener.tls is not None:
                header = hsts_header(listener.tls)
                if header is not None:
                    response_headers += (header,)
            auth = self.tls.client_auth
            if auth is not None and auth.mode != "none":
                self.client_auth = auth
        self.response_headers = response_headers
        # Read on every request or connection (see PoolRuntime).
        timeouts = listener.timeouts
        self.client_timeout = timeouts.client
        self.http_request_timeout = timeouts.http_request
        self.keepalive_timeout = timeouts.keepalive
        limits = listener.limits
        self.max_body = limits.max_body  # None: unlimited
        self.max_request_line = limits.max_request_line  # the request reader's, per connection
        self.max_header_bytes = limits.max_header_bytes
        self.max_headers = limits.max_headers
        self.redirect = listener.redirect


class Revision:
    """Everything a worker needs to serve one Spec."""

    def __init__(self, spec: S.Spec, registry: MemberRegistry, tls: SpecTls | None = None) -> None:
        self.spec = spec
        self.id = spec.revision
        self.tls = tls
        self.pools = {p.name: PoolRuntime(p, registry, tls) for p in spec.pools}
        self.listeners = {l.name: ListenerRuntime(l, self.pools, tls) for l in spec.listeners}
        registry.retain((p.name, m.name) for p in spec.pools for m in p.members)


def compile_revision(spec: S.Spec, registry: MemberRegistry, tls: SpecTls | None = None) -> Revision:
    return Revision(spec, registry, tls)


def parse_client(peer: object) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address | None, int]:
    """The client address and port from a transport's peername."""
    ip, _, port = parse_client_text(peer)
    return ip, port


def parse_client_text(peer: object) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address | None, str, int]:
    """``parse_client``, with the address's text (``str(ip)``; "" when there is none)."""
    if isinstance(peer, tuple) and len(peer) >= 2:
        host = peer[0]
        known = _ADDRESSES.get(host)
        try:
            if known is None:
                known = _address(host)
            return known[0], known[1], int(peer[1])
        except ValueError:
            return None, "", 0
    return None, "", 0


# Parsing an address costs microseconds and clients come back: the address objects
# are immutable, so one per distinct client is shared, with its text. Keyed by the
# peername's string (hashing an address object is Python code); a plain dictionary,
# read inline by the compiled caller (an ``lru_cache`` call cost ~800 instructions a
# connection), bounded by dropping the oldest entry.
_ADDRESSES: dict[str, tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, str]] = {}
ADDRESS_CACHE_SIZE = 4096


# The same for a stream's IPv4 peer, keyed by its number (Stream.peer_v4): no text is
# made for it nor hashed per connection.
_ADDRESSES_V4: dict[int, tuple[ipaddress.IPv4Address, str]] = {}


def client_v4(number: int) -> tuple[ipaddress.IPv4Address, str]:
    """The address and its text of an IPv4 client given as a number (``Stream.peer_v4``),
    shared per client as ``parse_client_text``'s are."""
    known = _ADDRESSES_V4.get(number)
    if known is None:
        known = _remember(_ADDRESSES_V4, number, ipaddress.IPv4Address(number))
    return known


def _address(host: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, str]:
    return _remember(_ADDRESSES, host, ipaddress.ip_address(host.split("%", 1)[0]))


def _remember(cache: dict, key: object, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> tuple:
    """``(ip, str(ip))``, kept in ``cache`` under ``key``, its oldest entry dropped when full."""
    known = ip, str(ip)
    while len(cache) >= ADDRESS_CACHE_SIZE:
        del cache[next(iter(cache))]
    cache[key] = known
    return known
