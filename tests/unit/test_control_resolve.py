"""Resolving a cluster to a Spec: binds, acl order and default pools, health, certificate
files (a directory per revision, 0600), the in-memory variant, named error paths."""

from __future__ import annotations

import json
import os
import stat

import pytest
from cryptography.hazmat.primitives import serialization

from lbcore.control.errors import Invalid
from lbcore.control.model import Cluster
from lbcore.control.resolve import Resolution, render_cluster, resolve, resolve_cluster, spec_name
from lbcore.spec import load_spec, parse_spec
from lbcore.tls import compile_tls
from tests import tlsgen
from tests.unit.test_control_service import build_site, make_world


@pytest.fixture
def world(tmp_path):
    w = make_world(tmp_path)
    yield w
    w.store.close()


@pytest.fixture(scope="module")
def certs():
    ca = tlsgen.make_ca()
    return {
        "ca": ca,
        "www": tlsgen.issue(ca, ["www.example.com", "example.com"]),
        "api": tlsgen.issue(ca, ["api.example.com"], key_type="ecdsa"),
    }


def https_listener(world, ids, certs, *, passphrase=None):
    svc, who = world.service, world.alice
    listener = svc.create(who, "listener", {"instance_id": ids["instance"], "name": "tls", "port": 8443,
                                            "protocol": "HTTPS"}).obj
    www = svc.create(who, "tls_certificate", {"listener_id": listener["id"], "name": "www",
                                              "certificate": tlsgen.chain_pem(certs["www"], certs["ca"]).decode(),
                                              "private_key": certs["www"].key_pem(passphrase).decode(),
                                              "passphrase": passphrase}).obj
    api = svc.create(who, "tls_certificate", {"listener_id": listener["id"], "name": "api",
                                              "certificate": certs["api"].pem.decode() + certs["api"].key_pem().decode()}).obj
    svc.create(who, "acl", {"listener_id": listener["id"], "pool_id": ids["pool"]})
    return listener, www, api


def test_binds_for_v4_and_v6_instances(world):
    ids = build_site(world, address="2001:DB8::1")
    spec = world.service.cluster_spec(ids["cluster"])
    assert str(spec.listeners[0].bind) == "[2001:db8::1]:8080"
    other = world.service.create(world.alice, "instance", {"cluster_id": ids["cluster"], "address": "127.0.0.3"}).obj
    listener = world.service.create(world.alice, "listener", {"instance_id": other["id"], "port": 8080,
                                                              "protocol": "TCP"}).obj
    world.service.create(world.alice, "acl", {"listener_id": listener["id"], "pool_id": ids["pool"]})
    binds = sorted(str(l.bind) for l in world.service.cluster_spec(ids["cluster"]).listeners)
    assert binds == ["127.0.0.3:8080", "[2001:db8::1]:8080"]
    tcp = next(l for l in world.service.cluster_spec(ids["cluster"]).listeners if l.protocol == "tcp")
    assert tcp.forwarded_headers == () and tcp.default_pool == spec.pools[0].name


def test_spec_names_are_safe_and_unique(world):
    ids = build_site(world)
    with world.store.unit_of_work(readonly=True) as uow:
        cluster = uow.get(Cluster, ids["cluster"])
        assert spec_name(cluster) == f"edge-{ids['cluster'][:8]}"
        cluster.name = "Édge cluster / prod!"
        assert spec_name(cluster) == f"dge-cluster-prod-{ids['cluster'][:8]}"
        cluster.name = ""
        assert spec_name(cluster) == f"cluster-{ids['cluster'][:8]}"


def test_members_health_and_timeouts(world):
    svc, who = world.service, world.alice
    ids = build_site(world)
    svc.update(who, "member", ids["m2"], {"backup": True, "monitor_port": 9102, "admin_state": "drain"})
    svc.create(who, "member", {"pool_id": ids["pool"], "name": "w3", "address": "::1", "port": 9003,
                               "monitor_address": "127.0.0.9"})
    svc.update(who, "healthmonitor", ids["monitor"], {"expected_codes": "200", "host": "www.example.com",
                                                      "interval": "3s", "method": "HEAD"})
    svc.update(who, "pool", ids["pool"], {"persistence": {"type": "cookie", "name": "SRV"}, "algorithm": "hdr(X-User)",
                                          "outlier": {"consecutive_errors": 3},
                                          "attrs": {"timeout_connect": "1s", "slow_start": "10s", "member_maxconn": 20}})
    [pool] = svc.cluster_spec(ids["cluster"]).pools
    assert pool.algorithm_text == "hdr(x-user)" and pool.persistence.name == "SRV" and pool.outlier.consecutive_errors == 3
    assert pool.timeouts.connect == 1.0 and pool.slow_start == 10.0 and pool.max_connections_per_member == 20
    w1, w2, w3 = pool.members
    assert str(w1.address) == "127.0.0.1:9001" and w1.check_address == w1.address
    assert w2.backup and w2.admin_state == "drain" and str(w2.check_address) == "127.0.0.1:9102"
    assert str(w3.address) == "[::1]:9003" and str(w3.check_address) == "127.0.0.9:9003"
    health = pool.health
    assert (health.type, health.path, health.expect, health.host, health.method, health.interval) == (
        "http", "/health", "200", "www.example.com", "HEAD", 3.0)


