"""A small client of the control plane's REST API, and the ``lbcore api`` command.

The client speaks plain HTTP with the standard library (``urllib``), so driving the
API from a shell needs nothing beyond lbcore itself; the command's per-field options
are generated from the wire schemas (``api_schemas``), so they never drift from what
the server accepts.

    lbcore api [--url URL] [--token TOKEN] [-o table|json] KIND ACTION [ARGS]

    lbcore api pool list [--sort=-name] [--limit N] [--offset N] [--filter name=www]
    lbcore api pool show ID
    lbcore api pool create --name www --algorithm leastconn [--dry-run]
    lbcore api pool update ID --algorithm roundrobin [--if-match ETAG] [--dry-run]
    lbcore api pool delete ID [--if-match ETAG] [--dry-run]
    lbcore api member create --pool ID --address 127.0.0.1 --port 9001
    lbcore api member list --pool ID
    lbcore api listener effective ID            (pool/member: [--cluster ID])
    lbcore api cluster status ID
    lbcore api cluster reapply ID
    lbcore api vip create --pool ID --address 127.0.0.1 --port 8080 --protocol HTTP
    lbcore api tenant create NAME | tenant list | tenant token TENANT_ID [--admin]   (admin)
    lbcore api token revoke TOKEN_OR_ID

The base URL and token come from ``--url``/``--token`` or ``LBCORE_API_URL`` /
``LBCORE_API_TOKEN``. A string value ``@PATH`` is read from the file PATH (a PEM
chain or key); ``--set FIELD=VALUE`` sets any field (VALUE parsed as JSON when it
is JSON), ``--data JSON|@FILE`` gives the whole body.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

__all__ = ["ApiClient", "ApiError", "ApiResponse", "Unreachable", "main"]

DEFAULT_URL = "http://127.0.0.1:9876"
TIMEOUT = 30.0  # seconds for one request: a change applies to engines before it answers


@dataclass(frozen=True, slots=True)
class ApiResponse:
    status: int
    headers: Mapping[str, str]
    body: Any

    @property
    def etag(self) -> str | None:
        return self.headers.get("etag")


@dataclass(slots=True)
class ApiError(Exception):
    """A non-2xx answer: the status and the API's ``errors`` list (path, message)."""

    status: int
    errors: list[dict[str, str]] = field(default_factory=list)

    def __str__(self) -> str:
        if not self.errors:
            return f"HTTP {self.status}"
        parts = [f"{e.get('path')}: {e.get('message')}" if e.get("path") else str(e.get("message"))
                 for e in self.errors]
        return f"HTTP {self.status}: " + "; ".join(parts)


class Unreachable(Exception):
    """No answer: connection refused, a timeout, a name that does not resolve."""


