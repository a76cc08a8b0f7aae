"""lbcore.proxy.runtime_api: every command, every error, the CSV/JSON shapes, the Session.

``FakeController`` and ``make_snapshot`` are shared with the admin listener, runtime
socket and stats page tests: a Controller over a snapshot dict the test can change.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import threading
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lbcore.proxy import runtime_api as R
from lbcore.proxy.stats import latency_dict, responses_dict

NOW = 1_700_000_100.0  # the "current time" of the fixture snapshot (epoch seconds)
ADMIN_STATUS = {"drain": "DRAIN", "maint": "MAINT"}


def _member(name: str, address: str, *, status: str, admin: str = "enabled", weight: int = 10, backup: bool = False,
            check: dict[str, Any] | None = None, requests: int = 0, latency: list[int] | None = None) -> dict[str, Any]:
    row = {"latency": latency or [0] * 14, "latency_sum_us": 0}
    if latency:
        row["latency_sum_us"] = 12_345 * sum(latency)
    return {
        "name": name, "address": address, "weight": weight, "effective_weight": weight, "backup": backup,
        "admin": admin, "status": status,
        "operating_status": {"UP": "ONLINE", "DOWN": "ERROR", "DRAIN": "DRAINING", "MAINT": "OFFLINE",
                             "NO_CHECK": "NO_MONITOR"}[status],
        "check": check, "active": requests % 3, "conns_total": requests + 1, "requests": requests,
        "responses": responses_dict([0, requests - requests // 10, 0, requests // 10, 0, 0]),
        "connect_errors": 1 if status == "DOWN" else 0, "response_errors": 0,
        "bytes_in": requests * 1000, "bytes_out": requests * 200,
        "latency": latency_dict(row),
    }


def _check(code: str, status: int | None, duration_ms: float, detail: str, ago: float) -> dict[str, Any]:
    return {"enabled": True, "code": code, "status": status, "duration_ms": duration_ms, "detail": detail,
            "at": NOW - ago, "rise": 2, "fall": 3}


def make_snapshot() -> dict[str, Any]:
    """Two listeners, two pools, one member in each status."""
    return {
        "info": {"version": "0.1.0", "pid": 4242, "uptime_s": 3723.4, "revision": "0123456789abcdef", "workers": 2,
                 "started_at": NOW - 3723.4},
        "listeners": [
            {"name": "web", "protocol": "http", "bind": "127.0.0.1:8080", "status": "OPEN", "conns_cur": 3,
             "conns_max": 9, "conns_total": 120, "requests": 300, "responses": responses_dict([0, 280, 5, 10, 4, 1]),
             "bytes_in": 45_000, "bytes_out": 1_300_000, "denied": 2, "errors": 1,
             "tls": {"full": 0, "resumed": 0, "failed": 0}},
            {"name": "db", "protocol": "tcp", "bind": "127.0.0.1:5432", "status": "OPEN", "conns_cur": 1,
             "conns_max": 2, "conns_total": 7, "requests": 0, "responses": responses_dict([0] * 6),
             "bytes_in": 700, "bytes_out": 900, "denied": 0, "errors": 0, "tls": {"full": 0, "resumed": 0, "failed": 0}},
        ],
        "pools": [
            {"name": "www", "algorithm": "roundrobin", "status": "UP", "requests": 290,
             "responses": responses_dict([0, 270, 5, 10, 4, 1]), "connect_errors": 1, "response_errors": 2,
             "retries": 3, "redispatches": 1, "queued": 4, "queue_timeouts": 0, "no_member": 0, "active": 2,
             "members": [
                 _member("w1", "127.0.0.1:9001", status="UP", requests=200, latency=[5, 60, 100, 30, 5] + [0] * 9,
                         check=_check("L7OK", 200, 1.2, "HTTP status 200", 1.5)),
                 _member("w2", "127.0.0.1:9002", status="DRAIN", admin="drain", requests=90,
                         check=_check("L7OK", 200, 0.8, "HTTP status 200", 0.5)),
                 _member("w3", "127.0.0.1:9003", status="NO_CHECK", backup=True, weight=5),
             ]},
            {"name": "api", "algorithm": "leastconn", "status": "DOWN", "requests": 10,
             "responses": responses_dict([0, 0, 0, 0, 10, 0]), "connect_errors": 12, "response_errors": 0,
             "retries": 9, "redispatches": 0, "queued": 0, "queue_timeouts": 0, "no_member": 10, "active": 0,
             "members": [
                 _member("a1", "127.0.0.1:9101", status="DOWN", weight=1,
                         check=_check("L4CON", None, 0.3, "Connection refused, with \"quotes\", commas", 2.0)),
                 _member("a2", "127.0.0.1:9102", status="MAINT", admin="maint", weight=1),
             ]},
        ],
    }


class FakeController:
    """A Controller over a snapshot; thread-safe, so a server thread can read it while
    the test changes it. Records every change it is asked for."""

    def __init__(self, snapshot: dict[str, Any] | None = None) -> None:
        self.snap = snapshot or make_snapshot()
        self.lock = threading.Lock()
        self.calls: list[tuple[Any, ...]] = []
        self.configured = {(p["name"], m["name"]): (m["admin"], m["weight"])
                           for p in self.snap["pools"] for m in p["members"]}
        self.health = {key: True for key in self.configured}
        self.health_status = {(p["name"], m["name"]): m["status"] for p in self.snap["pools"] for m in p["members"]}
        self.fail_with: Exception | None = None

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            if self.fail_with is not None:
                raise self.fail_with
            return copy.deepcopy(self.snap)

    def member(self, pool: str, member: str) -> dict[str, Any]:
        for p in self.snap["pools"]:
            if p["name"] == pool:
                for m in p["members"]:
                    if m["name"] == member:
                        return m
        raise KeyError(f"{pool}/{member}")

    def change(self, pool: str, member: str, **fields: Any) -> None:
        """The test's hand on the engine: set fields of a member (status="DOWN")."""
        with self.lock:
            self.member(pool, member).update(fields)

    def set_member_admin(self, pool: str, member: str, state: str) -> None:
        if state not in ("ready", "enabled", "drain", "maint"):
            raise ValueError(f"unknown admin state {state!r}")
        with self.lock:
            m = self.member(pool, member)
            self.calls.append(("admin", pool, member, state))
            m["admin"] = "enabled" if state == "ready" else state
            m["status"] = ADMIN_STATUS.get(m["admin"], self.health_status[(pool, member)])

    def set_member_weight(self, pool: str, member: str, weight: int) -> None:
        if not 0 <= weight <= 256:
            raise ValueError(f"weight {weight} is out of range (0..256)")
        with self.lock:
            m = self.member(pool, member)
            self.calls.append(("weight", pool, member, weight))
            m["weight"] = m["effective_weight"] = weight

    def set_health_enabled(self, pool: str, member: str, enabled: bool) -> None:
        with self.lock:
            self.member(pool, member)
            self.calls.append(("health", pool, member, enabled))
            self.health[(pool, member)] = enabled

    def servers_state(self) -> list[dict[str, Any]]:
        with self.lock:
            rows = []
            for p in self.snap["pools"]:
                for m in p["members"]:
                    key = (p["name"], m["name"])
                    admin, weight = self.configured[key]
                    runtime = (m["admin"], m["weight"], self.health[key]) != (admin, weight, True)
                    rows.append({
                        "pool": p["name"], "member": m["name"], "address": m["address"], "admin": m["admin"],
                        "weight": m["weight"], "configured_admin": admin, "configured_weight": weight,
                        "health_enabled": self.health[key], "status": m["status"],
                        "source": "runtime" if runtime else "spec",
                    })
            return rows