def test_listeners_not_yet_routable_are_left_out(world, certs):
    svc, who = world.service, world.alice
    ids = build_site(world)
    svc.create(who, "listener", {"instance_id": ids["instance"], "port": 81, "protocol": "HTTP"})  # no acl yet
    https = svc.create(who, "listener", {"instance_id": ids["instance"], "port": 443, "protocol": "HTTPS"}).obj
    svc.create(who, "acl", {"listener_id": https["id"], "pool_id": ids["pool"]})  # no certificate yet
    redirect = svc.create(who, "listener", {"instance_id": ids["instance"], "port": 80, "protocol": "HTTP",
                                            "redirect": {"scheme": "https", "code": 308}}).obj
    spec = svc.cluster_spec(ids["cluster"])
    assert sorted(l.bind.port for l in spec.listeners) == [80, 8080]
    assert spec.listener(f"listener-{redirect['id'][:8]}").redirect.code == 308
    svc.create(who, "tls_certificate", {"listener_id": https["id"], "certificate": certs["www"].pem.decode(),
                                        "private_key": certs["www"].key_pem().decode()})
    assert sorted(l.bind.port for l in svc.cluster_spec(ids["cluster"]).listeners) == [80, 443, 8080]


def test_certificates_become_files_in_a_directory_per_revision(world, certs, tmp_path):
    ids = build_site(world)
    listener, www, api = https_listener(world, ids, certs)
    assert www["hostnames"] == ["www.example.com", "example.com"] and www["is_default"]
    assert api["hostnames"] == ["api.example.com"] and not api["is_default"]
    assert "PRIVATE KEY" not in api["certificate"]  # a key sent inside the chain is split off
    out = tmp_path / "revisions"
    with world.store.unit_of_work(readonly=True) as uow:
        memory, spec = resolve_cluster(uow.session, ids["cluster"])
        assert not out.exists()
        data, files = render_cluster(uow.session, ids["cluster"], world.secrets, out)
    assert data == memory
    directory = out / ids["cluster"] / spec.revision
    assert sorted(p.name for p in directory.iterdir()) == ["certs", "spec.json"]
    written = {str(p.relative_to(directory)): p for p in directory.rglob("*") if p.is_file()}
    assert set(written) == set(files) | {"spec.json"}
    for path in written.values():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    # The directory is what an engine runs: the Spec loads and its TLS compiles from there.
    loaded = load_spec(directory / "spec.json")
    assert loaded == spec == parse_spec(json.loads((directory / "spec.json").read_text()))
    tls, _warnings = compile_tls(loaded, directory)
    [tls_listener] = [l for l in loaded.listeners if l.tls]
    entries = tls_listener.tls.certificates
    assert [e.default for e in entries] == [True, False]
    assert files[entries[1].key].startswith(b"-----BEGIN")
    # The same revision again is left as it is; the applier got the same files.
    with world.store.unit_of_work(readonly=True) as uow:
        assert render_cluster(uow.session, ids["cluster"], world.secrets, out) == (data, files)
    assert world.applier.calls[-1]["files"] == files and world.applier.calls[-1]["spec"] == spec


def test_a_new_key_is_a_new_file_and_a_visible_change(world, certs):
    svc, who = world.service, world.alice
    ids = build_site(world)
    _, www, _ = https_listener(world, ids, certs)
    before = svc.cluster_spec(ids["cluster"])
    renewed = tlsgen.issue(certs["ca"], ["www.example.com"], fresh=True)
    result = svc.update(who, "tls_certificate", www["id"], {"certificate": renewed.pem.decode(),
                                                           "private_key": renewed.key_pem().decode()})
    changes = result.diffs[ids["cluster"]]
    assert any(".tls.certificates[" in c["path"] for c in changes)
    after = svc.cluster_spec(ids["cluster"])
    assert after.revision != before.revision
    # The certificate alone (the same key) renews too.
    again = tlsgen.issue(certs["ca"], ["www.example.com", "www2.example.com"], key=renewed.key)
    updated = svc.update(who, "tls_certificate", www["id"], {"certificate": again.pem.decode()}).obj
    assert updated["hostnames"] == ["www.example.com", "www2.example.com"]


