"""Cascading attributes: the most specific level that sets a value wins (property-tested)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lbcore.control.cascade import ATTRS, DEFAULT_SOURCE, attrs_check, attrs_for, effective, level_value, resolve
from lbcore.spec import Defaults, HealthCheck, Limits, Listener, Member, Pool, Timeouts


def obj(kind: str, ident: str, attrs: dict | None = None, **fields):
    return SimpleNamespace(id=ident, name=f"{kind}-{ident}", attrs=attrs or {}, **fields)


def chain_for(attr_name: str):
    return ATTRS[attr_name].levels


# -- the property --------------------------------------------------------------------------------

@st.composite
def settings_along_a_chain(draw):
    """An attribute, and for each of its levels: set or not, with a value."""
    attr = ATTRS[draw(st.sampled_from(sorted(ATTRS)))]
    chosen = []
    for index, kind in enumerate(attr.levels):
        is_set = draw(st.booleans())
        value = draw(st.integers(min_value=1, max_value=10_000)) if is_set else None
        chosen.append((kind, f"{kind}{index}", is_set, value))
    return attr, chosen


@settings(max_examples=300, deadline=None)
@given(settings_along_a_chain())
def test_the_most_specific_set_level_wins(case):
    attr, chosen = case
    chain = []
    for kind, ident, is_set, value in chosen:
        field_name = attr.fields.get(kind)
        if field_name is not None:
            item = obj(kind, ident, **{field_name: value if is_set else None})
        else:
            item = obj(kind, ident, {attr.name: value} if is_set else {})
        chain.append((kind, item))
    result = resolve(attr, chain)
    set_levels = [(kind, ident, value) for kind, ident, is_set, value in chosen if is_set]
    if set_levels:
        kind, ident, value = set_levels[-1]  # levels run least specific first
        assert result == {"value": value, "source": {"kind": kind, "id": ident, "name": f"{kind}-{ident}"}}
    else:
        assert result == {"value": attr.default, "source": DEFAULT_SOURCE}


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["cluster", "instance", "listener"]), min_size=0, max_size=3, unique=True),
       st.integers(1, 10_000))
def test_a_level_missing_from_the_chain_is_skipped(levels, value):
    attr = ATTRS["maxconn"]
    chain = [(kind, obj(kind, kind, {"maxconn": value + i})) for i, kind in enumerate(k for k in attr.levels if k in levels)]
    result = resolve(attr, chain)
    if chain:
        assert result["source"]["kind"] == chain[-1][0]
        assert result["value"] == value + len(chain) - 1
    else:
        assert result["value"] == Defaults().maxconn


# -- the table -------------------------------------------------------------------------------------

def test_defaults_are_the_specs_own():
    assert ATTRS["timeout_connect"].default == Timeouts().connect
    assert ATTRS["timeout_client"].default == Timeouts().client
    assert ATTRS["timeout_tunnel"].default == Timeouts().tunnel
    assert ATTRS["health_interval"].default == HealthCheck(type="tcp").interval
    assert ATTRS["health_fall"].default == HealthCheck(type="tcp").fall
    assert ATTRS["algorithm"].default == Pool(name="p").algorithm
    assert ATTRS["weight"].default == Member(name="m", address="127.0.0.1:1").weight
    assert ATTRS["max_body"].default == Limits().max_body
    assert ATTRS["forwarded_headers"].default == list(Defaults().forwarded_headers)
    assert ATTRS["maxconn"].default == Defaults().maxconn
    listener = Listener(name="l", bind="127.0.0.1:80", default_pool="p")
    assert (ATTRS["backlog"].default, ATTRS["shards"].default) == (listener.backlog, listener.shards)


def test_sides_follow_the_spec():
    assert ATTRS["timeout_client"].levels == ("cluster", "instance", "listener")
    assert ATTRS["timeout_server"].levels == ("cluster", "pool")
    assert ATTRS["health_rise"].levels == ("cluster", "pool", "healthmonitor")
    assert ATTRS["weight"].levels == ("cluster", "pool", "member")
    assert {a.name for a in attrs_for("cluster")} == set(ATTRS)
    assert {a.name for a in attrs_for("member")} == {"weight"}
    assert {a.name for a in attrs_for("healthmonitor")} == {"health_interval", "health_timeout", "health_rise",
                                                            "health_fall"}


def test_fields_hold_some_levels():
    pool = obj("pool", "p", {"weight": 5}, algorithm="leastconn")
    assert level_value(ATTRS["algorithm"], "pool", pool) == (True, "leastconn")
    member = obj("member", "m", weight=None)
    assert level_value(ATTRS["weight"], "member", member) == (False, None)
    chain = [("cluster", obj("cluster", "c", {"weight": 3})), ("pool", pool), ("member", member)]
    assert resolve(ATTRS["weight"], chain) == {"value": 5, "source": {"kind": "pool", "id": "p", "name": "pool-p"}}


def test_effective_lists_what_the_object_takes_part_in():
    cluster = obj("cluster", "c", {"timeout_client": 10.0})
    instance = obj("instance", "i")
    listener = obj("listener", "l", {"maxconn": 50})
    out = effective([("cluster", cluster), ("instance", instance), ("listener", listener)])
    assert set(out) == {a.name for a in attrs_for("listener")}
    assert out["timeout_client"] == {"value": 10.0, "source": {"kind": "cluster", "id": "c", "name": "cluster-c"}}
    assert out["maxconn"]["source"]["kind"] == "listener"
    assert out["timeout_keepalive"] == {"value": Timeouts().keepalive, "source": DEFAULT_SOURCE}


# -- validation of attrs ------------------------------------------------------------------------------

def test_attrs_are_canonical():
    check = attrs_check("cluster")
    assert check({"timeout_connect": "500ms", "algorithm": "HDR( X-User )".lower(), "max_body": "10m"}) == {
        "timeout_connect": 0.5, "algorithm": "hdr(x-user)", "max_body": 10 << 20}
    assert check({"forwarded_headers": ["X-Forwarded-Proto", "x-forwarded-for"]}) == {
        "forwarded_headers": ["x-forwarded-for", "x-forwarded-proto"]}
    assert check({"maxconn": None}) == {"maxconn": None}  # null: unset (merge patch)


@pytest.mark.parametrize("kind, attrs, message", [
    ("cluster", {"timeout_conect": 1}, "unknown attribute (did you mean 'timeout_connect'?)"),
    ("listener", {"timeout_server": 1}, "a backend attribute, set on a cluster or pool, not a listener"),
    ("pool", {"timeout_client": 1}, "a frontend attribute, set on a cluster or instance or listener, not a pool"),
    ("pool", {"algorithm": "leastconn"}, "set the pool's own algorithm field"),
    ("member", {"weight": 3}, "set the member's own weight field"),
    ("cluster", {"timeout_connect": "soon"}, "invalid duration"),
    ("cluster", {"maxconn": 0}, "must be 1..10000000"),
    ("cluster", {"algorithm": "fastest"}, "invalid algorithm"),
    ("instance", {"shards": "by-thread"}, "shards: must be one of shared, per-worker"),
    ("listener", {"backlog": 0}, "backlog: must be 1..65535"),
    ("pool", {"backlog": 10}, "a frontend attribute"),
])
def test_attrs_refused_with_reasons(kind, attrs, message):
    with pytest.raises(ValueError) as caught:
        attrs_check(kind)(attrs)
    assert message in str(caught.value)