@pytest.fixture
def ctl() -> FakeController:
    return FakeController()


def run(ctl: FakeController, line: str) -> str:
    reply = R.execute(line, ctl)
    assert reply.endswith("\n")
    return reply


def assert_error(reply: str, *fragments: str) -> None:
    assert R.is_error(reply), reply
    assert reply.count("\n") == 1, f"an error is one line: {reply!r}"
    for fragment in fragments:
        assert fragment in reply, (fragment, reply)


def parse_csv(text: str) -> list[dict[str, str]]:
    assert text.startswith("# ")
    return list(csv.DictReader(io.StringIO(text[2:])))


# -- help, info --------------------------------------------------------------------------------


def test_help_lists_every_command(ctl):
    reply = run(ctl, "help")
    for syntax in R.GRAMMAR:
        assert f"  {syntax.usage} " in reply
    assert reply.splitlines()[0] == "The following commands are valid:"
    assert len(reply.splitlines()) == len(R.GRAMMAR) + 1


def test_show_info_text(ctl):
    assert run(ctl, "show info") == (
        "Name: lbcore\n"
        "Version: 0.1.0\n"
        "Revision: 0123456789abcdef\n"
        "Pid: 4242\n"
        "Workers: 2\n"
        "Start_time_sec: 1699996376\n"
        "Uptime: 0d 1h02m03s\n"
        "Uptime_sec: 3723\n"
        "Listeners: 2\n"
        "Pools: 2\n"
        "Members: 5\n"
        "Members_up: 3\n"
        "CurrConns: 4\n"
        "CumConns: 127\n"
        "CumReq: 300\n"
    )


