"""The REST layer on its own: what it guarantees whatever the service does (a stub
service stands in), the schemas it derives from the model's field tables, and the
CLI's pure helpers. No database."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from typing import Any

import pytest

pytest.importorskip("fastapi")

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from lbcore.control import api_schemas as W  # noqa: E402
from lbcore.control import client as C  # noqa: E402
from lbcore.control.api import create_app, validation_errors  # noqa: E402
from lbcore.control.errors import Invalid, NotFound  # noqa: E402
from lbcore.control.model import MODELS  # noqa: E402

TOKEN = {"Authorization": "Bearer good"}
LEAKED = "-----BEGIN PRIVATE KEY-----\nMIIEleaked\n-----END PRIVATE KEY-----\n"


@dataclass(frozen=True)
class Who:
    tenant_id: str
    is_admin: bool = False


@dataclass(frozen=True)
class Result:
    obj: dict | None
    etag: str | None
    diffs: dict = field(default_factory=dict)
    applied: dict = field(default_factory=dict)


class LeakyService:
    """Answers every call with objects that carry secrets; raises on request."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def authenticate(self, token: str) -> Who | None:
        return Who("t1") if token == "good" else None

    def _cert(self) -> dict[str, Any]:
        return {"id": "c1", "kind": "tls_certificate", "name": "", "private_key": LEAKED, "passphrase": "pw",
                "nested": [{"private_key": LEAKED}]}

    def get(self, who: Who, kind: str, id: str) -> tuple[dict, str]:
        self.calls.append(("get", kind, id))
        if id == "boom":
            raise RuntimeError("a bug with a secret in it: " + LEAKED)
        if id == "missing":
            raise NotFound(kind, id)
        return self._cert(), "3"  # an unquoted ETag is quoted on the wire

    def list(self, who: Who, kind: str, **kwargs: Any) -> tuple[list, int]:
        self.calls.append(("list", kind, kwargs))
        return [self._cert()], 1

    def create(self, who: Who, kind: str, data: dict, *, dry_run: bool = False) -> Result:
        self.calls.append(("create", kind, data, dry_run))
        if data.get("name") == "invalid":
            raise Invalid([("name", "not this one"), ("listeners[web].acls[a].condition", "unknown fetch")])
        return Result(self._cert(), None if dry_run else '"1"', {"cl": [{"path": "x.private_key", "kind": "added",
                                                                         "old": None, "new": LEAKED}]})

    def status_tree(self, who: Who, cluster_id: str) -> dict:
        return {"cluster": {"id": cluster_id, "certs": [self._cert()]}}


@pytest.fixture
def stub():
    service = LeakyService()
    with TestClient(create_app(service), raise_server_exceptions=False) as client:
        yield service, client


def test_write_only_fields_are_dropped_from_every_answer_at_any_depth(stub):
    service, client = stub
    body = {"listener_id": "l1", "certificate": "-----BEGIN CERTIFICATE-----", "private_key": LEAKED}
    answers = [
        client.get("/v1/tls-certificates/c1", headers=TOKEN),
        client.get("/v1/tls-certificates", headers=TOKEN),
        client.post("/v1/tls-certificates", json=body, headers=TOKEN),
        client.post("/v1/tls-certificates?dry_run=true", json=body, headers=TOKEN),
        client.get("/v1/clusters/x/status", headers=TOKEN),
    ]
    for response in answers:
        assert response.status_code in (200, 201), response.text
        assert "PRIVATE KEY" not in response.text and '"pw"' not in response.text
    assert answers[0].headers["etag"] == '"3"'
    # The service itself got the key: write-only is about answers, not input.
    assert service.calls[-1] == ("create", "tls_certificate", body, True)


def test_an_unexpected_error_is_a_500_in_the_error_shape_without_details(stub):
    _, client = stub
    response = client.get("/v1/pools/boom", headers=TOKEN)
    assert response.status_code == 500
    assert response.json() == {"errors": [{"path": "", "message": "internal error (logged by the control plane)"}]}


def test_service_errors_map_to_their_status_and_paths(stub):
    _, client = stub
    assert client.get("/v1/pools/missing", headers=TOKEN).json() == {
        "errors": [{"path": "", "message": "pool missing not found"}]}
    invalid = client.post("/v1/pools", json={"name": "invalid"}, headers=TOKEN)
    assert invalid.status_code == 422
    assert invalid.json()["errors"] == [{"path": "name", "message": "not this one"},
                                        {"path": "listeners[web].acls[a].condition", "message": "unknown fetch"}]


def test_list_passes_typed_filters_as_text(stub):
    service, client = stub
    client.get("/v1/members?port=80&backup=true&name=x&sort=-port,name&limit=5&offset=10", headers=TOKEN)
    _, kind, kwargs = service.calls[-1]
    assert kind == "member"
    assert kwargs == {"filters": {"port": "80", "backup": "true", "name": "x"}, "sort": "-port,name", "limit": 5,
                      "offset": 10}


