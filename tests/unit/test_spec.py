"""lbcore.spec: reading, checking, resolving, serialising, hashing and diffing Specs."""

from __future__ import annotations

import copy
import json
import pickle
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck as HypothesisHealthCheck
from hypothesis import given, settings
from hypothesis import strategies as st

from lbcore.l7.acl import parse_condition
from lbcore.spec import (
    Acl,
    Address,
    Change,
    Defaults,
    FrozenDict,
    HealthCheck,
    Limits,
    Listener,
    Member,
    Persistence,
    Pool,
    Redirect,
    Spec,
    SpecError,
    SpecIssue,
    Timeouts,
    TlsCertificate,
    TlsSettings,
    diff,
    format_diff,
    format_duration,
    format_size,
    load_spec,
    loads_spec,
    parse_duration,
    parse_size,
    parse_spec,
)

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo.yaml"
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HypothesisHealthCheck.too_slow])


def base() -> dict[str, Any]:
    """A small valid spec to mutate."""
    return {
        "version": 1,
        "listeners": [
            {
                "name": "web",
                "bind": "127.0.0.1:8080",
                "acls": [
                    {"name": "api", "condition": "hdr(host) -i api.example.com", "pool": "api"},
                    {"name": "static", "condition": {"path": {"prefix": "/static/"}}, "pool": "www"},
                ],
                "default_pool": "www",
            }
        ],
        "pools": [
            {
                "name": "www",
                "members": [
                    {"name": "w1", "address": "127.0.0.1:9001", "weight": 10},
                    {"name": "w2", "address": "127.0.0.1:9002", "weight": 10},
                ],
            },
            {"name": "api", "members": [{"name": "a1", "address": "127.0.0.1:9101"}]},
        ],
    }


def errors(data: Any) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_spec(data)
    return [str(issue) for issue in info.value.errors]


# -- the bundled example ---------------------------------------------------------------------------


def test_demo_loads_and_is_resolved() -> None:
    spec = load_spec(DEMO)
    assert [l.name for l in spec.listeners] == ["db", "to-https", "web"]
    web = spec.listener("web")
    assert web.bind == Address("127.0.0.1", 8080) and web.protocol == "http"
    assert [(a.name, a.pool) for a in web.acls] == [("api", "api"), ("static", "static"), ("beta", "beta")]
    assert web.acls[0].condition == parse_condition("hdr(host) -i api.example.com")
    assert web.acls[1].source == {"path": {"prefix": "/static/"}}
    assert web.default_pool == "www"
    assert web.timeouts.client == 60.0 and web.timeouts.keepalive == 60.0
    assert web.limits.max_body == 10 * 1024 * 1024
    assert web.add_headers == (("X-Served-By", "lbcore"),)
    db = spec.listener("db")
    assert db.protocol == "tcp" and db.forwarded_headers == () and db.default_pool == "www"
    redirect = spec.listener("to-https")
    assert redirect.redirect == Redirect(301, "https", None, None)
    assert redirect.acls == () and redirect.default_pool is None
    www = spec.pool("www")
    assert [m.name for m in www.members] == ["w1", "w2", "wb"]
    assert www.members[2].backup and www.members[0].weight == 10
    assert www.persistence == Persistence("cookie", "SRV", 1800.0)
    assert www.health == HealthCheck("http", interval=2.0, rise=2, fall=3, path="/health", expect="200-399")
    api = spec.pool("api")
    assert (api.algorithm, api.hash_header) == ("hdr", "x-user")
    assert api.timeouts.server == 120.0 and api.timeouts.connect == 5.0
    assert spec.pool("beta").members[0].address == Address("127.0.0.1", 9301)
    assert [p.name for p in spec.pools_of(web)] == ["api", "static", "beta", "www"]
    with pytest.raises(KeyError):
        spec.pool("nope")
    with pytest.raises(KeyError):
        spec.listener("nope")


def test_demo_yaml_and_json_give_one_revision(tmp_path: Path) -> None:
    from_yaml = load_spec(DEMO)
    data = yaml.safe_load(DEMO.read_text())
    (tmp_path / "demo.json").write_text(json.dumps(data, indent=2))
    (tmp_path / "demo").write_text(json.dumps(data))
    (tmp_path / "demo-yaml").write_text(DEMO.read_text())
    assert load_spec(tmp_path / "demo.json").revision == from_yaml.revision
    assert load_spec(tmp_path / "demo").revision == from_yaml.revision
    assert load_spec(tmp_path / "demo-yaml").revision == from_yaml.revision
    assert loads_spec(json.dumps(data), fmt="json") == from_yaml
    assert loads_spec(DEMO.read_text(), fmt="yaml") == from_yaml


def test_demo_round_trips() -> None:
    spec = load_spec(DEMO)
    data = spec.to_dict()
    assert parse_spec(data) == spec
    assert parse_spec(json.loads(json.dumps(data))).revision == spec.revision
    assert loads_spec(yaml.safe_dump(data)) == spec


# -- revision ----------------------------------------------------------------------------------------


def test_revision_shape_and_cache() -> None:
    spec = parse_spec(base())
    assert len(spec.revision) == 16 and int(spec.revision, 16) >= 0
    assert spec.revision is spec.revision


def test_revision_ignores_key_order_whitespace_and_spelling() -> None:
    spec = parse_spec(base())
    reordered = json.loads(json.dumps(base(), sort_keys=True))
    reordered["pools"].reverse()
    assert parse_spec(reordered).revision == spec.revision
    assert loads_spec(json.dumps(base(), indent=7)).revision == spec.revision
    assert loads_spec(yaml.safe_dump(base(), default_flow_style=True)).revision == spec.revision
    # The same values written differently are the same Spec.
    spelled = base()
    spelled["defaults"] = {"timeouts": {"connect": "5000ms", "tunnel": "1h"}, "limits": {"max_header_bytes": "32k"}}
    spelled["listeners"][0]["forwarded_headers"] = ["X-Forwarded-Proto", "x-forwarded-for"]
    assert parse_spec(spelled).revision == spec.revision


MUTATIONS = [
    lambda d: d["pools"][0]["members"][0].update(weight=11),
    lambda d: d["pools"][0]["members"].reverse(),
    lambda d: d["listeners"][0]["acls"].reverse(),
    lambda d: d["listeners"][0]["acls"][0].update(condition="hdr(host) -i api2.example.com"),
    lambda d: d["listeners"][0].update(bind="127.0.0.1:8081"),
    lambda d: d["listeners"][0].update(timeouts={"client": "31s"}),
    lambda d: d.update(defaults={"timeouts": {"server": "31s"}}),
    lambda d: d["pools"][1].update(algorithm="leastconn"),
    lambda d: d["pools"][1].update(health={"type": "tcp"}),
    lambda d: d["pools"][0]["members"][1].update(admin_state="drain"),
    lambda d: d["listeners"][0].update(add_headers={"X-A": "1"}),
    lambda d: d["listeners"][0].update(shards="per-worker"),
]


