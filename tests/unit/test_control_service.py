"""The control plane's service layer on SQLite: CRUD, tenancy, conflicts, ETags, dry runs,
Spec validation, the apply pipeline with a fake applier, legacy VIPs, effective values,
status trees, tokens.

``World``, ``FakeApplier`` and ``build_site`` are shared with the other control tests.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from lbcore.control.errors import Conflict, Forbidden, Invalid, NotFound, PreconditionFailed
from lbcore.control.model import Cluster, Listener, Token
from lbcore.control.secrets import Secrets
from lbcore.control.service import ChangeResult, ControlService, Principal
from lbcore.control.store import Store
from lbcore.spec import Spec, parse_spec


class FakeApplier:
    """Records every apply; ``fail`` maps a management address to the error its node reports;
    ``raise_error`` makes the whole call raise."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.fail: dict[str, str] = {}
        self.raise_error: Exception | None = None
        self.hook = None

    def apply(self, cluster_id: str, spec: Spec, files: dict[str, bytes], nodes: list[dict[str, Any]]) -> dict[str, str | None]:
        assert isinstance(spec, Spec)
        self.calls.append({"cluster_id": cluster_id, "spec": spec, "files": dict(files), "nodes": list(nodes)})
        if self.hook is not None:
            self.hook()
        if self.raise_error is not None:
            raise self.raise_error
        return {node["id"]: self.fail.get(node["management_address"]) for node in nodes}


@dataclass
class World:
    store: Store
    service: ControlService
    applier: FakeApplier
    secrets: Secrets
    admin: Principal
    alice: Principal
    bob: Principal
    path: Path
    ids: dict[str, str] = field(default_factory=dict)

    def reopen(self, applier: FakeApplier | None = None) -> "World":
        """The control plane restarted: a new store and service on the same database."""
        self.store.close()
        store = Store(self.store.url)
        service = ControlService(store, self.secrets, applier or self.applier)
        return World(store, service, applier or self.applier, self.secrets, self.admin, self.alice, self.bob, self.path,
                     dict(self.ids))


_TEMPLATE: dict[str, bytes] = {}


def _fresh_sqlite(path: Path) -> str:
    """A migrated SQLite database at ``path``, copied from one migrated once per process
    (migrating takes most of a test's setup)."""
    if "db" not in _TEMPLATE:
        import tempfile

        with tempfile.TemporaryDirectory() as scratch:
            template = Store(os.path.join(scratch, "template.db"))
            template.migrate()
            template.close()
            _TEMPLATE["db"] = Path(scratch, "template.db").read_bytes()
    path.write_bytes(_TEMPLATE["db"])
    return os.fspath(path)


def make_world(tmp_path: Path, url: str | None = None) -> World:
    store = Store(url or _fresh_sqlite(tmp_path / "control.db"))
    secrets = Secrets.load(tmp_path / "control.key", create=True)
    applier = FakeApplier()
    service = ControlService(store, secrets, applier)
    root = service.create_tenant("operators")
    alice = service.create_tenant("alice")
    bob = service.create_tenant("bob")
    return World(store, service, applier, secrets, Principal(root["id"], True), Principal(alice["id"]),
                 Principal(bob["id"]), tmp_path)


@pytest.fixture
def world(tmp_path):
    w = make_world(tmp_path)
    yield w
    w.store.close()


def build_site(world: World, who: Principal | None = None, *, nodes: int = 2, address: str = "127.0.0.1") -> dict[str, str]:
    """A cluster with ``nodes`` nodes, an instance, an HTTP listener on 8080 routing by
    default to pool www (two members, an HTTP monitor). Returns the ids."""
    who = who or world.alice
    svc = world.service
    ids: dict[str, str] = {}
    ids["cluster"] = svc.create(who, "cluster", {"name": "edge"}).obj["id"]
    for n in range(nodes):
        ids[f"node{n}"] = svc.create(who, "loadbalancer", {"cluster_id": ids["cluster"], "name": f"n{n}",
                                                          "management_address": f"127.0.0.1:{9440 + n}"}).obj["id"]
    ids["instance"] = svc.create(who, "instance", {"cluster_id": ids["cluster"], "address": address}).obj["id"]
    ids["listener"] = svc.create(who, "listener", {"instance_id": ids["instance"], "name": "web", "port": 8080,
                                                   "protocol": "HTTP"}).obj["id"]
    ids["pool"] = svc.create(who, "pool", {"name": "www"}).obj["id"]
    ids["m1"] = svc.create(who, "member", {"pool_id": ids["pool"], "name": "w1", "address": "127.0.0.1", "port": 9001}).obj["id"]
    ids["m2"] = svc.create(who, "member", {"pool_id": ids["pool"], "name": "w2", "address": "127.0.0.1", "port": 9002}).obj["id"]
    ids["monitor"] = svc.create(who, "healthmonitor", {"pool_id": ids["pool"], "type": "HTTP", "path": "/health"}).obj["id"]
    ids["acl"] = svc.create(who, "acl", {"listener_id": ids["listener"], "pool_id": ids["pool"], "name": "default"}).obj["id"]
    world.ids.update(ids)
    return ids


def counts(world: World) -> dict[str, int]:
    return {kind: world.service.list(world.admin, kind)[1] for kind in world.service.KINDS}


def statuses(world: World, kind: str, id: str) -> tuple[str, str]:
    obj, _ = world.service.get(world.admin, kind, id)
    return obj["provisioning_status"], obj["operating_status"]


# -- CRUD and statuses ---------------------------------------------------------------------------------

