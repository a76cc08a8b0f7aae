"""Per-listener routing: the first ACL whose condition matches picks the pool (sans-IO).

A listener's ACLs are an ordered list of (acl name, condition, pool name); the first
rule that matches wins, and a request no rule matches goes to the default pool, or
to none (the engine answers 503). ``Router`` compiles every condition once, when the
configuration revision is built; ``explain()`` replays the decision in words, and
``shadowed()`` lists rules that an earlier rule always beats (lint reports them).

``Router.route()`` is a loop over the compiled closures, unless some rules are *indexable*:
a lone ``Match`` (no and/or/not) of

* ``hdr(host)`` equality, with or without ``-i``: haproxy's ``hdr()`` samples, i.e.
  every Host line split on commas outside quotes and trimmed, raw (port, case and
  trailing dot kept; ``-i`` lower-cases the sample, the values are already lower);
* ``host`` equality: the normalised host (never empty), lower-cased as the matcher does;
* ``path_beg``, with or without ``-i``, any number of values: ``startswith`` on the
  path (lower-cased as a whole under ``-i``, as the matcher does, then sliced).

Those are answered with dictionaries built here - value to the lowest rule index
for host equality, and for prefixes one dictionary per prefix length (``path[:n]``
looked up) - which give the lowest indexable rule that matches, ``best``. The other
(*generic*) rules are then tried in order only while their index is below ``best``,
so the first rule that matches wins exactly as in the loop. The lookups only read
the request facts (whose accessors cache), so doing them before an earlier generic
rule is tried changes nothing but the cost.
"""

from __future__ import annotations

from typing import Sequence

from .acl import (
    AclError,
    Condition,
    Match,
    Matcher,
    compile_condition,
    explain_condition,
    implies,
    parse_condition,
    split_header_list,
)
from .facts import RequestFacts, lower_kept
from .frozen import FrozenInstanceError, set_field

__all__ = ["Route", "Router"]

# Host values as sent -> lower case, for the ``-i`` host rules: clients send the same
# few names, and a dictionary read costs less than str.lower() and the new string's
# hash, per request. Bounded as lbcore.l7.facts keeps header names (lower_kept).
_FOLDED: dict[str, str] = {}


class Route:
    """Where a request goes: ``pool`` None means no pool (503); ``acl`` None, the default.

    A frozen value (``frozen.py``): equal to another with the same pool and acl, and
    refusing assignment (the router hands the same one to every request it matches).
    Compiled, an extension type whose fields the engine reads as C fields
    (``router.pxd``).
    """

    __slots__ = ("pool", "acl")

    def __init__(self, pool: str | None, acl: str | None) -> None:
        set_field(self, "pool", pool)
        set_field(self, "acl", acl)

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Route):
            return NotImplemented
        return self.pool == other.pool and self.acl == other.acl

    def __hash__(self) -> int:
        return hash((self.pool, self.acl))

    def __repr__(self) -> str:
        return f"Route(pool={self.pool!r}, acl={self.acl!r})"