@pytest.mark.parametrize("mutate", MUTATIONS)
def test_revision_changes_when_anything_changes(mutate: Any) -> None:
    data = base()
    mutate(data)
    assert parse_spec(data).revision != parse_spec(base()).revision


# -- round trip over generated specs ---------------------------------------------------------------

names = st.from_regex(r"[a-z][a-z0-9_.-]{0,8}", fullmatch=True)
durations = st.one_of(
    st.integers(1, 10**6).map(lambda n: f"{n}ms"),
    st.integers(1, 10**4).map(lambda n: f"{n}s"),
    st.integers(1, 300).map(lambda n: f"{n}m"),
    st.integers(1, 10**4),
)
HTTP_CONDITIONS = [
    "hdr(host) -i api.example.com",
    "path_beg /static/ || path_end .jpg",
    "src 10.0.0.0/8 || req.cook(beta) -m found",
    {"path": {"prefix": "/v2/"}},
    {"host": "www.example.com"},
    [{"method": ["GET", "HEAD"]}, {"path": {"prefix": "/a"}}],
]
L4_CONDITIONS = {"tcp": ["src 10.0.0.0/8", {"src": ["192.0.2.0/24", "2001:db8::/32"]}],
                 "tls-passthrough": ["ssl_sni -i a.example.com", "src 10.0.0.0/8 || req.ssl_sni -i b.example.com"]}


def _sub(draw: Any, options: dict[str, Any]) -> dict[str, Any]:
    keys = draw(st.lists(st.sampled_from(sorted(options)), unique=True))
    return {key: draw(options[key]) for key in keys}


@st.composite
def pool_data(draw: Any, name: str) -> dict[str, Any]:
    member_names = draw(st.lists(names, unique=True, max_size=3))
    members = []
    for index, member in enumerate(member_names):
        members.append({
            "name": member,
            "address": f"10.0.{index}.{draw(st.integers(1, 254))}:{draw(st.integers(1, 65535))}",
            **_sub(draw, {"weight": st.integers(0, 256), "backup": st.booleans(),
                          "admin_state": st.sampled_from(["enabled", "drain", "maint"]),
                          "monitor_address": st.just(f"[2001:db8::{index + 1}]:9000")}),
        })
    pool: dict[str, Any] = {"name": name, "members": members}
    pool.update(_sub(draw, {
        "algorithm": st.sampled_from(["roundrobin", "leastconn", "source", "uri", "random", "hdr(X-User)"]),
        "persistence": st.one_of(st.just({"type": "source", "timeout": "10m"}), st.just({"type": "cookie", "name": "LB"})),
        "health": st.one_of(
            st.fixed_dictionaries({"type": st.sampled_from(["http", "https"]), "interval": st.just("5s"),
                                   "timeout": st.just("1s"), "expect": st.just("200-299, 302")},
                                  optional={"host": st.just("Health.example.com:8080"), "method": st.just("HEAD"),
                                            "path": st.just("/healthz?full=1"), "jitter": st.floats(0, 0.5)}),
            st.fixed_dictionaries({"type": st.sampled_from(["tcp", "tls-hello"])},
                                  optional={"rise": st.integers(1, 100), "fall": st.integers(1, 100)})),
        "timeouts": st.builds(dict, connect=durations, server=durations),
        "retries": st.integers(0, 5),
        "max_connections_per_member": st.integers(0, 100),
    }))
    return pool


@st.composite
def spec_data(draw: Any) -> dict[str, Any]:
    pool_names = draw(st.lists(names, unique=True, min_size=1, max_size=4))
    pools = [draw(pool_data(name)) for name in pool_names]
    listeners = []
    ports = draw(st.lists(st.integers(1, 65535), unique=True, max_size=4))
    for index, port in enumerate(ports):
        protocol = draw(st.sampled_from(["http", "https", "tcp", "tls-passthrough"]))
        conditions = HTTP_CONDITIONS if protocol in ("http", "https") else L4_CONDITIONS[protocol]
        acl_names = draw(st.lists(names, unique=True, max_size=3))
        listener: dict[str, Any] = {
            "name": f"l{index}",
            "bind": draw(st.sampled_from([f"127.0.0.{index + 1}:{port}", f"[::{index + 1}]:{port}"])),
            "protocol": protocol,
            "default_pool": draw(st.sampled_from(pool_names)),
            "acls": [{"name": n, "condition": draw(st.sampled_from(conditions)), "pool": draw(st.sampled_from(pool_names))}
                     for n in acl_names],
        }
        if protocol == "http" and draw(st.booleans()):
            del listener["default_pool"], listener["acls"]
            listener["redirect"] = draw(st.fixed_dictionaries(
                {"scheme": st.sampled_from(["https", "http"])},
                optional={"code": st.sampled_from([301, 302, 303, 307, 308]), "host": st.sampled_from(["Example.com", "a.b"]),
                          "port": st.integers(1, 65535)}))
        if protocol == "https":
            listener["tls"] = {"certificates": [{"cert": "a.pem", "key": "a.key"},
                                                {"cert": "b.pem", "key": "b.key", "default": True}]}
        listener.update(_sub(draw, {
            "timeouts": st.builds(dict, client=durations, keepalive=durations),
            "limits": st.builds(dict, max_body=st.sampled_from([None, "1m", 512])),
            "maxconn": st.integers(1, 10**5),
            "shards": st.sampled_from(["shared", "per-worker"]),
        }))
        if protocol in ("http", "https"):
            listener.update(_sub(draw, {
                "forwarded_headers": st.lists(st.sampled_from(["forwarded", "x-forwarded-port", "x-forwarded-for"])),
                "add_headers": st.dictionaries(st.sampled_from(["X-A", "X-B", "Via"]), st.sampled_from(["1", "two words"])),
            }))
        listeners.append(listener)
    data: dict[str, Any] = {"version": 1, "listeners": listeners, "pools": pools}
    data.update(_sub(draw, {"defaults": st.fixed_dictionaries(
        {}, optional={"timeouts": st.builds(dict, connect=durations, client=durations),
                      "maxconn": st.integers(1, 10**6),
                      "forwarded_headers": st.just(["forwarded"])})}))
    return data


@SETTINGS
@given(spec_data())
def test_to_dict_round_trip(data: dict[str, Any]) -> None:
    spec = parse_spec(data)
    out = spec.to_dict()
    assert parse_spec(out) == spec
    assert parse_spec(json.loads(json.dumps(out))).revision == spec.revision
    assert diff(spec, parse_spec(out)) == []
    assert pickle.loads(pickle.dumps(spec)) == spec
    assert hash(spec) == hash(parse_spec(out))