def test_crud_round_trip_with_versions_and_etags(world):
    svc, who = world.service, world.alice
    created = svc.create(who, "pool", {"name": "www", "algorithm": "leastconn", "attrs": {"timeout_server": "2m"}})
    assert isinstance(created, ChangeResult)
    pool = created.obj
    assert created.etag == '"1"' and pool["version"] == 1
    assert pool["provisioning_status"] == "ACTIVE" and pool["tenant_id"] == who.tenant_id
    assert pool["attrs"] == {"timeout_server": 120.0} and pool["kind"] == "pool"
    got, etag = svc.get(who, "pool", pool["id"])
    assert got == pool and etag == '"1"'

    changed = svc.update(who, "pool", pool["id"], {"algorithm": "source", "attrs": {"timeout_connect": 1}},
                         if_match='"1"')
    assert changed.etag == '"2"'
    assert changed.obj["algorithm"] == "source"
    assert changed.obj["attrs"] == {"timeout_server": 120.0, "timeout_connect": 1.0}  # merged
    unset = svc.update(who, "pool", pool["id"], {"attrs": {"timeout_server": None}})
    assert unset.obj["attrs"] == {"timeout_connect": 1.0}

    # A GET result sent back as it is changes nothing (read-only fields unchanged are accepted).
    same = svc.update(who, "pool", pool["id"], svc.get(who, "pool", pool["id"])[0])
    assert same.obj["version"] == 3

    deleted = svc.delete(who, "pool", pool["id"])
    assert deleted.obj is None and deleted.etag is None
    with pytest.raises(NotFound):
        svc.get(who, "pool", pool["id"])


def test_every_change_ends_active_and_reaches_every_node(world):
    ids = build_site(world)
    for kind, key in (("cluster", "cluster"), ("instance", "instance"), ("listener", "listener"), ("pool", "pool"),
                      ("healthmonitor", "monitor"), ("acl", "acl"), ("member", "m1"), ("loadbalancer", "node1")):
        assert statuses(world, kind, ids[key])[0] == "ACTIVE"
    last = world.applier.calls[-1]
    assert last["cluster_id"] == ids["cluster"]
    assert sorted(node["id"] for node in last["nodes"]) == sorted([ids["node0"], ids["node1"]])
    spec = last["spec"]
    assert spec == world.service.cluster_spec(ids["cluster"])
    node = world.service.get(world.alice, "loadbalancer", ids["node0"])[0]
    assert node["revision"] == spec.revision and node["last_error"] is None
    cluster = world.service.get(world.alice, "cluster", ids["cluster"])[0]
    assert cluster["revision"] == spec.revision and cluster["provisioning_status"] == "ACTIVE"
    # An unbound pool's changes touch no cluster: nothing is pushed.
    calls = len(world.applier.calls)
    world.service.create(world.alice, "pool", {"name": "spare"})
    assert len(world.applier.calls) == calls


def test_immutable_read_only_and_unknown_fields(world):
    svc, who = world.service, world.alice
    ids = build_site(world)
    with pytest.raises(Invalid) as caught:
        svc.update(who, "listener", ids["listener"], {"protocol": "TCP", "prot": 1, "provisioning_status": "ERROR",
                                                      "port": 70000})
    errors = dict(caught.value.errors)
    assert errors["protocol"] == "cannot be changed after create"
    assert errors["prot"].startswith("unknown field")
    assert errors["provisioning_status"] == "is read-only"
    assert errors["port"] == "must be 1..65535"
    with pytest.raises(Invalid) as caught:
        svc.create(who, "member", {"pool_id": ids["pool"], "address": "www.example.com"})
    errors = dict(caught.value.errors)
    assert "is not an IP address" in errors["address"] and errors["port"] == "required"
    with pytest.raises(Invalid):
        svc.create(who, "widget", {})


# -- tenancy --------------------------------------------------------------------------------------------

def test_another_tenants_objects_are_not_found(world):
    svc = world.service
    ids = build_site(world, world.alice)
    for kind in ("cluster", "loadbalancer", "instance", "listener", "pool", "member", "healthmonitor", "acl"):
        key = {"loadbalancer": "node0", "member": "m1", "healthmonitor": "monitor"}.get(kind, kind)
        with pytest.raises(NotFound):
            svc.get(world.bob, kind, ids[key])
        with pytest.raises(NotFound):
            svc.update(world.bob, kind, ids[key], {"name": "mine"})
        with pytest.raises(NotFound):
            svc.delete(world.bob, kind, ids[key])
        with pytest.raises(NotFound):
            svc.effective(world.bob, kind, ids[key])
        assert svc.list(world.bob, kind) == ([], 0)
        assert svc.list(world.admin, kind)[1] >= 1
    # Referring to another tenant's object is a bad reference, not a leak.
    with pytest.raises(Invalid) as caught:
        svc.create(world.bob, "listener", {"instance_id": ids["instance"], "port": 81, "protocol": "HTTP"})
    assert caught.value.errors == [("instance_id", f"instance {ids['instance']} not found")]
    with pytest.raises(NotFound):
        svc.status_tree(world.bob, ids["cluster"])


def test_admin_sees_everything_and_acts_for_tenants(world):
    svc = world.service
    ids = build_site(world, world.alice)
    svc.update(world.admin, "member", ids["m1"], {"weight": 5})
    pool = svc.create(world.admin, "pool", {"name": "bobs", "tenant_id": world.bob.tenant_id}).obj
    assert pool["tenant_id"] == world.bob.tenant_id
    assert svc.list(world.bob, "pool")[1] == 1
    # A child is its parent's tenant's, whoever creates it.
    member = svc.create(world.admin, "member", {"pool_id": pool["id"], "address": "10.0.0.1", "port": 80}).obj
    assert member["tenant_id"] == world.bob.tenant_id
    with pytest.raises(Invalid):
        svc.create(world.admin, "member", {"pool_id": pool["id"], "address": "10.0.0.2", "port": 80,
                                           "tenant_id": world.alice.tenant_id})
    with pytest.raises(Forbidden):
        svc.create(world.alice, "pool", {"name": "x", "tenant_id": world.bob.tenant_id})
    with pytest.raises(Invalid):
        svc.create(world.admin, "pool", {"name": "x", "tenant_id": "no-such-tenant"})
    assert len(svc.list_tenants(world.admin)) == 3
    with pytest.raises(Forbidden):
        svc.list_tenants(world.alice)


