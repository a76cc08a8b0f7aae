"""Differential test: one Spec served by lbcore's engine and by haproxy, same requests,
same pool chosen.

hypothesis generates bounded Specs (a few ACLs, each a small and/or/not tree over
every fetch: host, path, header, full header, cookie, query, method, client address,
SNI) and batches of requests (hosts with ports, case and trailing dots, paths with
queries, cookies, repeated headers, methods, 127.0.0.x source addresses, SNI names
over TLS). Both engines start once; each example is applied to both (a SIGHUP
reload of ``lbcore serve``, a haproxy driver revision), then every request goes to
both, over http and https. Each pool has one member named after it, so the member
that answers (X-Member) is the pool that was chosen. lbcore's own router
(``lbcore.l7.router``) is asked too, so a failure says which side left it.

The vocabulary keeps to what both engines are documented to treat alike
(``lbcore.control.drivers.haproxy.DIFFERENCES``): one cookie per name and unquoted
cookie values, parameter names as sent, ASCII text, regexes in the common subset of
Python's re and PCRE2, origin-form targets.
"""

from __future__ import annotations

import http.client
import os
import socket
import ssl
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lbcore.l7.acl import (
    Always,
    And,
    Match,
    Not,
    Or,
    condition_to_dict,
    condition_to_string,
)
from lbcore.l7.facts import RequestFacts
from lbcore.l7.router import Router
from lbcore.spec import parse_spec
from tests.integration.harness import Engine, LoopThread, Member, free_port
from tests.system.conftest import needs_haproxy

pytestmark = [needs_haproxy, pytest.mark.slow]

POOLS = ["p0", "p1", "p2", "p3", "p4", "p5", "dflt"]
# Generated Specs, each with its batch of requests; raise it for a deeper search:
# LBCORE_DIFFERENTIAL_EXAMPLES=500 pytest tests/system/test_haproxy_differential.py -o timeout=0
EXAMPLES = int(os.environ.get("LBCORE_DIFFERENTIAL_EXAMPLES", "12"))
SOURCES = [f"127.0.0.{n}" for n in range(1, 13)]

# -- conditions ----------------------------------------------------------------------------

_HOSTS = ["api.example.com", "www.example.com", "example.com", "a.b.example.com", "other.test", "::1"]


def _matches() -> st.SearchStrategy[Match]:
    def m(fetch, name, ops_values, cases=(False, True)):
        return st.builds(
            lambda ov, ic: Match(fetch, name, ov[0], ov[1], ic),
            st.sampled_from(ops_values),
            st.sampled_from(cases),
        )

    host_ops = [
        ("equals", ("api.example.com",)), ("equals", ("www.example.com", "example.com")), ("equals", ("::1",)),
        ("wildcard", ("*.example.com",)), ("wildcard", ("*.b.example.com",)), ("prefix", ("api.",)),
        ("suffix", (".example.com",)), ("suffix", (".test",)), ("contains", ("b.ex",)), ("domain", ("example.com",)),
        ("domain", ("b",)), ("regex", (r"^(api|www)\.",)), ("regex", (r"example\.(com|org)$",)), ("present", ()),
    ]
    path_ops = [
        ("equals", ("/",)), ("equals", ("/b", "/API/x")), ("prefix", ("/api",)), ("prefix", ("/static/",)),
        ("suffix", (".png",)), ("suffix", (".CSS", ".js")), ("contains", ("v1",)), ("dir", ("api",)),
        ("dir", ("b",)), ("domain", ("static",)), ("regex", (r"^/api/v[0-9]+",)), ("regex", (r"\.(png|jpg)$",)),
    ]
    header_ops = [
        ("equals", ("prod",)), ("equals", ("dev", "canary")), ("prefix", ("pr",)), ("suffix", ("ev",)),
        ("contains", ("ana",)), ("regex", ("^(prod|dev)$",)), ("present", ()),
    ]
    full_ops = [("equals", ("prod, dev",)), ("prefix", ("prod,",)), ("present", ())]
    cookie_ops = [("equals", ("1",)), ("equals", ("yes", "YES")), ("prefix", ("y",)), ("present", ())]
    query_ops = [("equals", ("1",)), ("equals", ("2", "a b")), ("prefix", ("a",)), ("present", ())]
    sni_ops = [
        ("equals", ("api.example.com",)), ("wildcard", ("*.example.com",)), ("suffix", (".test",)),
        ("present", ()), ("regex", ("^www",)),
    ]
    src_values = st.lists(
        st.sampled_from(["127.0.0.2", "127.0.0.0/30", "127.0.0.8/29", "10.0.0.0/8", "::1", "::/0", "127.0.0.0/8"]),
        min_size=1, max_size=3, unique=True,
    )
    return st.one_of(
        m("host", None, host_ops, (True,)),
        m("path", None, path_ops),
        m("header", "x-env", header_ops),
        m("fheader", "x-env", full_ops),
        m("cookie", "beta", cookie_ops),
        m("cookie", "sess", cookie_ops),
        m("query", "v", query_ops),
        m("query", "debug", query_ops),
        m("method", None, [("equals", ("GET",)), ("equals", ("HEAD", "POST")), ("equals", ("delete",))]),
        m("ssl_sni", None, sni_ops, (True,)),
        st.builds(lambda values: Match("src", None, "cidr", tuple(values)), src_values),
    )