@SETTINGS
@given(spec_data(), spec_data())
def test_diff_is_empty_exactly_when_equal(a: dict[str, Any], b: dict[str, Any]) -> None:
    old, new = parse_spec(a), parse_spec(b)
    changes = diff(old, new)
    assert (changes == []) == (old == new) == (old.revision == new.revision)
    assert all(change.kind in ("added", "removed", "changed") for change in changes)
    assert len(format_diff(changes).splitlines()) == len(changes)
    json.dumps([change.to_dict() for change in changes])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 70000) | st.floats() | st.text(max_size=6)
    | st.sampled_from(["5s", "hdr(x)", "127.0.0.1:80", "[::1]:1", "tcp", "www", "1.2", "src 10.0.0.0/8"]),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.sampled_from(["name", "bind", "pool", "type", "cert", "x"]) | st.integers(0, 2), inner, max_size=3),
    max_leaves=6,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        found.extend(_paths(child, prefix + (key,)))
    return found


@SETTINGS
@given(spec_data(), st.data())
def test_any_damage_is_a_spec_error(data: dict[str, Any], draw: Any) -> None:
    """Whatever a file holds, reading it gives a Spec or a SpecError, nothing else."""
    data = copy.deepcopy(data)
    for _ in range(draw.draw(st.integers(1, 3))):
        path = draw.draw(st.sampled_from(_paths(data)[1:]))
        node: Any = data
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = draw.draw(json_values)
    try:
        spec = parse_spec(data)
    except SpecError as exc:
        assert exc.errors and all(issue.message for issue in exc.errors)
    else:
        assert parse_spec(spec.to_dict()) == spec


# -- errors: each with its exact path and message ---------------------------------------------------