def test_validation_errors_become_one_message_per_path():
    status, errors = validation_errors([
        {"type": "missing", "loc": ("body", "port"), "msg": "Field required"},
        {"type": "value_error", "loc": ("body", "port"), "msg": "Value error, x", "ctx": {"error": ValueError("x")}},
        {"type": "int_parsing", "loc": ("query", "limit"), "msg": "Input should be a valid integer"},
        {"type": "value_error", "loc": ("body", "ha_addresses", 2), "msg": "Value error, bad", "ctx": {"error": "bad"}},
    ])
    assert status == 422
    assert errors == [("port", "required"), ("query.limit", "Input should be a valid integer"),
                      ("ha_addresses[2]", "bad")]
    status, errors = validation_errors([{"type": "json_invalid", "loc": ("body", 3), "msg": "JSON decode error",
                                         "ctx": {"error": "Expecting value"}}])
    assert status == 400 and errors == [("", "the body is not valid JSON: Expecting value")]


# -- the schemas derived from the model's field tables --------------------------------------------


@pytest.mark.parametrize("kind", list(MODELS))
def test_wire_schemas_follow_the_field_table(kind):
    entity = W.ENTITY_BY_KIND[kind]
    fields = entity.model.all_fields()
    create = W.json_schema(entity.create)
    assert set(create["properties"]) == set(fields)
    assert set(create.get("required", ())) == {key for key, f in fields.items() if f.required}
    assert not W.json_schema(entity.update).get("required")
    read = entity.read.model_json_schema()["properties"]
    assert not set(read) & entity.write_only
    assert set(read) >= {"id", "kind", "version", "provisioning_status", "operating_status"}
    assert set(read) >= {key for key, f in fields.items() if not f.write_only} | set(entity.model.read_only())


def test_body_types_are_strict_and_pass_values_through():
    member = W.ENTITY_BY_KIND["member"]
    with pytest.raises(Exception, match="expected an integer, got a string"):
        member.update.model_validate({"port": "80"})
    with pytest.raises(Exception, match="expected an integer, got a boolean"):
        member.update.model_validate({"port": True})
    monitor = W.ENTITY_BY_KIND["healthmonitor"].update.model_validate({"interval": "2s", "rise": 3})
    assert monitor.model_dump(exclude_unset=True) == {"interval": "2s", "rise": 3}
    extra = W.ENTITY_BY_KIND["pool"].update.model_validate({"nmae": "x"})
    assert extra.model_dump(exclude_unset=True) == {"nmae": "x"}  # the service names unknown fields


def test_openapi_documents_every_route_with_bearer_auth(stub):
    _, client = stub
    doc = client.get("/openapi.json").json()
    paths = doc["paths"]
    for entity in W.ENTITIES:
        assert set(paths[entity.path]) == {"get", "post"}
        assert set(paths[entity.path + "/{id}"]) == {"get", "put", "patch", "delete"}
        assert (entity.path + "/{id}/effective" in paths) == entity.cascading
    for path in ("/v1/pools/{pool_id}/members", "/v1/clusters/{id}/status", "/v1/vips", "/v1/tenants",
                 "/v1/tenants/{id}/tokens", "/v1/tokens/{id}", "/v1/clusters/{id}/reapply"):
        assert path in paths
    listing = {p["name"] for p in paths["/v1/members"]["get"]["parameters"]}
    assert {"port", "address", "provisioning_status", "sort", "limit", "offset"} <= listing
    assert "private_key" not in json.dumps(paths["/v1/tls-certificates"]["get"])
    assert "HTTPBearer" in doc["components"]["securitySchemes"]
    update = paths["/v1/pools/{id}"]["patch"]
    assert {"If-Match", "dry_run"} <= {p["name"] for p in update["parameters"]}
    assert {"200", "412", "409", "422"} <= set(update["responses"])


# -- the CLI's helpers ----------------------------------------------------------------------------


def test_cli_field_values():
    assert C._field_value("80", text=False) == 80
    assert C._field_value('{"a": 1}', text=False) == {"a": 1}
    assert C._field_value("hdr(host) -i x", text=False) == "hdr(host) -i x"
    assert C._field_value("123", text=True) == "123"
    assert C._field_value("null", text=True) is None


def test_cli_status_lines_and_changes():
    tree = {"cluster": {"id": "c", "name": "edge", "provisioning_status": "ACTIVE", "operating_status": "ONLINE",
                        "instances": [{"id": "i", "name": "", "address": "10.0.0.1", "provisioning_status": "ACTIVE",
                                       "operating_status": "ONLINE",
                                       "listeners": [{"id": "l", "port": 80, "provisioning_status": "ACTIVE",
                                                      "operating_status": "ONLINE", "tls_certificates": []}]}]}}
    lines = [line for key, node in tree.items() for line in C._status_lines(key, node, 0)]
    assert lines == ["cluster edge (c): ACTIVE / ONLINE", "  instance (i) 10.0.0.1: ACTIVE / ONLINE",
                     "    listener (l) :80: ACTIVE / ONLINE"]
    assert C._change_line({"path": "pools[a].algorithm", "kind": "changed", "old": "roundrobin", "new": "source"}) == \
        '~ pools[a].algorithm: "roundrobin" -> "source"'
    assert C._change_line({"path": "pools[a]", "kind": "added", "old": None, "new": {"name": "a"}}) == "+ pools[a]"