def test_shared_clusters(world):
    svc = world.service
    with pytest.raises(Forbidden):
        svc.create(world.alice, "cluster", {"name": "mine", "shared": True})
    shared = svc.create(world.admin, "cluster", {"name": "public", "shared": True}).obj
    svc.create(world.admin, "loadbalancer", {"cluster_id": shared["id"], "management_address": "127.0.0.1:9440"})
    # Every tenant sees it and may put instances (and so listeners) on it.
    assert [c["id"] for c in svc.list(world.bob, "cluster")[0]] == [shared["id"]]
    for who, address in ((world.alice, "127.0.0.10"), (world.bob, "127.0.0.11")):
        instance = svc.create(who, "instance", {"cluster_id": shared["id"], "address": address}).obj
        assert instance["tenant_id"] == who.tenant_id
        listener = svc.create(who, "listener", {"instance_id": instance["id"], "port": 80, "protocol": "HTTP"}).obj
        pool = svc.create(who, "pool", {"name": "www"}).obj
        svc.create(who, "member", {"pool_id": pool["id"], "address": "127.0.0.1", "port": 9000})
        svc.create(who, "acl", {"listener_id": listener["id"], "pool_id": pool["id"]})
    # Both tenants' listeners are in the one Spec; their pools share a name, not a Spec name.
    spec = svc.cluster_spec(shared["id"])
    assert len(spec.listeners) == 2 and len(spec.pools) == 2
    # Only the owner changes the cluster or adds nodes; tenants see only their own part.
    with pytest.raises(Forbidden):
        svc.update(world.bob, "cluster", shared["id"], {"name": "taken"})
    with pytest.raises(Forbidden):
        svc.delete(world.bob, "cluster", shared["id"])
    with pytest.raises(Forbidden):
        svc.create(world.bob, "loadbalancer", {"cluster_id": shared["id"], "management_address": "127.0.0.1:1"})
    assert svc.list(world.bob, "loadbalancer") == ([], 0)
    tree = svc.status_tree(world.bob, shared["id"])["cluster"]
    assert [i["address"] for i in tree["instances"]] == ["127.0.0.11"] and "loadbalancers" not in tree
    full = svc.status_tree(world.admin, shared["id"])["cluster"]
    assert len(full["instances"]) == 2 and len(full["loadbalancers"]) == 1
    # A tenant cannot bind another tenant's pool.
    bobs_listener = svc.list(world.bob, "listener")[0][0]
    alices_pool = svc.list(world.alice, "pool")[0][0]
    with pytest.raises(Invalid) as caught:
        svc.create(world.bob, "acl", {"listener_id": bobs_listener["id"], "pool_id": alices_pool["id"]})
    assert caught.value.errors[0][0] == "pool_id"


# -- conflicts ------------------------------------------------------------------------------------------

def test_conflicts(world):
    svc, who = world.service, world.alice
    ids = build_site(world)
    with pytest.raises(Conflict, match="port 8080"):
        svc.create(who, "listener", {"instance_id": ids["instance"], "port": 8080, "protocol": "TCP"})
    other = svc.create(who, "listener", {"instance_id": ids["instance"], "port": 8081, "protocol": "TCP"}).obj
    with pytest.raises(Conflict):
        svc.update(who, "listener", other["id"], {"port": 8080})
    with pytest.raises(Conflict, match="already has a member"):
        svc.create(who, "member", {"pool_id": ids["pool"], "address": "127.0.0.1", "port": 9001})
    with pytest.raises(Conflict, match="health monitor"):
        svc.create(who, "healthmonitor", {"pool_id": ids["pool"], "type": "TCP"})
    with pytest.raises(Conflict, match="already an instance"):
        svc.create(who, "instance", {"cluster_id": ids["cluster"], "address": "127.0.0.1"})
    with pytest.raises(Conflict, match="default acl"):
        svc.create(who, "acl", {"listener_id": ids["listener"], "pool_id": ids["pool"]})
    with pytest.raises(Conflict, match="still bound"):
        svc.delete(who, "pool", ids["pool"])
    with pytest.raises(Conflict, match="listener"):
        svc.delete(who, "instance", ids["instance"])
    with pytest.raises(Conflict, match="instance"):
        svc.delete(who, "cluster", ids["cluster"])
    # Unbound, the pool goes, with its members and monitor.
    svc.delete(who, "acl", ids["acl"])
    svc.delete(who, "pool", ids["pool"])
    for kind, key in (("member", "m1"), ("healthmonitor", "monitor")):
        with pytest.raises(NotFound):
            svc.get(who, kind, ids[key])