def _set(path: str, value: Any) -> Any:
    """A mutation setting ``path`` ("listeners.0.bind") in base(); value DELETE removes it."""

    def mutate(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for part in parents:
            node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
        key: Any = int(last) if last.isdigit() else last
        if value is DELETE:
            del node[key]
        else:
            node[key] = value

    return mutate


DELETE = object()

ERROR_CASES = [
    ("version", 2, "version: unsupported version 2 (this lbcore reads version 1)"),
    ("bogus", 1, "bogus: unknown key"),
    ("pols", [], "pols: unknown key (did you mean 'pools'?)"),
    ("defaults.timeouts.clinet", "1s", "defaults.timeouts.clinet: unknown key (did you mean 'client'?)"),
    ("defaults.timeouts.connect", "5x",
     "defaults.timeouts.connect: invalid duration '5x' (use 5s, 500ms, 2m, 1h, 1d or a number of seconds)"),
    ("defaults.timeouts.server", 0, "defaults.timeouts.server: must be more than 0"),
    ("defaults.timeouts.client", -1, "defaults.timeouts.client: duration must not be negative, got -1"),
    ("defaults.limits.max_body", "10q", "defaults.limits.max_body: invalid size '10q' (use bytes or k, m, g: 64k, 10m, 1g)"),
    ("defaults.limits.max_headers", 0, "defaults.limits.max_headers: 0 is out of range (1..10000)"),
    ("defaults.maxconn", "many", "defaults.maxconn: expected an integer, got string 'many'"),
    ("defaults.forwarded_headers", ["x-forwarded-fro"],
     "defaults.forwarded_headers[0]: 'x-forwarded-fro' is not one of x-forwarded-for, x-forwarded-proto, "
     "x-forwarded-port, forwarded (did you mean 'x-forwarded-for'?)"),
    ("listeners", {"web": {}}, "listeners: expected a list, got a mapping"),
    ("listeners.0", "web", "listeners[0]: expected a mapping, got string 'web'"),
    ("listeners.0.defualt_pool", "www", "listeners[0].defualt_pool: unknown key (did you mean 'default_pool'?)"),
    ("listeners.0.name", "bad name",
     "listeners[0].name: invalid name 'bad name' (letters, digits, '_', '.', '-'; starts with a letter or digit; at most 63)"),
    ("listeners.0.name", DELETE, "listeners[0].name: required key missing"),
    ("listeners.0.bind", "127.0.0.1", "listeners[0].bind: invalid address '127.0.0.1' (expected HOST:PORT, e.g. 127.0.0.1:8080)"),
    ("listeners.0.bind", "127.0.0.1:0", "listeners[0].bind: invalid port 0 (1..65535)"),
    ("listeners.0.bind", "127.0.0.1:65536", "listeners[0].bind: invalid port 65536 (1..65535)"),
    ("listeners.0.bind", "127.0.0.1:http", "listeners[0].bind: invalid port 'http' in address '127.0.0.1:http'"),
    ("listeners.0.bind", "::1:80", "listeners[0].bind: invalid address '::1:80' (an IPv6 address needs brackets: [::1]:8080)"),
    ("listeners.0.bind", "[::1]", "listeners[0].bind: invalid address '[::1]' (expected [V6ADDR]:PORT, e.g. [::1]:8080)"),
    ("listeners.0.bind", "example.com:80", "listeners[0].bind: 'example.com' is not an IP address (names are not resolved)"),
    ("listeners.0.bind", 8080, "listeners[0].bind: expected an address like 127.0.0.1:8080, got number 8080"),
    ("listeners.0.protocol", "htp",
     "listeners[0].protocol: 'htp' is not one of http, https, tcp, tls-passthrough (did you mean 'http'?)"),
    ("listeners.0.maxconn", 0, "listeners[0].maxconn: 0 is out of range (1..10000000)"),
    ("listeners.0.backlog", True, "listeners[0].backlog: expected an integer, got boolean true"),
    ("listeners.0.shards", "per-thread", "listeners[0].shards: 'per-thread' is not one of shared, per-worker (did you mean 'per-worker'?)"),
    ("listeners.0.timeouts.connect", "1s",
     "listeners[0].timeouts.connect: connect is a backend timeout: set it in defaults or on a pool"),
    ("listeners.0.timeouts", "30s", "listeners[0].timeouts: expected a mapping, got string '30s'"),
    ("listeners.0.limits.max_request_line", "1g1", "listeners[0].limits.max_request_line: invalid size '1g1' (use bytes or k, m, g: 64k, 10m, 1g)"),
    ("listeners.0.acls.0.condition", "hots foo", "listeners[0].acls[0].condition: unknown fetch 'hots' (did you mean 'host'?)"),
    ("listeners.0.acls.0.condition", 5, "listeners[0].acls[0].condition: expected a condition (a string or a mapping), got number 5"),
    ("listeners.0.acls.0.pool", "apii", "listeners[0].acls[0].pool: unknown pool 'apii' (did you mean 'api'?)"),
    ("listeners.0.acls.0.pool", DELETE, "listeners[0].acls[0].pool: required key missing"),
    ("listeners.0.acls.1.name", "api", "listeners[0].acls[1].name: duplicate acl name 'api' (first at acls[0])"),
    ("listeners.0.default_pool", "nope", "listeners[0].default_pool: unknown pool 'nope'"),
    ("listeners.0.add_headers", {"Content-Length": "5"},
     "listeners[0].add_headers.Content-Length: Content-Length is a hop-by-hop or framing header: the engine sets it"),
    ("listeners.0.add_headers", {"X Bad": "5"}, "listeners[0].add_headers: invalid header name 'X Bad'"),
    ("listeners.0.add_headers", {"X-A": "a\r\nb"}, "listeners[0].add_headers.X-A: a header value may not contain control characters"),
    ("listeners.0.add_headers", {"X-A": "1", "x-a": "2"}, "listeners[0].add_headers.x-a: x-a is set twice (also as X-A)"),
    ("listeners.0.response_headers", {"X-A": 1}, "listeners[0].response_headers.X-A: expected a string value, got number 1"),
    ("listeners.0.tls", {"certificates": [{"cert": "a.pem", "key": "a.key"}]},
     "listeners[0].tls: only an https listener takes tls (this one is http)"),
    ("pools.0.algorithm", "roundrobn",
     "pools[0].algorithm: 'roundrobn' is not one of roundrobin, leastconn, source, uri, hdr, random (did you mean 'roundrobin'?)"),
    ("pools.0.algorithm", "hdr", "pools[0].algorithm: hdr needs a header name: hdr(NAME)"),
    ("pools.0.algorithm", "hdr()", "pools[0].algorithm: hdr needs a header name: hdr(NAME)"),
    ("pools.0.algorithm", "hdr(a b)", "pools[0].algorithm: invalid header name 'a b'"),
    ("pools.0.algorithm", "uri(x)", "pools[0].algorithm: uri takes no argument"),
    ("pools.0.algorithm", "hdr(x", "pools[0].algorithm: invalid algorithm 'hdr(x' (roundrobin, leastconn, source, uri, hdr(NAME) or random)"),
    ("pools.0.hash_header", "x", "pools[0].hash_header: unknown key"),
    ("pools.0.timeouts.client", "1s", "pools[0].timeouts.client: client is a frontend timeout: set it in defaults or on a listener"),
    ("pools.0.retries", -1, "pools[0].retries: -1 is out of range (0..100)"),
    ("pools.0.persistence", {"type": "cookie", "name": "a b"},
     "pools[0].persistence.name: invalid cookie name 'a b' (RFC 6265 token characters)"),
    ("pools.0.persistence", {"type": "sticky"},
     "pools[0].persistence.type: 'sticky' is not one of cookie, source"),
    ("pools.0.persistence", {"name": "X"}, "pools[0].persistence.type: required key missing"),
    ("pools.0.health", {"type": "http", "interval": "1s", "timeout": "2s"},
     "pools[0].health.timeout: must not exceed interval (1s)"),
    ("pools.0.health", {"type": "http", "expect": "2xx"},
     "pools[0].health.expect: invalid expect '2xx' (use codes and ranges like 200-299,302)"),
    ("pools.0.health", {"type": "http", "expect": "399-200"},
     "pools[0].health.expect: invalid status range '399-200' in expect (codes 100..599, low-high)"),
    ("pools.0.health", {"type": "http", "path": "health"},
     "pools[0].health.path: invalid path 'health' (starts with '/', no spaces)"),
    ("pools.0.health", {"type": "http", "method": "get"},
     "pools[0].health.method: invalid method 'get' (upper-case letters, like GET or HEAD)"),
    ("pools.0.health", {"type": "http", "jitter": 1},
     "pools[0].health.jitter: 1 is out of range (0.0 <= value < 1.0)"),
    ("pools.0.health", {"type": "http", "rise": 0}, "pools[0].health.rise: 0 is out of range (1..100)"),
    ("pools.0.health", {"type": "tcp", "expect": "200"},
     "pools[0].health.expect: only http and https checks take expect (this one is tcp)"),
    ("pools.0.health", {"type": "icmp"},
     "pools[0].health.type: 'icmp' is not one of tcp, http, https, tls-hello"),
    ("pools.0.members.0.weight", 257, "pools[0].members[0].weight: 257 is out of range (0..256)"),
    ("pools.0.members.0.backup", "yes", "pools[0].members[0].backup: expected true or false, got string 'yes'"),
    ("pools.0.members.0.admin_state", "drainn",
     "pools[0].members[0].admin_state: 'drainn' is not one of enabled, drain, maint (did you mean 'drain'?)"),
    ("pools.0.members.0.address", "127.0.0.1:99999", "pools[0].members[0].address: invalid port 99999 (1..65535)"),
    ("pools.0.members.0.monitor_address", "x:1", "pools[0].members[0].monitor_address: 'x' is not an IP address (names are not resolved)"),
    ("pools.0.members.1.name", "w1", "pools[0].members[1].name: duplicate member name 'w1' (first at members[0])"),
    ("pools.0.members.0.address", DELETE, "pools[0].members[0].address: required key missing"),
    ("pools.1.name", "www", "pools[1].name: duplicate pool name 'www' (first at pools[0])"),
]


@pytest.mark.parametrize(("path", "value", "expected"), ERROR_CASES, ids=[case[2][:60] for case in ERROR_CASES])
def test_error_path_and_message(path: str, value: Any, expected: str) -> None:
    data = base()
    _set(path, value)(data)
    found = errors(data)
    if path == "pools.1.name":  # renaming pool api also orphans the ACL that used it
        assert found == [expected, "listeners[0].acls[0].pool: unknown pool 'api'"]
    else:
        assert found == [expected]


def test_every_problem_is_reported_at_once() -> None:
    text = """
version: 2
defaults:
  timeouts: {connect: 5x, clinet: 3s}
  maxconn: -1
listeners:
  - name: web
    bind: 127.0.0.1:8080
    protocol: htp
    acls:
      - {name: api, condition: "hots foo", pool: api}
      - {name: api, condition: "path_beg /x", pool: apii}
    defualt_pool: www
  - name: web
    bind: "*:8080"
    protocol: tcp
    acls:
      - {name: a, condition: "path_beg /x", pool: api}
  - name: v6
    bind: "[::1]:8443"
    protocol: https
    tls: {certificates: [{cert: a.pem, key: a.key}, {cert: b.pem, key: b.key}]}
    default_pool: api
pools:
  - name: api
    algorithm: hdr
    members:
      - {name: a1, address: 127.0.0.1:99999, weight: 300}
      - {name: a1, address: localhost:80}
"""
    with pytest.raises(SpecError) as info:
        loads_spec(text)
    assert str(info.value).splitlines() == [
        "version: unsupported version 2 (this lbcore reads version 1)",
        "defaults.timeouts.clinet: unknown key (did you mean 'client'?)",
        "defaults.timeouts.connect: invalid duration '5x' (use 5s, 500ms, 2m, 1h, 1d or a number of seconds)",
        "defaults.maxconn: -1 is out of range (1..10000000)",
        "listeners[0].defualt_pool: unknown key (did you mean 'default_pool'?)",
        "listeners[0].acls[0].condition: unknown fetch 'hots' (did you mean 'host'?)",
        "listeners[0].protocol: 'htp' is not one of http, https, tcp, tls-passthrough (did you mean 'http'?)",
        "listeners[0].acls[1].name: duplicate acl name 'api' (first at acls[0])",
        "listeners[1].default_pool: a tcp listener needs a default_pool",
        "listeners[1].acls[0].condition: a tcp listener can only match on src (found path)",
        "listeners[2].tls.certificates: exactly one certificate must be the default when there are several (found 0)",
        "pools[0].members[0].address: invalid port 99999 (1..65535)",
        "pools[0].members[0].weight: 300 is out of range (0..256)",
        "pools[0].members[1].address: 'localhost' is not an IP address (names are not resolved)",
        "pools[0].algorithm: hdr needs a header name: hdr(NAME)",
        "pools[0].members[1].name: duplicate member name 'a1' (first at members[0])",
        "listeners[1].name: duplicate listener name 'web' (first at listeners[0])",
        "listeners[1].bind: 0.0.0.0:8080 overlaps 127.0.0.1:8080 of listener 'web'",
        "listeners[0].acls[1].pool: unknown pool 'apii' (did you mean 'api'?)",
    ]
    assert all(isinstance(issue, SpecIssue) for issue in info.value.errors)
    assert info.value.errors[0] == SpecIssue("version", "unsupported version 2 (this lbcore reads version 1)")


def test_listener_shape_rules() -> None:
    data = base()
    data["listeners"] = [
        {"name": "nothing", "bind": "127.0.0.1:1"},
        {"name": "both", "bind": "127.0.0.1:2", "redirect": {"scheme": "https"}, "default_pool": "www"},
        {"name": "loop", "bind": "127.0.0.1:3", "redirect": {"code": 301}},
        {"name": "code", "bind": "127.0.0.1:4", "redirect": {"code": 304, "scheme": "https"}},
        {"name": "s", "bind": "127.0.0.1:5", "protocol": "https", "default_pool": "www"},
        {"name": "t", "bind": "127.0.0.1:6", "protocol": "tcp", "default_pool": "www",
         "redirect": {"scheme": "https"}, "add_headers": {"X-A": "1"}},
        {"name": "p", "bind": "127.0.0.1:7", "protocol": "tls-passthrough", "default_pool": "www",
         "acls": [{"name": "ok", "condition": "req.ssl_sni -i a.example.com || src 10.0.0.0/8", "pool": "api"},
                  {"name": "bad", "condition": {"all": [{"host": "a.example.com"}, {"cookie": {"name": "x", "present": True}}]},
                   "pool": "api"}]},
        {"name": "pt", "bind": "127.0.0.1:8", "protocol": "tls-passthrough", "default_pool": "www",
         "tls": {"certificates": [{"cert": "a.pem", "key": "a.key"}]}},
    ]
    assert errors(data) == [
        "listeners[0]: an http listener needs a default_pool, acls or a redirect",
        "listeners[1].redirect: a redirect listener redirects every request: it takes no acls or default_pool",
        "listeners[2].redirect: a redirect needs a scheme, host or port to change (else it loops)",
        "listeners[3].redirect.code: 304 is not one of 301, 302, 303, 307, 308",
        "listeners[4].tls: an https listener needs tls (its certificates)",
        "listeners[5].redirect: only http and https listeners redirect",
        "listeners[5].add_headers: only http and https listeners set headers",
        "listeners[6].acls[1].condition: a tls-passthrough listener can only match on src and ssl_sni (found cookie, host)",
        "listeners[7].tls: only an https listener takes tls (this one is tls-passthrough)",
    ]


def test_bind_conflicts() -> None:
    def binds(*addresses: str) -> list[str]:
        data = base()
        data["listeners"] = [{"name": f"l{i}", "bind": a, "default_pool": "www"} for i, a in enumerate(addresses)]
        try:
            parse_spec(data)
        except SpecError as exc:
            return [str(issue) for issue in exc.errors]
        return []

    assert binds("127.0.0.1:80", "127.0.0.1:80") == ["listeners[1].bind: 127.0.0.1:80 is already bound by listener 'l0'"]
    assert binds("127.0.0.1:80", "*:80") == ["listeners[1].bind: 0.0.0.0:80 overlaps 127.0.0.1:80 of listener 'l0'"]
    assert binds(":80", "10.1.1.1:80") == ["listeners[1].bind: 10.1.1.1:80 overlaps 0.0.0.0:80 of listener 'l0'"]
    assert binds("[::]:80", "[::1]:80") == ["listeners[1].bind: [::1]:80 overlaps [::]:80 of listener 'l0'"]
    assert binds("[::1]:80", "[0:0::1]:80") == ["listeners[1].bind: [::1]:80 is already bound by listener 'l0'"]
    # Different ports, different specific addresses, or v4 beside a v6-only wildcard: fine.
    assert binds("127.0.0.1:80", "127.0.0.1:81", "127.0.0.2:80", "[::]:80", "[::1]:81") == []


def test_tls_settings_shape() -> None:
    data = base()
    data["listeners"][0].update(protocol="https", tls={
        "certificates": [{"cert": "certs/www.pem", "key": "certs/www.key", "default": True},
                         {"cert": "certs/api.pem", "key": "certs/api.key", "passphrase": "s3cret"}],
        "min_version": 1.3, "alpn": ["http/1.1"], "ciphers": "ECDHE+AESGCM"})
    tls = parse_spec(data).listener("web").tls
    assert tls is not None and tls.min_version == "1.3" and tls.alpn == ("http/1.1",)
    assert tls.default_certificate.cert == "certs/www.pem"
    assert "s3cret" not in repr(tls)
    data["listeners"][0]["tls"] = {"certificates": [{"cert": "only.pem", "key": "only.key"}]}
    assert parse_spec(data).listener("web").tls.certificates[0].default is True  # type: ignore[union-attr]
    data["listeners"][0]["tls"] = {
        "certificates": [{"cert": "a.pem", "key": "a.key", "default": True}, {"cert": "a.pem", "key": 5, "default": True}],
        "min_version": "1.1", "alpn": [""], "ciphers": ""}
    assert errors(data) == [
        "listeners[0].tls.certificates[1].key: expected a non-empty string, got number 5",
        "listeners[0].tls.min_version: '1.1' is not one of 1.2, 1.3 (did you mean '1.3'?)",
        "listeners[0].tls.ciphers: expected a non-empty string, got string ''",
        "listeners[0].tls.alpn[0]: invalid ALPN protocol id ''",
        "listeners[0].tls.certificates[1].cert: duplicate certificate 'a.pem' (first at certificates[0])",
        "listeners[0].tls.certificates: exactly one certificate must be the default when there are several (found 2)",
    ]
    data["listeners"][0]["tls"] = {"certificates": []}
    assert errors(data) == ["listeners[0].tls.certificates: at least one certificate is needed"]
    single = TlsSettings((TlsCertificate("a.pem", "a.key"),))
    assert single.certificates[0].default and single.default_certificate.cert == "a.pem"
    with pytest.raises(SpecError, match="certificates: at least one certificate is needed"):
        TlsSettings(())
    https = Listener("s", Address("::1", 443), protocol="https", default_pool="p", tls=single)
    assert parse_spec(Spec(listeners=(https,), pools=(Pool("p"),)).to_dict()).listener("s").tls == single


def test_empty_and_null_sections() -> None:
    spec = loads_spec("version: 1\n")
    assert spec == Spec() and spec.listeners == () and spec.pools == ()
    spec = loads_spec("listeners:\npools:\n  - name: empty\n    members:\n")
    assert spec.pool("empty").members == ()
    assert errors(None) == ["the spec is empty"]
    assert errors([1]) == ["a spec is a mapping (version, defaults, listeners, pools), got a list"]
    assert errors({1: 2}) == ["keys must be strings, got number 1"]


# -- cascading ----------------------------------------------------------------------------------------


def test_cascade_defaults_listener_pool() -> None:
    data = base()
    data["defaults"] = {"timeouts": {"client": "40s", "connect": "2s", "tunnel": "2h"}, "maxconn": 500,
                        "limits": {"max_headers": 50}, "forwarded_headers": ["forwarded"]}
    data["listeners"][0].update(timeouts={"keepalive": "5s"}, limits={"max_body": "1m"})
    data["listeners"].append({"name": "own", "bind": "127.0.0.1:8081", "default_pool": "www", "maxconn": 7,
                              "timeouts": {"client": "1s"}, "forwarded_headers": []})
    data["pools"][0]["timeouts"] = {"server": "1m"}
    spec = parse_spec(data)
    web, own = spec.listener("web"), spec.listener("own")
    assert web.timeouts == Timeouts(connect=2.0, client=40.0, keepalive=5.0, tunnel=7200.0)
    assert web.maxconn == 500 and own.maxconn == 7
    assert web.limits == Limits(max_headers=50, max_body=1 << 20)
    assert web.forwarded_headers == ("forwarded",) and own.forwarded_headers == ()
    assert own.timeouts.client == 1.0 and own.timeouts.keepalive == 60.0
    # A pool's values come from defaults, never from a listener.
    www, api = spec.pool("www"), spec.pool("api")
    assert (www.timeouts.connect, www.timeouts.server, www.timeouts.tunnel) == (2.0, 60.0, 7200.0)
    assert (api.timeouts.connect, api.timeouts.server) == (2.0, 30.0)
    assert spec.defaults.timeouts.client == 40.0


maybe_seconds = st.none() | st.integers(1, 10**5)


@SETTINGS
@given(maybe_seconds, maybe_seconds, maybe_seconds, maybe_seconds, maybe_seconds, maybe_seconds)
def test_cascade_most_specific_wins(
    d_client: int | None, l_client: int | None, d_connect: int | None, p_connect: int | None,
    d_maxconn: int | None, l_maxconn: int | None,
) -> None:
    def given_only(**values: Any) -> dict[str, Any]:
        return {key: value for key, value in values.items() if value is not None}

    data = base()
    data["defaults"] = {"timeouts": given_only(client=d_client, connect=d_connect), **given_only(maxconn=d_maxconn)}
    data["listeners"][0].update(timeouts=given_only(client=l_client), **given_only(maxconn=l_maxconn))
    data["pools"][0]["timeouts"] = given_only(connect=p_connect)
    spec = parse_spec(data)
    web, www, api = spec.listener("web"), spec.pool("www"), spec.pool("api")

    def first(*values: Any) -> Any:
        return next(value for value in values if value is not None)

    assert web.timeouts.client == first(l_client, d_client, Timeouts().client)
    assert web.maxconn == first(l_maxconn, d_maxconn, 10000)
    assert www.timeouts.connect == first(p_connect, d_connect, Timeouts().connect)
    assert api.timeouts.connect == first(d_connect, Timeouts().connect)
    assert web.timeouts.connect == spec.defaults.timeouts.connect


def test_programmatic_spec_is_resolved_like_a_file() -> None:
    listener = Listener("web", "127.0.0.1:80", default_pool="p", timeouts=Timeouts(connect=99))
    pool = Pool("p", timeouts=Timeouts(client=99))
    spec = Spec(defaults=Defaults(timeouts=Timeouts(connect=3)), listeners=(listener,), pools=[pool])
    assert spec.listener("web").timeouts.connect == 3.0  # a listener does not set connect
    assert spec.pool("p").timeouts.client == 30.0  # a pool does not set client
    assert parse_spec(spec.to_dict()) == spec


# -- values ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "seconds"), [
    ("5s", 5.0), ("500ms", 0.5), ("2m", 120.0), ("1h", 3600.0), ("1d", 86400.0), ("1.5s", 1.5),
    (" 10 s ", 10.0), ("30", 30.0), (30, 30.0), (0.25, 0.25), ("0", 0.0), (".5s", 0.5), ("100ms", 0.1),
])
def test_parse_duration(text: Any, seconds: float) -> None:
    assert parse_duration(text) == seconds
    assert isinstance(parse_duration(text), float)