def conditions():
    return st.recursive(
        _matches() | st.sampled_from([Always(), Not(Always())]),
        lambda inner: st.builds(Not, inner)
        | st.builds(lambda xs: And(tuple(xs)), st.lists(inner, min_size=2, max_size=3))
        | st.builds(lambda xs: Or(tuple(xs)), st.lists(inner, min_size=2, max_size=3)),
        max_leaves=4,
    )


def acl_lists():
    acl = st.tuples(conditions(), st.sampled_from(POOLS[:-1]), st.booleans())
    return st.lists(acl, min_size=3, max_size=7)


# -- requests ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    tls: bool
    method: str
    target: str
    host: str
    headers: tuple[tuple[str, str], ...]
    source: str
    sni: str | None


def requests():
    host = st.sampled_from([
        "api.example.com", "API.Example.com:8080", "www.example.com.", "example.com", "a.b.example.com",
        "x.example.com:443", "other.test", "[::1]:8080", "::1", "localhost",
    ])
    path = st.sampled_from([
        "/", "/b", "/b/c", "/API/x", "/api/v1/users", "/api", "/static/app.css", "/static/logo.png",
        "/img/a.jpg", "/x/static/y", "/app.CSS", "/v1", "/api%2Fv1", "//b",
    ])
    query = st.sampled_from(["", "?v=1", "?v=2&debug", "?v=a+b", "?v=%32", "?debug=0", "?x=1&v=1", "?v=2&v=1"])
    cookies = st.dictionaries(st.sampled_from(["beta", "sess", "other"]), st.sampled_from(["1", "yes", "YES", "no"]), max_size=3)
    env = st.lists(st.sampled_from(["prod", "dev", "Prod", "prod, dev", "canary", "x", '"prod, dev", x', " dev "]), max_size=2)
    env_name = st.sampled_from(["X-Env", "x-env", "X-ENV"])
    method = st.sampled_from(["GET", "GET", "HEAD", "POST", "DELETE"])  # lbcore refuses lower-case methods (400)
    sni = st.sampled_from([None, "api.example.com", "WWW.example.com", "x.example.com", "other.test"])

    def build(tls, method, host, path, query, cookies, env, env_name, source, sni):
        headers = [(env_name, value) for value in env]
        if cookies:
            headers.append(("Cookie", "; ".join(f"{k}={v}" for k, v in cookies.items())))
        return Request(tls, method, path + query, host, tuple(headers), source, sni if tls else None)

    return st.builds(build, st.booleans(), method, host, path, query, cookies, env, env_name, st.sampled_from(SOURCES), sni)


# -- the two engines -----------------------------------------------------------------------