def test_a_cluster_mid_change_refuses_changes_until_settled(world):
    svc, who = world.service, world.alice
    ids = build_site(world)
    with world.store.unit_of_work() as uow:
        uow.execute(update(Cluster).where(Cluster.id == ids["cluster"]).values(provisioning_status="PENDING_UPDATE"))
    before = counts(world)
    for action in (
        lambda: svc.create(who, "listener", {"instance_id": ids["instance"], "port": 81, "protocol": "HTTP"}),
        lambda: svc.update(who, "member", ids["m1"], {"weight": 3}),  # the pool is bound on that cluster
        lambda: svc.delete(who, "acl", ids["acl"]),
        lambda: svc.update(who, "cluster", ids["cluster"], {"name": "x"}, dry_run=True),
    ):
        with pytest.raises(Conflict, match="PENDING_UPDATE"):
            action()
    assert counts(world) == before
    # A change that died mid-way is recovered to ERROR, and ERROR can be changed again.
    assert svc.recover() >= 1
    assert statuses(world, "cluster", ids["cluster"])[0] == "ERROR"
    svc.update(who, "member", ids["m1"], {"weight": 3})
    assert statuses(world, "cluster", ids["cluster"])[0] == "ACTIVE"


def test_if_match(world):
    svc, who = world.service, world.alice
    pool = svc.create(who, "pool", {"name": "p"}).obj
    with pytest.raises(PreconditionFailed) as caught:
        svc.update(who, "pool", pool["id"], {"name": "q"}, if_match='"7"')
    assert caught.value.status == 412 and caught.value.current == '"1"'
    assert svc.update(who, "pool", pool["id"], {"name": "q"}, if_match='W/"1"').etag == '"2"'
    assert svc.update(who, "pool", pool["id"], {"name": "r"}, if_match="*").etag == '"3"'
    assert svc.update(who, "pool", pool["id"], {"name": "s"}, if_match='"2", "3"').etag == '"4"'
    with pytest.raises(PreconditionFailed):
        svc.delete(who, "pool", pool["id"], if_match='"3"')
    svc.delete(who, "pool", pool["id"], if_match='"4"')


def test_status_transitions_do_not_change_the_etag(world):
    ids = build_site(world)
    _, etag = world.service.get(world.alice, "listener", ids["listener"])
    world.service.update(world.alice, "member", ids["m1"], {"weight": 4})  # locks and settles the cluster
    world.service.report_member_health(ids["cluster"], {ids["m1"]: "UP"})
    assert world.service.get(world.alice, "listener", ids["listener"])[1] == etag


# -- dry runs and validation ------------------------------------------------------------------------------

def snapshot(world: World) -> dict[str, list[dict]]:
    return {kind: world.service.list(world.admin, kind, limit=1000)[0] for kind in world.service.KINDS}


def test_dry_run_shows_the_diff_and_changes_nothing(world):
    svc, who = world.service, world.alice
    ids = build_site(world)
    before, calls = snapshot(world), len(world.applier.calls)
    created = svc.create(who, "member", {"pool_id": ids["pool"], "name": "w3", "address": "127.0.0.1", "port": 9003},
                         dry_run=True)
    assert created.dry_run and created.etag is None and created.obj["address"] == "127.0.0.1"
    [change] = created.diffs[ids["cluster"]]
    assert change["kind"] == "added" and change["path"].startswith("pools[www-") and ".members[w3-" in change["path"]
    updated = svc.update(who, "cluster", ids["cluster"], {"attrs": {"timeout_client": "1m"}}, dry_run=True)
    assert {"path": f"listeners[web-{ids['listener'][:8]}].timeouts.client", "kind": "changed", "old": 30.0,
            "new": 60.0} in updated.diffs[ids["cluster"]]
    deleted = svc.delete(who, "acl", ids["acl"], dry_run=True)
    assert {c["path"] for c in deleted.diffs[ids["cluster"]]} == {f"listeners[web-{ids['listener'][:8]}]",
                                                                   f"pools[www-{ids['pool'][:8]}]"}
    vip_pool = svc.create(who, "pool", {"name": "legacy"}).obj
    before = snapshot(world)
    vip = svc.legacy_vip(who, {"pool_id": vip_pool["id"], "address": "127.0.0.9", "port": 80}, dry_run=True)
    assert vip.dry_run and len(vip.diffs) == 1
    assert snapshot(world) == before and len(world.applier.calls) == calls


def test_a_change_giving_an_invalid_spec_is_refused_and_changes_nothing(world):
    svc, who = world.service, world.alice
    ids = build_site(world)
    tcp = svc.create(who, "listener", {"instance_id": ids["instance"], "name": "db", "port": 5432, "protocol": "TCP"}).obj
    svc.create(who, "acl", {"listener_id": tcp["id"], "pool_id": ids["pool"]})
    before, calls = snapshot(world), len(world.applier.calls)
    cluster = svc.get(who, "cluster", ids["cluster"])[0]
    # A layer-4 listener cannot route on the path: the Spec says so, with named paths.
    with pytest.raises(Invalid) as caught:
        svc.create(who, "acl", {"listener_id": tcp["id"], "pool_id": ids["pool"], "name": "static",
                                "condition": {"path": {"prefix": "/static/"}}})
    [(path, message)] = caught.value.errors
    assert path.startswith(f"listeners[db-{tcp['id'][:8]}].acls[static-") and path.endswith("].condition")
    assert "can only match on src" in message
    # A redirect on a listener that routes to pools.
    with pytest.raises(Invalid) as caught:
        svc.update(who, "listener", ids["listener"], {"redirect": {"scheme": "https"}})
    assert caught.value.errors[0][0] == f"listeners[web-{ids['listener'][:8]}].redirect"
    # Headers on a TCP listener.
    with pytest.raises(Invalid):
        svc.update(who, "listener", tcp["id"], {"add_headers": {"X-A": "1"}})
    assert snapshot(world) == before and len(world.applier.calls) == calls
    assert svc.get(who, "cluster", ids["cluster"])[0] == cluster