@pytest.mark.parametrize("bad", ["5x", "s", "-1s", "1e3", "", "5 min", None, True, [], float("inf"), -2])
def test_parse_duration_rejects(bad: Any) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


@given(st.integers(0, 10**9))
def test_format_duration_round_trips(milliseconds: int) -> None:
    seconds = milliseconds / 1000
    assert parse_duration(format_duration(seconds)) == seconds


def test_format_duration_units() -> None:
    assert [format_duration(s) for s in (0, 0.5, 30, 90, 120, 3600, 86400, 1.25)] == [
        "0s", "500ms", "30s", "90s", "2m", "1h", "1d", "1250ms"]


@pytest.mark.parametrize(("text", "size"), [
    ("8192", 8192), (8192, 8192), ("64k", 65536), ("10m", 10 << 20), ("1g", 1 << 30), ("10MiB", 10 << 20),
    ("10mb", 10 << 20), ("2K", 2048), ("1.5m", 1572864), ("100b", 100), (0, 0),
])
def test_parse_size(text: Any, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["10q", "k", "-1", "1.0001k", 1.5, True, None, -1, "10 kk"])
def test_parse_size_rejects(bad: Any) -> None:
    with pytest.raises(ValueError):
        parse_size(bad)


@given(st.integers(0, 1 << 40))
def test_format_size_round_trips(size: int) -> None:
    assert parse_size(format_size(size)) == size


