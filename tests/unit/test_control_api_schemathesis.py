"""Schemathesis against the API's own OpenAPI document, on the real service (SQLite).

Every operation gets a bounded number of generated requests (``MAX_EXAMPLES``, valid
input only, no "coverage" phase: the file stays near 15 s); a path's object id is
either generated or the id of a real object of the right kind (seeded below), so
requests reach the service's validation and rules and not only its 404. Checks: no
5xx, every status code, content type and response body as documented.
"""

from __future__ import annotations

import warnings

import pytest

pytest.importorskip("fastapi")
schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, Phase, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from lbcore.control.api import create_app  # noqa: E402
from lbcore.control.secrets import Secrets  # noqa: E402
from lbcore.control.service import ControlService  # noqa: E402
from lbcore.control.store import Store  # noqa: E402

MAX_EXAMPLES = 10  # per operation; ~70 operations
COLLECTIONS = {"clusters": "cluster", "loadbalancers": "loadbalancer", "instances": "instance", "listeners": "listener",
               "tls-certificates": "tls_certificate", "pools": "pool", "members": "member",
               "healthmonitors": "healthmonitor", "acls": "acl", "tenants": "tenant"}


class Api:
    def __init__(self, tmp_path) -> None:
        self.store = Store(tmp_path / "control.db")
        self.service = ControlService(self.store, Secrets.generate())
        tenant = self.service.create_tenant("fuzz")
        self.headers = {"Authorization": f"Bearer {self.service.create_token(tenant['id'], admin=True)}"}
        self.app = create_app(self.service)
        self.ids = self._seed(tenant["id"])

    def _seed(self, tenant_id: str) -> dict[str, list[str]]:
        from lbcore.control.service import Principal

        who = Principal(tenant_id, is_admin=True)
        made: dict[str, list[str]] = {"tenant": [tenant_id]}

        def create(kind: str, data: dict) -> str:
            obj = self.service.create(who, kind, data).obj
            made.setdefault(kind, []).append(obj["id"])
            return obj["id"]

        cluster = create("cluster", {"name": "c"})
        instance = create("instance", {"cluster_id": cluster, "address": "127.0.0.1"})
        listener = create("listener", {"instance_id": instance, "port": 8080, "protocol": "HTTP"})
        create("listener", {"instance_id": instance, "port": 8443, "protocol": "HTTPS"})
        for name in ("www", "api"):
            pool = create("pool", {"name": name})
            create("member", {"pool_id": pool, "address": "127.0.0.1", "port": 9001})
            create("healthmonitor", {"pool_id": pool, "type": "HTTP", "path": "/health"})
            create("acl", {"listener_id": listener, "pool_id": pool,
                           "condition": None if name == "www" else "hdr(host) -i api.example.com"})
        create("loadbalancer", {"cluster_id": cluster, "management_address": "127.0.0.1:1"})
        return made


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        made = Api(tmp_path_factory.mktemp("fuzz"))
    yield made
    made.store.close()


@pytest.fixture(scope="module")
def api_schema(api):
    schema = schemathesis.openapi.from_asgi("/openapi.json", api.app)

    schema.config.generation.update(modes=[GenerationMode.POSITIVE])
    schema.config.phases.update(phases=["examples", "fuzzing"])  # "coverage" adds ~20 cases per operation

    @schema.hook
    def flatmap_path_parameters(context, path_parameters):
        """As generated, or with a real id of the kind the path names."""
        segments = context.operation.path.strip("/").split("/")
        real = dict(path_parameters or {})
        for index, segment in enumerate(segments[:-1]):
            name = segments[index + 1].strip("{}")
            kind = COLLECTIONS.get(segment)
            if name in real and kind in api.ids:
                real[name] = st.sampled_from(api.ids[kind])
        if real == path_parameters:
            return st.just(path_parameters)
        return st.one_of(st.just(path_parameters), st.fixed_dictionaries(
            {key: value if isinstance(value, st.SearchStrategy) else st.just(value) for key, value in real.items()}))

    return schema


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
          phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
def test_api_never_answers_5xx_and_answers_as_documented(case, api):
    case.call_and_validate(headers=api.headers, checks=[not_a_server_error, status_code_conformance,
                                                        content_type_conformance, response_schema_conformance])
