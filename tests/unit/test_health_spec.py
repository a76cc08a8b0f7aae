"""The Spec's health fields: pool ``outlier`` and ``slow_start``, member ``monitor_port``
(and ``check_address``): reading, errors with paths, round trip, diff."""

from __future__ import annotations

import copy
import json
import pickle
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lbcore.spec import Address, Member, Outlier, Pool, SpecError, diff, format_diff, parse_spec
from tests.unit.test_spec import SETTINGS, base, errors, spec_data


def with_pool(**fields: Any) -> dict[str, Any]:
    data = base()
    data["pools"][0].update(fields)
    return data


def test_defaults_are_off() -> None:
    www = parse_spec(base()).pool("www")
    assert www.outlier is None and www.slow_start == 0.0 and www.health is None
    member = www.members[0]
    assert member.monitor_port is None and member.check_address == member.address


def test_outlier_read_with_defaults() -> None:
    www = parse_spec(with_pool(outlier={})).pool("www")
    assert www.outlier == Outlier(consecutive_errors=5, consecutive_5xx=0, ejection_time=30.0)
    www = parse_spec(with_pool(outlier={"consecutive_errors": 0, "consecutive_5xx": 3, "ejection_time": "500ms"})).pool("www")
    assert www.outlier == Outlier(0, 3, 0.5)
    assert parse_spec(with_pool(outlier=None)).pool("www").outlier is None


def test_slow_start_read() -> None:
    assert parse_spec(with_pool(slow_start="1m")).pool("www").slow_start == 60.0
    assert parse_spec(with_pool(slow_start=0)).pool("www").slow_start == 0.0
    assert parse_spec(with_pool(slow_start="250ms")).pool("www").slow_start == 0.25


def test_check_address() -> None:
    plain = Member("m", Address("127.0.0.1", 80))
    assert plain.check_address == Address("127.0.0.1", 80)
    port = Member("m", Address("127.0.0.1", 80), monitor_port=8080)
    assert port.check_address == Address("127.0.0.1", 8080)
    elsewhere = Member("m", Address("127.0.0.1", 80), monitor_address="10.0.0.9:9000")  # type: ignore[arg-type]
    assert elsewhere.check_address == Address("10.0.0.9", 9000)
    v6 = Member("m", Address("::1", 80), monitor_port=81)
    assert str(v6.check_address) == "[::1]:81"


M0 = "pools.0.members.0"
ERROR_CASES = [
    ({"outlier": {"consecutive_errors": 0}},
     "pools[0].outlier: consecutive_errors and consecutive_5xx are both 0: nothing would eject (write outlier: null for off)"),
    ({"outlier": {"consecutive_errors": -1}}, "pools[0].outlier.consecutive_errors: -1 is out of range (0..10000)"),
    ({"outlier": {"consecutive_5xx": "3"}}, "pools[0].outlier.consecutive_5xx: expected an integer, got string '3'"),
    ({"outlier": {"ejection_time": "0s"}}, "pools[0].outlier.ejection_time: must be more than 0"),
    ({"outlier": {"ejection_time": "soon"}},
     "pools[0].outlier.ejection_time: invalid duration 'soon' (use 5s, 500ms, 2m, 1h, 1d or a number of seconds)"),
    ({"outlier": {"ejection": "10s"}}, "pools[0].outlier.ejection: unknown key (did you mean 'ejection_time'?)"),
    ({"outlier": True}, "pools[0].outlier: expected a mapping, got boolean true"),
    ({"slow_start": "-5s"}, "pools[0].slow_start: invalid duration '-5s' (use 5s, 500ms, 2m, 1h, 1d or a number of seconds)"),
    ({"slow_start": True}, "pools[0].slow_start: expected a duration like 5s or 500ms, got boolean true"),
    ({"slowstart": "5s"}, "pools[0].slowstart: unknown key (did you mean 'slow_start'?)"),
]
MEMBER_CASES = [
    ({"monitor_port": 0}, "pools[0].members[0].monitor_port: invalid port 0 (1..65535)"),
    ({"monitor_port": 70000}, "pools[0].members[0].monitor_port: invalid port 70000 (1..65535)"),
    ({"monitor_port": "8080"}, "pools[0].members[0].monitor_port: expected a port number, got string '8080'"),
    ({"monitor_port": 8080, "monitor_address": "127.0.0.1:9000"},
     "pools[0].members[0].monitor_port: monitor_address 127.0.0.1:9000 has its own port: set monitor_address or monitor_port, not both"),
    ({"monitor_prot": 8080}, "pools[0].members[0].monitor_prot: unknown key (did you mean 'monitor_port'?)"),
]


@pytest.mark.parametrize(("fields", "expected"), ERROR_CASES, ids=[case[1][:60] for case in ERROR_CASES])
def test_pool_errors(fields: dict[str, Any], expected: str) -> None:
    assert errors(with_pool(**fields)) == [expected]