@pytest.mark.parametrize(("text", "host", "port", "family", "canonical"), [
    ("127.0.0.1:8080", "127.0.0.1", 8080, socket.AF_INET, "127.0.0.1:8080"),
    ("[::1]:8080", "::1", 8080, socket.AF_INET6, "[::1]:8080"),
    ("[2001:DB8:0::1]:443", "2001:db8::1", 443, socket.AF_INET6, "[2001:db8::1]:443"),
    ("[::]:80", "::", 80, socket.AF_INET6, "[::]:80"),
    ("*:80", "0.0.0.0", 80, socket.AF_INET, "0.0.0.0:80"),
    (":80", "0.0.0.0", 80, socket.AF_INET, "0.0.0.0:80"),
    (" 10.0.0.1:1 ", "10.0.0.1", 1, socket.AF_INET, "10.0.0.1:1"),
])
def test_address_parse(text: str, host: str, port: int, family: int, canonical: str) -> None:
    address = Address.parse(text)
    assert (address.host, address.port, address.family, str(address)) == (host, port, family, canonical)
    assert Address.parse(str(address)) == address
    assert address.is_wildcard == (host in ("0.0.0.0", "::"))


def test_address_validates_on_creation() -> None:
    assert Address("::0001", 80) == Address("::1", 80)
    assert Address("[::1]", 80).host == "::1"
    for host, port in (("999.1.1.1", 80), ("127.0.0.1", 0), ("127.0.0.1", "80"), (None, 80), ("::1", True)):
        with pytest.raises(ValueError):
            Address(host, port)  # type: ignore[arg-type]


