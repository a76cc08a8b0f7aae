"""The ACL language: both spellings, matching semantics, errors, compiled == reference."""

from __future__ import annotations

import ipaddress
import re
from unittest import mock

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from lbcore.l7.acl import (
    AclError,
    Always,
    And,
    Match,
    Matcher,
    Not,
    Or,
    compile_condition,
    condition_to_dict,
    condition_to_string,
    explain_condition,
    parse_condition,
    split_header_list,
)
from lbcore.l7.acl_parse import FETCHES
from lbcore.l7.facts import RequestFacts


def facts(method="GET", target="/", headers=(), client_ip=None, sni=None) -> RequestFacts:
    return RequestFacts(method, target, list(headers), client_ip=client_ip, sni=sni)


def matches(cond, **kw) -> bool:
    matcher = compile_condition(parse_condition(cond))
    request = facts(**kw)
    result = matcher(request)
    # The router calls matches() (a C method in the compiled build): the same answer.
    assert isinstance(matcher, Matcher) and matcher.matches(request) is result
    return result


# -- the same rule in both spellings --------------------------------------------------

EQUIVALENT = [
    # host (lbcore's normalised host)
    ("host api.example.com", {"host": "api.example.com"}),
    ("host API.Example.COM", {"host": "api.example.com"}),
    ("host a.example.com b.example.com", {"host": ["a.example.com", "b.example.com"]}),
    ("host_end .example.com", {"host": {"suffix": ".example.com"}}),
    ("host -m end .example.com", {"host": {"suffix": ".example.com"}}),
    ("host_beg api.", {"host": {"prefix": "api."}}),
    ("host_sub example", {"host": {"contains": "example"}}),
    ("host_reg ^api[0-9]", {"host": {"regex": "^api[0-9]"}}),
    ("host_dom example.com", {"host": {"domain": "example.com"}}),
    ("host *.example.com", {"host": {"wildcard": "*.example.com"}}),
    ("host *.example.com", {"host": "*.example.com"}),
    ("host -m found", {"host": {"present": True}}),
    ("host -i api.example.com", {"host": {"equals": "api.example.com", "ignore_case": True}}),
    # headers, haproxy's hdr()
    ("hdr(host) -i api.example.com", {"header": {"name": "Host", "equals": "api.example.com", "ignore_case": True}}),
    ("req.hdr(X-Env) prod", {"header": {"name": "x-env", "equals": "prod"}}),
    ("hdr(x) -m str a b", {"header": {"name": "x", "equals": ["a", "b"]}}),
    ("hdr_beg(x) a", {"header": {"name": "x", "prefix": "a"}}),
    ("hdr(x) -m beg a", {"header": {"name": "x", "prefix": "a"}}),
    ("hdr_end(x) a", {"header": {"name": "x", "suffix": "a"}}),
    ("hdr_sub(x) -i A", {"header": {"name": "x", "contains": "a", "ignore_case": True}}),
    ("hdr_reg(UA) curl/.*", {"header": {"name": "ua", "regex": "curl/.*"}}),
    ("hdr(ua) -m reg curl/.*", {"header": {"name": "ua", "regex": "curl/.*"}}),
    ("hdr_dom(host) example.com", {"header": {"name": "host", "domain": "example.com"}}),
    ("hdr(host) -m dom example.com", {"header": {"name": "host", "domain": "example.com"}}),
    ("hdr_dir(referer) img", {"header": {"name": "referer", "dir": "img"}}),
    ("hdr(X-Env) -m found", {"header": {"name": "X-Env", "present": True}}),
    ("req.fhdr(ua) -m sub 'KHTML, like'", {"header": {"name": "ua", "contains": "KHTML, like", "full": True}}),
    ("fhdr(ua) x", {"header": {"name": "ua", "equals": "x", "full": True}}),
    # path
    ("path /exact", {"path": "/exact"}),
    ("path /a /b", {"path": ["/a", "/b"]}),
    ("path_beg /static/", {"path": {"prefix": "/static/"}}),
    ("path -m beg /static/", {"path": {"prefix": "/static/"}}),
    ("path_end .jpg", {"path": {"suffix": ".jpg"}}),
    ("path_sub admin", {"path": {"contains": "admin"}}),
    ("path_reg ^/v[0-9]+/", {"path": {"regex": "^/v[0-9]+/"}}),
    ("path_dir api", {"path": {"dir": "api"}}),
    ("path_dom api", {"path": {"domain": "api"}}),
    ("path -i /A", {"path": {"equals": "/a", "ignore_case": True}}),
    # src
    ("src 10.0.0.0/8 2001:db8::/32 192.0.2.7", {"src": ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"]}),
    ("src 10.1.2.3/8", {"src": "10.0.0.0/8"}),
    ("src 192.0.2.7", {"src": "192.0.2.7/32"}),
    ("src -m ip ::1", {"src": "::1"}),
    ("src ::ffff:10.0.0.0/104", {"src": "10.0.0.0/8"}),
    ("src -i 10.0.0.0/8", {"src": "10.0.0.0/8"}),
    # cookies
    ("req.cook(beta) -m found", {"cookie": {"name": "beta", "present": True}}),
    ("cook(beta) 1", {"cookie": {"name": "beta", "equals": "1"}}),
    ("req.cook(s) -m beg ab", {"cookie": {"name": "s", "prefix": "ab"}}),
    ("cook_beg(s) ab", {"cookie": {"name": "s", "prefix": "ab"}}),
    ("cook_reg(s) ^a", {"cookie": {"name": "s", "regex": "^a"}}),
    # method
    ("method GET HEAD", {"method": ["GET", "HEAD"]}),
    ("method -i get", {"method": {"equals": "GET", "ignore_case": True}}),
    # query
    ("urlp(v) 2", {"query": {"name": "v", "equals": 2}}),
    ("url_param(v) 2", {"query": {"name": "v", "equals": "2"}}),
    ("query(v) -m found", {"query": {"name": "v", "present": True}}),
    ("urlp(v) -m beg 2", {"query": {"name": "v", "prefix": "2"}}),
    # ssl_sni
    ("req.ssl_sni -i a.example.com", {"ssl_sni": "a.example.com"}),
    ("req_ssl_sni a.example.com", {"ssl_sni": "a.example.com"}),
    ("ssl_fc_sni a.example.com", {"ssl_sni": "a.example.com"}),
    ("req.ssl_sni -m end .example.com", {"ssl_sni": {"suffix": ".example.com"}}),
    ("ssl_fc_sni_end .example.com", {"ssl_sni": {"suffix": ".example.com"}}),
    ("ssl_sni *.example.com", {"ssl_sni": {"wildcard": "*.example.com"}}),
    ("req.ssl_sni -m found", {"ssl_sni": {"present": True}}),
    # logic
    ("always_true", {"always": True}),
    ("TRUE", {"always": True}),
    ("always_false", {"always": False}),
    ("FALSE", {"not": {"always": True}}),
    ("host a.com && path_beg /x", {"host": "a.com", "path": {"prefix": "/x"}}),
    ("host a.com && path_beg /x", {"all": [{"host": "a.com"}, {"path": {"prefix": "/x"}}]}),
    ("host a.com && path_beg /x", [{"host": "a.com"}, {"path": {"prefix": "/x"}}]),
    ("host a.com || path_beg /x", {"any": [{"host": "a.com"}, {"path": {"prefix": "/x"}}]}),
    ("!host a.com", {"not": {"host": "a.com"}}),
    ("host a.com *.b.com", {"host": ["a.com", "*.b.com"]}),
    ("host a.com *.b.com", {"any": [{"host": "a.com"}, {"host": {"wildcard": "*.b.com"}}]}),
    ("!req.cook(b) -m found", {"cookie": {"name": "b", "present": False}}),
    ("src 10.0.0.0/8 || req.cook(beta) -m found", {"any": [{"src": "10.0.0.0/8"}, "req.cook(beta) -m found"]}),
]


@pytest.mark.parametrize(("compact", "structured"), EQUIVALENT)
def test_both_spellings_parse_equal(compact, structured):
    a, b = parse_condition(compact), parse_condition(structured)
    assert a == b
    assert hash(a) == hash(b)
    assert condition_to_dict(a) == condition_to_dict(b)
    assert parse_condition(condition_to_dict(a)) == a
    assert parse_condition(condition_to_string(a)) == a
    # the canonical form survives YAML
    assert parse_condition(yaml.safe_load(yaml.safe_dump(condition_to_dict(a)))) == a


def test_design_example_conditions():
    spec = yaml.safe_load(
        """
        - {name: api, condition: "hdr(host) -i api.example.com", pool: api}
        - {name: static, condition: {path: {prefix: /static/}}, pool: static}
        - {name: beta, condition: "src 10.0.0.0/8 || req.cook(beta) -m found", pool: beta}
        """
    )
    api, static, beta = (compile_condition(parse_condition(acl["condition"])) for acl in spec)
    assert api(facts(headers=[("Host", "API.example.com")]))
    assert not api(facts(headers=[("Host", "api.example.com:8080")]))  # haproxy's hdr(host): raw value
    assert static(facts(target="/static/app.js"))
    assert beta(facts(client_ip="10.9.9.9"))
    assert beta(facts(client_ip="192.0.2.1", headers=[("Cookie", "a=1; beta=")]))
    assert not beta(facts(client_ip="192.0.2.1"))


def test_canonical_dict_shapes():
    assert condition_to_dict(parse_condition("host a.com")) == {"host": "a.com"}
    assert condition_to_dict(parse_condition("path /a /b")) == {"path": ["/a", "/b"]}
    assert condition_to_dict(parse_condition("src 10.1.0.0/16")) == {"src": "10.1.0.0/16"}
    assert condition_to_dict(parse_condition("method GET")) == {"method": "GET"}
    assert condition_to_dict(parse_condition("hdr(X-A) -i B")) == {
        "header": {"name": "x-a", "equals": "b", "ignore_case": True}
    }
    assert condition_to_dict(parse_condition("req.fhdr(ua) x")) == {"header": {"name": "ua", "equals": "x", "full": True}}
    assert condition_to_dict(parse_condition("host -m str *.a.com")) == {"host": {"equals": "*.a.com"}}
    assert condition_to_dict(parse_condition("cook(b) -m found")) == {"cookie": {"name": "b", "present": True}}


def test_values_normalised_and_deduplicated():
    assert parse_condition("path /a /b /a").values == ("/a", "/b")
    assert parse_condition("host Example.COM.").values == ("example.com",)
    assert parse_condition("src 10.0.0.1 10.0.0.1/32").values == ("10.0.0.1/32",)
    assert parse_condition("hdr(x) A").values == ("A",)  # case kept without -i
    assert Match("header", "X-Y", "equals", ["v"]).name == "x-y"
    assert Match("host", None, "equals", ("A.com",)) == Match("host", None, "equals", ("a.com",), True)


# -- matching semantics ----------------------------------------------------------------

SEMANTICS = [
    # host: normalised, always case-insensitive, absent host never matches
    ("host api.example.com", dict(headers=[("Host", "API.Example.com:8443")]), True),
    ("host api.example.com", dict(target="http://api.example.com:80/x"), True),
    ("host api.example.com", dict(headers=[("Host", "[::1]:80")]), False),
    ("host ::1", dict(headers=[("Host", "[::1]:80")]), True),
    ("!host a.com", dict(), True),
    ("host -m found", dict(), False),
    ("host -m found", dict(headers=[("Host", "x")]), True),
    # wildcard: exactly one label
    ("host *.example.com", dict(headers=[("Host", "a.example.com")]), True),
    ("host *.example.com", dict(headers=[("Host", "A.EXAMPLE.com")]), True),
    ("host *.example.com", dict(headers=[("Host", "example.com")]), False),
    ("host *.example.com", dict(headers=[("Host", "a.b.example.com")]), False),
    ("host *.example.com", dict(headers=[("Host", "aexample.com")]), False),
    ("host_end .example.com", dict(headers=[("Host", "a.b.example.com")]), True),
    ("host_end .example.com", dict(headers=[("Host", "example.com")]), False),
    ("host_dom example.com", dict(headers=[("Host", "example.com")]), True),
    ("host_dom example.com", dict(headers=[("Host", "www.example.com")]), True),
    ("host_dom example.com", dict(headers=[("Host", "www.myexample.com")]), False),
    # hdr(): raw value, comma-split (outside quotes), any value, trimmed
    ("hdr(host) -i api.example.com", dict(headers=[("Host", "api.example.com:80")]), False),
    ("hdr_dom(host) -i api.example.com", dict(headers=[("Host", "API.example.com:80")]), True),
    ("hdr_beg(host) -i api.", dict(headers=[("Host", "API.example.com")]), True),
    ("hdr_beg(host) api.", dict(headers=[("Host", "API.example.com")]), False),
    ("hdr(x-env) prod", dict(headers=[("X-Env", "dev, prod")]), True),
    ("hdr(x-env) prod", dict(headers=[("X-Env", "dev"), ("x-env", "prod")]), True),
    ("hdr(x-env) prod", dict(headers=[("X-Env", ' "a, prod" ')]), False),
    ("hdr(x-env) '\"a, prod\"'", dict(headers=[("X-Env", ' "a, prod" ')]), True),
    ("hdr_sub(ua) 'KHTML, like'", dict(headers=[("User-Agent", "Mozilla (KHTML, like Gecko)")]), False),
    ("req.fhdr(user-agent) -m sub 'KHTML, like'", dict(headers=[("User-Agent", "Mozilla (KHTML, like Gecko)")]), True),
    ("hdr(x) -m found", dict(headers=[("X", "")]), True),
    ("hdr(x) -m found", dict(headers=[("Y", "1")]), False),
    ("hdr_reg(ua) curl/.*", dict(headers=[("UA", "Mozilla curl/8")]), True),  # search, not match
    ("hdr_reg(ua) ^curl/", dict(headers=[("UA", "Mozilla curl/8")]), False),
    ("hdr_reg(ua) -i ^CURL/", dict(headers=[("UA", "curl/8")]), True),
    ("hdr_end(x) -i .COM", dict(headers=[("X", "a.com")]), True),
    # dom / dir: delimited words, delimiters at the pattern's ends ignored
    ("hdr_dom(host) .example.com.", dict(headers=[("Host", "www.example.com:80")]), True),
    ("hdr_dom(host) example", dict(headers=[("Host", "example-x.com")]), False),
    ("path_dir api", dict(target="/v1/api/x"), True),
    ("path_dir /api/", dict(target="/v1/api"), True),
    ("path_dir api", dict(target="/v1/apix/x"), False),
    ("path_dir v1/api", dict(target="/v1/api?x"), True),
    ("path_dom api", dict(target="/a.api:1"), True),
    # path
    ("path /exact", dict(target="/exact?x=1"), True),
    ("path /exact", dict(target="/exact/"), False),
    ("path_beg /static/", dict(target="/static/app.js"), True),
    ("path_beg -i /STATIC/", dict(target="/Static/app.js"), True),
    ("path_end .jpg .png", dict(target="/a.png"), True),
    ("path_reg ^/v[0-9]+/", dict(target="/v2/users"), True),
    ("path_reg ^/v[0-9]+/", dict(target="/api/v2/users"), False),
    ("path_sub admin", dict(target="/x/administrator"), True),
    # src: v4, v6, bare, v4-mapped clients, no client
    ("src 10.0.0.0/8", dict(client_ip="10.255.0.1"), True),
    ("src 10.0.0.0/8", dict(client_ip="11.0.0.1"), False),
    ("src 10.0.0.0/8", dict(client_ip="::ffff:10.1.2.3"), True),
    ("src ::ffff:10.0.0.0/104", dict(client_ip="10.1.2.3"), True),
    ("src 192.0.2.7", dict(client_ip="192.0.2.7"), True),
    ("src 192.0.2.7", dict(client_ip="192.0.2.8"), False),
    ("src 2001:db8::/32", dict(client_ip="2001:db8:1::5"), True),
    ("src 2001:db8::/32", dict(client_ip="2001:db9::5"), False),
    ("src 0.0.0.0/0", dict(client_ip="2001:db8::1"), False),
    ("src ::/0", dict(client_ip="2001:db8::1"), True),
    ("src 0.0.0.0/0 ::/0", dict(), False),
    ("src 10.0.0.0/8 ::1 192.168.0.0/16", dict(client_ip="::1"), True),
    ("src 10.0.0.0/8 ::1 192.168.0.0/16", dict(client_ip="192.168.3.4"), True),
    # cookies: no comma split, first one wins
    ("req.cook(beta) -m found", dict(headers=[("Cookie", "a=1; beta=")]), True),
    ("req.cook(beta) -m found", dict(headers=[("Cookie", "a=1; betax=1")]), False),
    ("req.cook(beta) 1", dict(headers=[("Cookie", "beta=1")]), True),
    ("req.cook(beta) 1", dict(headers=[("Cookie", "beta=2; beta=1")]), False),
    ("cook(s) -m beg ab", dict(headers=[("Cookie", "s=abc")]), True),
    ("cook(s) 'a,b'", dict(headers=[("Cookie", "s=a,b")]), True),
    ("cook(S) x", dict(headers=[("Cookie", "s=x")]), False),  # cookie names are case-sensitive
    ("!cook(s) x", dict(), True),
    # method
    ("method GET HEAD", dict(method="HEAD"), True),
    ("method GET HEAD", dict(method="get"), False),
    ("method -i GET", dict(method="get"), True),
    # query parameters: decoded, any occurrence
    ("urlp(v) 2", dict(target="/?v=1&v=2"), True),
    ("urlp(v) 'a b'", dict(target="/?v=a+b"), True),
    ("urlp(v) /", dict(target="/?v=%2F"), True),
    ("urlp(v) -m found", dict(target="/?v"), True),
    ("urlp(v) -m found", dict(target="/?w=v"), False),
    # ssl_sni
    ("req.ssl_sni -i a.example.com", dict(sni="A.Example.com"), True),
    ("req.ssl_sni a.example.com", dict(sni="a.example.com."), True),
    ("req.ssl_sni a.example.com", dict(), False),
    ("req.ssl_sni -m found", dict(sni="x"), True),
    ("req.ssl_sni -m found", dict(), False),
    ("req.ssl_sni -m end .example.com", dict(sni="a.example.com"), True),
    ("req.ssl_sni *.example.com", dict(sni="a.example.com"), False),  # haproxy's name: literal
    ("ssl_sni *.example.com", dict(sni="a.example.com"), True),
    # logic
    ("always_true", dict(), True),
    ("always_false", dict(), False),
    ("path /a || path /b && method POST", dict(target="/a", method="GET"), True),
    ("(path /a || path /b) && method POST", dict(target="/a", method="GET"), False),
    ("!path /a && !path /b", dict(target="/c"), True),
    ("not path /a or path /a", dict(target="/a"), True),
    ("{ path_beg /a } { method POST }", dict(target="/a", method="POST"), True),
    ("{ path_beg /a } { method POST }", dict(target="/a", method="GET"), False),
    ("{ path_beg /a } !{ method POST }", dict(target="/a", method="GET"), True),
    ("path_beg /a ! method POST", dict(target="/a", method="GET"), True),
    ("path_beg /a ! method POST", dict(target="/a", method="POST"), False),
]


@pytest.mark.parametrize(("cond", "kw", "expected"), SEMANTICS)
def test_semantics(cond, kw, expected):
    assert matches(cond, **kw) is expected
    assert reference(parse_condition(cond), facts(**kw)) is expected


def test_split_header_list():
    assert split_header_list("a, b ,c") == ["a", "b", "c"]
    assert split_header_list('a, "b, c", d') == ["a", '"b, c"', "d"]
    assert split_header_list(r'"x\", y", z') == [r'"x\", y"', "z"]
    assert split_header_list('"open, quote') == ['"open, quote']
    assert split_header_list("a,,b") == ["a", "", "b"]
    assert split_header_list("") == [""]


# -- the compact grammar -----------------------------------------------------------------

P = parse_condition


def test_precedence_not_and_or():
    a, b, c = P("path /a"), P("path /b"), P("path /c")
    assert P("path /a || path /b && path /c") == Or((a, And((b, c))))
    assert P("path /a && path /b || path /c") == Or((And((a, b)), c))
    assert P("!path /a && path /b") == And((Not(a), b))
    assert P("!(path /a && path /b)") == Not(And((a, b)))
    assert P("not path /a or path /b and path /c") == Or((Not(a), And((b, c))))
    assert P("path /a or path /b or path /c") == Or((a, b, c))
    assert P("(path /a && path /b) && path /c") == And((And((a, b)), c))
    assert P("!!path /a") == Not(Not(a))
    assert P("! path /a") == Not(a)


def test_braces_and_juxtaposition():
    a, b = P("path /a"), P("method GET")
    assert P("{ path /a } { method GET }") == And((a, b))
    assert P("{ path /a } && { method GET }") == And((a, b))
    assert P("!{ path /a }") == Not(a)
    assert P("! { path /a } || { method GET }") == Or((Not(a), b))
    assert P("(path /a) method GET") == And((a, b))
    assert P("path /a ! method GET") == And((a, Not(b)))
    assert P("path /a !method GET") == Match("path", None, "equals", ("/a", "!method", "GET"))  # glued: a value
    assert P("path /a not method GET") == And((a, Not(b)))
    assert P("{ path /a || method GET }") == Or((a, b))


def test_parentheses_glued_and_regexes_with_parentheses():
    a = P("path /a")
    assert P("(path /a)") == a
    assert P("((path /a))") == a
    assert P("!(path /a)") == Not(a)
    assert P("(hdr(x) -m found)") == Match("header", "x", "present")
    assert P("path_reg ^/(a|b)$").values == ("^/(a|b)$",)
    assert P("path_reg ^/(a|b)") == Match("path", None, "regex", ("^/(a|b)",))
    assert P("(path_reg ^/(a|b))") == Match("path", None, "regex", ("^/(a|b)",))
    assert P("(path_reg ^/(a|b)) && path /x") == And((Match("path", None, "regex", ("^/(a|b)",)), P("path /x")))
    assert P("(path /a /b) || (path /c)") == Or((P("path /a /b"), P("path /c")))
    assert P(r"(path_reg '^/a\)')") == Match("path", None, "regex", (r"^/a\)",))
    assert P("hdr(x) 'a)'").values == ("a)",)
    assert P("hdr(x) a(b").values == ("a(b",)


def test_quoting_and_escapes():
    assert P("hdr(x) 'a b' \"c d\"").values == ("a b", "c d")
    assert P(r'hdr(x) "say \"hi\""').values == ('say "hi"',)
    assert P(r'path_reg "^/v\d+"').values == (r"^/v\d+",)
    assert P(r"path_reg ^/v\d+").values == (r"^/v\d+",)
    assert P(r"hdr(x) a\ b").values == ("a b",)
    assert P(r"hdr(x) 'a\b'").values == ("a\\b",)
    assert P("hdr(x) '||' \"or\" '-i'").values == ("||", "or", "-i")
    assert P("hdr(x) ''").values == ("",)
    assert P("hdr(x) -- -1 -i").values == ("-1", "-i")
    assert P("urlp(v) -i -- -X").values == ("-x",)


def test_whitespace_and_case_of_fetch_names():
    assert P("  \n path\t/a  ") == P("path /a")
    assert P("PATH_BEG /a") == P("path_beg /a")
    assert P("hdr(X-Env) a") == Match("header", "x-env", "equals", ("a",))


def test_parse_passes_conditions_through_and_top_level_list():
    cond = P("path /a")
    assert parse_condition(cond) is cond
    assert parse_condition([{"path": "/a"}]) == cond
    assert parse_condition(["path /a", {"method": "GET"}]) == And((cond, P("method GET")))


# -- errors ------------------------------------------------------------------------------

ERRORS = [
    ("hots api.example.com", "unknown fetch 'hots' (did you mean 'host'"),
    ("path_begin /a", "unknown fetch 'path_begin' (did you mean 'path_beg'"),
    ("zzzz /a", "unknown fetch 'zzzz'"),
    ("", "empty condition"),
    ("   ", "empty condition"),
    ("path_beg", "missing value for 'path_beg'"),
    ("path_beg || path /a", "missing value for 'path_beg'"),
    ("hdr(x) -i", "missing value for 'hdr'"),
    ("path -x /a", "unknown flag '-x'"),
    ("path -f /etc/list /a", "unknown flag '-f'"),
    ("path /a -i", "flag '-i' after a value"),
    ("path -m", "missing match method after '-m'"),
    ("path -m len 3", "unknown match method '-m len'"),
    ("path -m found", "bad match method '-m found' for path"),
    ("src -m beg 10.", "bad match method '-m beg' for src"),
    ("method -m reg G", "bad match method '-m reg' for method"),
    ("path_beg -m sub /a", "path_beg already implies a match method"),
    ("path -m beg -m end /a", "duplicate flag '-m'"),
    ("hdr(x) -m found y", "takes no values"),
    ("src 10.0.0.0/33", "bad network '10.0.0.0/33'"),
    ("src 10.0.0.300", "bad network '10.0.0.300'"),
    ("src example.com", "bad network 'example.com'"),
    ("path_reg ^/(", "invalid regex '^/('"),
    ("hdr_reg(x) [a-", "invalid regex '[a-'"),
    ("(path /a", "unbalanced parenthesis"),
    ("path /a)", "unbalanced parenthesis"),
    ("(path /a))", "unbalanced parenthesis"),
    ("(req.cook(a))", "missing value for 'req.cook'"),
    ("(", "unbalanced parenthesis"),
    (")", "unbalanced parenthesis"),
    ("()", "empty parentheses"),
    ("{ path /a", "unbalanced brace"),
    ("path /a }", "unbalanced brace"),
    ("{ }", "empty braces"),
    ("( path /a }", "unbalanced parenthesis"),
    ("path /a ||", "expected a condition after '||'"),
    ("path /a &&", "expected a condition after '&&'"),
    ("!", "expected a condition after '!'"),
    ("|| path /a", "expected a condition, got '||'"),
    ("'path' /a", "expected a fetch, got 'path'"),
    ("hdr(host", "unbalanced parenthesis in 'hdr(host'"),
    ("hdr /a", "hdr needs a name: hdr(NAME)"),
    ("hdr() /a", "hdr needs a name"),
    ("hdr(host,1) a", "occurrence arguments are not supported"),
    ("path(x) /a", "path takes no argument"),
    ("always_true /a", "always_true takes no argument"),
    ("hdr(x) 'a", "unterminated quote"),
    ('hdr(x) "a', "unterminated quote"),
    ("host *.*.com", "bad wildcard '*.*.com'"),
    ("host -m dom ..", "empty domain pattern '..'"),
    ("path_dir /", "empty dir pattern '/'"),
    ("$foo", "expected a fetch, got '$foo'"),
    # structured
    ({}, "empty condition"),
    ([], "empty condition"),
    ({"hots": "a"}, "unknown key 'hots' (did you mean 'host'"),
    ({"path": {"prefx": "/a"}}, "unknown key 'prefx' in path (did you mean 'prefix'"),
    ({"path": {}}, "path: give one of"),
    ({"path": {"prefix": "/a", "suffix": "b"}}, "give only one of"),
    ({"path": {"prefix": []}}, "missing value for path prefix"),
    ({"path": {"prefix": None}}, "missing value for path prefix"),
    ({"path": {"prefix": {"a": 1}}}, "is not a string"),
    ({"path": True}, "is not a string"),
    ({"path": 1.5}, "is not a string"),
    ({"src": ["10.0.0.0/8", "10.0.0.0/33"]}, "bad network '10.0.0.0/33'"),
    ({"src": {"prefix": "10."}}, "src takes an address"),
    ({"cookie": "beta"}, "cookie needs a mapping with 'name'"),
    ({"cookie": {"present": True}}, "cookie needs a 'name'"),
    ({"cookie": {"name": "a b", "present": True}}, "bad cookie name 'a b'"),
    ({"cookie": {"name": "a", "present": "yes"}}, "present takes true or false"),
    ({"header": {"name": "x", "equals": "a", "ignore_case": "yes"}}, "ignore_case takes true or false"),
    ({"header": {"name": "x", "equals": "a", "full": 1}}, "full takes true or false"),
    ({"host": {"suffix": ".a", "ignore_case": False}}, "host is always case-insensitive"),
    ({"host": {"dir": "a"}}, "unknown key 'dir' in host"),
    ({"path": {"regex": "("}}, "invalid regex '('"),
    ({"all": []}, "'all' needs at least one condition"),
    ({"any": {"path": "/a"}}, "'any' needs a list of conditions"),
    ({"not": {}}, "empty condition"),
    ({"always": "yes"}, "'always' takes true or false"),
    ({"all": ["hots x"]}, "unknown fetch 'hots'"),
    ({1: "a"}, "unknown key 1"),
    (42, "a condition is a string or a mapping, not int"),
    ({"all": [42]}, "expected a condition, got int 42"),
]


@pytest.mark.parametrize(("source", "message"), ERRORS)
def test_errors(source, message):
    with pytest.raises(AclError) as info:
        parse_condition(source)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


def test_error_messages_are_short():
    for source, _ in ERRORS:
        with pytest.raises(AclError) as info:
            parse_condition(source)
        assert len(str(info.value)) < 120, str(info.value)


def test_ast_validates_on_construction():
    with pytest.raises(AclError, match="unknown fetch 'hots'"):
        Match("hots", None, "equals", ("a",))
    with pytest.raises(AclError, match="bad match method 'wildcard' for path"):
        Match("path", None, "wildcard", ("*.a",))
    with pytest.raises(AclError, match="header needs a name"):
        Match("header", None, "equals", ("a",))
    with pytest.raises(AclError, match="path takes no name"):
        Match("path", "x", "equals", ("a",))
    with pytest.raises(AclError, match="missing value for path"):
        Match("path", None, "equals", ())
    with pytest.raises(AclError, match="values must be a list"):
        Match("path", None, "equals", "/a")
    with pytest.raises(AclError, match="'present' takes no values"):
        Match("cookie", "a", "present", ("x",))
    with pytest.raises(AclError, match="needs at least one"):
        And(())
    with pytest.raises(AclError, match="is not a condition"):
        Or(("path /a",))
    with pytest.raises(AclError, match="is not a condition"):
        Not("x")


def test_ast_is_frozen_hashable_slotted():
    cond = P("path /a || !host b.com")
    with pytest.raises(AttributeError):
        cond.items = ()
    assert not hasattr(cond, "__dict__")
    assert {cond, P("path /a || !host b.com")} == {cond}


# -- compiled matchers ---------------------------------------------------------------------


def test_regex_compiled_once_not_per_request():
    cond = P("path_reg ^/v[0-9]+/ || hdr_reg(ua) -i curl || host_dom example.com || path_dir api")
    matcher = compile_condition(cond)
    requests = [
        facts(target=f"/v{i}/x", headers=[("UA", "x"), ("Host", "a.example.com")]) for i in range(3)
    ] + [facts(target="/nope", headers=[("UA", "CURL/8")]), facts(target="/x/api/y")]

    def refuse(*args, **kwargs):
        raise AssertionError("regex compiled at match time")

    with mock.patch.object(re, "compile", refuse), mock.patch.object(re, "_compile", refuse), mock.patch.object(
        re, "search", refuse
    ), mock.patch.object(re, "match", refuse):
        results = [matcher(f) for f in requests]
    assert results == [True, True, True, True, True]


def test_compile_rejects_non_conditions():
    with pytest.raises(TypeError):
        compile_condition("path /a")


# -- explain -------------------------------------------------------------------------------


def test_explain_single_match():
    f = facts(headers=[("Host", "api.example.com")])
    assert explain_condition(P("host api.example.com"), f) == ["host 'api.example.com' == 'api.example.com': yes"]
    assert explain_condition(P("host a.com b.com"), f) == ["host 'api.example.com' == any of ['a.com', 'b.com']: no"]


def test_explain_tree_shows_every_part_and_values_seen():
    f = facts(
        target="/static/x.js?v=2",
        headers=[("Host", "www.example.com"), ("X-Env", "dev, prod"), ("Cookie", "beta=1")],
        client_ip="::ffff:10.1.2.3",
    )
    cond = P(
        "(src 10.0.0.0/8 || req.cook(beta) -m found) && !hdr(x-env) -i PROD && path_beg /static/ "
        "&& urlp(v) 2 && req.ssl_sni -m found"
    )
    assert explain_condition(cond, f) == [
        "all of 5: no",
        "  any of 2: yes",
        "    src 10.1.2.3 in 10.0.0.0/8: yes",
        "    cookie beta '1' present: yes",
        "  not: no",
        "    header x-env ['dev', 'prod'] == 'prod' (ignoring case): yes",
        "  path '/static/x.js' starts with '/static/': yes",
        "  query v '2' == '2': yes",
        "  ssl_sni (no sni) present: no",
    ]


def test_explain_absent_values_and_constants():
    f = facts()
    assert explain_condition(P("cook(a) x"), f) == ["cookie a (absent) == 'x': no"]
    assert explain_condition(P("hdr(a) x"), f) == ["header a (absent) == 'x': no"]
    assert explain_condition(P("req.fhdr(a) x"), facts(headers=[("A", " x, y ")])) == [
        "header a (full) 'x, y' == 'x': no"
    ]
    assert explain_condition(P("src 10.0.0.0/8 ::1"), f) == ["src (no address) in 10.0.0.0/8, ::1/128: no"]
    assert explain_condition(P("host *.a.com"), f) == ["host (no host) matches '*.a.com': no"]
    assert explain_condition(P("always_false"), f) == ["not: no", "  always: yes"]
    assert explain_condition(P("method GET"), f) == ["method 'GET' == 'GET': yes"]
    assert explain_condition(P("urlp(v) 1"), facts(target="/?v=1&v=2")) == ["query v ['1', '2'] == '1': yes"]


# -- properties: round trips and compiled == reference -----------------------------------------

PIECES = ["a", "A", "b", "x", ".", "/", ":", "?", ",", " ", '"', "-", "(", ")", "example", "com", "Σ", "ß"]
text = st.lists(st.sampled_from(PIECES), max_size=5).map("".join)
HEADER_NAMES = ["host", "x-env", "ua"]
COOKIE_NAMES = ["a", "b"]
REGEXES = ["a", "^/", "x$", "A.b", "(a|b)c", r"\.", "^$", "com", ":[0-9]"]
NETWORKS = ["10.0.0.0/8", "10.1.0.0/16", "192.0.2.7", "0.0.0.0/0", "::/0", "2001:db8::/32", "::1", "::ffff:10.0.0.0/104"]
WILDCARDS = ["*.example.com", "*.a", "*.com", "*.b.a"]


@st.composite
def matches_st(draw, fetch=None, name=None):
    """A valid Match; ``fetch`` and ``name`` fixed when given."""
    if fetch is None:
        fetch = draw(st.sampled_from(["host", "ssl_sni", "path", "src", "cookie", "header", "fheader", "query", "method"]))
    op = draw(st.sampled_from(sorted(FETCHES[fetch].ops)))
    if FETCHES[fetch].named and name is None:
        name = draw(st.sampled_from(COOKIE_NAMES if fetch in ("cookie", "query") else HEADER_NAMES))
    if op == "present":
        values = []
    elif op == "cidr":
        values = draw(st.lists(st.sampled_from(NETWORKS), min_size=1, max_size=3))
    elif op == "regex":
        values = draw(st.lists(st.sampled_from(REGEXES), min_size=1, max_size=2))
    elif op == "wildcard":
        values = draw(st.lists(st.sampled_from(WILDCARDS), min_size=1, max_size=2))
    elif fetch == "method":
        values = draw(st.lists(st.sampled_from(["GET", "get", "POST", "HEAD"]), min_size=1, max_size=2))
    else:
        values = draw(st.lists(text, min_size=1, max_size=3))
    try:
        return Match(fetch, name, op, tuple(values), draw(st.booleans()))
    except AclError:
        assume(False)


conditions = st.recursive(
    st.one_of(matches_st(), st.just(Always())),
    lambda children: st.one_of(
        st.lists(children, min_size=1, max_size=3).map(lambda xs: And(tuple(xs))),
        st.lists(children, min_size=1, max_size=3).map(lambda xs: Or(tuple(xs))),
        children.map(Not),
    ),
    max_leaves=6,
)


@st.composite
def facts_st(draw):
    headers = []
    if draw(st.booleans()):
        host = draw(st.sampled_from(["a.example.com", "A.Example.COM:8080", "example.com", "a.b.example.com", "x.a", ""]))
        headers.append(("Host", host))
    for _ in range(draw(st.integers(0, 3))):
        headers.append((draw(st.sampled_from(["X-Env", "ua", "UA", "host"])), draw(text)))
    if draw(st.booleans()):
        jar = "; ".join(f"{n}={draw(text).replace(';', '')}" for n in draw(st.lists(st.sampled_from(COOKIE_NAMES), max_size=2)))
        headers.append(("Cookie", jar))
    path = "/" + draw(text).replace("?", "").replace(" ", "")
    query = "&".join(f"{n}={draw(st.sampled_from(['1', 'a', 'x.com', '%2F', 'A+b']))}" for n in draw(st.lists(st.sampled_from(COOKIE_NAMES), max_size=3)))
    target = path + ("?" + query if query else "")
    ip = draw(st.sampled_from([None, "10.1.2.3", "10.200.0.1", "192.0.2.7", "198.51.100.1", "::1", "2001:db8::5", "::ffff:10.1.2.3", "fe80::1"]))
    sni = draw(st.sampled_from([None, "a.example.com", "A.B.example.com", "x.a", ""]))
    method = draw(st.sampled_from(["GET", "get", "POST", "HEAD"]))
    return RequestFacts(method, target, headers, client_ip=ip, sni=sni)


def ref_split(line: str) -> list[str]:
    out, cur, quoted, pair = [], "", False, False
    for c in line:
        if not quoted and c == ",":
            out.append(cur)
            cur = ""
            continue
        cur += c
        if pair:
            pair = False
        elif quoted and c == "\\":
            pair = True
        elif c == '"':
            quoted = not quoted
    out.append(cur)
    return [v.strip(" \t") for v in out]


def ref_word(s: str, pattern: str, delims: str) -> bool:
    """haproxy pattern.c match_word(), transcribed."""
    ps = pattern.strip(delims)
    pl = len(ps)
    if pl > len(s):
        return False
    may_match, end = True, len(s) - pl
    for c in range(end + 1):
        if s[c] in delims:
            may_match = True
            continue
        if not may_match:
            continue
        if s[c : c + pl] == ps and (c == end or s[c + pl] in delims):
            return True
        may_match = False
    return False


def ref_samples(m: Match, f: RequestFacts) -> list[str]:
    if m.fetch == "host":
        return [f.host] if f.host else []
    if m.fetch == "ssl_sni":
        return [f.sni] if f.sni else []
    if m.fetch == "path":
        return [f.path]
    if m.fetch == "method":
        return [f.method]
    if m.fetch == "cookie":
        value = f.cookies.get(m.name)
        return [] if value is None else [value]
    if m.fetch == "query":
        return f.params.get(m.name, [])
    lines = [v for k, v in f.headers if k.lower() == m.name]
    if m.fetch == "fheader":
        return [line.strip(" \t") for line in lines]
    return [v for line in lines for v in ref_split(line)]


def ref_test(op: str, pattern: str, s: str, ic: bool) -> bool:
    if op == "regex":
        return re.search(pattern, s, re.I if ic else 0) is not None
    if ic:
        s, pattern = s.lower(), pattern.lower()
    if op == "equals":
        return s == pattern
    if op == "prefix":
        return s.startswith(pattern)
    if op == "suffix":
        return s.endswith(pattern)
    if op == "contains":
        return pattern in s
    if op == "domain":
        return ref_word(s, pattern, "/?.:")
    if op == "dir":
        return ref_word(s, pattern, "/?")
    if op == "wildcard":
        label, dot, rest = s.partition(".")
        return bool(label) and bool(dot) and "." + rest == pattern[1:]
    raise AssertionError(op)


def reference(c, f: RequestFacts) -> bool:
    """A slow, direct reading of the documented semantics."""
    if isinstance(c, Always):
        return True
    if isinstance(c, Not):
        return not reference(c.item, f)
    if isinstance(c, And):
        return all(reference(x, f) for x in c.items)
    if isinstance(c, Or):
        return any(reference(x, f) for x in c.items)
    if c.fetch == "src":
        return f.client_ip is not None and any(
            f.client_ip in ipaddress.ip_network(v) for v in c.values if ipaddress.ip_network(v).version == f.client_ip.version
        )
    samples = ref_samples(c, f)
    if c.op == "present":
        return bool(samples)
    return any(ref_test(c.op, v, s, c.ignore_case) for s in samples for v in c.values)


def squash(c):
    """And/Or of one item: the compact spelling writes just the item."""
    if isinstance(c, (And, Or)):
        items = tuple(squash(x) for x in c.items)
        return items[0] if len(items) == 1 else type(c)(items)
    if isinstance(c, Not):
        return Not(squash(c.item))
    return c


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(conditions)
def test_round_trip_through_dict(cond):
    as_dict = condition_to_dict(cond)
    assert parse_condition(as_dict) == cond
    assert parse_condition(yaml.safe_load(yaml.safe_dump(as_dict, allow_unicode=True))) == cond


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(conditions)
def test_round_trip_through_string(cond):
    assert parse_condition(condition_to_string(cond)) == squash(cond)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(conditions, facts_st())
def test_compiled_agrees_with_reference(cond, f):
    expected = reference(cond, f)
    assert compile_condition(cond)(f) is expected
    lines = explain_condition(cond, f)
    assert lines[0].endswith(": yes" if expected else ": no")


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=40))
def test_arbitrary_strings_parse_or_raise_aclerror(source):
    try:
        cond = parse_condition(source)
    except AclError:
        return
    compile_condition(cond)(RequestFacts())