class Router:
    """The routing table of one listener."""

    __slots__ = (
        "rules", "default_pool", "indexed", "_table", "_default", "_routes", "_count", "_generic",
        "_header_exact", "_header_folded", "_host_exact", "_exact_buckets", "_folded_buckets",
    )

    def __init__(self, rules: Sequence[tuple[str, Condition, str]], default_pool: str | None) -> None:
        seen: set[str] = set()
        checked: list[tuple[str, Condition, str]] = []
        for name, condition, pool in rules:
            if name in seen:
                raise AclError(f"duplicate acl name {name!r}")
            seen.add(name)
            checked.append((name, parse_condition(condition), pool))
        self.rules: tuple[tuple[str, Condition, str], ...] = tuple(checked)
        self.default_pool = default_pool
        self._table = tuple((compile_condition(cond), Route(pool, name)) for name, cond, pool in self.rules)
        self._default = Route(default_pool, None)
        self._index()

    def route(self, facts: RequestFacts) -> Route:
        """The first rule whose condition matches, else the default (see the module doc).

        A method of the compiled Router (``router.pxd``), typed: the engine calls it and
        it reads the facts directly, not through Python calls.
        """
        if not self.indexed:
            for matcher, route in self._table:
                if matcher.matches(facts):
                    return route
            return self._default
        count = self._count
        best = count
        if self._header_exact or self._header_folded:
            for line in facts.header_values("host"):
                if "," in line:
                    for value in split_header_list(line):
                        best = self._host_header_best(value, best, count)
                else:  # split_header_list of a line without a comma: the line, trimmed
                    best = self._host_header_best(line.strip(" \t"), best, count)
        if self._host_exact:
            host = facts.fetch_host()
            if host:
                i = self._host_exact.get(host.lower(), count)
                if i < best:
                    best = i
        if self._exact_buckets:
            path = facts.fetch_path()
            best = _best_prefix(self._exact_buckets, path, best, count)
        if self._folded_buckets:
            # The whole path lowered, as the matcher does: lower() may change lengths.
            best = _best_prefix(self._folded_buckets, facts.fetch_path().lower(), best, count)
        for i, matcher in self._generic:
            if i >= best:
                break
            if matcher.matches(facts):
                return self._routes[i]
        return self._routes[best]

    def _index(self) -> None:
        """Build the index of the indexable rules (module doc); ``indexed`` False when
        none is, and ``route`` is the plain loop over the compiled conditions.

        Every lookup mirrors the compiled matcher of ``lbcore.l7.acl`` for that Match:
        ``hdr(host)`` tests ``value in frozenset(values)`` (``value.lower()`` under -i)
        for each value of ``split_header_list`` of each Host line; ``host`` tests
        ``facts.host.lower()`` when the host is not empty; ``path_beg`` tests
        ``path.startswith(values)`` (``path.lower()`` under -i; values were lower-cased
        when parsed, -i ones only).
        """
        header_exact: dict[str, int] = {}  # hdr(host) value -> lowest rule index
        header_folded: dict[str, int] = {}  # hdr(host) -i
        host_exact: dict[str, int] = {}  # host (always -i)
        prefix_exact: dict[int, dict[str, int]] = {}  # path_beg: len(prefix) -> prefix -> lowest rule index
        prefix_folded: dict[int, dict[str, int]] = {}  # path_beg -i
        generic: list[tuple[int, Matcher]] = []
        for i, ((_, cond, _), (matcher, _)) in enumerate(zip(self.rules, self._table)):
            if isinstance(cond, Match) and cond.op == "equals" and cond.fetch == "header" and cond.name == "host":
                into = header_folded if cond.ignore_case else header_exact
                for value in cond.values:
                    into.setdefault(value, i)
            elif isinstance(cond, Match) and cond.op == "equals" and cond.fetch == "host":
                for value in cond.values:
                    host_exact.setdefault(value, i)
            elif isinstance(cond, Match) and cond.op == "prefix" and cond.fetch == "path":
                by_length = prefix_folded if cond.ignore_case else prefix_exact
                for value in cond.values:
                    by_length.setdefault(len(value), {}).setdefault(value, i)
            else:
                generic.append((i, matcher))

        def buckets(by_length: dict[int, dict[str, int]]) -> tuple[tuple[int, dict[str, int], int], ...]:
            # (length, prefixes, lowest index among them), lowest first: once a bucket's
            # lowest index is not below the best match so far, neither is any later one.
            return tuple(sorted(((n, d, min(d.values())) for n, d in by_length.items()), key=lambda b: b[2]))

        self.indexed = len(generic) < len(self.rules)
        self._routes = tuple(route for _, route in self._table) + (self._default,)
        self._count = len(self._table)
        self._generic = tuple(generic)
        self._header_exact = header_exact
        self._header_folded = header_folded
        self._host_exact = host_exact
        self._exact_buckets = buckets(prefix_exact)
        self._folded_buckets = buckets(prefix_folded)

    def _host_header_best(self, value: str, best: int, count: int) -> int:
        """``best``, or the index of a lower hdr(host) rule that ``value`` matches."""
        header_exact = self._header_exact
        if header_exact:
            i = header_exact.get(value, count)
            if i < best:
                best = i
        header_folded = self._header_folded
        if header_folded:
            i = header_folded.get(lower_kept(_FOLDED, value), count)
            if i < best:
                best = i
        return best

    def explain(self, facts: RequestFacts) -> list[str]:
        """Each rule tried in order and why it did or did not match, then the result."""
        lines: list[str] = []
        for index, ((match, route), (name, cond, pool)) in enumerate(zip(self._table, self.rules)):
            ok = match(facts)
            lines.append(f"acl {name} -> pool {pool}: {'match' if ok else 'no match'}")
            lines.extend("  " + line for line in explain_condition(cond, facts))
            if ok:
                untried = len(self.rules) - index - 1
                if untried:
                    lines.append(f"({untried} later acl{'s' if untried > 1 else ''} not tried)")
                lines.append(f"pool {pool} (acl {name})")
                return lines
        if self.default_pool is not None:
            lines.append(f"default pool {self.default_pool}")
        else:
            lines.append("no pool: 503")
        return lines

    def shadowed(self) -> list[tuple[str, str]]:
        """(acl, earlier acl) pairs: the acl can never be chosen, the earlier one always wins.

        Found when the later condition is identical to, or proven to imply, an earlier
        one (a rule after an ``always_true`` one, ``path_beg /api/v1`` after
        ``path_beg /api``, a subnet after its supernet...). Each shadowed acl is
        reported once, against the first earlier acl that shadows it.
        """
        found: list[tuple[str, str]] = []
        for j, (name, cond, _) in enumerate(self.rules):
            for earlier, earlier_cond, _ in self.rules[:j]:
                if implies(cond, earlier_cond):
                    found.append((name, earlier))
                    break
        return found


def _best_prefix(buckets: tuple[tuple[int, dict[str, int], int], ...], path: str, best: int, count: int) -> int:
    """The lowest rule index below ``best`` whose prefix starts ``path``, else ``best``:
    a bucket per prefix length, lowest index first (``Router._index``)."""
    for n, prefixes, lowest in buckets:
        if lowest >= best:
            break
        i = prefixes.get(path[:n], count)
        if i < best:
            best = i
    return best
