"""The REST API over the real control-plane service on a SQLite file (in-process client).

Each test works in a tenant of its own, so the tests share one database (migrated
once) and stay independent. Most tests register no node, so their changes commit
and settle without a push; the apply tests give a cluster a node and a stand-in driver.
"""

from __future__ import annotations

import itertools
import json
import warnings
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("sqlalchemy")

with warnings.catch_warnings():  # starlette's TestClient notes httpx's successor on import
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from lbcore.control.api import create_app
from lbcore.control.secrets import Secrets
from lbcore.control.service import ControlService
from lbcore.control.store import Store
from tests.tlsgen import issue, key_pem, make_ca

_names = itertools.count(1)


class Applier:
    """Stands in for the native driver: records each push; ``failing`` nodes refuse it."""

    def __init__(self) -> None:
        self.failing: set[str] = set()
        self.pushed: list[tuple[str, str, list[str]]] = []

    def apply(self, cluster_id, spec, files, nodes):
        self.pushed.append((cluster_id, spec.revision, sorted(files)))
        return {node["id"]: ("node down" if node["id"] in self.failing else None) for node in nodes}


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("control") / "control.db")
    svc = ControlService(store, Secrets.generate(), Applier())
    yield svc
    store.close()


@pytest.fixture(scope="module")
def client(service):
    with TestClient(create_app(service), raise_server_exceptions=False) as c:
        yield c


class Tenant:
    """A tenant's view of the API: its token, and shortcuts that assert the status."""

    def __init__(self, client: TestClient, service: ControlService, *, admin: bool = False) -> None:
        self.client = client
        self.tenant = service.create_tenant(f"t{next(_names)}")
        self.id = self.tenant["id"]
        self.token = service.create_token(self.id, admin=admin)
        self.headers = {"Authorization": f"Bearer {self.token}"}

    def call(self, method: str, path: str, *, expect: int | None = None, headers: dict[str, str] | None = None,
             **kwargs: Any):
        response = self.client.request(method, path, headers={**self.headers, **(headers or {})}, **kwargs)
        if expect is not None:
            assert response.status_code == expect, (method, path, response.status_code, response.text)
        return response

    def create(self, collection: str, body: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return self.call("POST", f"/v1/{collection}", json=body, expect=201, **kwargs).json()

    def get(self, collection: str, obj_id: str) -> dict[str, Any]:
        return self.call("GET", f"/v1/{collection}/{obj_id}", expect=200).json()

    def stack(self, port: int = 8080) -> dict[str, dict[str, Any]]:
        """cluster -> instance -> HTTP listener, a pool with a member, the default acl."""
        cluster = self.create("clusters", {"name": "c"})
        instance = self.create("instances", {"cluster_id": cluster["id"], "address": "127.0.0.1"})
        listener = self.create("listeners", {"instance_id": instance["id"], "port": port, "protocol": "HTTP"})
        pool = self.create("pools", {"name": "www"})
        member = self.create(f"pools/{pool['id']}/members", {"address": "127.0.0.1", "port": 9001})
        acl = self.create("acls", {"listener_id": listener["id"], "pool_id": pool["id"]})
        return {"cluster": cluster, "instance": instance, "listener": listener, "pool": pool, "member": member,
                "acl": acl}


@pytest.fixture
def tenant(client, service):
    return Tenant(client, service)


@pytest.fixture
def other(client, service):
    return Tenant(client, service)


@pytest.fixture
def admin(client, service):
    return Tenant(client, service, admin=True)


def errors(response) -> dict[str, str]:
    body = response.json()
    assert set(body) == {"errors"}, body
    for item in body["errors"]:
        assert set(item) == {"path", "message"}, item
    return {item["path"]: item["message"] for item in body["errors"]}


# -- auth and tenancy ----------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic dXNlcjpwdw=="},
                                     {"Authorization": "Bearer lbc_00000000-0000-0000-0000-000000000000_x"}])
