"""The node agent (engine side) and the native driver (control side): Specs pushed over mutual TLS."""

from __future__ import annotations

import json
import os
import socket
import stat

import pytest

from lbcore.control.drivers.native import ManagementTls, NativeDriver, PushFailed
from tests import tlsgen
from tests.integration.harness import free_port, http_get


@pytest.fixture(scope="module")
def mgmt(tmp_path_factory):
    d = tmp_path_factory.mktemp("mgmt")
    ca = tlsgen.make_ca("management CA")
    node = tlsgen.issue(ca, ["node.lbcore.internal"], ip_addresses=["127.0.0.1"])
    control = tlsgen.issue(ca, [], common_name="control-plane", client=True)
    rogue_ca = tlsgen.make_ca("rogue CA", slot=7)
    rogue = tlsgen.issue(rogue_ca, [], common_name="intruder", client=True)
    (d / "ca.pem").write_bytes(ca.pem)
    paths = {n: tlsgen.write_pair(d, n, c) for n, c in (("node", node), ("control", control), ("rogue", rogue))}
    site_ca = tlsgen.make_ca("site CA", slot=3)
    site = tlsgen.issue(site_ca, ["shop.example.com"])
    return {"dir": d, "ca": str(d / "ca.pem"), "paths": paths, "site": site}


def engine_with_agent(engine, mgmt, spec, workers=1):
    port = free_port()
    node_cert, node_key = mgmt["paths"]["node"]
    eng = engine(spec, workers=workers, start=False)
    eng.extra_args = ["--agent", f"127.0.0.1:{port}", "--agent-cert", node_cert, "--agent-key", node_key, "--agent-ca", mgmt["ca"]]
    eng.start()
    eng.wait_for_log("node agent on")
    return eng, f"127.0.0.1:{port}"


def simple(port, pool_members):
    return {"version": 1,
            "listeners": [{"name": "web", "bind": f"127.0.0.1:{port}", "protocol": "http", "default_pool": "p"}],
            "pools": [{"name": "p", "members": [{"name": m.name, "address": m.address} for m in pool_members]}]}


def driver(mgmt, who="control"):
    cert, key = mgmt["paths"][who]
    return NativeDriver(ManagementTls(cert, key, mgmt["ca"]), timeout=20)


def test_push_applies_a_revision_with_certificates(members, engine, mgmt):
    a, b = members("a"), members("b")
    port, tls_port = free_port(), free_port()
    eng, agent = engine_with_agent(engine, mgmt, simple(port, [a]), workers=2)
    assert json.loads(http_get(port)[2])["member"] == "a"
    spec = simple(port, [b])
    spec["listeners"].append({"name": "shop", "bind": f"127.0.0.1:{tls_port}", "protocol": "https", "default_pool": "p",
                              "tls": {"certificates": [{"cert": "certs/shop.pem", "key": "certs/shop.key", "default": True}]}})
    site = mgmt["site"]
    files = {"certs/shop.pem": site.pem, "certs/shop.key": site.key_pem()}
    result = driver(mgmt).apply("c1", spec, files, [{"id": "n1", "management_address": agent}])
    assert result == {"n1": None}
    assert json.loads(http_get(port)[2])["member"] == "b"  # serving when apply returned
    from tests.integration.test_tls_engine import served_cert

    assert served_cert(tls_port, "shop.example.com")[0] == site.der
    key_file = eng.spec_file.parent / "certs" / "shop.key"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert "shop" in eng.spec_file.read_text()  # the node keeps its last Spec on disk
    status = driver(mgmt).status(agent)
    assert status["revision"] == status["serving"]


def test_bad_revision_is_refused_and_old_keeps_serving(members, engine, mgmt):
    a = members("a")
    port = free_port()
    eng, agent = engine_with_agent(engine, mgmt, simple(port, [a]))
    bad = simple(port, [a])
    bad["listeners"][0]["acls"] = [{"name": "x", "condition": "hots example.com", "pool": "p"}]
    result = driver(mgmt).apply("c1", bad, {}, [{"id": "n1", "management_address": agent}])
    assert "listeners[0].acls[0].condition: unknown fetch 'hots'" in result["n1"]
    tls_bad = simple(port, [a])
    tls_bad["listeners"][0].update(protocol="https", tls={"certificates": [{"cert": "certs/x.pem", "key": "certs/x.key", "default": True}]})
    site = mgmt["site"]
    other_key = tlsgen.issue(tlsgen.make_ca(slot=9), ["x.example.com"], fresh=True).key_pem()
    result = driver(mgmt).apply("c1", tls_bad, {"certs/x.pem": site.pem, "certs/x.key": other_key}, [{"id": "n1", "management_address": agent}])
    assert "does not match" in result["n1"]
    assert json.loads(http_get(port)[2])["member"] == "a"
    assert not (eng.spec_file.parent / "certs" / "x.key").exists()  # nothing of a refused push installed