def test_field_checks_come_from_the_spec(world):
    svc, who = world.service, world.alice
    ids = build_site(world)
    with pytest.raises(Invalid) as caught:
        svc.create(who, "acl", {"listener_id": ids["listener"], "pool_id": ids["pool"], "condition": "hots foo"})
    assert caught.value.errors == [("condition", "unknown fetch 'hots' (did you mean 'host'?)")]
    with pytest.raises(Invalid) as caught:
        svc.update(who, "pool", ids["pool"], {"persistence": {"type": "cookie", "name": "bad name"},
                                              "algorithm": "fastest"})
    assert {path for path, _ in caught.value.errors} == {"persistence", "algorithm"}
    with pytest.raises(Invalid) as caught:
        svc.update(who, "healthmonitor", ids["monitor"], {"type": "TCP"})
    assert caught.value.errors == [("path", "only HTTP and HTTPS monitors take path (this one is TCP)")]
    svc.update(who, "healthmonitor", ids["monitor"], {"type": "TCP", "path": None})
    with pytest.raises(Invalid) as caught:
        svc.update(who, "healthmonitor", ids["monitor"], {"interval": "1s", "timeout": "2s"})
    assert caught.value.errors[0][1] == "must not exceed interval (1s)"


# -- apply ----------------------------------------------------------------------------------------------

def test_a_failing_node_marks_itself_and_the_change_error_and_a_retry_recovers(world):
    svc, who = world.service, world.alice
    ids = build_site(world)
    world.applier.fail["127.0.0.1:9441"] = "node1: connection refused"
    result = svc.create(who, "member", {"pool_id": ids["pool"], "name": "w3", "address": "127.0.0.1", "port": 9003})
    assert result.applied == {ids["cluster"]: {ids["node0"]: None, ids["node1"]: "node1: connection refused"}}
    assert result.obj["provisioning_status"] == "ERROR"
    node0 = svc.get(who, "loadbalancer", ids["node0"])[0]
    node1 = svc.get(who, "loadbalancer", ids["node1"])[0]
    assert node0["provisioning_status"] == "ACTIVE" and node0["revision"] == world.applier.calls[-1]["spec"].revision
    assert node1["provisioning_status"] == "ERROR" and node1["last_error"] == "node1: connection refused"
    assert node1["revision"] != node0["revision"]
    assert statuses(world, "cluster", ids["cluster"]) == ("ERROR", "DEGRADED")
    # The others keep going: the failing node still gets every later revision.
    assert ids["node1"] in [n["id"] for n in world.applier.calls[-1]["nodes"]]
    # Retry: the node is back; an empty update re-applies and settles everything.
    world.applier.fail.clear()
    retried = svc.update(who, "member", result.obj["id"], {})
    assert retried.obj["provisioning_status"] == "ACTIVE"
    assert statuses(world, "cluster", ids["cluster"])[0] == "ACTIVE"
    node1 = svc.get(who, "loadbalancer", ids["node1"])[0]
    assert node1["provisioning_status"] == "ACTIVE" and node1["last_error"] is None
    assert node1["revision"] == svc.get(who, "cluster", ids["cluster"])[0]["revision"]


def test_an_applier_that_raises_or_forgets_a_node_ends_in_error(world):
    svc, who = world.service, world.alice
    ids = build_site(world)
    world.applier.raise_error = RuntimeError("driver bug")
    result = svc.update(who, "listener", ids["listener"], {"name": "web2"})
    assert result.obj["provisioning_status"] == "ERROR"
    assert all("RuntimeError: driver bug" in error for error in result.applied[ids["cluster"]].values())
    world.applier.raise_error = None
    world.applier.apply = lambda cluster_id, spec, files, nodes: {}  # answers for no node
    result = svc.update(who, "listener", ids["listener"], {})
    assert set(result.applied[ids["cluster"]].values()) == {"the applier gave no answer for this node"}
    assert statuses(world, "listener", ids["listener"])[0] == "ERROR"
    assert svc.reapply(world.alice, ids["cluster"]).obj["provisioning_status"] == "ERROR"


def test_a_failed_delete_keeps_the_object_in_error_and_can_be_deleted_again(world):
    svc, who = world.service, world.alice
    ids = build_site(world)
    world.applier.fail["127.0.0.1:9440"] = "timeout"
    svc.delete(who, "member", ids["m2"])
    assert statuses(world, "member", ids["m2"])[0] == "ERROR"
    world.applier.fail.clear()
    svc.delete(who, "member", ids["m2"])
    with pytest.raises(NotFound):
        svc.get(who, "member", ids["m2"])


def test_reapply_pushes_the_current_spec_to_every_node(world):
    ids = build_site(world)
    calls = len(world.applier.calls)
    result = world.service.reapply(world.alice, ids["cluster"])
    assert result.diffs == {ids["cluster"]: []} and result.obj["id"] == ids["cluster"]
    assert len(world.applier.calls) == calls + 1
    spec, files, nodes = world.service.cluster_payload(ids["cluster"])
    assert spec == world.applier.calls[-1]["spec"] and len(nodes) == 2 and files == {}


def test_nodes_join_and_leave(world):
    svc, who = world.service, world.alice
    ids = build_site(world, nodes=1)
    joined = svc.create(who, "loadbalancer", {"cluster_id": ids["cluster"], "management_address": "127.0.0.1:9449"})
    call = world.applier.calls[-1]
    assert joined.obj["id"] in [n["id"] for n in call["nodes"]] and call["spec"].listeners  # it gets the current Spec
    svc.delete(who, "loadbalancer", ids["node0"])
    assert [n["id"] for n in world.applier.calls[-1]["nodes"]] == [joined.obj["id"]]
    with pytest.raises(NotFound):
        svc.get(who, "loadbalancer", ids["node0"])