TOKENS = ["path", "/a", "(", ")", "{", "}", "!", "||", "&&", "-i", "-m", "beg", "found", "hdr(x)", "'q'", '"', "\\",
          "src", "10.0.0.0/8", "host", "*.a.com", "--", "not", "or", "req.cook(b)", "^/(a|b)", "a)", "always_true"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(TOKENS), st.sampled_from([" ", "", "  "])), max_size=10))
def test_token_soup_parses_or_raises_aclerror(parts):
    source = "".join(token + sep for token, sep in parts)
    try:
        cond = parse_condition(source)
    except AclError:
        return
    compile_condition(cond)(RequestFacts())
    assert parse_condition(condition_to_string(cond)) == squash(cond)


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet="ab,\"\\ \t", max_size=12))
def test_split_header_list_agrees_with_reference(line):
    assert split_header_list(line) == ref_split(line)


_ADDRESSES = st.one_of(
    st.ip_addresses(v=4),
    st.ip_addresses(v=6),
    st.sampled_from(["10.1.2.3", "10.255.0.1", "192.0.2.7", "::1", "2001:db8::5", "11.0.0.1"]).map(ipaddress.ip_address),
)


@given(st.lists(_ADDRESSES, min_size=1, max_size=12), st.data())
def test_one_src_matcher_over_many_clients(addresses, data):
    """One compiled matcher serves a worker's every client in turn, so what it keeps of
    the last address (its number and family) must never answer for another one,
    whether the next is the same object, an equal one, or one of the other family."""
    matcher = compile_condition(parse_condition("src 10.0.0.0/8 2001:db8::/32 192.0.2.7"))
    networks = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "2001:db8::/32", "192.0.2.7/32")]
    sequence = list(addresses)
    # Repeat some: the same object again, and an equal but distinct object.
    for _ in range(data.draw(st.integers(0, 6))):
        address = data.draw(st.sampled_from(addresses))
        sequence.append(address if data.draw(st.booleans()) else ipaddress.ip_address(str(address)))
    for address in sequence:
        expected = any(address.version == n.version and address in n for n in networks)
        assert matcher(facts(client_ip=address)) is expected, address