def test_v6_binds_and_members() -> None:
    data = base()
    data["listeners"][0]["bind"] = "[::1]:8080"
    data["pools"][0]["members"][0]["address"] = "[fd00::1]:9001"
    spec = parse_spec(data)
    assert spec.listener("web").bind.family == socket.AF_INET6
    assert spec.to_dict()["listeners"][0]["bind"] == "[::1]:8080"
    assert spec.pool("www").members[0].address == Address("fd00::1", 9001)
    assert parse_spec(spec.to_dict()) == spec


# -- objects made by programs -----------------------------------------------------------------------


def test_objects_are_canonical_hashable_and_checked() -> None:
    member = Member("w1", "127.0.0.1:9001", weight=3)  # type: ignore[arg-type]
    assert member.address == Address("127.0.0.1", 9001)
    assert member == Member("w1", Address("127.0.0.1", 9001), 3) and hash(member) == hash(Member("w1", Address("127.0.0.1", 9001), 3))
    assert Timeouts(connect="500ms").connect == 0.5  # type: ignore[arg-type]
    assert Timeouts(connect=5) == Timeouts() and isinstance(Timeouts(connect=5).connect, float)
    assert HealthCheck("http", expect="200-299, 302").expect == "200-299,302"
    check = HealthCheck("http", expect="200-299,302")
    assert check.accepts(302) and check.accepts(250) and not check.accepts(301)
    with pytest.raises(SpecError) as info:
        Member("bad name", "nowhere", weight=-1, admin_state="gone")  # type: ignore[arg-type]
    assert [issue.path for issue in info.value.errors] == ["name", "address", "weight", "admin_state"]
    with pytest.raises(SpecError) as info:
        Pool("p", algorithm="hdr")
    assert str(info.value) == "algorithm: hdr needs a header name: hdr(NAME)"
    assert Pool("p", algorithm="hdr", hash_header="X-User").hash_header == "x-user"
    with pytest.raises(SpecError, match="an http listener needs a default_pool, acls or a redirect"):
        Listener("l", Address("127.0.0.1", 80))
    assert Listener("l", Address("127.0.0.1", 80), protocol="tcp", default_pool="p").forwarded_headers == ()
    with pytest.raises(SpecError, match="unknown pool 'q'"):
        Spec(listeners=(Listener("l", Address("127.0.0.1", 80), default_pool="q"),))
    with pytest.raises(AttributeError):
        member.weight = 5  # type: ignore[misc]


def test_acl_source_kept_and_hashable() -> None:
    acl = Acl.of("static", {"path": {"prefix": "/s/"}}, "www")
    assert isinstance(acl.source, FrozenDict) and acl.source == {"path": {"prefix": "/s/"}}
    assert hash(acl) == hash(Acl.of("static", {"path": {"prefix": "/s/"}}, "www"))
    assert acl.to_dict() == {"name": "static", "condition": {"path": {"prefix": "/s/"}}, "pool": "www"}
    assert type(acl.to_dict()["condition"]) is dict
    with pytest.raises(TypeError):
        acl.source["path"] = "x"
    assert pickle.loads(pickle.dumps(acl)) == acl
    assert copy.deepcopy(acl) == acl
    with pytest.raises(SpecError, match="condition: expected a parsed condition"):
        Acl("a", "src 10.0.0.0/8", "p", "src 10.0.0.0/8")


def test_spec_error_pickles_and_reads() -> None:
    error = SpecError([SpecIssue("a.b", "bad"), SpecIssue("", "whole")])
    assert str(error) == "a.b: bad\nwhole"
    again = pickle.loads(pickle.dumps(error))
    assert again.errors == error.errors and isinstance(again, ValueError)


# -- loading files ------------------------------------------------------------------------------------


def test_load_errors(tmp_path: Path) -> None:
    def load_error(name: str, content: bytes | None) -> str:
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        with pytest.raises(SpecError) as info:
            load_spec(path)
        return str(info.value)

    assert load_error("missing.yaml", None) == f"{tmp_path / 'missing.yaml'}: cannot read: No such file or directory"
    assert load_error("bin.yaml", b"version: \xff\n") == f"{tmp_path / 'bin.yaml'}: not UTF-8 text (byte 0xff at offset 9)"
    assert load_error("bad.yaml", b"version: 1\nlisteners:\n  - name: a\n    bind: [\n") == (
        f"{tmp_path / 'bad.yaml'}: line 5, column 1: did not find expected node content")
    assert load_error("dup.yml", b"version: 1\npools: []\npools: []\n") == (
        f"{tmp_path / 'dup.yml'}: line 3, column 1: found a repeated key 'pools'")
    assert load_error("bad.json", b'{"version": 1,}') == (
        f"{tmp_path / 'bad.json'}: line 1, column 15: Expecting property name enclosed in double quotes")
    assert load_error("dup.json", b'{"pools": [], "pools": []}') == f"{tmp_path / 'dup.json'}: found a repeated key 'pools'"
    assert load_error("empty.yaml", b"\n# nothing\n") == f"{tmp_path / 'empty.yaml'}: the spec is empty"
    assert load_error("semantic.yaml", b"version: 3\n") == "version: unsupported version 3 (this lbcore reads version 1)"