def test_unrelated_clusters_are_not_touched(world):
    svc, who = world.service, world.alice
    first = build_site(world)
    second = build_site(world, address="127.0.0.2")
    calls = len(world.applier.calls)
    svc.update(who, "listener", first["listener"], {"name": "renamed"})
    assert [c["cluster_id"] for c in world.applier.calls[calls:]] == [first["cluster"]]
    # A pool bound in both clusters changes both.
    svc.create(who, "acl", {"listener_id": second["listener"], "pool_id": first["pool"], "condition": "path_beg /a"})
    calls = len(world.applier.calls)
    result = svc.update(who, "pool", first["pool"], {"algorithm": "leastconn"})
    assert sorted(c["cluster_id"] for c in world.applier.calls[calls:]) == sorted([first["cluster"], second["cluster"]])
    assert set(result.diffs) == {first["cluster"], second["cluster"]}


# -- legacy VIP -----------------------------------------------------------------------------------------

def test_legacy_vip_creates_cluster_instance_listener_and_default_acl(world):
    svc, who = world.service, world.alice
    pool = svc.create(who, "pool", {"name": "app"}).obj
    svc.create(who, "healthmonitor", {"pool_id": pool["id"], "type": "TCP"})
    svc.create(who, "member", {"pool_id": pool["id"], "address": "10.1.0.5", "port": 8000})
    vip = svc.legacy_vip(who, {"pool_id": pool["id"], "address": "127.0.0.20", "port": 80, "protocol": "HTTP",
                               "network": "net-1",
                               "loadbalancers": [{"management_address": "127.0.0.1:9450", "name": "amp"}]})
    made = vip.obj
    assert made["cluster"]["cluster_model"] == "single" and made["cluster"]["network"] == "net-1"
    assert made["instance"]["address"] == "127.0.0.20"
    assert made["listener"]["port"] == 80 and vip.etag == f'"{made["listener"]["version"]}"'
    assert made["acl"]["condition"] is None and made["acl"]["pool_id"] == pool["id"]
    assert [n["management_address"] for n in made["loadbalancers"]] == ["127.0.0.1:9450"]
    for key in ("cluster", "instance", "listener", "acl"):
        assert made[key]["provisioning_status"] == "ACTIVE"
    spec = svc.cluster_spec(made["cluster"]["id"])
    [listener] = spec.listeners
    assert str(listener.bind) == "127.0.0.20:80" and listener.default_pool == spec.pools[0].name
    assert spec.pools[0].health is not None and spec.pools[0].health.type == "tcp"
    assert world.applier.calls[-1]["nodes"][0]["id"] == made["loadbalancers"][0]["id"]
    # A second VIP on the same network reuses the cluster, and the instance on the same address.
    again = svc.legacy_vip(who, {"pool_id": pool["id"], "address": "127.0.0.20", "port": 8080, "network": "net-1"}).obj
    assert again["cluster"]["id"] == made["cluster"]["id"] and again["instance"]["id"] == made["instance"]["id"]
    assert len(svc.cluster_spec(made["cluster"]["id"]).listeners) == 2
    with pytest.raises(Conflict):
        svc.legacy_vip(who, {"pool_id": pool["id"], "address": "127.0.0.20", "port": 80,
                             "cluster_id": made["cluster"]["id"]})
    with pytest.raises(NotFound):
        svc.legacy_vip(world.bob, {"pool_id": pool["id"], "address": "127.0.0.21", "port": 80})
    with pytest.raises(Invalid) as caught:
        svc.legacy_vip(who, {"pool_id": pool["id"], "address": "nowhere", "port": 0,
                             "loadbalancers": [{"management_address": "x"}]})
    assert {path for path, _ in caught.value.errors} == {"address", "port"}


# -- effective values -------------------------------------------------------------------------------------

def test_effective_values_and_where_they_come_from(world):
    svc, who = world.service, world.alice
    ids = build_site(world)
    svc.update(who, "cluster", ids["cluster"], {"attrs": {"timeout_client": "45s", "health_interval": "5s",
                                                          "weight": 3, "algorithm": "leastconn"}})
    svc.update(who, "instance", ids["instance"], {"attrs": {"maxconn": 500, "shards": "per-worker", "backlog": 100}})
    svc.update(who, "listener", ids["listener"], {"attrs": {"timeout_client": "90s", "backlog": 4096}})
    svc.update(who, "pool", ids["pool"], {"attrs": {"weight": 7, "health_rise": 4}})
    svc.update(who, "member", ids["m2"], {"weight": 9})
    svc.update(who, "healthmonitor", ids["monitor"], {"fall": 6})
    listener = svc.effective(who, "listener", ids["listener"])
    assert listener["timeout_client"] == {"value": 90.0, "source": {"kind": "listener", "id": ids["listener"], "name": "web"}}
    assert listener["maxconn"]["value"] == 500 and listener["maxconn"]["source"]["kind"] == "instance"
    assert listener["timeout_keepalive"]["source"]["kind"] == "default"
    assert listener["shards"]["value"] == "per-worker" and listener["shards"]["source"]["kind"] == "instance"
    assert listener["backlog"]["value"] == 4096 and listener["backlog"]["source"]["kind"] == "listener"
    assert svc.effective(who, "instance", ids["instance"])["timeout_client"]["source"]["kind"] == "cluster"
    pool = svc.effective(who, "pool", ids["pool"])
    assert pool["algorithm"]["value"] == "leastconn" and pool["algorithm"]["source"]["kind"] == "cluster"
    assert pool["weight"]["value"] == 7
    assert svc.effective(who, "member", ids["m1"]) == {
        "weight": {"value": 7, "source": {"kind": "pool", "id": ids["pool"], "name": "www"}}}
    assert svc.effective(who, "member", ids["m2"])["weight"]["source"]["kind"] == "member"
    monitor = svc.effective(who, "healthmonitor", ids["monitor"])
    assert monitor["health_interval"]["value"] == 5.0 and monitor["health_interval"]["source"]["kind"] == "cluster"
    assert monitor["health_rise"]["source"]["kind"] == "pool" and monitor["health_fall"]["source"]["kind"] == "healthmonitor"
    assert svc.effective(who, "acl", ids["acl"]) == {}
    # The Spec carries the same values.
    spec = svc.cluster_spec(ids["cluster"])
    assert spec.listeners[0].timeouts.client == 90.0 and spec.listeners[0].maxconn == 500
    assert spec.listeners[0].shards == "per-worker" and spec.listeners[0].backlog == 4096
    [pool_spec] = spec.pools
    assert pool_spec.algorithm == "leastconn"
    assert [m.weight for m in pool_spec.members] == [7, 9]
    assert (pool_spec.health.interval, pool_spec.health.rise, pool_spec.health.fall) == (5.0, 4, 6)


