"""The haproxy renderer: whole expected files, escaping, ACL normal forms, refusals.

Expected files live in ``tests/unit/data/haproxy/CASE/expected/``; after an intended
change, regenerate them with ``LBCORE_REGEN_EXPECTED=1 pytest tests/unit/test_haproxy_render.py``
and review the diff. ``haproxy -c`` on the same renderings is in
``tests/system/test_haproxy_check.py``.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lbcore.control.drivers._haproxy_acl import (
    MAX_WORDS,
    ConditionWriter,
    Context,
    HAnd,
    HNot,
    HOr,
    Inexpressible,
    Leaf,
    translate,
)
from lbcore.control.drivers._haproxy_text import arg, lf_literal, seconds, word
from lbcore.control.drivers._material import Material, RenderError
from lbcore.control.drivers._render_haproxy import (
    RenderOptions,
    crt_list_entries,
    render_haproxy,
    status_regex,
)
from lbcore.control.drivers._render_stunnel import sni_services
from lbcore.l7.acl import parse_condition
from lbcore.l7.facts import split_host
from lbcore.spec import load_spec, parse_spec
from lbcore.spec._values import parse_status_ranges
from lbcore.tls import build_cert_store, parse_certificate
from tests.tlsgen import issue, make_ca

DATA = Path(__file__).parent / "data" / "haproxy"
DIRECTORY = "/etc/lbcore/haproxy"
RUNTIME = "/run/lbcore-haproxy"
REGEN = os.environ.get("LBCORE_REGEN_EXPECTED") == "1"
CASES = {"basic": "haproxy", "l4": "haproxy", "acls": "haproxy", "tls": "haproxy", "stunnel": "stunnel"}
TICKET_KEYS = (bytes(range(80)), bytes(range(80, 160)))


# -- material: certificates made here, never read from disk ---------------------------------

_CA = make_ca()
_CERTS = {
    "api": issue(_CA, ["api.example.com", "*.api.example.com"]),
    "www": issue(_CA, ["www.example.com", "example.com"]),
    "www-ecdsa": issue(_CA, ["www.example.com", "example.com"], key_type="ecdsa"),
    "wild": issue(_CA, ["*.example.com"], key_type="ecdsa"),
    "shadow": issue(_CA, ["www.example.com", "shadow.example.com"], slot=1),
}
_CLIENT = issue(_CA, [], common_name="lbcore", client=True, slot=2)


def certificate(name: str):
    leaf = _CERTS[name]
    cert, _warnings = parse_certificate(leaf.pem + _CA.pem, leaf.key_pem())
    return cert


def material(spec) -> Material:
    stores = {}
    for listener in spec.listeners:
        if listener.tls is None:
            continue
        certs = [certificate(Path(c.cert).stem) for c in listener.tls.certificates]
        stores[listener.name], _ = build_cert_store(certs, listener.tls.default_index)
    tickets = {l.name: TICKET_KEYS for l in spec.listeners if l.tls is not None and l.tls.ticket_keys}
    clients = {}
    for pool in spec.pools:
        if pool.tls is not None and pool.tls.cert is not None:
            clients[pool.name], _ = parse_certificate(_CLIENT.pem + _CA.pem, _CLIENT.key_pem(), usage="client")
    return Material("/etc/lbcore", stores, tickets, clients)


def render_case(case: str):
    spec = load_spec(DATA / case / "spec.yaml")
    return render_haproxy(spec, material(spec), RenderOptions(DIRECTORY, RUNTIME, CASES[case]))


# -- whole files ----------------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(CASES))
def test_whole_files(case):
    rendering = render_case(case)
    expected_dir = DATA / case / "expected"
    texts = {f.path: f.content.decode() for f in rendering.files if not f.path.startswith("certs/")}
    if REGEN:
        for path, text in texts.items():
            target = expected_dir / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
    expected = {
        str(p.relative_to(expected_dir)): p.read_text() for p in expected_dir.rglob("*") if p.is_file()
    }
    assert sorted(texts) == sorted(expected), "a file appeared or went missing"
    for path, text in texts.items():
        if text != expected[path]:
            diff = "".join(difflib.unified_diff(
                expected[path].splitlines(True), text.splitlines(True), f"expected/{path}", f"rendered/{path}"))
            pytest.fail(f"{case}: {path} differs from the expected file:\n{diff}")


@pytest.mark.parametrize("case", ["tls", "stunnel"])
def test_certificate_files_hold_chain_and_key_0600(case):
    rendering = render_case(case)
    pems = [f for f in rendering.files if f.path.startswith("certs/")]
    assert pems
    for item in pems:
        assert item.mode == 0o600, item.path
        assert b"-----BEGIN CERTIFICATE-----" in item.content and b"-----BEGIN PRIVATE KEY-----" in item.content
        assert item.content.count(b"-----BEGIN CERTIFICATE-----") == 2, "leaf and CA"
    for item in rendering.files:
        if item.path.startswith("tickets/"):
            assert item.mode == 0o600


def test_write_creates_files_with_their_modes(tmp_path):
    rendering = render_case("tls")
    rendering.write(str(tmp_path))
    for item in rendering.files:
        path = tmp_path / item.path
        assert path.read_bytes() == item.content
        assert stat.S_IMODE(path.stat().st_mode) == item.mode, item.path
    assert stat.S_IMODE((tmp_path / "certs").stat().st_mode) == 0o700


def test_crt_list_gives_each_name_to_lbcores_certificate():
    spec = load_spec(DATA / "tls" / "spec.yaml")
    store = material(spec).stores["secure"]
    entries = dict(crt_list_entries(store))
    order = [index for index, _ in crt_list_entries(store)]
    assert order[0] == store.default_index == 1, "the default certificate comes first"
    assert sorted(entries[1]) == ["example.com", "www.example.com"]
    assert sorted(entries[2]) == ["example.com", "www.example.com"], "the ECDSA twin serves the same names"
    assert entries[0] == ["api.example.com", "*.api.example.com"]
    assert entries[3] == ["*.example.com"]
    assert entries[4] == ["shadow.example.com"], "www.example.com went to the first RSA certificate"
    # Every name goes where lbcore's SNI table sends an RSA-only client.
    for name in ("www.example.com", "api.example.com", "x.api.example.com", "shadow.example.com"):
        rsa = store.sni.select(name, offers_ecdsa=False)
        holders = [i for i, names in entries.items() if name in names or ("*." + name.split(".", 1)[1]) in names]
        assert store.certificates.index(rsa) in holders


def test_default_certificate_that_wins_no_name_keeps_its_names_out():
    certs = [certificate("www"), certificate("shadow")]
    store, _ = build_cert_store(certs, 1)
    entries = crt_list_entries(store)
    assert entries[0] == (1, ["shadow.example.com"])
    store, _ = build_cert_store([certificate("www"), certificate("www")], 1)
    assert crt_list_entries(store) == [(1, ["!www.example.com"]), (0, ["www.example.com", "example.com"])]


def test_stunnel_sni_services_exact_names_before_wildcards():
    store, _ = build_cert_store([certificate("www"), certificate("wild"), certificate("api")], 0)
    services = sni_services(store)
    names = [name for name, _ in services]
    assert names == ["api.example.com", "example.com", "www.example.com", "*.api.example.com", "*.example.com"]
    assert dict(services)["www.example.com"] == 0 and dict(services)["*.example.com"] == 1


# -- escaping -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("plain.value/x-1", "plain.value/x-1"),
        ("a b", "'a b'"),
        ("x#y", "'x#y'"),
        ("a$b", "'a$b'"),
        ("it's", '"it\'s"'),
        ('say "hi" $HOME \\', "'say \"hi\" $HOME \\'"),
        ("it's $x \"q\"\\", '"it\'s \\$x \\"q\\"\\\\"'),
        ("tab\there", '"tab\\there"'),
        ("bell\x07", '"bell\\x07"'),
        ("", "''"),
    ],
)
def test_word_quotes_for_the_line_parser(text, expected):
    assert word(text) == expected


def test_arg_quotes_for_the_argument_parser():
    assert arg("x-env") == "x-env"
    assert arg("a,b") == "'a,b'"
    assert arg("f(x)") == "'f(x)'"
    assert arg("a'b") == '"a\'b"'
    assert lf_literal("100% sure") == "100%% sure"


def test_durations_in_haproxy_units():
    assert [seconds(v) for v in (30, 1.5, 120, 3600, 86400, 0.001, 0)] == ["30s", "1500ms", "2m", "1h", "1d", "1ms", "0ms"]
    assert seconds(0.0005) is None


@given(st.lists(st.tuples(st.integers(100, 599), st.integers(0, 150)), min_size=1, max_size=4))
def test_status_regex_matches_exactly_the_ranges(items):
    text = ",".join(f"{low}-{min(599, low + span)}" if span else str(low) for low, span in items)
    ranges = parse_status_ranges(text)
    rx = re.compile(status_regex(text))
    for code in range(100, 600):
        assert (rx.match(str(code)) is not None) == any(lo <= code <= hi for lo, hi in ranges), (text, code)


# -- the normalised host (the regexes haproxy runs, checked against lbcore here) -------------

_HOST_RE1 = re.compile(r"^\[([^]]*).*$|^([^:]*):[^:]*$")


def haproxy_host(value: str) -> str:
    """What ``req.fhdr(host,-1),lower,regsub(...),regsub(...)`` gives (regsub replaces
    the first match; an unmatched group is empty)."""
    text = value.strip(" \t").lower()
    text = _HOST_RE1.sub(lambda m: (m.group(1) or "") + (m.group(2) or ""), text, count=1)
    return re.sub(r"\.+$", "", text, count=1)


@given(st.text(alphabet="aAb.:[]19-x", max_size=14))
def test_host_expression_agrees_with_split_host(value):
    assert haproxy_host(value) == split_host(value)


# -- ACL conditions -> haproxy lines ---------------------------------------------------------

LEAVES = [Leaf("req.hdr(x)", "str", False, (str(i),)) for i in range(6)]


def hconds(depth: int = 3):
    leaf = st.sampled_from(LEAVES) | st.sampled_from([True, False])
    return st.recursive(
        leaf,
        lambda inner: st.builds(HNot, inner)
        | st.builds(lambda xs: HAnd(tuple(xs)), st.lists(inner, min_size=1, max_size=4))
        | st.builds(lambda xs: HOr(tuple(xs)), st.lists(inner, min_size=1, max_size=4)),
        max_leaves=18,
    )


def evaluate(cond, truth):
    if isinstance(cond, bool):
        return cond
    if isinstance(cond, Leaf):
        return truth[cond]
    if isinstance(cond, HNot):
        return not evaluate(cond.item, truth)
    results = [evaluate(item, truth) for item in cond.items]
    return all(results) if isinstance(cond, HAnd) else any(results)


def evaluate_lines(writer: ConditionWriter, lines: list[list[str]], truth) -> bool:
    """Run the emitted lines as haproxy would: variables in order, then any use line."""
    by_name = {name: leaf for leaf, name in writer.names.items()}
    variables: dict[str, bool] = {}

    def literal(text: str) -> bool:
        negated = text.startswith("!")
        name = text.lstrip("!")
        if name in ("TRUE", "FALSE"):
            value = name == "TRUE"
        else:
            leaf = by_name[name]
            value = variables.get(leaf.expr, False) if leaf.expr.startswith("var(") else truth[leaf]
        return value != negated

    def holds(words: list[str]) -> bool:
        at = words.index("if")
        terms, current = [], []
        for item in words[at + 1 :]:
            if item == "||":
                terms.append(current)
                current = []
            else:
                current.append(item)
        terms.append(current)
        return any(all(literal(x) for x in term) for term in terms)

    for line in writer.var_lines:
        var = re.match(r"set-var\(([^)]*)\)", line[1]).group(1)  # type: ignore[union-attr]
        variables[f"var({var})"] = variables.get(f"var({var})", False) or holds(line)
    return any(holds(line) for line in lines)


@settings(max_examples=300)
@given(hconds(), st.lists(st.booleans(), min_size=len(LEAVES), max_size=len(LEAVES)))
def test_condition_lines_hold_exactly_when_the_condition_does(cond, values):
    truth = dict(zip(LEAVES, values))
    writer = ConditionWriter("txn", "http-request")
    lines = writer.condition("c", cond, ["use_backend", "b"])
    for line in lines + writer.var_lines + writer.acl_lines:
        assert len(line) <= MAX_WORDS + 4, line
    assert evaluate_lines(writer, lines, truth) == evaluate(cond, truth)


def test_a_product_of_alternatives_stays_linear():
    pairs = [HOr((Leaf("path", "beg", False, (f"/{i}a",)), Leaf("path", "beg", False, (f"/{i}b",)))) for i in range(12)]
    writer = ConditionWriter("txn", "http-request")
    lines = writer.condition("big", HAnd(tuple(pairs)), ["use_backend", "b"])
    assert sum(len(line) for line in lines + writer.var_lines) < 400  # 2**12 terms multiplied out would be ~50000 words


@pytest.mark.parametrize(
    "source, protocol, fragment",
    [
        ("host *.example.com", "http", ("reg", ("^[^.]+\\.example\\.com$",))),
        ("src ::/0 10.0.0.0/8", "http", None),
        ("method -i get", "http", ("str", ("get",))),
        ("ssl_sni a.example.com", "http", False),
    ],
)
def test_translations(source, protocol, fragment):
    result = translate(parse_condition(source), Context(protocol))
    if fragment is False:
        assert result is False
    elif fragment is None:
        assert isinstance(result, HOr)  # the IPv6 network that holds v4-mapped clients is guarded
        guarded = result.items[1]
        assert isinstance(guarded, HAnd) and isinstance(guarded.items[1], HNot)
        assert guarded.items[1].item.values == (str(ipaddress.ip_network("::ffff:0:0/96")),)
    else:
        assert (result.method, result.values) == fragment
        if source.startswith("method"):
            assert result.expr == "method,lower"


@pytest.mark.parametrize(
    "source, context, message",
    [
        ("ssl_sni api.example.com", Context("https", stunnel=True), "stunnel"),
        ("hdr(x) ''", Context("http"), "empty pattern"),
        ("host_beg ''", Context("http"), "empty pattern"),
        ("path /x", Context("tcp"), "no path"),
    ],
)
def test_inexpressible_conditions(source, context, message):
    with pytest.raises(Inexpressible, match=message):
        translate(parse_condition(source), context)


# -- refusals name the field ----------------------------------------------------------------


def _spec(**changes):
    listener = {"name": "web", "bind": "127.0.0.1:8080", "default_pool": "p"}
    pool = {"name": "p", "members": [{"name": "m", "address": "127.0.0.1:9000"}]}
    listener.update(changes.pop("listener", {}))
    pool.update(changes.pop("pool", {}))
    data = {"version": 1, "listeners": [listener], "pools": [pool, *changes.pop("pools", [])], **changes}
    return parse_spec(data)


@pytest.mark.parametrize(
    "spec_changes, path, message",
    [
        ({"listener": {"acls": [{"name": "x", "condition": "hdr(x-a) ''", "pool": "p"}]}},
         "listeners[web].acls[x].condition", "cannot be expressed in haproxy"),
        ({"listener": {"access_log": {"format": "json"}}}, "listeners[web].access_log.format", "json"),
        ({"listener": {"access_log": {"format": "text", "target": "file:/var/log/a.log"}}},
         "listeners[web].access_log.target", "log file"),
        ({"listener": {"timeouts": {"client": 0.0005}}}, "listeners[web].timeouts.client", "millisecond"),
        ({"pool": {"health": {"type": "tcp", "jitter": 0.1}},
          "pools": [{"name": "q", "health": {"type": "tcp", "jitter": 0.3}, "members": []}]},
         "pools[q].health.jitter", "spread-checks"),
        ({"pool": {"outlier": {"consecutive_errors": 2}}}, "pools[p].outlier", "active check"),
        ({"pool": {"health": {"type": "tcp"}, "outlier": {"consecutive_errors": 2, "consecutive_5xx": 2}}},
         "pools[p].outlier", "one layer"),
        ({"listener": {"protocol": "tcp"}, "pool": {"algorithm": "uri"}}, "pools[p].algorithm", "uri hashing"),
    ],
)
def test_refusals_name_the_field(spec_changes, path, message):
    spec = _spec(**spec_changes)
    with pytest.raises(RenderError) as caught:
        render_haproxy(spec, Material(), RenderOptions(DIRECTORY))
    matching = [issue for issue in caught.value.issues if issue.path == path]
    assert matching, caught.value.issues
    assert message in matching[0].message


def test_stunnel_refuses_what_it_cannot_carry():
    spec = load_spec(DATA / "tls" / "spec.yaml")
    with pytest.raises(RenderError) as caught:
        render_haproxy(spec, material(spec), RenderOptions(DIRECTORY, RUNTIME, "stunnel"))
    paths = {issue.path for issue in caught.value.issues}
    assert {
        "listeners[secure].acls[api-sni].condition",
        "listeners[secure].tls.client_auth",
        "listeners[secure].tls.ticket_keys",
    } <= paths


def test_per_worker_shards_render_as_haproxys_own_spreading():
    # haproxy spreads a bind's connections over its threads itself: nothing to add.
    def config(spec):
        rendering = render_haproxy(spec, Material(), RenderOptions(DIRECTORY))
        return rendering.text("haproxy.cfg").replace(spec.revision, "<revision>")

    assert config(_spec(listener={"shards": "per-worker"})) == config(_spec())


def test_an_unknown_setting_is_refused_not_dropped():
    from lbcore.control.drivers._render_haproxy import _unset_fields

    spec = _spec()
    issues: list = []
    _unset_fields(spec.pools[0], "pools[p]", ("name",), issues, "test")
    assert {issue.path for issue in issues} == {"pools[p].members"}, "only the field set away from its default"


# -- runtime API answers ---------------------------------------------------------------------

SHOW_PROC = """#<PID>          <type>          <reloads>       <uptime>        <version>
23312           master          3 [failed: 1]   0d00h10m33s     2.6.12-1+deb12u4
# workers
5441            worker          1               0d00h00m08s     2.6.12-1+deb12u4
# old workers
5307            worker          2               0d00h00m10s     2.6.12-1+deb12u4
# programs

