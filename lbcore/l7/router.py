"""Per-listener routing: the first ACL whose condition matches picks the pool (sans-IO).

A listener's ACLs are an ordered list of (acl name, condition, pool name); the first
rule that matches wins, and a request no rule matches goes to the default pool, or
to none (the engine answers 503). ``Router`` compiles every condition once, when the
configuration revision is built, so ``route()`` is a loop over closures; ``explain()``
replays the same decision in words, and ``shadowed()`` lists rules that an earlier
rule always beats (lint reports them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .acl import AclError, Condition, compile_condition, explain_condition, implies, parse_condition
from .facts import RequestFacts

__all__ = ["Route", "Router"]


@dataclass(frozen=True, slots=True)
class Route:
    """Where a request goes: ``pool`` None means no pool (503); ``acl`` None, the default."""

    pool: str | None
    acl: str | None


class Router:
    """The routing table of one listener."""

    __slots__ = ("rules", "default_pool", "_table", "_default")

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

    def route(self, facts: RequestFacts) -> Route:
        for matches, route in self._table:
            if matches(facts):
                return route
        return self._default

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