def test_effective_of_a_pool_serving_two_clusters(world):
    svc, who = world.service, world.alice
    first = build_site(world)
    second = build_site(world, address="127.0.0.2")
    svc.create(who, "acl", {"listener_id": second["listener"], "pool_id": first["pool"], "condition": "path_beg /a"})
    svc.update(who, "cluster", second["cluster"], {"attrs": {"timeout_server": "1m"}})
    out = svc.effective(who, "pool", first["pool"])
    assert out["timeout_server"]["value"] == 30.0  # what a cluster setting nothing gives
    per = out["timeout_server"]["per_cluster"]
    assert per[first["cluster"]]["value"] == 30.0 and per[second["cluster"]]["value"] == 60.0
    assert svc.effective(who, "pool", first["pool"], cluster_id=second["cluster"])["timeout_server"]["value"] == 60.0
    with pytest.raises(Invalid):
        svc.effective(who, "pool", second["pool"], cluster_id=first["cluster"])


# -- status tree and operating status -------------------------------------------------------------------

def test_status_tree_and_operating_status(world):
    svc, who = world.service, world.alice
    ids = build_site(world)
    tree = svc.status_tree(who, ids["cluster"])["cluster"]
    assert tree["id"] == ids["cluster"] and tree["provisioning_status"] == "ACTIVE"
    [instance] = tree["instances"]
    [listener] = instance["listeners"]
    [pool] = listener["pools"]
    assert pool["healthmonitor"]["type"] == "HTTP"
    assert [m["id"] for m in pool["members"]] == [ids["m1"], ids["m2"]]
    assert {n["provisioning_status"] for n in tree["loadbalancers"]} == {"ACTIVE"}
    # Health reported by the engines, by id or by Spec names, rolls up.
    spec = svc.cluster_spec(ids["cluster"])
    pool_name = spec.pools[0].name
    member2 = spec.pools[0].members[1].name
    assert svc.report_member_health(ids["cluster"], {ids["m1"]: "UP", f"{pool_name}/{member2}": "DOWN", "x": "UP"}) == {
        "updated": 2, "unknown": ["x"]}
    assert statuses(world, "member", ids["m1"])[1] == "ONLINE"
    assert statuses(world, "member", ids["m2"])[1] == "ERROR"
    assert statuses(world, "pool", ids["pool"])[1] == "DEGRADED"
    assert statuses(world, "listener", ids["listener"])[1] == "DEGRADED"
    assert statuses(world, "cluster", ids["cluster"])[1] == "DEGRADED"
    svc.update(who, "member", ids["m2"], {"admin_state": "drain"})
    assert statuses(world, "member", ids["m2"])[1] == "DRAINING"
    assert statuses(world, "pool", ids["pool"])[1] == "ONLINE"
    assert statuses(world, "cluster", ids["cluster"])[1] == "ONLINE"
    svc.update(who, "member", ids["m1"], {"admin_state": "maint"})
    assert statuses(world, "member", ids["m1"])[1] == "OFFLINE"
    svc.delete(who, "healthmonitor", ids["monitor"])
    assert statuses(world, "member", ids["m2"])[1] == "DRAINING"
    svc.update(who, "member", ids["m2"], {"admin_state": "enabled"})
    assert statuses(world, "member", ids["m2"])[1] == "NO_MONITOR"
    # A listener not yet routable (no acl) is served by nobody.
    idle = svc.create(who, "listener", {"instance_id": ids["instance"], "port": 9999, "protocol": "HTTP"}).obj
    assert idle["provisioning_status"] == "ACTIVE" and idle["operating_status"] == "OFFLINE"


# -- listing ------------------------------------------------------------------------------------------------

def test_list_filters_sorts_and_pages(world):
    svc, who = world.service, world.alice
    pool = svc.create(who, "pool", {"name": "p"}).obj
    for port in (9005, 9001, 9003, 9002, 9004):
        svc.create(who, "member", {"pool_id": pool["id"], "address": "127.0.0.1", "port": port,
                                   "backup": port == 9005})
    items, total = svc.list(who, "member", sort="-port", limit=2, offset=1)
    assert total == 5 and [m["port"] for m in items] == [9004, 9003]
    items, total = svc.list(who, "member", filters={"backup": "true"})
    assert total == 1 and items[0]["port"] == 9005
    assert svc.list(who, "member", filters={"port": "9002", "pool_id": pool["id"]})[1] == 1
    assert svc.list(who, "member", filters={"provisioning_status": "ACTIVE"}, sort="port,-name")[1] == 5
    with pytest.raises(Invalid) as caught:
        svc.list(who, "member", filters={"prot": "1", "port": "x"}, sort="colour", limit=0)
    assert {path for path, _ in caught.value.errors} == {"filters.prot", "filters.port", "sort", "limit"}
    with pytest.raises(Invalid):
        svc.list(who, "tls_certificate", filters={"private_key": "x"})


