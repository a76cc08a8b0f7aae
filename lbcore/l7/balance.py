"""Member selection: which member of a pool takes the next request (sans-IO).

Theory of operation
-------------------
A pool's members are ``MemberState`` objects that the engine owns and keeps across
configuration revisions; it updates ``weight``, ``up`` and ``admin`` as health checks
and operators change them, counts ``active`` itself, and calls ``Balancer.update()``
after any change so the balancer can rebuild what it caches (the tiers of available
members and their weights). ``update()`` compares a small signature first, so it is
cheap when nothing changed. ``pick()`` re-checks the member it chose, so a forgotten
``update()`` after a member went down costs one rebuild, never a pick of that member.

Each pick looks at two tiers, in order: available primaries, then available backups
(haproxy's "backup servers are used only when all primaries are down", with
``option allbackups`` behaviour: the load is spread over every available backup).
``exclude`` holds the members that already failed this request (redispatch): they are
skipped; when every available primary is excluded, the backups are tried next.

Algorithms (names as in haproxy's ``balance`` keyword):

* ``roundrobin`` - smooth weighted round robin, nginx's algorithm
  (ngx_http_upstream_round_robin.c): each pick adds every candidate's weight to its
  ``current``, takes the largest, and subtracts the total from it. Over one cycle
  (the sum of the weights) every member is picked exactly ``weight`` times, and the
  picks are interleaved: weights 5,1,1 give ``a a b a c a a``, not ``a a a a a b c``.
* ``leastconn`` - the lowest ``active / weight``, so under load each member carries
  in-flight work in proportion to its weight. Ties (all idle, typically) go round
  robin, starting after the member picked last, not always from the first.
* ``random`` - power of two choices (Mitzenmacher; haproxy ``random(2)``): two distinct
  members drawn with probability proportional to weight; the one with fewer in flight
  relative to its weight wins, and a tie keeps the first draw, so an idle pool is
  shared in proportion to the weights.
* ``source`` / ``uri`` / ``hdr`` - consistent hashing of the client address, the path
  (without the query string, as haproxy's ``balance uri``), or the value of header
  ``hash_header``. With no key (no client address, header absent or empty) the pick
  falls back to round robin, as haproxy does for ``hdr``.

Consistent hashing: weighted rendezvous hashing
-----------------------------------------------
Every member gets a score for the key, ``-ln(u) / weight`` where ``u`` in (0, 1) is a
deterministic hash of (key, member name); the lowest score among the candidates wins
(the logarithmic method for weighted rendezvous hashing, Schindelhauer and Schomaker,
"Weighted distributed hash tables", 2005). We chose it over a hash ring (weight x K
virtual points) because:

* it is exact where a ring is approximate: a member's expected share is exactly
  ``weight / total`` (a ring with 40-100 points per unit of weight still errs by
  several percent per member), and removing, adding, marking down or reweighting one
  member moves only the keys that go to or come from that member - never a key between
  two others - because every score depends on one member only. A ring has that
  property too, but only if its points for weight w are a prefix of those for w + 1;
  rendezvous needs no such care.
* it holds no table: memory is O(members) and ``update()`` is O(members), where a ring
  for 100 members of weight 256 at K = 40 is a million sorted points to hash, sort and
  keep per pool and per worker, rebuilt on every weight change.
* the cost, O(members) per pick, is a loop of integer mixing, about 0.35 us per member
  on CPython 3.11 (measured: 3 us per pick for 3 members, 5 us for 10, 18 us for 50,
  key hashing included), which is small beside the rest of a request for the pools
  of 2-50 members that load balancers run. When every candidate has the same weight
  (the common case) the score is monotonic in the hash and ``log`` is skipped.

The key is hashed once with BLAKE2b (64 bits); each member's seed is BLAKE2b of its name,
computed once; the per-member value is the murmur3 64-bit finaliser of ``key ^ seed``.
Python's ``hash()`` is never used: it is salted per process, and every worker (and every
node of an active-active cluster) must send a key to the same member. ``math.log`` is
libm's; on the same image it returns the same bits in every process.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import random
from typing import Callable, ClassVar, Collection, Sequence

from lbcore.l7.facts import RequestFacts

__all__ = [
    "ALGORITHMS",
    "ADMIN_STATES",
    "MAX_WEIGHT",
    "MemberState",
    "Balancer",
    "RoundRobinBalancer",
    "LeastConnBalancer",
    "RandomBalancer",
    "HashBalancer",
    "make_balancer",
    "key_hash",
    "member_seed",
]

ALGORITHMS = ("roundrobin", "leastconn", "source", "uri", "hdr", "random")
ADMIN_STATES = ("enabled", "drain", "maint")
MAX_WEIGHT = 256  # haproxy's limit for a server weight (SRV_UWGHT_MAX)


class MemberState:
    """Mutable runtime state of one pool member, owned by the engine.

    ``weight`` is the effective weight (0 takes no new traffic), ``admin`` one of
    ``ADMIN_STATES``, ``up`` the health verdict (True when unchecked), ``active`` the
    requests/connections in flight to it (the engine counts), ``data`` the engine's
    own handle (address, connection pool, counters).
    """

    __slots__ = ("name", "weight", "backup", "_admin", "up", "active", "data")

    def __init__(
        self,
        name: str,
        weight: int = 1,
        backup: bool = False,
        admin: str = "enabled",
        up: bool = True,
        data: object = None,
    ) -> None:
        if not name:
            raise ValueError("member name must not be empty")
        if not 0 <= weight <= MAX_WEIGHT:
            raise ValueError(f"member {name!r}: weight {weight} not in 0..{MAX_WEIGHT}")
        self.name = name
        self.weight = weight
        self.backup = backup
        self.admin = admin
        self.up = up
        self.active = 0
        self.data = data

    @property
    def admin(self) -> str:
        return self._admin

    @admin.setter
    def admin(self, state: str) -> None:
        """One of ``ADMIN_STATES``, kept as that tuple's own string: ``is_available``'s
        test of it is then one pointer compare a request (compiled, an equal string that
        is another object costs a PyUnicode_Compare call)."""
        for known in ADMIN_STATES:
            if state == known:
                self._admin = known
                return
        raise ValueError(f"member {self.name!r}: admin state {state!r} not in {ADMIN_STATES}")

    @property
    def available(self) -> bool:
        """May take new sessions: healthy, enabled and with a weight."""
        return self.is_available()

    def is_available(self) -> bool:
        """``available``, as a method: compiled, a C call (the property is a generic lookup)."""
        return self.up and self._admin == "enabled" and self.weight > 0

    @property
    def reachable(self) -> bool:
        """May keep serving sessions persisted to it: healthy and not in maintenance."""
        return self.up and self._admin != "maint"

    def __repr__(self) -> str:
        flags = ("backup " if self.backup else "") + ("up" if self.up else "down")
        return (
            f"MemberState({self.name!r} w={self.weight} {self.admin} {flags} "
            f"active={self.active})"
        )


# -- deterministic hashing ----------------------------------------------------------

_MASK64 = (1 << 64) - 1
_U53 = 2.0**-53


def key_hash(key: bytes) -> int:
    """64-bit hash of a balancing key: the same in every process and on every node."""
    return int.from_bytes(hashlib.blake2b(key, digest_size=8, person=b"lbcore-key").digest(), "big")


def member_seed(name: str) -> int:
    """64-bit seed of a member for rendezvous hashing, from its name alone."""
    digest = hashlib.blake2b(name.encode("utf-8"), digest_size=8, person=b"lbcore-member")
    return int.from_bytes(digest.digest(), "big")


# -- balancers ------------------------------------------------------------------------


class Balancer:
    """Picks a member for each request; subclasses implement one algorithm each.

    The base class keeps the two tiers (available primaries, available backups) as
    parallel tuples of members and weights, rebuilt by ``update()``; a subclass's
    ``_rebuilt()`` resets its own per-tier state and ``_choose()`` picks within a tier.
    """

    algorithm: ClassVar[str] = ""
    __slots__ = ("members", "_tiers", "_weights", "_signature")

    def __init__(self, members: Sequence[MemberState]) -> None:
        self.members: tuple[MemberState, ...] = tuple(members)
        names = [m.name for m in self.members]
        if len(set(names)) != len(names):
            dupes = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"duplicate member names in one pool: {dupes}")
        self._tiers: tuple[tuple[MemberState, ...], tuple[MemberState, ...]] = ((), ())
        self._weights: tuple[tuple[int, ...], tuple[int, ...]] = ((), ())
        self._signature: tuple[tuple[int, bool, str, bool], ...] | None = None
        self.update()

    def update(self) -> None:
        """Rebuild the cached tiers after a member's weight, health or admin state changed."""
        signature = tuple((m.weight, m.up, m.admin, m.backup) for m in self.members)
        if signature == self._signature:
            return
        self._signature = signature
        primaries = tuple(m for m in self.members if not m.backup and m.available)
        backups = tuple(m for m in self.members if m.backup and m.available)
        self._tiers = (primaries, backups)
        self._weights = (tuple(m.weight for m in primaries), tuple(m.weight for m in backups))
        self._rebuilt()

    def pick(
        self,
        facts: RequestFacts | None = None,
        exclude: Collection[MemberState] = (),
    ) -> MemberState | None:
        """The member for this request: an available primary, else an available backup.

        Returns None when no member is available (or every available one is excluded).
        """
        for _attempt in range(2):
            for tier in (0, 1):
                if self._tiers[tier]:
                    member = self._choose(tier, facts, exclude)
                    if member is not None:
                        break
            else:
                return None
            if member.is_available():
                return member
            # The engine changed a member without calling update(): rebuild, retry once.
            self.update()
        return None

    # -- for subclasses ------------------------------------------------------------
    def _rebuilt(self) -> None:
        """Reset per-tier state after the tiers changed."""

    def _choose(
        self, tier: int, facts: RequestFacts | None, exclude: Collection[MemberState]
    ) -> MemberState | None:
        raise NotImplementedError

    def __repr__(self) -> str:
        names = ", ".join(m.name for m in self.members)
        return f"{type(self).__name__}([{names}])"