def test_loads_spec_formats() -> None:
    assert loads_spec('{"version": 1}') == Spec()
    assert loads_spec("{version: 1}") == Spec()  # not JSON: read as YAML flow style
    with pytest.raises(SpecError, match="line 1, column 2: Expecting property name"):
        loads_spec("{version: 1}", fmt="json")
    with pytest.raises(ValueError, match="unknown spec format 'toml'"):
        loads_spec("version = 1", fmt="toml")


# -- diff ------------------------------------------------------------------------------------------------


def test_diff_kinds_and_format() -> None:
    old = parse_spec(base())
    data = base()
    data["pools"][0]["members"][0]["weight"] = 5  # w1 changed
    data["pools"][0]["members"].append({"name": "w3", "address": "127.0.0.1:9003"})  # added
    del data["pools"][1]["members"][0]  # a1 removed
    data["pools"][1]["algorithm"] = "hdr(X-User)"
    data["pools"][1]["health"] = {"type": "tcp"}
    data["listeners"][0]["acls"][0]["condition"] = "hdr(host) -i api2.example.com"
    data["listeners"][0]["timeouts"] = {"client": "1m"}
    data["listeners"][0]["add_headers"] = {"X-Env": "prod"}
    data["listeners"].append({"name": "new", "bind": "[::1]:8080", "default_pool": "www"})
    new = parse_spec(data)
    changes = diff(old, new)
    assert changes == [
        Change("listeners[new]", "added", None, new.listener("new")),
        Change("listeners[web].acls[api].condition", "changed", "hdr(host) -i api.example.com", "hdr(host) -i api2.example.com"),
        Change("listeners[web].timeouts.client", "changed", 30.0, 60.0),
        Change("listeners[web].add_headers[X-Env]", "added", None, "prod"),
        Change("pools[api].algorithm", "changed", "roundrobin", "hdr(x-user)"),
        Change("pools[api].health", "added", None, HealthCheck("tcp")),
        Change("pools[api].members[a1]", "removed", old.pool("api").members[0], None),
        Change("pools[www].members[w1].weight", "changed", 10, 5),
        Change("pools[www].members[w3]", "added", None, new.pool("www").members[2]),
    ]
    assert format_diff(changes) == "\n".join([
        "+ listeners[new]",
        '~ listeners[web].acls[api].condition: "hdr(host) -i api.example.com" -> "hdr(host) -i api2.example.com"',
        "~ listeners[web].timeouts.client: 30s -> 1m",
        "+ listeners[web].add_headers[X-Env]: prod",
        "~ pools[api].algorithm: roundrobin -> hdr(x-user)",
        "+ pools[api].health",
        "- pools[api].members[a1]",
        "~ pools[www].members[w1].weight: 10 -> 5",
        "+ pools[www].members[w3]",
    ])
    back = diff(new, old)
    assert [(c.path, c.kind) for c in back][-3:] == [
        ("pools[api].members[a1]", "added"), ("pools[www].members[w3]", "removed"), ("pools[www].members[w1].weight", "changed")]
    assert diff(old, old) == [] and format_diff([]) == ""
    assert changes[0].to_dict()["new"]["bind"] == "[::1]:8080"


def test_diff_reorders_removals_and_values() -> None:
    old = parse_spec(base())
    data = base()
    data["listeners"][0]["acls"].reverse()
    data["pools"][0]["members"].reverse()
    reordered = parse_spec(data)
    assert format_diff(diff(old, reordered)) == (
        "~ listeners[web].acls: order api,static -> static,api\n"
        "~ pools[www].members: order w1,w2 -> w2,w1"
    )
    # Adding or removing alone is not a reorder.
    data = base()
    data["listeners"][0]["acls"].insert(0, {"name": "first", "condition": "path_beg /f", "pool": "www"})
    data["listeners"][0]["acls"][2]["condition"] = {"path": {"prefix": "/s/"}}
    data["pools"][0]["members"][1].update(monitor_address="127.0.0.1:9902", admin_state="maint")
    data["pools"][1]["persistence"] = {"type": "source"}
    data["defaults"] = {"timeouts": {"tunnel": "2h"}}
    changed = parse_spec(data)
    assert format_diff(diff(old, changed)) == "\n".join([
        "~ defaults.timeouts.tunnel: 1h -> 2h",
        "+ listeners[web].acls[first]",
        '~ listeners[web].acls[static].condition: {"path": {"prefix": "/static/"}} -> {"path": {"prefix": "/s/"}}',
        "+ pools[api].persistence",
        "~ pools[api].timeouts.tunnel: 1h -> 2h",
        "~ pools[www].members[w2].admin_state: enabled -> maint",
        "+ pools[www].members[w2].monitor_address: 127.0.0.1:9902",
        "~ pools[www].timeouts.tunnel: 1h -> 2h",
    ])
    removed = copy.deepcopy(base())
    del removed["listeners"][0]
    assert format_diff(diff(old, parse_spec(removed))) == "- listeners[web]"


def test_diff_certificates_and_header_maps() -> None:
    data = base()
    data["listeners"][0].update(protocol="https", add_headers={"X-A": "1", "X-B": "2"}, tls={
        "certificates": [{"cert": "a.pem", "key": "a.key", "default": True}, {"cert": "b.pem", "key": "b.key"}]})
    old = parse_spec(data)
    data["listeners"][0]["add_headers"] = {"X-A": "one", "X-C": "3"}
    data["listeners"][0]["tls"]["certificates"][1]["key"] = "b2.key"
    data["listeners"][0]["tls"]["min_version"] = "1.3"
    assert format_diff(diff(old, parse_spec(data))) == "\n".join([
        "- listeners[web].add_headers[X-B]: 2",
        "~ listeners[web].add_headers[X-A]: 1 -> one",
        "+ listeners[web].add_headers[X-C]: 3",
        "~ listeners[web].tls.certificates[b.pem].key: b.key -> b2.key",
        "~ listeners[web].tls.min_version: 1.2 -> 1.3",
    ])


def test_change_kind_checked() -> None:
    with pytest.raises(ValueError):
        Change("x", "moved")
    assert hash(Change("a", "changed", 1, 2)) == hash(Change("a", "changed", 1, 2))