# -- acls and their order --------------------------------------------------------------------------------

def test_acl_positions_and_the_default_pool(world):
    svc, who = world.service, world.alice
    ids = build_site(world)
    pools = {name: svc.create(who, "pool", {"name": name}).obj["id"] for name in ("api", "static")}
    api = svc.create(who, "acl", {"listener_id": ids["listener"], "pool_id": pools["api"], "name": "api",
                                  "condition": "hdr(host) -i api.example.com"}).obj
    static = svc.create(who, "acl", {"listener_id": ids["listener"], "pool_id": pools["static"], "name": "static",
                                     "condition": {"path": {"prefix": "/static/"}}}).obj
    assert (api["position"], static["position"]) == (1, 2)  # appended after the default acl (0)
    listener = svc.cluster_spec(ids["cluster"]).listeners[0]
    assert [a.name.split("-")[0] for a in listener.acls] == ["api", "static"]
    assert listener.default_pool.startswith("www-")
    svc.update(who, "acl", static["id"], {"position": 0})
    assert [a.name.split("-")[0] for a in svc.cluster_spec(ids["cluster"]).listeners[0].acls] == ["static", "api"]
    # Without a condition-less acl, the first pool bound is the default.
    svc.delete(who, "acl", ids["acl"])
    assert svc.cluster_spec(ids["cluster"]).listeners[0].default_pool.startswith("api-")
    svc.update(who, "acl", api["id"], {"pool_id": pools["static"]})
    assert svc.cluster_spec(ids["cluster"]).listeners[0].default_pool.startswith("static-")


# -- tokens -------------------------------------------------------------------------------------------------

def test_tokens_are_stored_hashed_and_authenticate(world):
    svc = world.service
    token = svc.create_token(world.alice.tenant_id)
    admin_token = svc.create_token(world.admin.tenant_id, admin=True)
    assert svc.authenticate(token) == world.alice
    assert svc.authenticate(admin_token) == Principal(world.admin.tenant_id, True)
    token_id, secret = token.split("_", 2)[1:]
    for wrong in ("", "nope", f"lbc_{token_id}_{secret}x", f"lbc_{token_id}_", f"lbc_missing_{secret}", None):
        assert svc.authenticate(wrong) is None
    with world.store.unit_of_work(readonly=True) as uow:
        rows = uow.scalars(select(Token)).all()
        assert all(secret not in row.digest for row in rows) and len(rows[0].digest) == 64
    with pytest.raises(NotFound):
        svc.create_token("no-such-tenant")
    with pytest.raises(Conflict):
        svc.create_tenant("alice")
    with pytest.raises(NotFound):
        svc.revoke_token(world.bob, token_id)
    svc.revoke_token(world.alice, token_id)
    assert svc.authenticate(token) is None


def test_schema_describes_each_kind(world):
    schema = world.service.schema("listener")
    fields = schema["fields"]
    assert fields["port"]["required"] and fields["protocol"]["choices"] == ["HTTP", "HTTPS", "TCP", "TLS-PASSTHROUGH"]
    assert fields["protocol"]["mutable"] is False and fields["instance_id"]["ref"] == "instance"
    assert "provisioning_status" in schema["read_only"]
    cert = world.service.schema("tls_certificate")
    assert cert["fields"]["private_key"]["write_only"] and "has_private_key" in cert["read_only"]
    assert world.service.schema("cluster")["fields"]["shared"]["admin_only"]


def test_restart_loses_nothing(world):
    ids = build_site(world)
    before = snapshot(world)
    spec = world.service.cluster_spec(ids["cluster"])
    token = world.service.create_token(world.bob.tenant_id)
    again = world.reopen()
    try:
        assert snapshot(again) == before
        assert again.service.cluster_spec(ids["cluster"]) == spec
        assert again.service.authenticate(token) == world.bob
        again.service.update(again.alice, "member", ids["m1"], {"weight": 2})
    finally:
        again.store.close()


def test_every_committed_spec_is_one_parse_spec_accepts(world):
    ids = build_site(world)
    for call in world.applier.calls:
        assert parse_spec(call["spec"].to_dict()) == call["spec"]
    with world.store.unit_of_work(readonly=True) as uow:
        assert uow.get(Listener, ids["listener"]).etag == '"1"'


def test_reconcile_brings_a_node_that_comes_back_to_the_current_revision(world):
    svc, who = world.service, world.alice
    ids = build_site(world)
    world.applier.fail["127.0.0.1:9441"] = "node1: connection refused"
    svc.create(who, "member", {"pool_id": ids["pool"], "name": "w3", "address": "127.0.0.1", "port": 9003})
    assert svc.get(who, "loadbalancer", ids["node1"])[0]["provisioning_status"] == "ERROR"
    assert svc.reconcile() == [ids["cluster"]]  # still down: stays ERROR, retried next round
    assert svc.get(who, "loadbalancer", ids["node1"])[0]["provisioning_status"] == "ERROR"
    world.applier.fail.clear()  # the node is back
    assert svc.reconcile() == [ids["cluster"]]
    node1 = svc.get(who, "loadbalancer", ids["node1"])[0]
    assert node1["provisioning_status"] == "ACTIVE"
    assert node1["revision"] == svc.get(who, "cluster", ids["cluster"])[0]["revision"]
    assert svc.reconcile() == []  # nothing left to do