def test_a_passphrase_protected_key_is_written_decrypted(world, certs, tmp_path):
    ids = build_site(world)
    _, www, _ = https_listener(world, ids, certs, passphrase="s3cret-pass")
    assert www["has_passphrase"] is True
    with world.store.unit_of_work(readonly=True) as uow:
        _, files = render_cluster(uow.session, ids["cluster"], world.secrets, tmp_path / "out")
    spec = world.service.cluster_spec(ids["cluster"])
    [listener] = [l for l in spec.listeners if l.tls]
    default = listener.tls.default_certificate
    assert default.passphrase is None  # the passphrase never travels
    key = serialization.load_pem_private_key(files[default.key], None)
    assert key.public_key().public_numbers() == certs["www"].key.public_key().public_numbers()


def test_certificate_defaults_follow_the_listener(world, certs):
    svc, who = world.service, world.alice
    ids = build_site(world)
    listener, www, api = https_listener(world, ids, certs)
    svc.update(who, "tls_certificate", api["id"], {"is_default": True})
    assert not svc.get(who, "tls_certificate", www["id"])[0]["is_default"]
    with pytest.raises(Invalid):
        svc.update(who, "tls_certificate", api["id"], {"is_default": False})
    svc.delete(who, "tls_certificate", api["id"])
    assert svc.get(who, "tls_certificate", www["id"])[0]["is_default"]
    spec = svc.cluster_spec(ids["cluster"])
    assert [c.default for l in spec.listeners if l.tls for c in l.tls.certificates] == [True]


def test_certificate_input_is_checked(world, certs):
    svc, who = world.service, world.alice
    ids = build_site(world)
    listener = svc.create(who, "listener", {"instance_id": ids["instance"], "port": 8443, "protocol": "HTTPS"}).obj
    other = tlsgen.issue(certs["ca"], ["other.example.com"], fresh=True)
    cases = [
        ({"certificate": certs["www"].pem.decode()}, "private_key"),
        ({"certificate": certs["www"].pem.decode(), "private_key": other.key_pem().decode()}, "private_key"),
        ({"certificate": certs["www"].pem.decode(), "private_key": certs["www"].key_pem("pw").decode()}, "passphrase"),
        ({"certificate": certs["www"].pem.decode(), "private_key": certs["www"].key_pem("pw").decode(),
          "passphrase": "wrong"}, "passphrase"),
        ({"certificate": "not pem", "private_key": certs["www"].key_pem().decode()}, "certificate"),
    ]
    for data, field_name in cases:
        with pytest.raises(Invalid) as caught:
            svc.create(who, "tls_certificate", {"listener_id": listener["id"], **data})
        assert caught.value.errors[0][0] == field_name, caught.value.errors
    with pytest.raises(Invalid) as caught:
        svc.create(who, "tls_certificate", {"listener_id": ids["listener"], "certificate": certs["www"].pem.decode(),
                                            "private_key": certs["www"].key_pem().decode()})
    assert caught.value.errors == [("listener_id", "certificates go on HTTPS listeners (this one is HTTP)")]


def test_invalid_results_name_the_spec_objects():
    resolution = Resolution("c", {"listeners": [{"name": "web-1", "acls": [{}, {}, {}]}]},
                            names={"listeners": [("web-1", {"acls": [("a", None), ("b", None), ("api-2", None)]})],
                                   "pools": []})
    assert resolution.named_path("listeners[0].acls[2].condition") == "listeners[web-1].acls[api-2].condition"
    assert resolution.named_path("listeners[0].bind") == "listeners[web-1].bind"
    assert resolution.named_path("pools[3].name") == "pools[3].name"
    assert resolution.named_path("defaults.maxconn") == "defaults.maxconn"


def test_resolution_reads_no_secret(world, certs):
    ids = build_site(world)
    https_listener(world, ids, certs)
    with world.store.unit_of_work(readonly=True) as uow:
        resolution = resolve(uow.session, ids["cluster"])
    assert all(part in ("chain", "key") for _, part in resolution.certificates.values())
    assert "PRIVATE" not in json.dumps(resolution.spec)
    assert os.path.basename(next(iter(resolution.certificates))).startswith("www-")