def build_spec(ports: dict, acls, members: dict, certs: dict) -> dict:
    tls = {"certificates": [{"cert": certs["www"][0], "key": certs["www"][1], "default": True}]}
    rules = []
    for index, (cond, pool, compact) in enumerate(acls):
        source = condition_to_string(cond) if compact else condition_to_dict(cond)
        rules.append({"name": f"acl{index}", "condition": source, "pool": pool})
    listeners = [
        {"name": "web", "bind": f"127.0.0.1:{ports['http']}", "acls": rules, "default_pool": "dflt"},
        {"name": "web-tls", "bind": f"127.0.0.1:{ports['https']}", "protocol": "https", "tls": tls,
         "acls": rules, "default_pool": "dflt"},
    ]
    pools = [{"name": name, "members": [{"name": name, "address": members[name].address}]} for name in POOLS]
    return {"version": 1, "listeners": listeners, "pools": pools}


def send(port: int, request: Request) -> tuple[int, str]:
    """(status, X-Member or '') for one request on its own connection."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(request.source, 0))
    try:
        if request.tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            sock = context.wrap_socket(sock, server_hostname=request.sni)
        lines = [f"{request.method} {request.target} HTTP/1.1", f"Host: {request.host}"]
        lines += [f"{name}: {value}" for name, value in request.headers]
        lines += ["Content-Length: 0", "Connection: close", "", ""]
        sock.sendall("\r\n".join(lines).encode("latin-1"))
        response = http.client.HTTPResponse(sock, method=request.method.upper())
        response.begin()
        response.read()
        return response.status, response.getheader("X-Member") or ""
    finally:
        sock.close()


def predicted(spec, request: Request) -> str:
    listener = spec.listener("web-tls" if request.tls else "web")
    router = Router([(a.name, a.condition, a.pool) for a in listener.acls], listener.default_pool)
    headers = [("Host", request.host), *request.headers]
    facts = RequestFacts(request.method, request.target, headers, request.source, sni=request.sni)
    return router.route(facts).pool or ""


@pytest.fixture(scope="module")
def pair(tmp_path_factory, certs):
    from lbcore.control.drivers.haproxy import HaproxyDriver

    loops = LoopThread()
    members = {name: Member(loops, name).start() for name in POOLS}
    native_ports = {"http": free_port(), "https": free_port()}
    haproxy_ports = {"http": free_port(), "https": free_port()}
    initial = []
    native = Engine(tmp_path_factory.mktemp("native"), build_spec(native_ports, initial, members, certs), workers=1)
    native.start()
    driver = HaproxyDriver(str(tmp_path_factory.mktemp("haproxy")))
    driver.start(parse_spec(build_spec(haproxy_ports, initial, members, certs)))
    yield native, native_ports, driver, haproxy_ports, members, certs
    driver.stop()
    native.stop()
    for member in members.values():
        member.stop()
    loops.stop()


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
@given(acls=acl_lists(), batch=st.lists(requests(), min_size=16, max_size=24))
def test_native_engine_and_haproxy_choose_the_same_pool(pair, acls, batch):
    native, native_ports, driver, haproxy_ports, members, certs = pair
    native_spec = build_spec(native_ports, acls, members, certs)
    haproxy_spec = build_spec(haproxy_ports, acls, members, certs)
    line = native.reload(native_spec)
    assert "refused" not in line, native.log_text()[-3000:]
    driver.apply(parse_spec(haproxy_spec))
    spec = parse_spec(native_spec)
    mismatches = []
    for request in batch:
        kind = "https" if request.tls else "http"
        got_native = send(native_ports[kind], request)
        got_haproxy = send(haproxy_ports[kind], request)
        if got_native != got_haproxy:
            mismatches.append(
                f"{request}: lbcore {got_native}, haproxy {got_haproxy}, lbcore's router says {predicted(spec, request)!r}"
            )
    assert not mismatches, "\n".join(
        ["ACLs:"] + [f"  {condition_to_string(cond)} -> {pool}" for cond, pool, _ in acls] + mismatches
    )