class RoundRobinBalancer(Balancer):
    """Smooth weighted round robin (nginx): exact shares per cycle, interleaved."""

    algorithm = "roundrobin"
    __slots__ = ("_current",)

    def _rebuilt(self) -> None:
        # A new set of candidates starts a fresh cycle.
        self._current = ([0] * len(self._tiers[0]), [0] * len(self._tiers[1]))

    def _choose(
        self, tier: int, facts: RequestFacts | None, exclude: Collection[MemberState]
    ) -> MemberState | None:
        members = self._tiers[tier]
        if len(members) == 1:
            # One candidate: its running weight would gain and lose the same total.
            return None if exclude and members[0] in exclude else members[0]
        current = self._current[tier]
        total = 0
        best = -1
        best_current = 0
        for i, weight in enumerate(self._weights[tier]):
            if exclude and members[i] in exclude:
                continue
            value = current[i] + weight
            current[i] = value
            total += weight
            if best < 0 or value > best_current:
                best = i
                best_current = value
        if best < 0:
            return None
        current[best] -= total
        return members[best]


class LeastConnBalancer(Balancer):
    """Lowest ``active / weight``; ties broken round robin."""

    algorithm = "leastconn"
    __slots__ = ("_next",)

    def _rebuilt(self) -> None:
        self._next = [0, 0]

    def _choose(
        self, tier: int, facts: RequestFacts | None, exclude: Collection[MemberState]
    ) -> MemberState | None:
        members = self._tiers[tier]
        weights = self._weights[tier]
        n = len(members)
        start = self._next[tier] % n
        best = -1
        best_load = 0
        best_weight = 1
        for j in range(n):
            i = start + j
            if i >= n:
                i -= n
            member = members[i]
            if exclude and member in exclude:
                continue
            load = member.active
            weight = weights[i]
            # load / weight < best_load / best_weight, without floats.
            if best < 0 or load * best_weight < best_load * weight:
                best, best_load, best_weight = i, load, weight
        if best < 0:
            return None
        self._next[tier] = best + 1
        return members[best]