def test_show_info_json(ctl):
    info = json.loads(run(ctl, "show info json"))
    assert info["Pid"] == 4242 and info["Uptime_sec"] == 3723 and info["CumConns"] == 127
    assert list(info) == list(R.info_fields(ctl.snapshot()))


def test_show_info_with_days_and_missing_fields():
    fake = FakeController({"info": {"uptime_s": 2 * 86400 + 3 * 3600 + 4 * 60 + 5}, "listeners": [], "pools": []})
    reply = run(fake, "show info")
    assert "Uptime: 2d 3h04m05s\n" in reply
    assert "Version: \n" in reply and "Members: 0\n" in reply


# -- show stat ---------------------------------------------------------------------------------


def test_show_stat_csv_header_and_row_order(ctl):
    text = run(ctl, "show stat")
    assert text == run(ctl, "show stat csv")
    header = text.splitlines()[0]
    assert header.startswith("# pxname,svname,scur,smax,stot,bin,bout,dreq,ereq,econ,eresp,wretr,wredis,status,weight,")
    for field in ("chkfail", "lastchg", "check_status", "check_code", "check_duration", "hrsp_1xx", "hrsp_5xx",
                  "hrsp_other", "req_tot", "act", "bck"):
        assert field in R.STAT_FIELDS
    rows = parse_csv(text)
    assert [(r["pxname"], r["svname"], r["type"]) for r in rows] == [
        ("web", "FRONTEND", "0"), ("db", "FRONTEND", "0"),
        ("www", "w1", "2"), ("www", "w2", "2"), ("www", "w3", "2"), ("www", "BACKEND", "1"),
        ("api", "a1", "2"), ("api", "a2", "2"), ("api", "BACKEND", "1"),
    ]
    assert all(list(row) == list(R.STAT_FIELDS) for row in rows)


