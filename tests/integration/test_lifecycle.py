"""Process lifecycle: worker restart, reload (good, bad, in flight, new listeners), graceful stop, maxconn."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.integration.harness import free_port, http_get


def spec_for(port, pool_members, default="p", extra_listeners=()):
    return {
        "version": 1,
        "listeners": [{"name": "web", "bind": f"127.0.0.1:{port}", "protocol": "http", "default_pool": default}, *extra_listeners],
        "pools": [{"name": name, "members": [{"name": m.name, "address": m.address} for m in ms]} for name, ms in pool_members.items()],
    }


def member_of(body: bytes) -> str:
    return json.loads(body)["member"]


def test_killed_worker_is_restarted_and_service_continues(members, engine):
    m = members("m")
    port = free_port()
    eng = engine(spec_for(port, {"p": [m]}), workers=2)
    pids = eng.worker_pids()
    assert len(pids) == 2
    since = eng.mark()
    os.kill(pids[0], signal.SIGKILL)
    eng.wait_for_log(r"worker \d \(pid %d\) exited with signal SIGKILL; restarting" % pids[0], since)
    eng.wait_for_log(r"worker \d started", since)
    eng.wait_for_log(r"serving on 2 workers", since)
    new = eng.worker_pids()
    assert len(new) == 2 and pids[0] not in new and pids[1] in new
    assert all(http_get(port)[0] == 200 for _ in range(10))


def test_reload_with_bad_file_keeps_old_revision(members, engine):
    a = members("a")
    port = free_port()
    eng = engine(spec_for(port, {"p": [a]}))
    bad = spec_for(port, {"p": [a]})
    bad["listeners"][0]["acls"] = [{"name": "x", "condition": "hots example.com", "pool": "p"}]
    bad["listeners"][0]["default_pool"] = "nope"
    line = eng.reload(bad)
    assert "reload refused" in line
    text = eng.log_text()
    assert "listeners[0].acls[0].condition: unknown fetch 'hots'" in text
    assert "listeners[0].default_pool" in text  # every error, not only the first
    assert member_of(http_get(port)[2]) == "a"
    # unparseable YAML too
    line = eng.reload("version: 1\nlisteners: [unclosed\n")
    assert "reload refused" in line
    assert member_of(http_get(port)[2]) == "a"


def test_reload_switches_routing_while_in_flight_requests_finish_on_old_revision(members, engine):
    a, b = members("a"), members("b")
    port = free_port()
    eng = engine(spec_for(port, {"pa": [a], "pb": [b]}, default="pa"), workers=1)
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("r", http_get(port, "/wait?gate=g")))
    t.start()
    a.wait_arrived("g")
    eng.reload(spec_for(port, {"pa": [a], "pb": [b]}, default="pb"))
    assert member_of(http_get(port)[2]) == "b"  # new requests: new revision
    a.open_gate("g")
    t.join(10)
    status, _, body = result["r"]
    assert status == 200 and member_of(body) == "a"  # the in-flight one finished where it started


def test_reload_adds_and_removes_listeners(members, engine):
    a = members("a")
    port, port2 = free_port(), free_port()
    eng = engine(spec_for(port, {"p": [a]}))
    extra = [{"name": "second", "bind": f"127.0.0.1:{port2}", "protocol": "http", "default_pool": "p"}]
    eng.reload(spec_for(port, {"p": [a]}, extra_listeners=extra))
    assert http_get(port2)[0] == 200
    eng.reload(spec_for(port, {"p": [a]}))
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port2), timeout=5).close()
    assert http_get(port)[0] == 200


def test_reload_to_a_port_in_use_is_refused_whole(members, engine):
    a = members("a")
    port = free_port()
    eng = engine(spec_for(port, {"p": [a]}))
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    busy = blocker.getsockname()[1]
    try:
        extra = [{"name": "busy", "bind": f"127.0.0.1:{busy}", "protocol": "http", "default_pool": "p"}]
        line = eng.reload(spec_for(port, {"p": [a]}, extra_listeners=extra))
        assert "reload refused" in line and "cannot bind" in line
        assert http_get(port)[0] == 200
    finally:
        blocker.close()


def test_reload_under_load_fails_no_request(members, engine):
    a, b = members("a"), members("b")
    port = free_port()
    eng = engine(spec_for(port, {"pa": [a], "pb": [b]}, default="pa"), workers=2)
    errors: list[str] = []
    done = threading.Event()
    count = [0]

    def load():
        deadline = time.monotonic() + 30  # bounded in time and count
        while not done.is_set() and count[0] < 3000 and time.monotonic() < deadline:
            try:
                status, _, _ = http_get(port)
                if status != 200:
                    errors.append(str(status))
            except OSError as exc:
                errors.append(repr(exc))
            count[0] += 1

    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    for i in range(6):
        eng.reload(spec_for(port, {"pa": [a], "pb": [b]}, default="pb" if i % 2 == 0 else "pa"))
    done.set()
    for t in threads:
        t.join(40)
    assert count[0] > 0
    assert errors == []


def test_sigterm_drains_in_flight_requests(members, engine):
    a = members("a")
    port = free_port()
    eng = engine(spec_for(port, {"p": [a]}))
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("r", http_get(port, "/wait?gate=g")))
    t.start()
    a.wait_arrived("g")
    since = eng.mark()
    eng.proc.send_signal(signal.SIGTERM)
    eng.wait_for_log("stopping: draining", since)
    # no new connections are taken once stopping...
    a.open_gate("g")
    t.join(10)
    assert result["r"][0] == 200  # ...but the one in flight completed
    assert eng.proc.wait(20) == 0


def test_maxconn_limits_connections_per_listener(members, engine):
    a = members("a")
    port = free_port()
    spec = spec_for(port, {"p": [a]})
    spec["listeners"][0]["maxconn"] = 2
    engine(spec, workers=1)
    held = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(2)]
    try:
        for s in held:  # make sure both are admitted (answered) before the third
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert s.recv(65536).startswith(b"HTTP/1.1 200")
        status, _, _ = http_get(port)
        assert status == 503
    finally:
        for s in held:
            s.close()


# -- shards: per-worker ---------------------------------------------------------------------


def sockets_on(port: int, state: str) -> dict[int, int]:
    """The inodes of this host's IPv4 TCP sockets with local ``port`` in ``state``
    ("0A" listening, "01" established), each with its remote port (0 for listeners)."""
    found: dict[int, int] = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, st, inode = fields[1], fields[2], fields[3], int(fields[9])
        if int(local.split(":")[1], 16) == port and st == state and inode:
            found[inode] = int(remote.split(":")[1], 16)
    return found


def socket_inodes(pid: int) -> set[int]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def keep_alive_client(port: int) -> socket.socket:
    """A connection that has been served once (so a worker accepted it) and stays open."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, "closed before the response"
        head += chunk
    assert head.startswith(b"HTTP/1.1 200")
    return sock