def test_a_push_the_engine_refuses_leaves_the_disk_as_it_was(members, engine, mgmt):
    a = members("a")
    port = free_port()
    eng, agent = engine_with_agent(engine, mgmt, simple(port, [a]), workers=2)
    base = eng.spec_file.parent
    (base / "certs").mkdir(exist_ok=True)
    (base / "certs" / "kept.pem").write_bytes(b"served now")
    spec_text = eng.spec_file.read_text()
    with socket.socket() as taken:  # an address the engine cannot bind
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        refused = simple(port, [a])
        refused["listeners"].append({"name": "more", "bind": "127.0.0.1:%d" % taken.getsockname()[1],
                                     "protocol": "http", "default_pool": "p"})
        files = {"certs/kept.pem": b"pushed", "certs/new.pem": b"pushed"}
        result = driver(mgmt).apply("c1", refused, files, [{"id": "n1", "management_address": agent}])
    assert "cannot bind" in result["n1"]
    assert json.loads(http_get(port)[2])["member"] == "a"
    # On disk, what serves: a restart, or a worker started again, must not pick up
    # the refused revision or its files.
    assert eng.spec_file.read_text() == spec_text
    assert (base / "certs" / "kept.pem").read_bytes() == b"served now"
    assert not (base / "certs" / "new.pem").exists()


def test_a_push_that_reshards_a_serving_address_waits_for_a_restart(members, engine, mgmt):
    from tests.integration.test_lifecycle import sockets_on

    a = members("a")
    port = free_port()
    eng, agent = engine_with_agent(engine, mgmt, simple(port, [a]), workers=2)
    resharded = simple(port, [a])
    resharded["listeners"][0]["shards"] = "per-worker"
    nodes = [{"id": "n1", "management_address": agent}]
    result = driver(mgmt).apply("c1", resharded, {}, nodes)
    assert "serves with shards: shared; changing it to per-worker needs a restart" in result["n1"]
    assert "serves it from its next start" in result["n1"]
    assert json.loads(http_get(port)[2])["member"] == "a" and len(sockets_on(port, "0A")) == 1
    assert "shards: per-worker" in eng.spec_file.read_text()  # kept, for the next start
    # Restarted, the node serves it, and the control plane's next push finds it done.
    eng.stop()
    since = eng.mark()
    eng.start(wait=False)
    eng.wait_for_log(r"serving on 2 workers", since)
    assert json.loads(http_get(port)[2])["member"] == "a" and len(sockets_on(port, "0A")) == 2
    assert driver(mgmt).apply("c1", resharded, {}, nodes) == {"n1": None}


def test_only_the_management_ca_may_push(members, engine, mgmt):
    a = members("a")
    eng, agent = engine_with_agent(engine, mgmt, simple(free_port(), [a]))
    with pytest.raises(PushFailed):
        driver(mgmt, "rogue").status(agent)
    result = driver(mgmt, "rogue").apply("c1", simple(free_port(), [a]), {}, [{"id": "n1", "management_address": agent}])
    assert result["n1"] is not None


def test_a_node_down_is_reported_others_still_pushed(members, engine, mgmt):
    a, b = members("a"), members("b")
    port1, port2 = free_port(), free_port()
    eng1, agent1 = engine_with_agent(engine, mgmt, simple(port1, [a]))
    dead = f"127.0.0.1:{free_port()}"
    result = driver(mgmt).apply("c1", simple(port1, [b]), {}, [{"id": "up", "management_address": agent1}, {"id": "down", "management_address": dead}])
    assert result["up"] is None and "refused" in result["down"].lower()
    assert json.loads(http_get(port1)[2])["member"] == "b"
