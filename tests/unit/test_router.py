"""Per-listener routing: first match wins, default pool, explain, shadowed rules."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lbcore.l7.acl import AclError, Always, And, Match, Not, Or, compile_condition, implies, parse_condition
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
    with pytest.raises(dataclasses.FrozenInstanceError):
        del first.acl  # type: ignore[misc]
    assert (first.pool, first.acl) == ("static", "static")
    assert first == Route("static", "static") != Route("static", None)
    assert hash(first) == hash(Route("static", "static"))
    assert repr(first) == "Route(pool='static', acl='static')"


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


# -- the index: route() agrees with the plain loop ------------------------------------------------


def linear_route(router, facts):
    """The plain loop over the compiled conditions, first match wins (the reference)."""
    for name, cond, pool in router.rules:
        if compile_condition(cond)(facts):
            return Route(pool, name)
    return Route(router.default_pool, None)


def test_nothing_indexable_keeps_the_plain_loop():
    assert design_router().indexed  # hdr(host) and path_beg are indexed
    generic = Router([("a", P("src 10.0.0.0/8"), "a"), ("b", P("path /x"), "b"), ("c", P("hdr_beg(host) a || path_beg /a"), "c")], None)
    assert not generic.indexed
    assert not Router([], "www").indexed
    assert generic.route(req("/x")) == Route("b", "b")


def test_hdr_host_equality_sees_the_raw_values():
    router = Router([("api", P("hdr(host) -i api.example.com"), "api"), ("exact", P("hdr(host) Api.example.com"), "exact")], "www")

    def host(*lines, target="/"):
        return router.route(RequestFacts("GET", target, [("Host", line) for line in lines]))

    assert host("API.Example.com") == Route("api", "api")
    assert host("api.example.com:8080") == Route("www", None)  # the port is part of the value
    assert host("api.example.com.") == Route("www", None)  # so is the root dot
    assert host(" api.example.com\t") == Route("api", "api")  # trimmed
    assert host("x.com, api.example.com") == Route("api", "api")  # any comma-separated value
    assert host('"x, api.example.com"') == Route("www", None)  # not inside quotes
    assert host("x.com", "API.EXAMPLE.COM") == Route("api", "api")  # any Host line
    assert host(target="http://api.example.com/") == Route("www", None)  # not the absolute-form authority
    assert host() == Route("www", None)
    exact = Router([("exact", P("hdr(host) Api.example.com"), "exact")], "www")
    assert exact.route(req(host="Api.example.com")) == Route("exact", "exact")
    assert exact.route(req(host="api.example.com")) == Route("www", None)


def test_hdr_host_ignoring_case_routes_the_same_from_the_lowered_values_kept_and_past_their_bound():
    router = Router([("api", P("hdr(host) -i api.example.com"), "api")], "www")

    def host(value):
        return router.route(RequestFacts("GET", "/", [("Host", value)]))

    for _ in range(2):  # the second time, the lowered values are the ones kept
        assert host("API.Example.com") == Route("api", "api")
        assert host("Other.Example.com") == Route("www", None)
    for n in range(600):  # more distinct values than are kept
        assert host(f"H{n}.Example.com") == Route("www", None)
    assert host("api.EXAMPLE.com") == Route("api", "api")


def test_host_equality_sees_the_normalised_host():
    router = Router([("api", P("host api.example.com"), "api"), ("v6", P("host ::1"), "v6"), ("empty", P({"host": ""}), "x")], "www")
    assert router.route(req(host="API.example.com.:8080")) == Route("api", "api")
    assert router.route(RequestFacts("GET", "http://Api.Example.com/x", [("Host", "other")])) == Route("api", "api")
    assert router.route(req(host="[::1]:8080")) == Route("v6", "v6")
    assert router.route(req(host="")) == Route("www", None)


def test_path_prefixes_any_value_lowest_rule():
    router = Router(
        [
            ("a", P("path_beg /a/b /x"), "a"),
            ("b", P("path_beg /a"), "b"),
            ("c", P("path_beg -i /C/ /D"), "c"),
            ("d", P("path_beg /"), "d"),
        ],
        None,
    )
    assert router.route(req("/a/b/c")) == Route("a", "a")
    assert router.route(req("/xyz")) == Route("a", "a")
    assert router.route(req("/a/c")) == Route("b", "b")
    assert router.route(req("/c/x")) == Route("c", "c")
    assert router.route(req("/dX")) == Route("c", "c")
    assert router.route(req("/q?a=/a")) == Route("d", "d")
    assert router.route(req("http://h/a/b")) == Route("a", "a")  # absolute-form: its path
    assert router.route(req("http://h")) == Route("d", "d")
    assert router.route(req("*")) == Route(None, None)
    assert Router([("e", P("path_beg ''"), "e")], None).route(req("*")) == Route("e", "e")  # the empty prefix


def test_path_prefix_ignoring_case_lowers_the_whole_path():
    # "İ".lower() is two characters: the matcher lowers the path, then tests the prefix.
    router = Router([("i", P("path_beg -i /i"), "i"), ("ss", P("path_beg -i /ß"), "ss")], None)
    assert router.route(req("/İx")) == linear_route(router, req("/İx")) == Route("i", "i")
    assert router.route(req("/SS")) == Route(None, None)
    assert router.route(req("/ßa")) == Route("ss", "ss")


def test_lowest_rule_wins_across_hosts_and_prefix_lengths():
    rules = [
        ("long", P("path_beg /abc"), "long"),
        ("host", P("hdr(host) h"), "host"),
        ("short", P("path_beg /a"), "short"),
        ("fold", P("hdr(host) -i H"), "fold"),
        ("norm", P("host h"), "norm"),
    ]
    router = Router(rules, None)
    assert router.route(req("/abc", host="h")) == Route("long", "long")
    assert router.route(req("/ab", host="h")) == Route("host", "host")
    assert router.route(req("/ab", host="H")) == Route("short", "short")
    assert router.route(req("/b", host="H")) == Route("fold", "fold")
    assert router.route(req("/b", host="H:80")) == Route("norm", "norm")
    assert Router(rules[::-1], None).route(req("/abc", host="h")) == Route("norm", "norm")


def test_generic_rules_interleave_with_indexed_ones():
    router = Router(
        [
            ("lan", P("src 10.0.0.0/8"), "lan"),
            ("api", P("hdr(host) api.example.com"), "api"),
            ("post", P("method POST"), "post"),
            ("static", P("path_beg /static/"), "static"),
            ("beta", P("req.cook(beta) -m found"), "beta"),
        ],
        "www",
    )
    assert router.route(req("/static/x", host="api.example.com", client_ip="10.1.1.1")) == Route("lan", "lan")
    assert router.route(req("/static/x", host="api.example.com", method="POST")) == Route("api", "api")
    assert router.route(req("/static/x", method="POST")) == Route("post", "post")
    assert router.route(req("/static/x", headers=[("Cookie", "beta=1")])) == Route("static", "static")
    assert router.route(req("/x", headers=[("Cookie", "beta=1")])) == Route("beta", "beta")
    assert router.route(req("/x")) == Route("www", None)


HOST_VALUES = [
    "api.example.com", "API.example.com", "api.example.com:8080", "api.example.com.", "svc1.example.com",
    "127.0.0.1:8080", "127.0.0.1", "[::1]:8080", "[::1]", "::1", "", '"a,b"', "a", "İ.example.com", "i̇.example.com",
]
HOST_LINES = HOST_VALUES + [
    " api.example.com ", "\tAPI.EXAMPLE.COM", "api.example.com, svc1.example.com", "a,,b", '"a,b", api.example.com',
    "API.Example.COM.:80", "[2001:db8::1]:443", "2001:db8::1", ":8080", "[]", "\xa0api.example.com",
]
PREFIXES = ["", "/", "/a", "/a/", "/ab", "/A", "/svc1/", "/svc11/", "/İ", "/i", "/i̇", "/ß", "/SS", "/ss"]
PATHS = ["/", "", "/a", "/a/b", "/ab", "/A/b", "/svc1/x", "/svc11/", "/svc1", "/İx", "/i̇x", "/ßx", "/SSx", "*", "/a?b=/c", "/ab#f"]
AUTHORITIES = ["api.example.com", "API.example.com:8080", "[::1]:8080", "svc1.example.com.", "127.0.0.1:8080"]
NETWORKS = ["10.0.0.0/8", "192.0.2.0/24", "::1", "2001:db8::/32"]


def values(pool):
    return st.lists(st.sampled_from(pool), min_size=1, max_size=3).map(tuple)


def build(fetch, name, op, vals=(), ic=False):
    return Match(fetch, name, op, vals, ic)


# The indexable shapes, and generic ones that look like them.
hdr_host_eq = st.builds(build, st.just("header"), st.sampled_from(["host", "Host"]), st.just("equals"), values(HOST_VALUES), st.booleans())
host_eq = st.builds(build, st.just("host"), st.none(), st.just("equals"), values(HOST_VALUES + ["example.com"]))
path_beg = st.builds(build, st.just("path"), st.none(), st.just("prefix"), values(PREFIXES), st.booleans())
lookalikes = st.one_of(
    st.builds(build, st.just("path"), st.none(), st.just("equals"), values(PATHS), st.booleans()),
    st.builds(build, st.just("header"), st.just("host"), st.sampled_from(["prefix", "suffix", "domain"]), values(["api", ".com", "example.com", "a"]), st.booleans()),
    st.builds(build, st.just("fheader"), st.just("host"), st.just("equals"), values(HOST_LINES), st.booleans()),
    st.builds(build, st.just("header"), st.just("x-env"), st.just("equals"), values(["prod", "api.example.com", "/a"]), st.booleans()),
    st.builds(build, st.just("host"), st.none(), st.just("prefix"), values(["api", "127.", "::"])),
    st.builds(build, st.just("host"), st.none(), st.just("present")),
    st.builds(build, st.just("src"), st.none(), st.just("cidr"), values(NETWORKS)),
    st.builds(build, st.just("cookie"), st.just("beta"), st.just("present")),
    st.builds(build, st.just("path"), st.none(), st.just("suffix"), values(["/", "b", "x"])),
    st.just(Always()),
    st.just(Not(Always())),
)
leaf = st.one_of(hdr_host_eq, host_eq, path_beg, lookalikes, matches_st())
combined = st.recursive(
    leaf,
    lambda children: st.one_of(
        st.lists(children, min_size=1, max_size=3).map(lambda xs: And(tuple(xs))),
        st.lists(children, min_size=1, max_size=3).map(lambda xs: Or(tuple(xs))),
        children.map(Not),
    ),
    max_leaves=4,
)
rule_conditions = st.one_of(hdr_host_eq, host_eq, path_beg, hdr_host_eq, path_beg, lookalikes, combined)
rule_lists = st.one_of(
    st.lists(rule_conditions, max_size=14),
    # few distinct conditions, repeated: duplicates and ties
    st.lists(rule_conditions, min_size=1, max_size=4).flatmap(lambda pool: st.lists(st.sampled_from(pool), max_size=12)),
)


def rule_values(conds):
    """The host and path values the rules name, to build requests that hit them."""
    hosts, paths = set(), set()
    stack = list(conds)
    while stack:
        c = stack.pop()
        if isinstance(c, (And, Or)):
            stack.extend(c.items)
        elif isinstance(c, Not):
            stack.append(c.item)
        elif isinstance(c, Match) and c.fetch in ("host", "header", "fheader"):
            hosts.update(c.values)
        elif isinstance(c, Match) and c.fetch == "path":
            paths.update(c.values)
    return sorted(hosts), sorted(paths)


# Host lines and paths made from a rule's value: case changed, port, root dot, blanks,
# comma lists (quoted or not), longer paths.
HOST_VARIANTS = [
    str, str, str, str.upper, str.upper, str.swapcase, str.title, "{}:8080".format, "{}.".format, "{}.:80".format,
    "[{}]:8080".format, " {}\t".format, "\xa0{}".format, "{}\x0b".format, "x.com, {}".format, "{},x".format,
    '"{}"'.format, '"x,{}"'.format, lambda v: v.replace("i", "İ"),
]
PATH_VARIANTS = [
    str, str, str.upper, str.upper, str.swapcase, "{}x".format, "{}/y?q=1".format, lambda p: p[:-1], "{}#f".format,
    lambda p: p.replace("i", "İ"), lambda p: p.replace("s", "ß"),
]


@st.composite
def request_args(draw, hosts, paths):
    host_lines = st.one_of(st.sampled_from(HOST_LINES), *(
        [st.builds(lambda f, v: f(v), st.sampled_from(HOST_VARIANTS), st.sampled_from(hosts))] if hosts else []
    ))
    path_st = st.one_of(st.sampled_from(PATHS), *(
        [st.builds(lambda f, v: f(v), st.sampled_from(PATH_VARIANTS), st.sampled_from(paths))] if paths else []
    ))
    headers = []
    for _ in range(draw(st.integers(0, 3))):
        headers.append((draw(st.sampled_from(["Host", "host", "HOST"])), draw(host_lines)))
    if draw(st.booleans()):
        headers.append(("X-Env", draw(st.sampled_from(["prod", "api.example.com", "/a"]))))
    if draw(st.booleans()):
        headers.append(("Cookie", draw(st.sampled_from(["beta=1", "alpha=2", "beta="]))))
    headers = draw(st.permutations(headers))
    path = draw(path_st)
    if draw(st.booleans()):  # absolute-form: the host comes from the target
        scheme = draw(st.sampled_from(["http://", "https://"]))
        authority = draw(st.one_of(st.sampled_from(AUTHORITIES), host_lines.filter(lambda h: "/" not in h and "?" not in h)))
        target = scheme + authority + (path if path.startswith("/") else "")
    else:
        target = path
    ip = draw(st.sampled_from([None, "10.1.2.3", "192.0.2.7", "198.51.100.1", "::1", "2001:db8::5", "::ffff:10.1.2.3"]))
    method = draw(st.sampled_from(["GET", "POST"]))
    return method, target, headers, ip


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(rule_lists, st.sampled_from(["www", None]), st.data())
def test_indexed_route_agrees_with_the_linear_loop(conds, default, data):
    router = Router([(f"acl{i}", cond, f"pool{i}") for i, cond in enumerate(conds)], default)
    requests = data.draw(st.lists(request_args(*rule_values(conds)), min_size=1, max_size=6), label="requests")
    for method, target, headers, ip in requests:
        expected = linear_route(router, RequestFacts(method, target, list(headers), client_ip=ip))
        facts = RequestFacts(method, target, list(headers), client_ip=ip)
        assert router.route(facts) == expected, (method, target, headers, ip)
        assert router.route(facts) == expected  # again, with the facts' caches filled