class RandomBalancer(Balancer):
    """Power of two choices: two distinct weighted draws, the less loaded one wins."""

    algorithm = "random"
    __slots__ = ("_rng", "_cumulative")

    def __init__(self, members: Sequence[MemberState], rng: random.Random | None = None) -> None:
        self._rng = rng if rng is not None else random.Random()
        super().__init__(members)

    def _rebuilt(self) -> None:
        self._cumulative = (_cumulate(self._weights[0]), _cumulate(self._weights[1]))

    def _choose(
        self, tier: int, facts: RequestFacts | None, exclude: Collection[MemberState]
    ) -> MemberState | None:
        members = self._tiers[tier]
        weights = self._weights[tier]
        cumulative = self._cumulative[tier]
        if exclude:
            narrowed = _without(members, weights, exclude)
            if narrowed is not None:
                members, weights = narrowed
                if not members:
                    return None
                cumulative = _cumulate(weights)
        n = len(members)
        if n == 1:
            return members[0]
        randrange = self._rng.randrange
        total = cumulative[-1]
        first = bisect.bisect_right(cumulative, randrange(total))
        # The second draw is over the others: skip the first's span of the line.
        first_weight = weights[first]
        point = randrange(total - first_weight)
        if point >= cumulative[first] - first_weight:
            point += first_weight
        second = bisect.bisect_right(cumulative, point)
        a, b = members[first], members[second]
        # Fewer in flight relative to weight wins; a tie keeps the first draw.
        if b.active * first_weight < a.active * weights[second]:
            return b
        return a


def _without(
    members: tuple[MemberState, ...], weights: tuple[int, ...], exclude: Collection[MemberState]
) -> tuple[tuple[MemberState, ...], tuple[int, ...]] | None:
    """The members and their weights without the excluded ones; None when none is excluded.
    (Its own function: the compiled _choose may hold no generator expression.)"""
    if not any(m in exclude for m in members):
        return None
    kept = [i for i, m in enumerate(members) if m not in exclude]
    return tuple(members[i] for i in kept), tuple(weights[i] for i in kept)