class ApiClient:
    """Blocking calls to one control-plane API with one bearer token."""

    def __init__(self, base_url: str, token: str | None, *, timeout: float = TIMEOUT) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def request(self, method: str, path: str, *, query: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None,
                body: Any = None, headers: Mapping[str, str] | None = None) -> ApiResponse:
        url = self.base_url + path
        if query:
            pairs = query.items() if isinstance(query, Mapping) else query
            encoded = urllib.parse.urlencode([(k, _query_value(v)) for k, v in pairs if v is not None])
            if encoded:
                url += "?" + encoded
        data = None
        req_headers = {"Accept": "application/json"}
        if self.token:
            req_headers["Authorization"] = f"Bearer {self.token}"
        if body is not None:
            data = json.dumps(body).encode()
            req_headers["Content-Type"] = "application/json"
        req_headers.update(headers or {})
        req = urllib.request.Request(url, data=data, method=method, headers=req_headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return ApiResponse(resp.status, _lower(resp.headers.items()), _decode(resp.read()))
        except urllib.error.HTTPError as exc:
            payload = _decode(exc.read())
            errors = payload.get("errors") if isinstance(payload, dict) else None
            if not isinstance(errors, list):
                errors = [{"path": "", "message": str(payload or exc.reason)}]
            raise ApiError(exc.code, errors) from None
        except (urllib.error.URLError, OSError) as exc:
            raise Unreachable(f"cannot reach the API at {self.base_url}: {getattr(exc, 'reason', exc)}") from None

    # The REST verbs of one collection (``kind_path`` as in ``/v1/pools``).

    def list(self, kind_path: str, *, filters: Mapping[str, Any] | None = None, sort: str | None = None,
             limit: int | None = None, offset: int | None = None) -> ApiResponse:
        query = dict(filters or {})
        query.update(sort=sort, limit=limit, offset=offset)
        return self.request("GET", kind_path, query=query)

    def get(self, kind_path: str, obj_id: str) -> ApiResponse:
        return self.request("GET", f"{kind_path}/{_seg(obj_id)}")

    def create(self, kind_path: str, data: Mapping[str, Any], *, dry_run: bool = False) -> ApiResponse:
        return self.request("POST", kind_path, query={"dry_run": dry_run or None}, body=dict(data))

    def update(self, kind_path: str, obj_id: str, data: Mapping[str, Any], *, if_match: str | None = None,
               dry_run: bool = False) -> ApiResponse:
        return self.request("PATCH", f"{kind_path}/{_seg(obj_id)}", query={"dry_run": dry_run or None},
                            body=dict(data), headers=_if_match(if_match))

    def delete(self, kind_path: str, obj_id: str, *, if_match: str | None = None, dry_run: bool = False) -> ApiResponse:
        return self.request("DELETE", f"{kind_path}/{_seg(obj_id)}", query={"dry_run": dry_run or None},
                            headers=_if_match(if_match))


def _seg(value: str) -> str:
    return urllib.parse.quote(str(value), safe="")


def _if_match(etag: str | None) -> dict[str, str]:
    if not etag:
        return {}
    return {"If-Match": etag if etag == "*" or etag.startswith(('"', "W/")) else f'"{etag}"'}


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _lower(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {k.lower(): v for k, v in items}


def _decode(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


# --------------------------------------------------------------------------- the command


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help(sys.stderr)
        return 2
    client = ApiClient(args.url or os.environ.get("LBCORE_API_URL") or DEFAULT_URL,
                       args.token or os.environ.get("LBCORE_API_TOKEN"))
    try:
        return args.run(client, args)
    except ApiError as exc:
        if args.output == "json":
            print(json.dumps({"status": exc.status, "errors": exc.errors}, indent=2), file=sys.stderr)
        else:
            print(f"error: {exc}", file=sys.stderr)
        return 1
    except Unreachable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # | head: the reader has gone, as with any filter
        sys.stderr.close()
        return 0
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


# The columns of ``KIND list`` tables (``-o json`` has every field).
COLUMNS: dict[str, tuple[str, ...]] = {
    "cluster": ("id", "name", "cluster_model", "shared", "revision"),
    "loadbalancer": ("id", "name", "cluster_id", "driver", "management_address", "role", "revision"),
    "instance": ("id", "name", "cluster_id", "address"),
    "listener": ("id", "name", "instance_id", "port", "protocol"),
    "tls_certificate": ("id", "name", "listener_id", "is_default", "hostnames", "not_after"),
    "pool": ("id", "name", "algorithm"),
    "member": ("id", "name", "pool_id", "address", "port", "weight", "backup", "admin_state", "health"),
    "healthmonitor": ("id", "name", "pool_id", "type", "interval", "path"),
    "acl": ("id", "name", "listener_id", "pool_id", "position", "condition"),
}
_STATUS_COLUMNS = ("provisioning_status", "operating_status")


class UsageError(Exception):
    """A bad command line noticed after parsing (a malformed --set, an unreadable @FILE)."""


def build_parser() -> argparse.ArgumentParser:
    from lbcore.control import api_schemas as W

    parser = argparse.ArgumentParser(prog="lbcore api", description="drive the control plane's REST API")
    parser.add_argument("--url", help=f"API base URL (default: $LBCORE_API_URL or {DEFAULT_URL})")
    parser.add_argument("--token", help="bearer token (default: $LBCORE_API_TOKEN)")
    parser.add_argument("-o", "--output", choices=["table", "json"], default="table")
    kinds = parser.add_subparsers(dest="kind", metavar="KIND")
    # The global options also after the action (lbcore api pool list -o json); SUPPRESS
    # keeps the value given before the kind otherwise.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument("--token", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument("-o", "--output", choices=["table", "json"], default=argparse.SUPPRESS)

    for entity in W.ENTITIES:
        aliases = [entity.kind] if entity.kind != entity.cli_name else []
        kp = kinds.add_parser(entity.cli_name, aliases=aliases, help=f"{entity.kind} objects")
        actions = kp.add_subparsers(dest="action", metavar="ACTION", required=True)

        p = actions.add_parser("list", parents=[common], aliases=["ls"], help=f"list {entity.kind} objects")
        p.add_argument("--sort", help="FIELD, or --sort=-FIELD for descending; comma-separated for several")
        p.add_argument("--limit", type=int)
        p.add_argument("--offset", type=int)
        p.add_argument("--filter", action="append", default=[], metavar="FIELD=VALUE", help="repeatable")
        if entity.parent_field is not None:
            flag = entity.parent_field.removesuffix("_id").replace("_", "-")
            p.add_argument(f"--{flag}", dest="parent_id", metavar="ID", help=f"only those of this {flag}")
        p.set_defaults(run=_run_list, entity=entity)

        p = actions.add_parser("show", parents=[common], aliases=["get"], help=f"show one {entity.kind}")
        p.add_argument("id")
        p.set_defaults(run=_run_show, entity=entity)

        p = actions.add_parser("create", parents=[common], help=f"create a {entity.kind}")
        _add_body_options(p, entity, creating=True)
        p.set_defaults(run=_run_create, entity=entity)

        p = actions.add_parser("update", parents=[common], aliases=["set"], help=f"change fields of a {entity.kind}")
        p.add_argument("id")
        _add_body_options(p, entity, creating=False)
        p.add_argument("--if-match", help="only if the object's ETag is still this one")
        p.set_defaults(run=_run_update, entity=entity)

        p = actions.add_parser("delete", parents=[common], aliases=["rm"], help=f"delete a {entity.kind}")
        p.add_argument("id")
        p.add_argument("--if-match", help="only if the object's ETag is still this one")
        p.add_argument("--dry-run", action="store_true", help="show the Spec diff per cluster; change nothing")
        p.set_defaults(run=_run_delete, entity=entity)

        if entity.cascading:
            p = actions.add_parser("effective", parents=[common],
                                   help="every cascading attribute's value and where it comes from")
            p.add_argument("id")
            if entity.kind in ("pool", "member", "healthmonitor"):  # a pool may serve several clusters
                p.add_argument("--cluster", dest="cluster_id", metavar="ID",
                               help="resolve against this cluster (a pool serving several)")
            p.set_defaults(run=_run_effective, entity=entity)

        if entity.kind == "cluster":
            p = actions.add_parser("status", parents=[common], help="the status tree of a cluster")
            p.add_argument("id")
            p.set_defaults(run=_run_status, entity=entity)
            p = actions.add_parser("reapply", parents=[common], help="push the cluster's Spec to every node again")
            p.add_argument("id")
            p.set_defaults(run=_run_reapply, entity=entity)

    kp = kinds.add_parser("vip", help="legacy workflow: a VIP for an existing pool")
    actions = kp.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = actions.add_parser("create", parents=[common],
                           help="create the cluster, instance, listener and default acl for a pool")
    _add_fields(p, W.VipCreate)
    _add_generic_body(p)
    p.add_argument("--dry-run", action="store_true", help="show the Spec diff per cluster; change nothing")
    p.set_defaults(run=_run_vip)

    kp = kinds.add_parser("tenant", help="tenants and their tokens (admin)")
    actions = kp.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = actions.add_parser("create", parents=[common], help="create a tenant")
    p.add_argument("name")
    p.set_defaults(run=_run_tenant_create)
    p = actions.add_parser("list", parents=[common], aliases=["ls"], help="list tenants")
    p.set_defaults(run=_run_tenant_list)
    p = actions.add_parser("token", parents=[common], help="create a bearer token for a tenant (printed once)")
    p.add_argument("tenant_id")
    p.add_argument("--admin", action="store_true", help="an admin token")
    p.set_defaults(run=_run_tenant_token)

    kp = kinds.add_parser("token", help="bearer tokens")
    actions = kp.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = actions.add_parser("revoke", parents=[common], help="revoke a token (by its id: lbc_<id>_...)")
    p.add_argument("id", help="the token's id, or the whole token")
    p.set_defaults(run=_run_token_revoke)
    return parser


def _add_body_options(p: argparse.ArgumentParser, entity: Any, *, creating: bool) -> None:
    _add_fields(p, entity.create if creating else entity.update)
    _add_generic_body(p)
    p.add_argument("--dry-run", action="store_true", help="show the Spec diff per cluster; change nothing")


def _add_generic_body(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="set any field (VALUE is parsed as JSON when it is JSON; @FILE reads a file)")
    p.add_argument("--data", help="the whole request body as JSON, or @FILE")


def _add_fields(p: argparse.ArgumentParser, schema: Any) -> None:
    """One ``--flag`` per body field (``pool_id`` also as ``--pool``). None is required
    here: ``--data`` may carry them, and the server names what is missing."""
    p.set_defaults(body_fields=[])
    for name in schema.model_fields:
        flags = [f"--{name.replace('_', '-')}"]
        if name.endswith("_id"):
            flags.insert(0, f"--{name[:-3].replace('_', '-')}")
        p.add_argument(*flags, dest=f"field_{name}", metavar="VALUE", help=_field_help(schema, name))
        p.get_default("body_fields").append(name)


def _field_help(schema: Any, name: str) -> str:
    from lbcore.control.api_schemas import json_schema

    document = json_schema(schema)
    prop = document["properties"].get(name, {})
    parts = [prop.get("description") or ""]
    if prop.get("enum"):
        parts.append("one of " + ", ".join(str(v) for v in prop["enum"] if v is not None))
    if name in document.get("required", ()):
        parts.append("required")
    return "; ".join(p for p in parts if p) or None  # type: ignore[return-value]


def _body(args: argparse.Namespace, schema: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if args.data:
        loaded = _json_arg(_read_at(args.data), "--data")
        if not isinstance(loaded, dict):
            raise UsageError("--data must be a JSON object")
        body.update(loaded)
    for name in args.body_fields:
        raw = getattr(args, f"field_{name}")
        if raw is not None:
            body[name] = _field_value(raw, _is_text(schema, name))
    for item in args.set:
        name, sep, raw = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--set {item!r}: expected FIELD=VALUE")
        body[name] = _field_value(raw, _is_text(schema, name))
    return body


def _is_text(schema: Any, name: str) -> bool:
    """Whether a field takes a plain string, so that ``--name 123`` stays the string "123"."""
    if schema is None or name not in schema.model_fields:
        return False
    from lbcore.control.api_schemas import is_text_field

    return is_text_field(schema, name)


def _field_value(raw: str, text: bool) -> Any:
    """A text field takes the value as it is (``null`` unsets it); any other reads it as
    JSON when it is JSON (``--port 80``, ``--attrs '{"maxconn": 100}'``)."""
    if text and raw == "null":
        return None
    value = _read_at(raw)
    if text or value is not raw:
        return value
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _read_at(raw: str) -> str:
    if not raw.startswith("@"):
        return raw
    try:
        with open(raw[1:], encoding="utf-8") as fh:
            return fh.read()
    except OSError as exc:
        raise UsageError(f"{raw}: {exc.strerror}") from None


def _json_arg(raw: str, what: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise UsageError(f"{what}: not JSON: {exc}") from None


def _run_list(client: ApiClient, args: argparse.Namespace) -> int:
    entity = args.entity
    filters: list[tuple[str, str]] = []
    for item in args.filter:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--filter {item!r}: expected FIELD=VALUE")
        filters.append((name, value))
    if getattr(args, "parent_id", None):
        filters.append((entity.parent_field, args.parent_id))
    query = [*filters, ("sort", args.sort), ("limit", args.limit), ("offset", args.offset)]
    page = client.request("GET", entity.path, query=query).body
    if args.output == "json":
        _print_json(page)
        return 0
    _print_table(page["items"], COLUMNS.get(entity.kind, ("id", "name")) + _STATUS_COLUMNS)
    shown = len(page["items"])
    if shown < page["total"]:
        print(f"({shown} of {page['total']}; --offset {page['offset'] + shown} for more)")
    return 0


def _run_show(client: ApiClient, args: argparse.Namespace) -> int:
    resp = client.get(args.entity.path, args.id)
    _print_object(args, resp)
    return 0


def _run_create(client: ApiClient, args: argparse.Namespace) -> int:
    resp = client.create(args.entity.path, _body(args, args.entity.create), dry_run=args.dry_run)
    return _print_change(args, resp)


def _run_update(client: ApiClient, args: argparse.Namespace) -> int:
    body = _body(args, args.entity.update)
    if not body:
        raise UsageError("nothing to change: give field options, --set or --data")
    resp = client.update(args.entity.path, args.id, body, if_match=args.if_match, dry_run=args.dry_run)
    return _print_change(args, resp)


def _run_delete(client: ApiClient, args: argparse.Namespace) -> int:
    resp = client.delete(args.entity.path, args.id, if_match=args.if_match, dry_run=args.dry_run)
    if args.dry_run:
        return _print_change(args, resp)
    if args.output == "json":
        _print_json({"deleted": args.id})
    else:
        print(f"deleted {args.entity.kind} {args.id}")
    return 0


def _run_effective(client: ApiClient, args: argparse.Namespace) -> int:
    resp = client.request("GET", f"{args.entity.path}/{_seg(args.id)}/effective",
                          query={"cluster_id": getattr(args, "cluster_id", None)})
    if args.output == "json":
        _print_json(resp.body)
        return 0
    rows = [{"attribute": name, "value": _cell(item.get("value")), "from": _origin(item.get("source") or {})}
            for name, item in (resp.body or {}).items() if isinstance(item, Mapping)]
    _print_table(rows, ("attribute", "value", "from"))
    return 0


def _origin(source: Mapping[str, Any]) -> str:
    kind = source.get("kind")
    if not kind or kind == "default":
        return "default"
    label = source.get("name") or ""
    return f"{kind} {label} ({source.get('id')})".replace("  (", " (")


def _run_status(client: ApiClient, args: argparse.Namespace) -> int:
    resp = client.request("GET", f"{args.entity.path}/{_seg(args.id)}/status")
    if args.output == "json":
        _print_json(resp.body)
        return 0
    for key, node in (resp.body or {}).items():
        for line in _status_lines(key, node, 0):
            print(line)
    return 0


def _status_lines(key: str, node: Any, depth: int) -> Iterable[str]:
    """A status tree as indented lines: ``listener web (ID) :80 ACTIVE / ONLINE``; the
    children of a node are its list (and object) values, named by their key."""
    if isinstance(node, list):
        for item in node:
            yield from _status_lines(key, item, depth)
        return
    if not isinstance(node, Mapping):
        return
    kind = _SINGULAR.get(key, key)
    label = f" {node['name']}" if node.get("name") else ""
    where = ""
    if node.get("address"):
        where = f" {node['address']}" + (f":{node['port']}" if node.get("port") else "")
    elif node.get("port"):
        where = f" :{node['port']}"
    status = f"{node.get('provisioning_status', '?')} / {node.get('operating_status', '?')}"
    yield f"{'  ' * depth}{kind}{label} ({node.get('id', '?')}){where}: {status}"
    for child_key, child in node.items():
        if isinstance(child, (list, Mapping)) and child_key not in _NOT_CHILDREN:
            yield from _status_lines(child_key, child, depth + 1)


_SINGULAR = {"loadbalancers": "loadbalancer", "instances": "instance", "listeners": "listener", "pools": "pool",
             "members": "member", "tls_certificates": "tls_certificate", "acls": "acl"}
_NOT_CHILDREN = {"hostnames", "ha_addresses", "attrs", "add_headers", "redirect", "condition"}


def _run_vip(client: ApiClient, args: argparse.Namespace) -> int:
    from lbcore.control.api_schemas import VipCreate

    resp = client.request("POST", "/v1/vips", query={"dry_run": args.dry_run or None}, body=_body(args, VipCreate))
    if args.dry_run:
        return _print_change(args, resp)
    if args.output == "json":
        _print_json(resp.body)
    else:
        rows = []
        for key, value in (resp.body or {}).items():
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, Mapping):
                    rows.append({"kind": item.get("kind", key), "id": item.get("id"), "name": item.get("name"),
                                 "provisioning_status": item.get("provisioning_status")})
        _print_table(rows, ("kind", "id", "name", "provisioning_status"))
    return 0


def _run_tenant_create(client: ApiClient, args: argparse.Namespace) -> int:
    resp = client.request("POST", "/v1/tenants", body={"name": args.name})
    _print_object(args, resp)
    return 0


def _run_reapply(client: ApiClient, args: argparse.Namespace) -> int:
    resp = client.request("POST", f"{args.entity.path}/{_seg(args.id)}/reapply")
    if args.output == "json":
        _print_json(resp.body)
        return 0
    cluster = resp.body.get("cluster") or {}
    print(f"cluster {args.id}: {cluster.get('provisioning_status', '?')}")
    rows = [{"cluster": cluster_id, "node": node_id, "result": error or "applied"}
            for cluster_id, nodes in (resp.body.get("applied") or {}).items() for node_id, error in nodes.items()]
    if rows:
        _print_table(rows, ("cluster", "node", "result"))
    else:
        print("no node to push to")
    return 0


def _run_tenant_list(client: ApiClient, args: argparse.Namespace) -> int:
    resp = client.request("GET", "/v1/tenants")
    if args.output == "json":
        _print_json(resp.body)
    else:
        _print_table(resp.body["items"], ("id", "name", "created_at"))
    return 0


def _run_token_revoke(client: ApiClient, args: argparse.Namespace) -> int:
    token_id = args.id
    if token_id.count("_") >= 2:  # a whole token: lbc_<id>_<secret>
        token_id = token_id.split("_", 2)[1]
    client.request("DELETE", f"/v1/tokens/{_seg(token_id)}")
    if args.output == "json":
        _print_json({"revoked": token_id})
    else:
        print(f"revoked token {token_id}")
    return 0


def _run_tenant_token(client: ApiClient, args: argparse.Namespace) -> int:
    resp = client.request("POST", f"/v1/tenants/{_seg(args.tenant_id)}/tokens", body={"admin": args.admin})
    if args.output == "json":
        _print_json(resp.body)
    else:
        print(resp.body["token"])
    return 0


def _print_change(args: argparse.Namespace, resp: ApiResponse) -> int:
    if not args.dry_run:
        _print_object(args, resp)
        return 0
    if args.output == "json":
        _print_json(resp.body)
        return 0
    diffs = resp.body.get("diffs") or {}
    print("dry run: nothing changed")
    if not diffs:
        print("no cluster's Spec would change")
    for cluster_id, changes in diffs.items():
        print(f"cluster {cluster_id}: {len(changes)} changes")
        for change in changes:
            print("  " + _change_line(change))
    return 0


def _change_line(change: Mapping[str, Any]) -> str:
    sign = {"added": "+", "removed": "-", "changed": "~"}.get(change.get("kind", ""), "?")
    path = change.get("path", "")
    if change.get("kind") == "changed":
        return f"{sign} {path}: {json.dumps(change.get('old'))} -> {json.dumps(change.get('new'))}"
    value = change.get("new") if change.get("kind") == "added" else change.get("old")
    return f"{sign} {path}" if isinstance(value, (dict, list)) else f"{sign} {path}: {json.dumps(value)}"


def _print_object(args: argparse.Namespace, resp: ApiResponse) -> None:
    if args.output == "json":
        _print_json(resp.body)
        return
    obj = resp.body or {}
    width = max((len(k) for k in obj), default=0)
    for key, value in obj.items():
        print(f"{key.ljust(width)}  {_cell(value)}")
    if resp.etag:
        print(f"{'etag'.ljust(width)}  {resp.etag}")


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=False))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _print_table(rows: list[Mapping[str, Any]], columns: Iterable[str]) -> None:
    cols = [c for c in columns if any(c in r for r in rows)] or list(columns)
    cells = [[_cell(r.get(c)) for c in cols] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(cols)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(cols, widths)).rstrip())
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())


if __name__ == "__main__":
    sys.exit(main())