def test_show_stat_csv_matches_the_snapshot(ctl):
    snap = ctl.snapshot()
    rows = {(r["pxname"], r["svname"]): r for r in parse_csv(run(ctl, "show stat"))}
    for listener in snap["listeners"]:
        row = rows[(listener["name"], "FRONTEND")]
        for field, key in (("scur", "conns_cur"), ("smax", "conns_max"), ("stot", "conns_total"), ("bin", "bytes_in"),
                           ("bout", "bytes_out"), ("dreq", "denied"), ("ereq", "errors"), ("req_tot", "requests")):
            assert row[field] == str(listener[key]), field
        assert row["status"] == "OPEN" and row["mode"] == listener["protocol"]
        for klass, count in listener["responses"].items():
            assert row[f"hrsp_{klass}"] == str(count)
    for pool in snap["pools"]:
        backend = rows[(pool["name"], "BACKEND")]
        members = pool["members"]
        assert backend["req_tot"] == str(pool["requests"])
        assert backend["wretr"] == str(pool["retries"]) and backend["wredis"] == str(pool["redispatches"])
        assert backend["econ"] == str(pool["connect_errors"]) and backend["eresp"] == str(pool["response_errors"])
        assert backend["stot"] == str(sum(m["conns_total"] for m in members))
        assert backend["bin"] == str(sum(m["bytes_in"] for m in members))
        assert backend["algo"] == pool["algorithm"] and backend["status"] == pool["status"]
        for member in members:
            row = rows[(pool["name"], member["name"])]
            assert row["status"] == member["status"] and row["addr"] == member["address"]
            assert row["weight"] == str(member["effective_weight"]) and row["uweight"] == str(member["weight"])
            assert (row["act"], row["bck"]) == (("0", "1") if member["backup"] else ("1", "0"))
            assert row["scur"] == str(member["active"]) and row["req_tot"] == str(member["requests"])
            assert row["admin"] == member["admin"] and row["operating_status"] == member["operating_status"]
            check = member["check"]
            if check is None:
                assert row["check_status"] == row["check_code"] == row["check_duration"] == row["last_chk"] == ""
            else:
                assert row["check_status"] == check["code"]
                assert row["check_code"] == ("" if check["status"] is None else str(check["status"]))
                assert float(row["check_duration"]) == check["duration_ms"]
                assert row["last_chk"] == check["detail"]  # quotes and commas survive the CSV
                assert (row["check_rise"], row["check_fall"]) == ("2", "3")
    # backend weight and counts: usable (UP, NO_CHECK) members, primaries' weights only
    assert (rows[("www", "BACKEND")]["weight"], rows[("www", "BACKEND")]["act"], rows[("www", "BACKEND")]["bck"]) == ("10", "1", "1")
    assert (rows[("api", "BACKEND")]["weight"], rows[("api", "BACKEND")]["act"]) == ("0", "0")


def test_show_stat_optional_member_fields():
    snap = make_snapshot()
    snap["pools"][0]["members"][0].update(check_failures=4, last_change=NOW - 65)
    rows = R.stat_rows(snap, now=NOW)
    w1 = next(r for r in rows if r["svname"] == "w1")
    w2 = next(r for r in rows if r["svname"] == "w2")
    assert (w1["chkfail"], w1["lastchg"]) == (4, 65)
    assert (w2["chkfail"], w2["lastchg"]) == (None, None)


def test_show_stat_json_is_the_csv_rows_typed(ctl):
    rows = json.loads(run(ctl, "show stat json"))
    csv_rows = parse_csv(run(ctl, "show stat"))
    assert len(rows) == len(csv_rows) == 9
    for typed, text in zip(rows, csv_rows):
        assert list(typed) == list(R.STAT_FIELDS)
        assert {k: R._cell(v) for k, v in typed.items()} == text
    assert rows[0]["scur"] == 3 and rows[2]["check_duration"] == 1.2 and rows[2]["lastchg"] is None


def test_show_stat_empty_engine():
    fake = FakeController({"info": {}, "listeners": [], "pools": []})
    assert run(fake, "show stat") == "# " + ",".join(R.STAT_FIELDS) + "\n"
    assert json.loads(run(fake, "show stat json")) == []


