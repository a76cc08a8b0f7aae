"""Per-listener routing: first match wins, default pool, explain, shadowed rules."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lbcore.l7.acl import AclError, And, Not, Or, compile_condition, implies, parse_condition
from lbcore.l7.facts import RequestFacts
from lbcore.l7.router import Route, Router

from .test_acl import conditions, facts_st, matches_st, reference

P = parse_condition


def req(target="/", host="www.example.com", client_ip="192.0.2.1", headers=(), method="GET", sni=None):
    return RequestFacts(method, target, [("Host", host), *headers], client_ip=client_ip, sni=sni)


def design_router(default="www"):
    return Router(
        [
            ("api", P("hdr(host) -i api.example.com"), "api"),
            ("static", P({"path": {"prefix": "/static/"}}), "static"),
            ("beta", P("src 10.0.0.0/8 || req.cook(beta) -m found"), "beta"),
        ],
        default,
    )


# -- route ---------------------------------------------------------------------------------


def test_first_match_wins_in_order():
    router = design_router()
    # api and static both match: the first listed wins
    assert router.route(req("/static/a.css", host="api.example.com")) == Route("api", "api")
    assert router.route(req("/static/a.css", client_ip="10.1.1.1")) == Route("static", "static")
    assert router.route(req("/x", client_ip="10.1.1.1")) == Route("beta", "beta")
    assert router.route(req("/x", headers=[("Cookie", "beta=1")])) == Route("beta", "beta")


def test_default_pool_and_no_pool():
    assert design_router().route(req("/x")) == Route("www", None)
    assert design_router(default=None).route(req("/x")) == Route(None, None)
    assert Router([], "www").route(req()) == Route("www", None)
    assert Router([], None).route(req()) == Route(None, None)


def test_order_matters():
    rules = [("a", P("path_beg /api"), "p1"), ("b", P("path_beg /api/v2"), "p2")]
    assert Router(rules, None).route(req("/api/v2/x")) == Route("p1", "a")
    assert Router(rules[::-1], None).route(req("/api/v2/x")) == Route("p2", "b")


def test_route_is_frozen_and_reused():
    router = design_router()
    first, second = router.route(req("/static/x")), router.route(req("/static/y"))
    assert first is second  # built once per rule, not per request
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.pool = "other"  # type: ignore[misc]


def test_rules_may_be_given_in_either_spelling():
    router = Router([("a", "path_beg /a", "p"), ("b", {"method": "POST"}, "q")], None)
    assert router.rules[0][1] == P("path_beg /a")
    assert router.route(req("/b", method="POST")) == Route("q", "b")


def test_bad_rules_are_refused():
    with pytest.raises(AclError, match="duplicate acl name 'a'"):
        Router([("a", P("path /x"), "p"), ("a", P("path /y"), "q")], None)
    with pytest.raises(AclError, match="unknown fetch 'hots'"):
        Router([("a", "hots x", "p")], None)


def test_v4_mapped_client_routes_by_v4_rule():
    router = Router([("lan", P("src 10.0.0.0/8"), "lan")], "www")
    assert router.route(req(client_ip="::ffff:10.2.3.4")) == Route("lan", "lan")
    assert router.route(req(client_ip="::ffff:11.2.3.4")) == Route("www", None)
    assert router.route(req(client_ip=None)) == Route("www", None)


def test_tls_passthrough_routes_by_sni():
    router = Router([("api", P("req.ssl_sni -i api.example.com"), "api"), ("any", P("ssl_sni *.example.com"), "www")], None)
    assert router.route(RequestFacts(sni="API.example.com")) == Route("api", "api")
    assert router.route(RequestFacts(sni="x.example.com")) == Route("www", "any")
    assert router.route(RequestFacts(sni="x.y.example.com")) == Route(None, None)
    assert router.route(RequestFacts()) == Route(None, None)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(st.lists(conditions, max_size=4), st.sampled_from(["www", None]), facts_st())
def test_route_agrees_with_reference(conds, default, facts):
    rules = [(f"acl{i}", cond, f"pool{i}") for i, cond in enumerate(conds)]
    expected = next((Route(f"pool{i}", f"acl{i}") for i, c in enumerate(conds) if reference(c, facts)), Route(default, None))
    router = Router(rules, default)
    assert router.route(facts) == expected
    last = router.explain(facts)[-1]
    assert last == (f"pool {expected.pool} (acl {expected.acl})" if expected.acl else f"default pool {default}" if default else "no pool: 503")


# -- explain -----------------------------------------------------------------------------------


def test_explain_tries_rules_in_order_then_says_the_result():
    lines = design_router().explain(req("/static/app.js", client_ip="10.1.2.3"))
    assert lines == [
        "acl api -> pool api: no match",
        "  header host 'www.example.com' == 'api.example.com' (ignoring case): no",
        "acl static -> pool static: match",
        "  path '/static/app.js' starts with '/static/': yes",
        "(1 later acl not tried)",
        "pool static (acl static)",
    ]


def test_explain_default_pool():
    lines = design_router().explain(req("/x"))
    assert lines == [
        "acl api -> pool api: no match",
        "  header host 'www.example.com' == 'api.example.com' (ignoring case): no",
        "acl static -> pool static: no match",
        "  path '/x' starts with '/static/': no",
        "acl beta -> pool beta: no match",
        "  any of 2: no",
        "    src 192.0.2.1 in 10.0.0.0/8: no",
        "    cookie beta (absent) present: no",
        "default pool www",
    ]


def test_explain_no_pool():
    router = Router([("api", P("host api.example.com"), "api")], None)
    assert router.explain(req("/x")) == [
        "acl api -> pool api: no match",
        "  host 'www.example.com' == 'api.example.com': no",
        "no pool: 503",
    ]
    assert Router([], None).explain(req()) == ["no pool: 503"]
    assert Router([], "www").explain(req()) == ["default pool www"]


def test_explain_counts_several_untried_rules():
    router = Router([("all", P("always_true"), "a"), ("x", P("path /x"), "b"), ("y", P("path /y"), "c")], None)
    assert router.explain(req("/x")) == [
        "acl all -> pool a: match",
        "  always: yes",
        "(2 later acls not tried)",
        "pool a (acl all)",
    ]


# -- shadowed ------------------------------------------------------------------------------------


def shadowed(*conds):
    return Router([(f"r{i}", P(c), f"p{i}") for i, c in enumerate(conds)], None).shadowed()


SHADOWED = [
    # identical
    (["path_beg /api", "path_beg /api"], [("r1", "r0")]),
    (["hdr(host) -i api.example.com", {"header": {"name": "Host", "equals": "API.example.com", "ignore_case": True}}], [("r1", "r0")]),
    # after a catch-all
    (["always_true", "path /x", "host a.com"], [("r1", "r0"), ("r2", "r0")]),
    (["path /a || always_true", "path /x"], [("r1", "r0")]),
    # strictly broader earlier rule
    (["path_beg /api", "path_beg /api/v1"], [("r1", "r0")]),
    (["path_beg /api", "path /api/users"], [("r1", "r0")]),
    (["path_beg /api", "path_beg /v1 /api/x"], []),
    (["path_beg /api /v1", "path_beg /v1/x /api/x"], [("r1", "r0")]),
    (["path_sub adm", "path_beg /admin"], [("r1", "r0")]),
    (["path_end .jpg", "path_end .thumb.jpg"], [("r1", "r0")]),
    (["path_reg ^/v[0-9]", "path /v2/x"], [("r1", "r0")]),
    (["path_dir api", "path /v1/api/x"], [("r1", "r0")]),
    (["src 10.0.0.0/8", "src 10.1.0.0/16 10.2.3.4"], [("r1", "r0")]),
    (["src 10.0.0.0/8", "src 10.1.0.0/16 11.0.0.1"], []),
    (["src ::/0", "src 2001:db8::/32"], [("r1", "r0")]),
    (["src 0.0.0.0/0", "src 2001:db8::/32"], []),
    (["host_end .example.com", "host *.example.com"], [("r1", "r0")]),
    (["host *.example.com", "host api.example.com"], [("r1", "r0")]),
    (["host *.example.com", "host a.b.example.com"], []),
    (["host_dom example.com", "host www.example.com"], [("r1", "r0")]),
    (["host a.com b.com", "host A.com"], [("r1", "r0")]),
    (["req.cook(beta) -m found", "req.cook(beta) 1"], [("r1", "r0")]),
    (["req.cook(beta) -m found", "req.cook(alpha) 1"], []),
    (["hdr(x) -m found", "hdr_beg(x) a"], [("r1", "r0")]),
    (["hdr(x) -m found", "req.fhdr(x) a"], []),  # a different fetch: no claim
    (["method GET HEAD", "method GET"], [("r1", "r0")]),
    (["urlp(v) -m beg 1", "urlp(v) 12"], [("r1", "r0")]),
    # logic
    (["path_beg /api", "path_beg /api && method POST"], [("r1", "r0")]),
    (["path_beg /api || host a.com", "host a.com"], [("r1", "r0")]),
    (["path_beg /a || path_beg /b", "path /a/1 || path /b/2"], [("r1", "r0")]),
    (["path_beg /api && method POST", "path_beg /api"], []),
    (["!path_beg /a", "!path_beg /"], [("r1", "r0")]),
    (["!path_beg /", "!path_beg /a"], []),
    (["method POST && path_beg /a", "path_beg /a/b && method POST"], [("r1", "r0")]),
    # the first shadowing rule is the one reported, and each acl once
    (["path_beg /", "path_beg /a", "path_beg /a/b"], [("r1", "r0"), ("r2", "r0")]),
    # no claim across case-sensitivity (str.lower is not per character) or unrelated tests
    (["path_beg -i /api", "path_beg /api/v1"], []),
    (["path_beg /api", "path_reg ^/api"], []),
    (["host api.example.com", "path /"], []),
    (["path /b", "path /a"], []),
]


@pytest.mark.parametrize(("conds", "expected"), SHADOWED)
def test_shadowed(conds, expected):
    assert shadowed(*conds) == expected


def test_shadowed_reports_even_when_the_pool_is_the_same():
    router = Router([("a", P("path_beg /x"), "p"), ("b", P("path_beg /x/y"), "p")], None)
    assert router.shadowed() == [("b", "a")]


def test_implies_basics():
    a, b = P("path /a"), P("path /b")
    assert implies(a, Or((a, b)))
    assert implies(And((a, b)), a)
    assert not implies(a, And((a, b)))
    assert not implies(Or((a, b)), a)
    assert implies(Not(Or((a, b))), Not(a))
    assert not implies(Not(a), a)
    assert implies(P("always_false"), P("always_false"))


@st.composite
def same_fetch_pair(draw):
    fetch = draw(st.sampled_from(["host", "ssl_sni", "path", "src", "cookie", "header", "query", "method"]))
    name = {"cookie": "a", "query": "a", "header": "x-env"}.get(fetch)
    return draw(matches_st(fetch, name)), draw(matches_st(fetch, name))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(same_fetch_pair(), st.lists(facts_st(), min_size=1, max_size=8))
def test_implies_is_sound_for_matches_of_one_fetch(pair, samples):
    a, b = pair
    if implies(a, b):
        for facts in samples:
            assert not reference(a, facts) or reference(b, facts), (a, b, facts)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(conditions, conditions, st.lists(facts_st(), min_size=1, max_size=6))
def test_implies_is_sound(a, b, samples):
    for x, y in ((a, b), (And((a, b)), a), (a, Or((a, b))), (Not(Or((a, b))), Not(b))):
        if implies(x, y):
            match_x, match_y = compile_condition(x), compile_condition(y)
            for facts in samples:
                assert not match_x(facts) or match_y(facts)


def test_implies_is_not_vacuous_on_matches():
    true_pairs = [
        ("path_beg /a/b", "path_beg /a"),
        ("path /a/b", "path_dir b"),
        ("host x.example.com", "host *.example.com"),
        ("host *.example.com", "host_sub example"),
        ("hdr(x) a, b", "hdr(x) -m found"),
        ("src 10.0.0.1", "src 10.0.0.0/8"),
        ("urlp(a) -m sub xy", "urlp(a) -m sub x"),
        ("hdr_end(x) -i .A.com", "hdr_end(x) -i .com"),
    ]
    for a, b in true_pairs:
        assert implies(P(a), P(b)), (a, b)
