"""Health through the running engine: active checks move traffic, drain, backup, passive ejection, slow start."""

from __future__ import annotations

import json
import socket
import threading
from collections import Counter

from tests.integration.harness import free_port, http_get

FAST = {"type": "http", "path": "/", "interval": "100ms", "timeout": "100ms", "rise": 2, "fall": 2, "jitter": 0}


def spec(port, members, **pool):
    return {
        "version": 1,
        "listeners": [{"name": "web", "bind": f"127.0.0.1:{port}", "protocol": "http", "default_pool": "p"}],
        "pools": [{"name": "p", "members": members, **pool}],
    }


def who(port, **kw):
    status, headers, body = http_get(port, **kw)
    assert status == 200, (status, body)
    return json.loads(body)["member"], headers


def test_killed_member_is_marked_down_traffic_moves_then_returns(members, engine):
    m1, m2 = members("m1"), members("m2")
    port = free_port()
    eng = engine(spec(port, [{"name": "m1", "address": m1.address}, {"name": "m2", "address": m2.address}], health=FAST), workers=2)
    assert {who(port)[0] for _ in range(6)} == {"m1", "m2"}
    since = eng.mark()
    m1.stop()
    # requests during detection still succeed (a refused connect is redispatched)
    assert all(who(port)[0] == "m2" for _ in range(5))
    eng.wait_for_log(r"p/m1 is DOWN \(L4CON", since)
    assert all(who(port)[0] == "m2" for _ in range(10))
    since = eng.mark()
    members("m1", port=m1.port)  # the member comes back on its address
    eng.wait_for_log(r"p/m1 is UP", since)
    seen = Counter(who(port)[0] for _ in range(20))
    assert seen["m1"] > 0 and seen["m2"] > 0


def served_by(port, member):
    """Every request to ``port`` goes to ``member``, once the workers know what the log said.

    The monitor logs a member's new state before the workers hear of it: a request sent
    just after the log line may still be routed by the old state. So the first few are
    sent until one reaches ``member`` (bounded in count), then four in a row must."""
    for _ in range(200):
        if who(port)[0] == member:
            break
    return {who(port)[0] for _ in range(4)} == {member}


def test_backup_takes_over_and_hands_back(members, engine):
    prim, backup = members("prim"), members("backup")
    port = free_port()
    eng = engine(spec(port, [{"name": "prim", "address": prim.address}, {"name": "backup", "address": backup.address, "backup": True}], health=FAST))
    assert {who(port)[0] for _ in range(4)} == {"prim"}
    since = eng.mark()
    prim.stop()
    eng.wait_for_log(r"p/prim is DOWN", since)
    assert served_by(port, "backup")
    since = eng.mark()
    members("prim", port=prim.port)
    eng.wait_for_log(r"p/prim is UP", since)
    assert served_by(port, "prim")


def test_all_members_down_is_503_with_retry_after(members, engine):
    m1 = members("m1")
    port = free_port()
    eng = engine(spec(port, [{"name": "m1", "address": m1.address}], health=FAST))
    since = eng.mark()
    m1.stop()
    eng.wait_for_log(r"p/m1 is DOWN", since)
    # the monitor logs before the workers hear of it: a request in between may still
    # try m1 and get 502; once the state reached the worker it is 503
    for _ in range(50):
        status, headers, _ = http_get(port)
        if status == 503:
            break
        assert status == 502
    assert status == 503 and headers["retry-after"] == "1"


def test_drain_keeps_persistent_sessions_and_takes_no_new_ones(members, engine):
    m1, m2 = members("m1"), members("m2")
    port = free_port()
    base = [{"name": "m1", "address": m1.address}, {"name": "m2", "address": m2.address}]
    eng = engine(spec(port, base, persistence={"type": "cookie", "name": "SRV"}))
    drained = [dict(base[0], admin_state="drain"), base[1]]
    eng.reload(spec(port, drained, persistence={"type": "cookie", "name": "SRV"}))
    assert {who(port)[0] for _ in range(6)} == {"m2"}  # no new sessions on m1
    assert {who(port, headers={"Cookie": "SRV=m1"})[0] for _ in range(4)} == {"m1"}  # sticky ones continue
    maint = [dict(base[0], admin_state="maint"), base[1]]
    eng.reload(spec(port, maint, persistence={"type": "cookie", "name": "SRV"}))
    member, headers = who(port, headers={"Cookie": "SRV=m1"})
    assert member == "m2" and headers["set-cookie"].startswith("SRV=m2")  # maint: no traffic at all


def test_passive_ejection_and_return_through_active_check(members, engine):
    good = members("good")
    # a member that accepts and closes at once: every request through it is a gateway error
    bad = socket.socket()
    bad.bind(("127.0.0.1", 0))
    bad.listen(64)
    stop = threading.Event()

    def slam():
        bad.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = bad.accept()
                conn.close()
            except OSError:
                continue

    t = threading.Thread(target=slam, daemon=True)
    t.start()
    port = free_port()
    try:
        eng = engine(spec(port, [{"name": "bad", "address": f"127.0.0.1:{bad.getsockname()[1]}"}, {"name": "good", "address": good.address}],
                          outlier={"consecutive_errors": 2, "ejection_time": "60s"}))
        statuses = Counter(http_get(port)[0] for _ in range(12))
        assert statuses[502] <= 2  # only the failures that trip the ejection reach clients
        eng.wait_for_log(r"member p/bad ejected by passive checks")
        assert all(who(port)[0] == "good" for _ in range(10))
    finally:
        stop.set()
        t.join(5)
        bad.close()


def test_slow_start_ramps_a_returning_member(members, engine):
    m1, m2 = members("m1"), members("m2")
    port = free_port()
    eng = engine(spec(port, [{"name": "m1", "address": m1.address, "weight": 100}, {"name": "m2", "address": m2.address, "weight": 100}],
                      health=FAST, slow_start="60s"))
    since = eng.mark()
    m2.stop()
    eng.wait_for_log(r"p/m2 is DOWN", since)
    since = eng.mark()
    members("m2", port=m2.port)
    eng.wait_for_log(r"p/m2 is UP", since)
    seen = Counter(who(port)[0] for _ in range(100))
    # seconds into a 60 s ramp, m2's weight is a few percent of m1's
    assert 0 < seen["m2"] < 20