def test_show_stat_unknown_format(ctl):
    assert_error(run(ctl, "show stat xml"), "show stat: unknown format 'xml'", "csv, json")
    assert_error(run(ctl, "show info yaml"), "show info: unknown format 'yaml'")


# -- show servers state ----------------------------------------------------------------------


SERVERS_STATE = (
    "1\n"
    "# pool member address status admin configured_admin weight configured_weight health source overrides\n"
    "www w1 127.0.0.1:9001 UP enabled enabled 10 10 enabled spec -\n"
    "www w2 127.0.0.1:9002 DRAIN drain drain 10 10 enabled spec -\n"
    "www w3 127.0.0.1:9003 NO_CHECK enabled enabled 5 5 enabled spec -\n"
    "api a1 127.0.0.1:9101 DOWN enabled enabled 1 1 enabled spec -\n"
    "api a2 127.0.0.1:9102 MAINT maint maint 1 1 enabled spec -\n"
)


def test_show_servers_state(ctl):
    assert run(ctl, "show servers state") == SERVERS_STATE


def test_show_servers_state_of_one_pool(ctl):
    lines = run(ctl, "show servers state api").splitlines()
    assert lines[:2] == SERVERS_STATE.splitlines()[:2]
    assert [line.split()[:2] for line in lines[2:]] == [["api", "a1"], ["api", "a2"]]
    assert_error(run(ctl, "show servers state nope"), "no pool 'nope'", "pools: api, www")


def test_show_servers_state_names_runtime_overrides(ctl):
    run(ctl, "set server www/w1 state drain")
    run(ctl, "set server www/w1 weight 3")
    run(ctl, "disable health api/a1")
    run(ctl, "set server api/a2 weight 7")
    lines = run(ctl, "show servers state").splitlines()
    assert lines[2] == "www w1 127.0.0.1:9001 DRAIN drain enabled 3 10 enabled runtime admin,weight"
    assert lines[5] == "api a1 127.0.0.1:9101 DOWN enabled enabled 1 1 disabled runtime health"
    assert lines[6] == "api a2 127.0.0.1:9102 MAINT maint maint 7 1 enabled runtime weight"


def test_servers_state_overrides_from_the_controller_or_configured_health():
    row = {"pool": "p", "member": "m", "admin": "enabled", "configured_admin": "enabled", "weight": 1,
           "configured_weight": 1, "health_enabled": False, "source": "runtime"}
    assert R.servers_state_values(row)["overrides"] == "health"
    assert R.servers_state_values({**row, "configured_health": False})["overrides"] == ""
    assert R.servers_state_values({**row, "overrides": ["weight"]})["overrides"] == "weight"
    assert R.servers_state_values({**row, "overrides": ["admin", "health_disabled"]})["overrides"] == "admin,health"


# -- set server / enable / disable ---------------------------------------------------------------


@pytest.mark.parametrize("word, state", [("ready", "enabled"), ("drain", "drain"), ("maint", "maint"),
                                         ("READY", "enabled"), ("enabled", "enabled")])
def test_set_server_state(ctl, word, state):
    assert run(ctl, f"set server www/w1 state {word}") == f"www/w1: state {state}\n"
    assert ctl.calls == [("admin", "www", "w1", state)]


def test_enable_and_disable_server_are_ready_and_maint(ctl):
    assert run(ctl, "disable server www/w1") == "www/w1: state maint\n"
    assert run(ctl, "enable server www/w1") == "www/w1: state enabled\n"
    assert ctl.calls == [("admin", "www", "w1", "maint"), ("admin", "www", "w1", "enabled")]
    assert ctl.member("www", "w1")["status"] == "UP"