"""


def test_show_proc_parsed():
    from lbcore.control.drivers._haproxy_runtime import parse_show_proc

    info = parse_show_proc(SHOW_PROC)
    assert (info.master_pid, info.reloads, info.failed) == (23312, 3, 1)
    assert info.workers == (5441,) and info.old_workers == (5307,)


def test_show_stat_rows_map_into_lbcores_stats():
    from lbcore.control.drivers._haproxy_runtime import parse_show_stat, stats_snapshot

    spec = _spec(
        listener={"protocol": "tcp"},
        pool={"health": {"type": "tcp"}, "members": [
            {"name": "m", "address": "127.0.0.1:9000"}, {"name": "n", "address": "127.0.0.1:9001", "weight": 4}]},
    )
    rendering = render_haproxy(spec, Material(), RenderOptions(DIRECTORY))
    layout = rendering.layout
    assert layout.backends == {"p": ("p:web",)}
    fields = "pxname,svname,qcur,scur,smax,stot,bin,bout,dreq,ereq,econ,eresp,wretr,wredis,status,weight,uweight,check_status,check_code,check_duration,hrsp_2xx,req_tot"
    csv = "\n".join([
        "# " + fields,
        "web,FRONTEND,,2,5,40,1000,2000,1,3,,,,,OPEN,,,,,,,",
        "p:web,m,0,1,2,30,700,1400,,,2,0,1,0,UP,1,1,L4OK,,0,,",
        "p:web,n,0,1,1,10,300,600,,,0,0,0,1,DOWN 1/2,4,4,L4CON,,1,,",
        "p:web,BACKEND,0,2,3,40,1000,2000,,,2,0,1,1,UP,5,5,,,,,",
    ])
    stats = stats_snapshot(spec, layout, parse_show_stat(csv), {"Version": "2.6.12", "Pid": "42", "Uptime_sec": "7", "Nbthread": "2"}, now=100.0)
    assert stats["info"] == {"version": "haproxy 2.6.12", "pid": 42, "uptime_s": 7, "started_at": 93.0,
                             "revision": spec.revision, "workers": 2}
    web = stats["listeners"][0]
    assert (web["requests"], web["conns_cur"], web["conns_max"], web["denied"], web["errors"]) == (40, 2, 5, 1, 3)
    pool = stats["pools"][0]
    assert (pool["requests"], pool["connect_errors"], pool["retries"], pool["redispatches"]) == (40, 2, 1, 1)
    assert pool["status"] == "DEGRADED"
    m, n = pool["members"]
    assert (m["status"], m["operating_status"], m["requests"], m["connect_errors"]) == ("UP", "ONLINE", 30, 2)
    assert (n["status"], n["operating_status"], n["weight"], n["check"]["code"]) == ("DOWN", "ERROR", 4, "L4CON")
    assert m["latency"] is None and pool["no_member"] is None
