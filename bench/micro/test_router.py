"""Router.route (lbcore.l7.router): the indexed route() beside the plain loop over the
compiled conditions it replaces.

- the L7 routing scenario's 50 rules (``bench.configs.rules(50)``: ``hdr(host) -i
  svcK.example.com`` and ``path_beg /svcK/`` alternating), a wrk-like request that
  matches none (Host 127.0.0.1:8080, path /) and one that matches the last rule;
- the demo's 3 rules (``bench.configs.BASE_RULES``: ``hdr(host) -i``, ``path_beg``,
  ``src || req.cook -m found``) with the wrk request, which matches none.

Each round routes a fresh RequestFacts, as the engine does per request, so the lazy
parsing a rule triggers (header table, path split) is counted; building the facts is
not. Run: ``python -m pytest -q bench/micro/test_router.py --benchmark-only``. No
timing assertions.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Callable

import pytest

from bench.configs import BASE_RULES, ROUTING_RULES, rules
from lbcore.l7.facts import RequestFacts
from lbcore.l7.router import Route, Router

CLIENT = ipaddress.ip_address("127.0.0.1")
WRK_HEADERS = (("Host", "127.0.0.1:8080"),)
CASES = {
    # name: (rule count, request target, the route it must get)
    "50 rules, no match": (ROUTING_RULES, "/", Route("www", None)),
    "50 rules, last rule": (ROUTING_RULES, "/svc49/index.html", Route("p9", "r49")),
    "3 demo rules, no match": (len(BASE_RULES), "/", Route("www", None)),
}


def make_router(count: int) -> Router:
    return Router([(rule.name, rule.lbcore, rule.pool) for rule in rules(count)], "www")


def linear(router: Router) -> Callable[[RequestFacts], Route]:
    """The plain loop: every compiled condition in order, first match wins."""
    table, default = router._table, router._default

    def route(facts: RequestFacts) -> Route:
        for matches, result in table:
            if matches(facts):
                return result
        return default

    return route


@pytest.mark.parametrize("impl", ["indexed", "linear"])
@pytest.mark.parametrize("case", list(CASES))
def test_route(benchmark: Any, case: str, impl: str) -> None:
    count, target, expected = CASES[case]
    benchmark.group = f"Router.route: {case}"
    router = make_router(count)
    route = router.route if impl == "indexed" else linear(router)

    def fresh_facts() -> tuple[tuple[RequestFacts], dict]:
        return (RequestFacts("GET", target, list(WRK_HEADERS), CLIENT, 51234),), {}

    result = benchmark.pedantic(route, setup=fresh_facts, rounds=20_000, warmup_rounds=100)
    assert result == expected