def test_set_server_state_errors(ctl):
    assert_error(run(ctl, "set server www/w1 state up"), "unknown state 'up'", "ready, drain or maint")
    assert_error(run(ctl, "set server nope/w1 state drain"), "no pool 'nope'", "pools: api, www")
    assert_error(run(ctl, "set server www/zz state drain"), "no member 'zz' in pool 'www'", "members: w1, w2, w3")
    assert_error(run(ctl, "set server www state drain"), "expected POOL/MEMBER, got 'www'")
    assert_error(run(ctl, "set server www/w1/x state drain"), "expected POOL/MEMBER")
    assert_error(run(ctl, "set server /w1 state drain"), "expected POOL/MEMBER")
    assert_error(run(ctl, "set server www/w1 state"), "usage: set server <POOL/MEMBER> state <ready|drain|maint>")
    assert_error(run(ctl, "set server www/w1 colour red"), "usage: set server")
    assert ctl.calls == []


def test_set_weight(ctl):
    assert run(ctl, "set server www/w1 weight 0") == "www/w1: weight 0\n"
    assert run(ctl, "set server www/w1 weight 256") == "www/w1: weight 256\n"
    assert run(ctl, "set server www/w1 weight 50%") == "www/w1: weight 5 (50% of 10)\n"
    assert run(ctl, "set server www/w3 weight 33%") == "www/w3: weight 1 (33% of 5)\n"  # rounded down, as haproxy
    assert run(ctl, "set server www/w1 weight 200%") == "www/w1: weight 20 (200% of 10)\n"
    assert ctl.calls == [("weight", "www", "w1", 0), ("weight", "www", "w1", 256), ("weight", "www", "w1", 5),
                         ("weight", "www", "w3", 1), ("weight", "www", "w1", 20)]


def test_set_weight_errors(ctl):
    assert_error(run(ctl, "set server www/w1 weight 257"), "weight 257 is out of range (0..256)")
    assert_error(run(ctl, "set server www/w1 weight -1"), "invalid weight '-1'")
    assert_error(run(ctl, "set server www/w1 weight ten"), "invalid weight 'ten'")
    assert_error(run(ctl, "set server www/w1 weight 5.5"), "invalid weight '5.5'")
    assert_error(run(ctl, "set server www/w1 weight 3000%"), "3000% of the configured weight 10 is 300, above 256")
    assert_error(run(ctl, "set server www/nope weight 50%"), "no member 'nope' in pool 'www'")
    assert_error(run(ctl, "set server nope/x weight 5"), "no pool 'nope'")
    assert ctl.calls == []


def test_controller_value_error_is_the_reply(ctl):
    def refuse(pool, member, weight):
        raise ValueError("member is being removed by a reload")

    ctl.set_member_weight = refuse
    assert_error(run(ctl, "set server www/w1 weight 5"), "error: www/w1: member is being removed by a reload")


def test_get_weight(ctl):
    assert run(ctl, "get weight www/w1") == "10 (initial 10)\n"
    run(ctl, "set server www/w1 weight 4")
    assert run(ctl, "get weight www/w1") == "4 (initial 10)\n"
    assert_error(run(ctl, "get weight www/none"), "no member 'none' in pool 'www'")


def test_enable_and_disable_health(ctl):
    assert run(ctl, "disable health www/w1") == "www/w1: health checks disabled\n"
    assert run(ctl, "enable health www/w1") == "www/w1: health checks enabled\n"
    assert ctl.calls == [("health", "www", "w1", False), ("health", "www", "w1", True)]
    assert_error(run(ctl, "disable health www/none"), "no member 'none'")
    assert_error(run(ctl, "enable health"), "cannot read 'enable health'; usage: enable health <POOL/MEMBER>\n")
    assert_error(run(ctl, "enable"), "usage: enable server <POOL/MEMBER> | enable health <POOL/MEMBER>")


# -- reading commands --------------------------------------------------------------------------


def test_unknown_commands(ctl):
    assert_error(run(ctl, "sho stat"), "unknown command 'sho stat' (did you mean 'show'?)", "'help' lists")
    assert_error(run(ctl, "frobnicate"), "unknown command 'frobnicate'")
    assert_error(run(ctl, "show"), "usage: show info [json] | show stat [csv|json] | show servers state [POOL]")
    assert_error(run(ctl, "show info json extra"), "usage: show info [json]")
    assert_error(run(ctl, "   "), "empty command")