def test_no_token_or_a_bad_one_is_401_in_the_error_shape(client, headers):
    response = client.get("/v1/pools", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "header.authorization" in errors(response)


def test_health_and_openapi_need_no_token(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/openapi.json").status_code == 200


def test_another_tenants_objects_are_404_and_never_listed(tenant, other):
    objs = tenant.stack()
    for kind, collection in [("pool", "pools"), ("member", "members"), ("listener", "listeners"),
                             ("cluster", "clusters"), ("acl", "acls")]:
        obj_id = objs[kind]["id"]
        assert other.call("GET", f"/v1/{collection}/{obj_id}").status_code == 404
        assert other.call("PATCH", f"/v1/{collection}/{obj_id}", json={"name": "x"}).status_code == 404
        assert other.call("DELETE", f"/v1/{collection}/{obj_id}").status_code == 404
        assert other.call("GET", f"/v1/{collection}", expect=200).json()["total"] == 0
    assert other.call("GET", f"/v1/clusters/{objs['cluster']['id']}/status").status_code == 404
    assert other.call("GET", f"/v1/pools/{objs['pool']['id']}/effective").status_code == 404
    assert other.call("GET", f"/v1/pools/{objs['pool']['id']}/members").status_code == 404
    # Nor can the other tenant bind to them.
    response = other.call("POST", "/v1/members",
                          json={"pool_id": objs["pool"]["id"], "address": "127.0.0.1", "port": 1})
    assert response.status_code in (404, 422)
    assert tenant.get("pools", objs["pool"]["id"])["name"] == "www"  # untouched


def test_admin_sees_every_tenant_and_manages_tenants(tenant, admin):
    pool = tenant.create("pools", {"name": "p"})
    assert admin.get("pools", pool["id"])["tenant_id"] == tenant.id
    made = admin.call("POST", "/v1/tenants", json={"name": f"new{next(_names)}"}, expect=201).json()
    assert {t["id"] for t in admin.call("GET", "/v1/tenants", expect=200).json()["items"]} >= {made["id"], tenant.id}
    token = admin.call("POST", f"/v1/tenants/{made['id']}/tokens", json={}, expect=201).json()
    assert token["admin"] is False and token["tenant_id"] == made["id"]
    new = {"Authorization": f"Bearer {token['token']}"}
    assert admin.client.get("/v1/pools", headers=new).json()["total"] == 0
    admin.call("DELETE", f"/v1/tokens/{token['token'].split('_')[1]}", expect=204)
    assert admin.client.get("/v1/pools", headers=new).status_code == 401
    assert admin.call("POST", "/v1/tenants/nope/tokens", json={}).status_code == 404


def test_tenant_routes_are_admin_only(tenant):
    assert errors(tenant.call("POST", "/v1/tenants", json={"name": "x"}, expect=403)) == {"": "admin only"}
    tenant.call("GET", "/v1/tenants", expect=403)
    tenant.call("POST", f"/v1/tenants/{tenant.id}/tokens", json={"admin": True}, expect=403)


# -- CRUD, ETag, If-Match ---------------------------------------------------------------------------


def test_create_returns_201_location_and_etag_then_get_matches(tenant):
    response = tenant.call("POST", "/v1/pools", json={"name": "www", "algorithm": "leastconn"}, expect=201)
    pool = response.json()
    assert response.headers["etag"] == '"1"'
    assert response.headers["location"].endswith(f"/v1/pools/{pool['id']}")
    assert pool["provisioning_status"] == "ACTIVE" and pool["kind"] == "pool"
    got = tenant.call("GET", f"/v1/pools/{pool['id']}", expect=200)
    assert got.headers["etag"] == '"1"'
    assert got.json()["algorithm"] == "leastconn"


def test_if_match_guards_update_and_delete(tenant):
    pool = tenant.create("pools", {"name": "p"})
    path = f"/v1/pools/{pool['id']}"
    stale = tenant.call("PATCH", path, json={"algorithm": "source"}, headers={"If-Match": '"7"'}, expect=412)
    assert stale.headers["etag"] == '"1"'
    assert "does not match" in errors(stale)[""]
    changed = tenant.call("PUT", path, json={"algorithm": "source"}, headers={"If-Match": '"1"'}, expect=200)
    assert changed.headers["etag"] == '"2"' and changed.json()["algorithm"] == "source"
    tenant.call("PATCH", path, json={"name": "q"}, headers={"If-Match": "*"}, expect=200)
    tenant.call("DELETE", path, headers={"If-Match": '"2"'}, expect=412)
    tenant.call("DELETE", path, headers={"If-Match": '"3"'}, expect=204)
    tenant.call("GET", path, expect=404)


def test_update_is_partial_and_a_get_result_can_be_put_back(tenant):
    objs = tenant.stack()
    member = tenant.get("members", objs["member"]["id"])
    tenant.call("PUT", f"/v1/members/{member['id']}", json=member, expect=200)
    changed = tenant.call("PATCH", f"/v1/members/{member['id']}", json={"weight": 5, "admin_state": "drain"},
                          expect=200).json()
    assert (changed["weight"], changed["admin_state"], changed["port"]) == (5, "drain", 9001)
    immutable = tenant.call("PATCH", f"/v1/listeners/{objs['listener']['id']}", json={"protocol": "TCP"}, expect=422)
    assert "protocol" in errors(immutable)


# -- errors ---------------------------------------------------------------------------------------


def test_type_errors_and_service_errors_share_one_shape_with_field_paths(tenant):
    pool = tenant.create("pools", {"name": "p"})
    typed = tenant.call("POST", "/v1/members", json={"pool_id": pool["id"], "address": "127.0.0.1", "port": "80"},
                        expect=422)
    assert errors(typed) == {"port": "expected an integer, got a string"}
    missing = tenant.call("POST", "/v1/members", json={"address": "127.0.0.1"}, expect=422)
    assert errors(missing) == {"pool_id": "required", "port": "required"}
    checked = tenant.call("POST", "/v1/members", json={"pool_id": pool["id"], "address": "300.1.1.1", "port": 70000,
                                                       "wieght": 3}, expect=422)
    found = errors(checked)
    assert set(found) == {"address", "port", "wieght"}
    assert "did you mean 'weight'" in found["wieght"]
    attrs = tenant.call("PATCH", f"/v1/pools/{pool['id']}", json={"attrs": {"timeout_client": "5s"}}, expect=422)
    assert "timeout_client" in errors(attrs)["attrs"]


def test_malformed_json_is_400_and_a_non_object_422(tenant):
    bad = tenant.call("POST", "/v1/pools", content=b'{"name": ', headers={"Content-Type": "application/json"},
                      expect=400)
    assert list(errors(bad)) == [""]
    assert "not valid JSON" in errors(bad)[""]
    listed = tenant.call("POST", "/v1/pools", json=[1, 2], expect=422)
    assert list(errors(listed)) == [""]
    empty = tenant.call("POST", "/v1/pools", expect=422)
    assert errors(empty) == {"": "a JSON body is required"}


def test_unknown_routes_and_methods_use_the_error_shape(tenant):
    assert errors(tenant.call("GET", "/v1/nothing", expect=404)) == {"": "Not Found"}
    assert errors(tenant.call("DELETE", "/v1/pools", expect=405))
    assert errors(tenant.call("GET", "/v1/pools/00000000-0000-0000-0000-000000000000", expect=404))


def test_conflicts_are_409(tenant):
    objs = tenant.stack()
    duplicate = tenant.call("POST", "/v1/listeners", json={"instance_id": objs["instance"]["id"], "port": 8080,
                                                          "protocol": "HTTP"}, expect=409)
    assert "8080" in errors(duplicate)[""]
    bound = tenant.call("DELETE", f"/v1/pools/{objs['pool']['id']}", expect=409)
    assert "bound" in errors(bound)[""]
    tenant.call("DELETE", f"/v1/instances/{objs['instance']['id']}", expect=409)
    tenant.call("GET", f"/v1/pools/{objs['pool']['id']}", expect=200)


# -- dry run --------------------------------------------------------------------------------------


def test_dry_run_returns_the_spec_diff_per_cluster_and_changes_nothing(tenant):
    objs = tenant.stack()
    cluster_id, pool_id = objs["cluster"]["id"], objs["pool"]["id"]
    before = tenant.get("clusters", cluster_id)["revision"]

    preview = tenant.call("POST", f"/v1/pools/{pool_id}/members?dry_run=true",
                          json={"address": "127.0.0.1", "port": 9002}, expect=200).json()
    assert preview["dry_run"] is True and preview["object"]["port"] == 9002
    changes = preview["diffs"][cluster_id]
    assert any(change["kind"] == "added" and ".members[" in change["path"] for change in changes), changes
    assert tenant.call("GET", f"/v1/pools/{pool_id}/members", expect=200).json()["total"] == 1

    preview = tenant.call("PATCH", f"/v1/pools/{pool_id}?dry_run=true", json={"algorithm": "leastconn"},
                          expect=200).json()
    assert [c for c in preview["diffs"][cluster_id] if c["path"].endswith(".algorithm")][0]["new"] == "leastconn"
    assert tenant.get("pools", pool_id)["algorithm"] is None

    preview = tenant.call("DELETE", f"/v1/acls/{objs['acl']['id']}?dry_run=true", expect=200).json()
    assert preview["object"] is None and preview["diffs"][cluster_id]
    tenant.get("acls", objs["acl"]["id"])
    assert tenant.get("clusters", cluster_id)["revision"] == before
    assert tenant.get("pools", pool_id)["version"] == 1


def test_dry_run_still_refuses_what_would_be_refused(tenant):
    objs = tenant.stack()
    tenant.call("DELETE", f"/v1/pools/{objs['pool']['id']}?dry_run=true", expect=409)
    tenant.call("PATCH", f"/v1/pools/{objs['pool']['id']}?dry_run=true", json={"algorithm": "bogus"}, expect=422)


# -- lists ----------------------------------------------------------------------------------------


def test_list_filters_sorts_and_paginates_with_total_and_links(tenant):
    pool = tenant.create("pools", {"name": "p"})
    for port in (9003, 9001, 9005, 9002, 9004):
        tenant.create("members", {"pool_id": pool["id"], "address": "127.0.0.1", "port": port,
                                  "backup": port == 9005, "name": f"m{port}"})
    page = tenant.call("GET", "/v1/members?sort=-port&limit=2", expect=200)
    body = page.json()
    assert [m["port"] for m in body["items"]] == [9005, 9004]
    assert (body["total"], body["limit"], body["offset"]) == (5, 2, 0)
    assert page.headers["x-total-count"] == "5"
    assert 'rel="next"' in page.headers["link"] and "offset=2" in page.headers["link"]
    last = tenant.call("GET", "/v1/members?sort=-port&limit=2&offset=4", expect=200)
    assert [m["port"] for m in last.json()["items"]] == [9001]
    assert 'rel="prev"' in last.headers["link"] and 'rel="next"' not in last.headers["link"]

    assert [m["port"] for m in tenant.call("GET", "/v1/members?backup=true", expect=200).json()["items"]] == [9005]
    assert tenant.call("GET", "/v1/members?port=9002", expect=200).json()["items"][0]["name"] == "m9002"
    assert tenant.call("GET", "/v1/members?name=m9003&provisioning_status=ACTIVE", expect=200).json()["total"] == 1
    nested = tenant.call("GET", f"/v1/pools/{pool['id']}/members?sort=name", expect=200).json()
    assert [m["name"] for m in nested["items"]] == ["m9001", "m9002", "m9003", "m9004", "m9005"]


@pytest.mark.parametrize("query, path", [
    ("sort=nope", "query.sort"), ("sort=private_key", "query.sort"), ("limit=0", "query.limit"),
    ("limit=1001", "query.limit"), ("offset=-1", "query.offset"), ("port=abc", "query.port"),
    ("nmae=x", "query.nmae"), ("private_key=x", "query.private_key"),
    ("provisioning_status=DONE", "query.provisioning_status"),
])
def test_bad_list_queries_are_422_naming_the_parameter(tenant, query, path):
    response = tenant.call("GET", f"/v1/members?{query}", expect=422)
    assert path in errors(response)


# -- secrets --------------------------------------------------------------------------------------


def _contains(data: Any, needle: str) -> bool:
    return needle in json.dumps(data)


def test_private_keys_and_passphrases_never_come_back(tenant):
    objs = tenant.stack()
    https = tenant.create("listeners", {"instance_id": objs["instance"]["id"], "port": 8443, "protocol": "HTTPS"})
    ca = make_ca()
    leaf = issue(ca, ["www.example.com", "api.example.com"], fresh=True)
    key = key_pem(leaf.key, passphrase="s3cret-pass").decode()
    key_body = key.split("-----")[2].strip().splitlines()[1]  # a line of the base64 body
    body = {"listener_id": https["id"], "certificate": leaf.pem.decode(), "private_key": key,
            "passphrase": "s3cret-pass", "is_default": True}
    answers = []
    answers.append(tenant.call("POST", "/v1/tls-certificates?dry_run=true", json=body, expect=200).json())
    created = tenant.call("POST", "/v1/tls-certificates", json=body, expect=201).json()
    answers.append(created)
    assert sorted(created["hostnames"]) == ["api.example.com", "www.example.com"]
    cert_id = created["id"]
    answers.append(tenant.get("tls-certificates", cert_id))
    answers.append(tenant.call("GET", "/v1/tls-certificates", expect=200).json())
    answers.append(tenant.call("GET", f"/v1/tls-certificates?listener_id={https['id']}", expect=200).json())
    answers.append(tenant.call("PATCH", f"/v1/tls-certificates/{cert_id}", json={"name": "www"}, expect=200).json())
    answers.append(tenant.call("PATCH", f"/v1/tls-certificates/{cert_id}?dry_run=true", json=body, expect=200).json())
    answers.append(tenant.call("GET", f"/v1/clusters/{objs['cluster']['id']}/status", expect=200).json())
    answers.append(tenant.call("DELETE", f"/v1/tls-certificates/{cert_id}?dry_run=true", expect=200).json())
    bad_key = dict(body, private_key=key.replace(key_body, key_body[::-1]))
    answers.append(tenant.call("POST", "/v1/tls-certificates", json=bad_key).json())
    answers.append(tenant.client.get("/openapi.json").json()["paths"])
    for answer in answers:
        assert not _contains(answer, "PRIVATE KEY"), answer
        assert not _contains(answer, key_body)
        assert not _contains(answer, "s3cret-pass")
        assert not _contains(answer, '"private_key": "') and not _contains(answer, '"passphrase": "')
    assert created["has_passphrase"] is True


# -- views and the legacy workflow ----------------------------------------------------------------


def test_effective_shows_each_value_and_where_it_comes_from(tenant):
    objs = tenant.stack()
    cluster, listener = objs["cluster"], objs["listener"]
    tenant.call("PATCH", f"/v1/clusters/{cluster['id']}", json={"attrs": {"timeout_client": 12}}, expect=200)
    tenant.call("PATCH", f"/v1/listeners/{listener['id']}", json={"attrs": {"maxconn": 77}}, expect=200)
    effective = tenant.call("GET", f"/v1/listeners/{listener['id']}/effective", expect=200).json()
    assert effective["timeout_client"]["value"] == 12
    assert effective["timeout_client"]["source"]["kind"] == "cluster"
    assert effective["timeout_client"]["source"]["id"] == cluster["id"]
    assert effective["maxconn"] == {"value": 77, "source": {"kind": "listener", "id": listener["id"], "name": ""}}
    assert effective["timeout_keepalive"]["source"]["kind"] == "default"
    member = tenant.call("GET", f"/v1/members/{objs['member']['id']}/effective", expect=200).json()
    assert member["weight"]["source"]["kind"] == "default"
    # Kinds outside the cascade have no such view.
    tenant.call("GET", f"/v1/acls/{objs['acl']['id']}/effective", expect=404)


def test_status_tree(tenant):
    objs = tenant.stack()
    tree = tenant.call("GET", f"/v1/clusters/{objs['cluster']['id']}/status", expect=200).json()
    cluster = tree["cluster"]
    assert cluster["provisioning_status"] == "ACTIVE"
    listener = cluster["instances"][0]["listeners"][0]
    assert listener["id"] == objs["listener"]["id"]
    assert listener["pools"][0]["members"][0]["id"] == objs["member"]["id"]
    for node in (cluster, listener, listener["pools"][0]["members"][0]):
        assert {"provisioning_status", "operating_status"} <= set(node)


def test_legacy_vip_creates_cluster_instance_listener_and_default_acl(tenant):
    pool = tenant.create("pools", {"name": "legacy"})
    tenant.create("members", {"pool_id": pool["id"], "address": "127.0.0.1", "port": 9001})
    body = {"pool_id": pool["id"], "address": "127.0.0.5", "port": 8080, "protocol": "HTTP"}
    preview = tenant.call("POST", "/v1/vips?dry_run=true", json=body, expect=200).json()
    assert preview["dry_run"] is True and len(preview["diffs"]) == 1
    assert tenant.call("GET", "/v1/clusters", expect=200).json()["total"] == 0
    response = tenant.call("POST", "/v1/vips", json=body, expect=201)
    made = response.json()
    assert {"cluster", "instance", "listener", "acl"} <= set(made)
    assert made["instance"]["address"] == "127.0.0.5" and made["listener"]["port"] == 8080
    assert made["acl"]["pool_id"] == pool["id"]
    assert response.headers["location"].endswith(f"/v1/listeners/{made['listener']['id']}")
    assert tenant.call("GET", "/v1/clusters", expect=200).json()["total"] == 1
    again = tenant.call("POST", "/v1/vips", json={**body, "cluster_id": made["cluster"]["id"]}, expect=409)
    assert errors(again)
    assert "port" in errors(tenant.call("POST", "/v1/vips", json={**body, "port": "80"}, expect=422))


def test_cluster_reapply_without_nodes_pushes_nothing(tenant):
    objs = tenant.stack()
    answer = tenant.call("POST", f"/v1/clusters/{objs['cluster']['id']}/reapply", expect=200).json()
    assert answer["cluster"]["provisioning_status"] == "ACTIVE"
    assert answer["applied"] == {objs["cluster"]["id"]: {}}


# -- apply ----------------------------------------------------------------------------------------


def test_a_node_that_refuses_leaves_the_change_in_error_and_a_retry_settles_it(tenant, service):
    applier = service.applier
    objs = tenant.stack()
    cluster_id = objs["cluster"]["id"]
    node = tenant.create("loadbalancers", {"cluster_id": cluster_id, "management_address": "127.0.0.1:9443"})
    assert node["provisioning_status"] == "ACTIVE" and applier.pushed[-1][0] == cluster_id

    applier.failing.add(node["id"])
    changed = tenant.call("PATCH", f"/v1/pools/{objs['pool']['id']}", json={"algorithm": "leastconn"}, expect=200)
    assert changed.json()["provisioning_status"] == "ERROR"
    assert tenant.get("loadbalancers", node["id"])["last_error"] == "node down"
    kept = tenant.call("DELETE", f"/v1/acls/{objs['acl']['id']}", expect=200).json()
    assert kept["id"] == objs["acl"]["id"] and kept["provisioning_status"] == "ERROR"

    applier.failing.clear()
    tenant.call("DELETE", f"/v1/acls/{objs['acl']['id']}", expect=204)
    tenant.call("GET", f"/v1/acls/{objs['acl']['id']}", expect=404)
    retried = tenant.call("PATCH", f"/v1/pools/{objs['pool']['id']}", json={}, expect=200).json()
    assert retried["provisioning_status"] == "ACTIVE"
    answer = tenant.call("POST", f"/v1/clusters/{cluster_id}/reapply", expect=200).json()
    assert answer["applied"] == {cluster_id: {node["id"]: None}}
    assert tenant.get("loadbalancers", node["id"])["provisioning_status"] == "ACTIVE"