def _cumulate(weights: Sequence[int]) -> tuple[int, ...]:
    out = []
    total = 0
    for weight in weights:
        total += weight
        out.append(total)
    return tuple(out)


def _source_key(facts: RequestFacts) -> bytes | None:
    ip = facts.client_ip
    return ip.packed if ip is not None else None


def _uri_key(facts: RequestFacts) -> bytes | None:
    return facts.path.encode("utf-8", "surrogatepass")


class HashBalancer(Balancer):
    """Consistent hashing (weighted rendezvous) of a request key; see the module doc.

    ``key_of(facts)`` returns the key bytes, or None to fall back to round robin.
    """

    # _key: the key hash of the pick in progress, computed once in pick() for _choose().
    __slots__ = ("algorithm", "_key_of", "_seeds", "_uniform", "_fallback", "_key")

    def __init__(
        self,
        members: Sequence[MemberState],
        algorithm: str,
        key_of: Callable[[RequestFacts], bytes | None],
    ) -> None:
        self.algorithm = algorithm  # type: ignore[misc]  # instance value shadows ClassVar
        self._key_of = key_of
        self._key = 0
        self._fallback = RoundRobinBalancer(members)
        super().__init__(members)

    def update(self) -> None:
        self._fallback.update()
        super().update()

    def _rebuilt(self) -> None:
        self._seeds = tuple(tuple(member_seed(m.name) for m in tier) for tier in self._tiers)
        # With equal weights the lowest -ln(u)/w is simply the highest u.
        self._uniform = tuple(len(set(weights)) <= 1 for weights in self._weights)

    def pick(
        self,
        facts: RequestFacts | None = None,
        exclude: Collection[MemberState] = (),
    ) -> MemberState | None:
        key = self._key_of(facts) if facts is not None else None
        if key is None:
            return self._fallback.pick(facts, exclude)
        self._key = key_hash(key)
        return Balancer.pick(self, facts, exclude)  # not super(): a compiled cpdef method has no __class__ cell

    def _choose(
        self, tier: int, facts: RequestFacts | None, exclude: Collection[MemberState]
    ) -> MemberState | None:
        members = self._tiers[tier]
        return _rendezvous(
            self._key, members, self._seeds[tier], self._weights[tier], self._uniform[tier], exclude
        )


def _rendezvous(
    key: int,
    members: Sequence[MemberState],
    seeds: Sequence[int],
    weights: Sequence[int],
    uniform: bool,
    exclude: Collection[MemberState],
) -> MemberState | None:
    """The member with the lowest ``-ln(u) / weight`` for this key (highest u if uniform)."""
    best = -1
    best_score = 0.0
    best_u = -1
    log = math.log
    for i, seed in enumerate(seeds):
        if exclude and members[i] in exclude:
            continue
        # murmur3's fmix64 finaliser of key ^ seed (inlined: this is the hot loop).
        x = key ^ seed
        x ^= x >> 33
        x = (x * 0xFF51AFD7ED558CCD) & _MASK64
        x ^= x >> 33
        x = (x * 0xC4CEB9FE1A85EC53) & _MASK64
        x ^= x >> 33
        if uniform:
            if x > best_u:
                best, best_u = i, x
        else:
            score = -log(((x >> 11) + 0.5) * _U53) / weights[i]
            if best < 0 or score < best_score:
                best, best_score = i, score
    return members[best] if best >= 0 else None


_KEYS: dict[str, Callable[[RequestFacts], bytes | None]] = {
    "source": _source_key,
    "uri": _uri_key,
}


def make_balancer(
    algorithm: str,
    members: Sequence[MemberState],
    *,
    hash_header: str | None = None,
    rng: random.Random | None = None,
) -> Balancer:
    """A balancer for ``members`` using ``algorithm`` (one of ``ALGORITHMS``).

    ``hash_header`` names the header for ``hdr`` (required there, ignored elsewhere);
    ``rng`` drives ``random`` (a seeded one makes tests reproducible).
    """
    if algorithm == "roundrobin":
        return RoundRobinBalancer(members)
    if algorithm == "leastconn":
        return LeastConnBalancer(members)
    if algorithm == "random":
        return RandomBalancer(members, rng)
    if algorithm in _KEYS:
        return HashBalancer(members, algorithm, _KEYS[algorithm])
    if algorithm == "hdr":
        if not hash_header:
            raise ValueError("balance hdr needs a header name (hash_header)")
        name = hash_header.lower()

        def header_key(facts: RequestFacts) -> bytes | None:
            value = facts.header(name)
            return value.encode("utf-8", "surrogatepass") if value else None

        return HashBalancer(members, "hdr", header_key)
    raise ValueError(f"unknown balance algorithm {algorithm!r}; expected one of {ALGORITHMS}")