def test_keywords_ignore_case_and_spacing(ctl):
    assert run(ctl, "  SHOW   Info  ") == run(ctl, "show info")


def test_prompt_and_quit_need_a_socket(ctl):
    assert_error(run(ctl, "prompt"), "only mean something on a runtime socket")
    assert_error(run(ctl, "quit"), "only mean something on a runtime socket")


def test_a_failing_controller_is_one_error_line(ctl, caplog):
    ctl.fail_with = RuntimeError("aggregate lost")
    assert_error(run(ctl, "show stat"), "internal error running 'show stat': RuntimeError: aggregate lost")
    assert "Traceback" in caplog.text  # the traceback goes to the log, not to the operator


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from("abcdefghilmnorstuvwy /%0123456789;\t\r\x00é"), max_size=40))
def test_no_line_raises(line):
    reply = R.execute(line, FakeController())
    assert isinstance(reply, str) and reply.endswith("\n")
    if R.is_error(reply):
        assert reply.count("\n") == 1


def test_grammar_refuses_an_optional_word_before_the_end():
    with pytest.raises(ValueError):
        R.Syntax(("show", "[x]", "y"), R._help, "")


# -- the Session (a socket connection, without the socket) ----------------------------------------


def test_session_several_commands_one_chunk(ctl):
    s = R.Session(ctl)
    out = s.receive_data(b"show info\nget weight www/w1\n")
    assert out.decode() == run(ctl, "show info") + "\n" + "10 (initial 10)\n\n"
    assert not s.closed
    assert s.receive_data(b"") == b"" and s.closed


def test_session_byte_by_byte_equals_whole(ctl):
    data = b"show info\r\nset server www/w1 state drain; get weight www/w1\nshow servers state"
    whole = R.Session(FakeController())
    at_once = whole.receive_data(data) + whole.receive_data(b"")
    s = R.Session(FakeController())
    split = b"".join([s.receive_data(data[i:i + 1]) for i in range(len(data))] + [s.receive_data(b"")])
    assert split == at_once and s.closed and whole.closed
    text = split.decode()
    assert text.count("\n\n") == 4  # four replies, each ending with an empty line
    assert "www/w1: state drain\n\n10 (initial 10)\n\n" in text
    assert text.endswith("www w1 127.0.0.1:9001 DRAIN drain enabled 10 10 enabled runtime admin\n"
                         "www w2 127.0.0.1:9002 DRAIN drain drain 10 10 enabled spec -\n"
                         "www w3 127.0.0.1:9003 NO_CHECK enabled enabled 5 5 enabled spec -\n"
                         "api a1 127.0.0.1:9101 DOWN enabled enabled 1 1 enabled spec -\n"
                         "api a2 127.0.0.1:9102 MAINT maint maint 1 1 enabled spec -\n\n")


def test_session_prompt_mode_and_quit(ctl):
    s = R.Session(ctl)
    assert s.receive_data(b"prompt\n") == b"> "
    assert s.interactive
    assert s.receive_data(b"get weight www/w1\n") == b"10 (initial 10)\n\n> "
    assert s.receive_data(b"\n") == b"> "
    assert s.receive_data(b"nope\n").decode().startswith("error: unknown command 'nope'")
    assert s.receive_data(b"quit\nget weight www/w1\n") == b""
    assert s.closed
    assert s.receive_data(b"help\n") == b""


def test_session_prompt_toggles_off(ctl):
    s = R.Session(ctl)
    assert s.receive_data(b"prompt\nprompt\nget weight www/w2\n") == b"> 10 (initial 10)\n\n"