@pytest.mark.parametrize(("fields", "expected"), MEMBER_CASES, ids=[case[1][:70] for case in MEMBER_CASES])
def test_member_errors(fields: dict[str, Any], expected: str) -> None:
    data = base()
    data["pools"][0]["members"][0].update(fields)
    assert errors(data) == [expected]


def test_every_problem_at_once() -> None:
    data = with_pool(outlier={"consecutive_errors": 0, "consecutive_5xx": 0, "ejection_time": "0s"}, slow_start="x")
    data["pools"][0]["members"][1].update(monitor_port=0)
    assert errors(data) == [  # in file order: members come first in base()
        "pools[0].members[1].monitor_port: invalid port 0 (1..65535)",
        "pools[0].outlier.ejection_time: must be more than 0",
        "pools[0].outlier: consecutive_errors and consecutive_5xx are both 0: nothing would eject (write outlier: null for off)",
        "pools[0].slow_start: invalid duration 'x' (use 5s, 500ms, 2m, 1h, 1d or a number of seconds)",
    ]


def test_programs_are_checked_too() -> None:
    with pytest.raises(SpecError) as info:
        Outlier(0, 0, ejection_time=-1)
    assert [str(issue) for issue in info.value.errors] == [
        "ejection_time: duration must not be negative, got -1",
        "consecutive_errors and consecutive_5xx are both 0: nothing would eject (write outlier: null for off)",
    ]
    with pytest.raises(SpecError, match="nothing would eject"):
        Outlier(0, 0)
    assert Outlier(ejection_time="1m").ejection_time == 60.0  # type: ignore[arg-type]
    with pytest.raises(SpecError, match="monitor_port: monitor_address 127.0.0.1:1 has its own port"):
        Member("m", Address("127.0.0.1", 80), monitor_address=Address("127.0.0.1", 1), monitor_port=2)
    pool = Pool("p", slow_start="30s", outlier=Outlier())  # type: ignore[arg-type]
    assert pool.slow_start == 30.0 and hash(pool) == hash(Pool("p", slow_start=30.0, outlier=Outlier(5, 0, 30.0)))
    with pytest.raises(SpecError, match="slow_start"):
        Pool("p", slow_start=-1.0)


def test_to_dict_and_round_trip() -> None:
    data = with_pool(outlier={"consecutive_5xx": 10}, slow_start="20s")
    data["pools"][0]["members"][0]["monitor_port"] = 9101
    spec = parse_spec(data)
    out = spec.to_dict()
    www = next(pool for pool in out["pools"] if pool["name"] == "www")
    assert www["outlier"] == {"consecutive_errors": 5, "consecutive_5xx": 10, "ejection_time": 30.0}
    assert www["slow_start"] == 20.0 and www["members"][0]["monitor_port"] == 9101
    assert parse_spec(out) == spec and parse_spec(json.loads(json.dumps(out))).revision == spec.revision
    assert spec.revision != parse_spec(base()).revision


def test_diff() -> None:
    old = parse_spec(base())
    data = with_pool(outlier={}, slow_start="30s")
    data["pools"][0]["members"][0]["monitor_port"] = 9101
    new = parse_spec(data)
    assert format_diff(diff(old, new)) == "\n".join([
        "+ pools[www].members[w1].monitor_port: 9101",
        "+ pools[www].outlier",
        "~ pools[www].slow_start: 0s -> 30s",
    ])
    changed = copy.deepcopy(data)
    changed["pools"][0]["outlier"] = {"ejection_time": "2m", "consecutive_5xx": 3}
    del changed["pools"][0]["members"][0]["monitor_port"]
    assert format_diff(diff(new, parse_spec(changed))) == "\n".join([
        "- pools[www].members[w1].monitor_port: 9101",
        "~ pools[www].outlier.consecutive_5xx: 0 -> 3",
        "~ pools[www].outlier.ejection_time: 30s -> 2m",
    ])


health_fields = st.fixed_dictionaries({}, optional={
    "outlier": st.one_of(st.none(), st.fixed_dictionaries({}, optional={
        "consecutive_errors": st.integers(1, 50), "consecutive_5xx": st.integers(0, 50),
        "ejection_time": st.sampled_from(["30s", "1m", "250ms", 5])})),
    "slow_start": st.sampled_from([0, "0s", "10s", "1m", "1500ms"]),
})


@SETTINGS
@given(spec_data(), st.data())
def test_round_trip_with_health_fields(data: dict[str, Any], draw: Any) -> None:
    for pool in data["pools"]:
        pool.update(draw.draw(health_fields))
        for member in pool["members"]:
            if "monitor_address" not in member and draw.draw(st.booleans()):
                member["monitor_port"] = draw.draw(st.integers(1, 65535))
    spec = parse_spec(data)
    out = spec.to_dict()
    assert parse_spec(out) == spec and diff(spec, parse_spec(out)) == []
    assert pickle.loads(pickle.dumps(spec)) == spec
    for pool in spec.pools:
        for member in pool.members:
            expected = member.monitor_address or Address(member.address.host, member.monitor_port or member.address.port)
            assert member.check_address == expected
