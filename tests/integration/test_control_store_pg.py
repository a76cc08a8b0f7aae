"""The control plane's store, the same suite on SQLite and on a real PostgreSQL server.

PostgreSQL comes from ``LBCORE_TEST_PG_URL`` (``make test`` starts a throwaway server
with ``scripts/pg-test-server`` and sets it). Without it the PostgreSQL cases skip on
a developer's machine and FAIL under CI=true, so CI cannot pass without them.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, select, text

from lbcore.control.errors import Conflict
from lbcore.control.model import Base, Cluster, Member, Pool, Tenant, TlsCertificate, new_id
from lbcore.control.service import ControlService
from lbcore.control.store import Store, database_url
from tests import tlsgen
from tests.unit.test_control_service import FakeApplier, World, build_site, make_world, snapshot

PG_URL = os.environ.get("LBCORE_TEST_PG_URL")


def _reset_postgres(url: str) -> None:
    engine = create_engine(database_url(url))
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return os.fspath(tmp_path / "control.db")
    if not PG_URL:
        message = "LBCORE_TEST_PG_URL is not set (run the tests with scripts/pg-test-server, as make test does)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    _reset_postgres(PG_URL)
    return PG_URL


@pytest.fixture
def world(url, tmp_path):
    w = make_world(tmp_path, url)
    yield w
    w.store.close()


def test_migrations_apply_once_and_match_the_models(url):
    store = Store(url)
    try:
        assert store.schema_revision() is None
        assert store.migrate() == "0001"
        assert store.migrate() == "0001"  # idempotent
        with store.engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        store.close()


def test_unit_of_work_commits_or_rolls_back(url):
    store = Store(url)
    store.migrate()
    try:
        with store.unit_of_work() as uow:
            uow.add(Tenant(id="t1", name="one"))
        with pytest.raises(RuntimeError):
            with store.unit_of_work() as uow:
                uow.add(Tenant(id="t2", name="two"))
                uow.flush()
                raise RuntimeError("boom")
        with store.unit_of_work() as uow:
            uow.add(Tenant(id="t3", name="three"))
            uow.flush()
            uow.rollback()
        with store.unit_of_work(readonly=True) as uow:
            assert [t.id for t in uow.scalars(select(Tenant).order_by(Tenant.id))] == ["t1"]
            uow.add(Tenant(id="t4", name="four"))  # a read-only unit of work commits nothing
        with store.unit_of_work(readonly=True) as uow:
            assert uow.get(Tenant, "t4") is None
            created = uow.get(Tenant, "t1").created_at
            assert created.tzinfo is not None  # aware UTC on every backend
    finally:
        store.close()


def test_objects_round_trip_with_json_and_secrets(world):
    ids = build_site(world)
    svc, who = world.service, world.alice
    svc.update(who, "cluster", ids["cluster"], {"attrs": {"forwarded_headers": ["x-forwarded-for"], "max_body": "1m"},
                                                "ha_addresses": ["10.0.0.1", "fd00::1"]})
    condition = {"any": [{"host": "api.example.com"}, {"path": {"prefix": "/api/"}}]}
    acl = svc.create(who, "acl", {"listener_id": ids["listener"], "pool_id": ids["pool"], "condition": condition}).obj
    assert svc.get(who, "acl", acl["id"])[0]["condition"] == condition
    cluster = svc.get(who, "cluster", ids["cluster"])[0]
    assert cluster["attrs"] == {"forwarded_headers": ["x-forwarded-for"], "max_body": 1048576}
    assert cluster["ha_addresses"] == ["10.0.0.1", "fd00::1"]
    assert svc.list(who, "member", filters={"backup": "false", "port": "9001"})[1] == 1
    ca = tlsgen.make_ca()
    leaf = tlsgen.issue(ca, ["www.example.com"])
    https = svc.create(who, "listener", {"instance_id": ids["instance"], "port": 443, "protocol": "HTTPS"}).obj
    cert = svc.create(who, "tls_certificate", {"listener_id": https["id"], "certificate": leaf.pem.decode(),
                                               "private_key": leaf.key_pem("pw").decode(), "passphrase": "pw"}).obj
    with world.store.unit_of_work(readonly=True) as uow:
        raw = uow.execute(text("SELECT private_key, passphrase FROM tls_certificates")).one()
        assert raw[0].startswith("v1:") and raw[1].startswith("v1:") and "PRIVATE" not in raw[0]
        assert uow.get(TlsCertificate, cert["id"]).not_after.tzinfo is not None


def test_restart_loses_nothing(world):
    ids = build_site(world)
    before = snapshot(world)
    spec = world.service.cluster_spec(ids["cluster"])
    token = world.service.create_token(world.alice.tenant_id)
    again: World = world.reopen(FakeApplier())
    try:
        assert snapshot(again) == before
        assert again.service.cluster_spec(ids["cluster"]) == spec
        assert again.service.authenticate(token) == world.alice
        again.service.delete(again.alice, "member", ids["m2"])
        assert again.service.list(again.alice, "member")[1] == 1
    finally:
        again.store.close()


def test_the_cluster_lock_holds_across_concurrent_changes(world):
    """While one change is being applied (its cluster PENDING_UPDATE), a change from another
    thread to the same cluster is refused with 409; one on another cluster goes through."""
    ids = build_site(world)
    other = build_site(world, address="127.0.0.2")
    svc, who = world.service, world.alice
    entered, release = threading.Event(), threading.Event()
    outcome: dict[str, object] = {}

    def slow() -> None:
        entered.set()
        assert release.wait(10)

    world.applier.hook = slow

    def first() -> None:
        outcome["first"] = svc.update(who, "member", ids["m1"], {"weight": 5})

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert entered.wait(10)
        world.applier.hook = None
        with pytest.raises(Conflict):
            svc.update(who, "listener", ids["listener"], {"name": "meanwhile"})
        with pytest.raises(Conflict):
            svc.create(who, "member", {"pool_id": ids["pool"], "address": "127.0.0.1", "port": 9009})
        assert svc.get(who, "cluster", ids["cluster"])[0]["provisioning_status"] == "PENDING_UPDATE"
        svc.update(who, "listener", other["listener"], {"name": "elsewhere"})
    finally:
        release.set()
        thread.join(10)
    assert outcome["first"].obj["provisioning_status"] == "ACTIVE"
    assert svc.get(who, "cluster", ids["cluster"])[0]["provisioning_status"] == "ACTIVE"
    svc.update(who, "listener", ids["listener"], {"name": "after"})


def test_concurrent_updates_of_one_object_never_both_win(world):
    """Two writers race on one member: each change is serialised by the lock (409) or by the
    ETag (412); the version counts exactly the changes that were applied."""
    ids = build_site(world, nodes=0)
    svc, who = world.service, world.alice
    _, etag = svc.get(who, "member", ids["m1"])
    results: list[object] = []

    def writer(weight: int) -> None:
        try:
            results.append(svc.update(who, "member", ids["m1"], {"weight": weight}, if_match=etag))
        except Exception as exc:  # noqa: BLE001 - collected and checked below
            results.append(exc)

    threads = [threading.Thread(target=writer, args=(weight,)) for weight in (2, 3, 4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    won = [r for r in results if not isinstance(r, Exception)]
    lost = [r for r in results if isinstance(r, Exception)]
    assert len(won) == 1 and len(lost) == 2
    assert {getattr(exc, "status", None) for exc in lost} <= {409, 412}, [repr(exc) for exc in lost]
    member, _ = svc.get(who, "member", ids["m1"])
    assert member["version"] == 2 and member["weight"] == won[0].obj["weight"]


def test_stale_objects_are_detected(url, tmp_path):
    """Optimistic concurrency in the store itself: an update from a session that read an
    older version fails instead of overwriting (SQLAlchemy's version counter)."""
    world = make_world(tmp_path, url)
    try:
        pool = world.service.create(world.alice, "pool", {"name": "p"}).obj
        with world.store.unit_of_work(readonly=True) as uow:
            stale = uow.get(Pool, pool["id"])
        world.service.update(world.alice, "pool", pool["id"], {"name": "newer"})
        from sqlalchemy.orm.exc import StaleDataError

        with pytest.raises(StaleDataError):
            with world.store.unit_of_work() as uow:
                stale = uow.session.merge(stale, load=False)
                stale.name = "older"
                uow.flush()
    finally:
        world.store.close()


def test_deletes_cascade_in_the_database(world):
    ids = build_site(world)
    svc, who = world.service, world.alice
    svc.delete(who, "acl", ids["acl"])
    svc.delete(who, "pool", ids["pool"])
    with world.store.unit_of_work(readonly=True) as uow:
        assert uow.scalars(select(Member).where(Member.pool_id == ids["pool"])).all() == []
    svc.delete(who, "listener", ids["listener"])
    svc.delete(who, "instance", ids["instance"])
    svc.delete(who, "cluster", ids["cluster"])
    with world.store.unit_of_work(readonly=True) as uow:
        assert uow.get(Cluster, ids["cluster"]) is None
        assert uow.execute(text("SELECT count(*) FROM loadbalancers")).scalar_one() == 0
    # A row the service would refuse to orphan is refused by the database as well.
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError):
        with world.store.unit_of_work() as uow:
            uow.add(Member(id=new_id(), tenant_id=world.alice.tenant_id, pool_id="no-such-pool", address="127.0.0.1",
                           port=1, provisioning_status="ACTIVE", operating_status="OFFLINE"))


def test_several_services_share_one_database(url, tmp_path):
    first = make_world(tmp_path, url)
    try:
        second = ControlService(Store(url), first.secrets, FakeApplier(), recover_after=300)
        pool = first.service.create(first.alice, "pool", {"name": "shared"}).obj
        assert second.get(first.alice, "pool", pool["id"])[0]["name"] == "shared"
        second.update(first.alice, "pool", pool["id"], {"name": "renamed"})
        assert first.service.get(first.alice, "pool", pool["id"])[0]["version"] == 2
        second.store.close()
    finally:
        first.store.close()


def test_the_database_url_forms():
    assert database_url("x.db") == f"sqlite:///{Path('x.db').resolve()}"
    assert database_url("postgresql://u@h/db").startswith("postgresql+psycopg://u@h/db")
    assert database_url("postgresql+psycopg2://u@h/db").startswith("postgresql+psycopg2://")
    store = Store("postgresql://lb:hunter2@127.0.0.1:1/control")  # no connection is made yet
    assert "hunter2" not in repr(store) and "hunter2" in store.url
    store.close()