def test_session_quit_mid_line_stops_there(ctl):
    s = R.Session(ctl)
    assert s.receive_data(b"get weight www/w1; quit; set server www/w1 state maint\n") == b"10 (initial 10)\n\n"
    assert s.closed and ctl.calls == []


def test_session_refuses_an_overlong_line(ctl):
    s = R.Session(ctl, max_line=32)
    assert s.receive_data(b"show " + b"x" * 20) == b""
    out = s.receive_data(b"y" * 20)
    assert out == b"error: command line longer than 32 bytes; closing\n\n" and s.closed
    s = R.Session(ctl, max_line=32)
    assert s.receive_data(b"get weight www/w1\n" + b"z" * 40 + b"\n").endswith(b"longer than 32 bytes; closing\n\n")


def test_session_undecodable_bytes_are_an_error_not_a_crash(ctl):
    out = R.Session(ctl).receive_data(b"show \xff\xfe info\n").decode()
    assert out.startswith("error: cannot read 'show \ufffd\ufffd info'")


# -- the supervisor's side of the contract ----------------------------------------------------------


BOOK_SPEC = {
    "listeners": [{"name": "web", "bind": "127.0.0.1:8080", "default_pool": "www"}],
    "pools": [{"name": "www", "members": [{"name": "w1", "address": "127.0.0.1:9001", "weight": 10},
                                          {"name": "w2", "address": "127.0.0.1:9002", "admin_state": "drain"}]}],
}


def member_book_controller(spec_data: dict[str, Any] = BOOK_SPEC) -> Any:
    """A Controller made of the supervisor's own parts (lbcore.proxy.state.MemberBook and
    an Aggregate holding a worker's flush of five requests to www/w1)."""
    from lbcore.proxy.state import MemberBook
    from lbcore.proxy.stats import Aggregate, WorkerStats
    from lbcore.spec import parse_spec

    book = MemberBook(on_change=lambda: None)
    book.apply(parse_spec(spec_data))
    aggregate = Aggregate()
    worker = WorkerStats()
    worker.listener("web").requests += 5
    counters = worker.member("www", "w1")
    counters.requests += 5
    counters.response(200)
    counters.observe(0.003)
    aggregate.add(0, worker.take())

    class Book:
        snapshot = staticmethod(lambda: book.snapshot(aggregate, 2))
        set_member_admin = staticmethod(book.set_member_admin)
        set_member_weight = staticmethod(book.set_member_weight)
        set_health_enabled = staticmethod(book.set_health_enabled)
        servers_state = staticmethod(book.servers_state)

    return Book()


def test_the_supervisors_member_book_as_controller():
    """The real snapshot and servers_state (lbcore.proxy.state) through every command."""
    book = member_book_controller()
    snap = book.snapshot()
    rows = {(r["pxname"], r["svname"]): r for r in parse_csv(run(book, "show stat"))}
    assert rows[("web", "FRONTEND")]["req_tot"] == "5"
    assert rows[("www", "w1")]["req_tot"] == "5" and rows[("www", "w1")]["hrsp_2xx"] == "1"
    assert rows[("www", "w2")]["status"] == snap["pools"][0]["members"][1]["status"] == "DRAIN"
    assert run(book, "set server www/w1 weight 50%") == "www/w1: weight 5 (50% of 10)\n"
    assert run(book, "set server www/w2 state ready") == "www/w2: state enabled\n"
    assert run(book, "disable health www/w2") == "www/w2: health checks disabled\n"
    assert run(book, "show servers state").splitlines()[2:] == [
        "www w1 127.0.0.1:9001 NO_CHECK enabled enabled 5 10 enabled runtime weight",
        "www w2 127.0.0.1:9002 NO_CHECK enabled drain 1 1 disabled runtime admin,health",
    ]
    assert_error(run(book, "set server www/w9 state drain"), "no member 'w9' in pool 'www' (members: w1, w2)")
    assert "Members_up: 2\n" in run(book, "show info")