def sharded_engine(members, engine):
    """Two workers, one listener with a socket each."""
    port = free_port()
    spec = spec_for(port, {"p": [members("a")]})
    spec["listeners"][0]["shards"] = "per-worker"
    return engine(spec, workers=2), port


def test_per_worker_shards_give_each_worker_its_own_socket_and_spread_connections(members, engine):
    eng, port = sharded_engine(members, engine)
    listening = sockets_on(port, "0A")
    assert len(listening) == 2  # two sockets on one address
    pids = eng.worker_pids()
    owned = [socket_inodes(pid) & listening.keys() for pid in pids]
    assert all(len(o) == 1 for o in owned) and owned[0] != owned[1]  # one each, not the same one
    clients = [keep_alive_client(port) for _ in range(40)]
    try:
        local_ports = {c.getsockname()[1] for c in clients}
        served = sockets_on(port, "01")
        per_worker = [sum(1 for inode in socket_inodes(pid) if served.get(inode) in local_ports) for pid in pids]
        # The kernel hashes each connection's addresses to a socket: 40 connections all
        # on one of two sockets would happen once in 2**39 runs.
        assert sum(per_worker) == 40 and min(per_worker) > 0
    finally:
        for c in clients:
            c.close()


def test_per_worker_shards_keep_a_restarting_workers_connections_waiting(members, engine):
    eng, port = sharded_engine(members, engine)
    pids = eng.worker_pids()
    since = eng.mark()
    os.kill(pids[0], signal.SIGKILL)
    eng.wait_for_log(r"worker \d \(pid %d\) exited" % pids[0], since)
    # Its socket stays open in the supervisor: connections the kernel gives it queue
    # there until the new worker takes them, none is refused or reset.
    results = [http_get(port, timeout=20)[0] for _ in range(20)]
    assert results == [200] * 20
    eng.wait_for_log(r"serving on 2 workers", since)
    assert len(sockets_on(port, "0A")) == 2


def test_reload_cannot_change_shards_of_a_serving_address(members, engine):
    a = members("a")
    port, port2 = free_port(), free_port()
    eng = engine(spec_for(port, {"p": [a]}), workers=2)
    changed = spec_for(port, {"p": [a]})
    changed["listeners"][0]["shards"] = "per-worker"
    line = eng.reload(changed)
    assert "reload refused" in line and "serves with shards: shared; changing it to per-worker needs a restart" in line
    assert http_get(port)[0] == 200 and len(sockets_on(port, "0A")) == 1
    # A new address may take either: here one socket per worker.
    extra = [{"name": "second", "bind": f"127.0.0.1:{port2}", "protocol": "http", "default_pool": "p",
              "shards": "per-worker"}]
    eng.reload(spec_for(port, {"p": [a]}, extra_listeners=extra))
    assert http_get(port2)[0] == 200 and len(sockets_on(port2, "0A")) == 2


def listen_backlogs(port: int) -> list[int]:
    """The queue length of each listening socket on ``port`` (ss: a LISTEN socket's Send-Q)."""
    out = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    return sorted(int(line.split()[2]) for line in out.splitlines())


def test_reload_sets_a_serving_listeners_backlog(members, engine):
    a = members("a")
    port, port2 = free_port(), free_port()
    extra = [{"name": "second", "bind": f"127.0.0.1:{port2}", "protocol": "http", "default_pool": "p",
              "shards": "per-worker", "backlog": 5}]
    first = spec_for(port, {"p": [a]}, extra_listeners=extra)
    first["listeners"][0]["backlog"] = 7
    eng = engine(first, workers=2)
    assert listen_backlogs(port) == [7] and listen_backlogs(port2) == [5, 5]
    # The same sockets keep serving (no new bind, nothing waiting in them is dropped),
    # with the new queue lengths.
    second = spec_for(port, {"p": [a]}, extra_listeners=[{**extra[0], "backlog": 9}])
    second["listeners"][0]["backlog"] = 33
    eng.reload(second)
    assert listen_backlogs(port) == [33] and listen_backlogs(port2) == [9, 9]
    assert http_get(port)[0] == 200 and http_get(port2)[0] == 200
