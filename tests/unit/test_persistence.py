"""Session persistence: cookie insert/indirect/nocache and the source stick table."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lbcore.l7.balance import MemberState
from lbcore.l7.facts import RequestFacts
from lbcore.l7.persistence import CookiePersistence, SourcePersistence


@pytest.fixture
def pool() -> dict[str, MemberState]:
    return {name: MemberState(name) for name in ("w1", "w2", "w3")}


def with_cookies(*lines: str, header: str = "Cookie") -> RequestFacts:
    return RequestFacts("GET", "/", [(header, line) for line in lines])


# -- cookie: lookup -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "lines",
    [
        ("SRV=w2",),
        ("a=1; SRV=w2; b=2",),
        ("a=1;SRV=w2",),
        ('SRV="w2"',),
        ("a=1", "SRV=w2"),
        ("SRV=w2; SRV=w3",),  # the first of a repeated name wins (RFC 6265 5.4)
    ],
)
def test_cookie_lookup_finds_the_named_member(pool, lines):
    assert CookiePersistence().lookup(with_cookies(*lines), pool) is pool["w2"]


def test_cookie_lookup_header_name_is_case_insensitive(pool):
    assert CookiePersistence().lookup(with_cookies("SRV=w1", header="COOKIE"), pool) is pool["w1"]


@pytest.mark.parametrize("lines", [(), ("srv=w1",), ("SRVX=w1",), ("SRV=",), ("SRV=nobody",), ("a=SRV",)])
def test_cookie_lookup_misses(pool, lines):
    # Cookie names are case-sensitive (RFC 6265); unknown members and empty values miss.
    assert CookiePersistence().lookup(with_cookies(*lines), pool) is None


def test_cookie_lookup_custom_name(pool):
    persistence = CookiePersistence("lb_route")
    assert persistence.lookup(with_cookies("SRV=w1; lb_route=w3"), pool) is pool["w3"]


def test_cookie_reaches_a_draining_member_but_not_maint_or_down(pool):
    persistence = CookiePersistence()
    facts = with_cookies("SRV=w1")
    pool["w1"].admin = "drain"
    assert persistence.lookup(facts, pool) is pool["w1"]
    pool["w1"].weight = 0  # weight 0 takes no new sessions but keeps its old ones
    assert persistence.lookup(facts, pool) is pool["w1"]
    pool["w1"].admin = "maint"
    assert persistence.lookup(facts, pool) is None
    pool["w1"].admin = "enabled"
    pool["w1"].up = False
    assert persistence.lookup(facts, pool) is None


# -- cookie: insert -------------------------------------------------------------------------


def test_response_cookie_inserted_when_missing_or_different(pool):
    persistence = CookiePersistence()
    expected = ("Set-Cookie", "SRV=w1; Path=/; HttpOnly")
    assert persistence.response_cookie(with_cookies(), pool["w1"]) == expected
    assert persistence.response_cookie(with_cookies("SRV=w2"), pool["w1"]) == expected
    assert persistence.response_cookie(None, pool["w1"]) == expected
    assert persistence.response_cookie(with_cookies("a=b; SRV=w1"), pool["w1"]) is None
    assert persistence.response_cookie(with_cookies('SRV="w1"'), pool["w1"]) is None


def test_response_cookie_attributes(pool):
    persistence = CookiePersistence("route", max_age=3600, secure=True, httponly=False)
    assert persistence.response_cookie(with_cookies(), pool["w2"]) == (
        "Set-Cookie",
        "route=w2; Path=/; Max-Age=3600; Secure",
    )
    assert persistence.nocache_header == ("Cache-Control", 'no-cache="set-cookie"')


def test_response_cookie_refuses_an_unsafe_member_name():
    with pytest.raises(ValueError):
        CookiePersistence().response_cookie(None, MemberState("w1;\r\nX-Evil: 1"))


@pytest.mark.parametrize("kw", [{"cookie_name": "a b"}, {"cookie_name": "a=b"}, {"cookie_name": ""}, {"max_age": -1}])
def test_cookie_persistence_rejects_bad_settings(kw):
    with pytest.raises(ValueError):
        CookiePersistence(**kw)


# -- cookie: indirect (strip) -------------------------------------------------------------


@pytest.mark.parametrize(
    "headers, expected",
    [
        ([("Cookie", "SRV=w1")], []),
        ([("Cookie", "a=1; SRV=w1; b=2")], [("Cookie", "a=1; b=2")]),
        ([("cookie", 'SRV="w1"; a=1')], [("cookie", "a=1")]),
        ([("COOKIE", "a=1;SRV=w1")], [("COOKIE", "a=1")]),
        ([("Cookie", "SRV=w1; SRV=w2")], []),
        ([("Cookie", "a=1"), ("Cookie", "SRV=w1")], [("Cookie", "a=1")]),
        # Other cookies that merely contain the name pass through untouched.
        ([("Cookie", "SRVX=1;  a=SRV")], [("Cookie", "SRVX=1;  a=SRV")]),
        ([("Cookie", "srv=w1")], [("Cookie", "srv=w1")]),
        # Other headers, even with our cookie's text, are not touched.
        ([("Host", "a"), ("X-Note", "SRV=w1"), ("Cookie", "SRV=w1")], [("Host", "a"), ("X-Note", "SRV=w1")]),
        ([], []),
    ],
)
def test_strip_request_cookie(headers, expected):
    assert CookiePersistence().strip_request_cookie(headers) == expected


cookie_names = st.sampled_from(["a", "b", "SRV", "srv", "SRVX", "sid", "x_SRV"])
cookie_values = st.text("abcXYZ019-_.", max_size=6)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.tuples(cookie_names, cookie_values), min_size=1, max_size=4), max_size=3))
def test_strip_removes_exactly_our_cookie(lines):
    headers = [("Cookie", "; ".join(f"{n}={v}" for n, v in line)) for line in lines]
    stripped = CookiePersistence().strip_request_cookie(headers)
    others = [(n, v) for line in lines for n, v in line if n != "SRV"]
    remaining = [
        tuple(part.split("=", 1)) for _, value in stripped for part in value.split("; ")
    ]
    assert remaining == others
    assert all(value for _, value in stripped)  # no empty Cookie header is forwarded
    assert RequestFacts("GET", "/", stripped).cookie("SRV") is None


# -- source stick table -----------------------------------------------------------------


def client(ip: str) -> RequestFacts:
    return RequestFacts("GET", "/", [], client_ip=ip)


def test_source_records_and_finds_until_expiry(pool):
    table = SourcePersistence(timeout=100)
    facts = client("192.0.2.1")
    assert table.lookup(facts, pool, now=0) is None
    table.record(facts, pool["w2"], now=10)
    assert table.lookup(facts, pool, now=50) is pool["w2"]
    assert table.lookup(client("192.0.2.2"), pool, now=50) is None
    assert table.lookup(facts, pool, now=109.9) is pool["w2"]
    assert table.lookup(facts, pool, now=110) is None
    assert len(table) == 0  # the expired entry was dropped on lookup


def test_source_record_refreshes_and_rebinds(pool):
    table = SourcePersistence(timeout=100)
    facts = client("2001:db8::1")
    table.record(facts, pool["w1"], now=0)
    table.record(facts, pool["w1"], now=90)
    assert table.lookup(facts, pool, now=150) is pool["w1"]
    table.record(facts, pool["w3"], now=150)
    assert table.lookup(facts, pool, now=151) is pool["w3"]
    assert len(table) == 1


def test_source_v4_mapped_is_the_same_client(pool):
    table = SourcePersistence()
    table.record(client("::ffff:198.51.100.7"), pool["w2"], now=0)
    assert table.lookup(client("198.51.100.7"), pool, now=1) is pool["w2"]


def test_source_drain_still_reached_maint_and_removed_not(pool):
    table = SourcePersistence()
    facts = client("192.0.2.1")
    table.record(facts, pool["w1"], now=0)
    pool["w1"].admin = "drain"
    assert table.lookup(facts, pool, now=1) is pool["w1"]
    pool["w1"].admin = "maint"
    assert table.lookup(facts, pool, now=1) is None
    pool["w1"].admin = "enabled"
    assert table.lookup(facts, {"w2": pool["w2"]}, now=1) is None  # member gone from the pool


def test_source_without_client_address_is_a_no_op(pool):
    table = SourcePersistence()
    table.record(RequestFacts(), pool["w1"], now=0)
    assert len(table) == 0
    assert table.lookup(RequestFacts(), pool, now=0) is None


def test_source_evicts_the_least_recently_recorded_beyond_max_entries(pool):
    table = SourcePersistence(timeout=1000, max_entries=3)
    for i in range(4):
        table.record(client(f"10.0.0.{i}"), pool["w1"], now=i)
    assert len(table) == 3
    assert table.lookup(client("10.0.0.0"), pool, now=5) is None
    table.record(client("10.0.0.1"), pool["w2"], now=6)  # refreshed: now the newest
    table.record(client("10.0.0.9"), pool["w3"], now=7)
    assert table.lookup(client("10.0.0.2"), pool, now=8) is None
    assert table.lookup(client("10.0.0.1"), pool, now=8) is pool["w2"]


def test_source_record_and_expire_drop_expired_entries(pool):
    table = SourcePersistence(timeout=1000)
    for i in range(100):
        table.record(client(f"10.0.1.{i}"), pool["w1"], now=i)
    assert len(table) == 100
    table.record(client("10.0.2.1"), pool["w1"], now=1050)
    assert len(table) == 50  # entries recorded at 0..50 expired; 49 live + the new one
    table.expire(now=10_000)
    assert len(table) == 0


@pytest.mark.parametrize("kw", [{"timeout": 0}, {"max_entries": 0}])
def test_source_rejects_bad_settings(kw):
    with pytest.raises(ValueError):
        SourcePersistence(**kw)


@settings(max_examples=100, deadline=None)
@given(
    st.integers(1, 5),
    st.lists(
        st.tuples(st.booleans(), st.integers(0, 7), st.sampled_from(["w1", "w2", "w3"]), st.integers(0, 30)),
        max_size=60,
    ),
)
def test_source_table_matches_a_simple_model(max_entries, ops):
    pool = {name: MemberState(name) for name in ("w1", "w2", "w3")}
    timeout = 50
    table = SourcePersistence(timeout=timeout, max_entries=max_entries)
    recorded: dict[str, tuple[str, int]] = {}  # ip -> (member, time), in record order
    now = 0
    for is_record, host, name, step in ops:
        now += step
        ip = f"10.9.0.{host}"
        if is_record:
            table.record(client(ip), pool[name], now)
            recorded.pop(ip, None)
            recorded[ip] = (name, now)
            assert len(table) <= max_entries
        else:
            newest = list(recorded)[-max_entries:]
            entry = recorded.get(ip)
            expected = None
            if ip in newest and entry is not None and entry[1] + timeout > now:
                expected = pool[entry[0]]
            assert table.lookup(client(ip), pool, now) is expected


def test_source_table_keys_are_addresses_not_strings(pool):
    table = SourcePersistence()
    table.record(RequestFacts(client_ip=ipaddress.ip_address("192.0.2.5")), pool["w1"], now=0)
    assert table.lookup(client("192.0.2.5"), pool, now=0) is pool["w1"]
