"""The routes of the REST API, built once per entity kind from ``api_schemas.ENTITIES``.

Each handler is plain and synchronous (FastAPI runs it in its thread pool): check the
token, call the service, shape the answer. Nothing here decides what a change means;
the service does (tenancy, validation, conflicts, the Spec diff).
"""

import inspect
from typing import Annotated, Any, Callable, Literal, Optional

from fastapi import APIRouter, Body, Depends, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from pydantic import Field as PydanticField

from lbcore.control.api import ApiError, scrub
from lbcore.control.api_schemas import (
    ENTITIES,
    ENTITY_BY_KIND,
    SECRET_FIELDS,
    ChangePreview,
    EntityWire,
    ErrorBody,
    Page,
    TenantCreate,
    TenantOut,
    TokenCreate,
    TokenOut,
    VipCreate,
)
from lbcore.control.errors import NotFound
from lbcore.control.status import OPERATING_STATUSES, PROVISIONING_STATUSES

__all__ = ["build_router", "DEFAULT_LIMIT", "MAX_LIMIT"]

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000  # a page bigger than this is asked for in several

_bearer = HTTPBearer(auto_error=False, description="a token printed by `lbcore control init` or `lbcore control token`")

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in {400: "malformed JSON", 401: "no token or a bad one", 404: "no such object (in your tenant)",
                       422: "invalid input: each error names its field"}.items()
}
_CHANGE_ERRORS = {**_ERRORS, 403: {"model": ErrorBody, "description": "an admin-only field, or a shared object you do "
                                                                     "not own"},
                  409: {"model": ErrorBody, "description": "conflicts with the model (or a change in progress)"},
                  412: {"model": ErrorBody, "description": "If-Match does not match the current ETag"}}
_IF_MATCH = Header(None, alias="If-Match", description='the ETag from a GET ("3"); * for any')
_DRY_RUN = Query(False, description="return the Spec diff per cluster; change nothing")


def build_router(service: Any) -> APIRouter:
    router = APIRouter(prefix="/v1")

    def principal(credentials: Optional[HTTPAuthorizationCredentials] = Depends(_bearer)) -> Any:
        if credentials is None or not credentials.credentials:
            raise ApiError(401, [("header.authorization", "a bearer token is required")],
                           {"WWW-Authenticate": "Bearer"})
        found = service.authenticate(credentials.credentials)
        if found is None:
            raise ApiError(401, [("header.authorization", "invalid token")],
                           {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return found

    for entity in ENTITIES:
        _entity_routes(router, service, principal, entity)
    _member_routes(router, service, principal)
    _cluster_status_route(router, service, principal)
    _vip_route(router, service, principal)
    _cluster_reapply_route(router, service, principal)
    _tenant_routes(router, service, principal)
    return router


# -- per entity -----------------------------------------------------------------------------------


def _entity_routes(router: APIRouter, service: Any, principal: Callable[..., Any], entity: EntityWire) -> None:
    kind, tag = entity.kind, entity.collection
    path, item = entity.path.removeprefix("/v1"), entity.path.removeprefix("/v1") + "/{id}"
    id_param = Path(..., description=f"the {kind}'s id")

    router.add_api_route(
        path, _list_endpoint(service, principal, entity), methods=["GET"], tags=[tag],
        summary=f"list {kind} objects", operation_id=f"list_{kind}s", response_model=None,
        responses={200: {"model": Page, "description": f"a page of {kind} objects (items: {entity.read.__name__})"},
                   **_ERRORS})

    def create(request: Request, body: entity.create = Body(...),  # type: ignore[name-defined]
               dry_run: bool = _DRY_RUN, who: Any = Depends(principal)) -> Any:
        result = service.create(who, kind, _payload(body, kind), dry_run=dry_run)
        return _change(request, entity, result, dry_run=dry_run, status=201)

    router.add_api_route(
        path, create, methods=["POST"], tags=[tag], summary=f"create a {kind}", operation_id=f"create_{kind}",
        status_code=201, response_model=None,
        responses={201: {"model": entity.read, "description": "created (ETag, Location)"},
                   200: {"model": ChangePreview, "description": "dry run: what would change"}, **_CHANGE_ERRORS})

    def get(id: str = id_param, who: Any = Depends(principal)) -> Any:
        obj, etag = service.get(who, kind, id)
        return _object(obj, etag)

    router.add_api_route(
        item, get, methods=["GET"], tags=[tag], summary=f"show a {kind}", operation_id=f"get_{kind}",
        name=f"get_{kind}",
        response_model=None, responses={200: {"model": entity.read, "description": "the object (ETag)"}, **_ERRORS})

    def update(request: Request, id: str = id_param, body: entity.update = Body(...),  # type: ignore[name-defined]
               dry_run: bool = _DRY_RUN, if_match: Optional[str] = _IF_MATCH, who: Any = Depends(principal)) -> Any:
        result = service.update(who, kind, id, _payload(body, kind), if_match=_if_match(if_match),
                                dry_run=dry_run)
        return _change(request, entity, result, dry_run=dry_run, status=200)

    for method in ("PUT", "PATCH"):
        router.add_api_route(
            item, update, methods=[method], tags=[tag],
            operation_id=f"{'replace' if method == 'PUT' else 'update'}_{kind}",
            summary=f"change a {kind} (fields not sent keep their value)", response_model=None,
            responses={200: {"model": entity.read, "description": "the object as changed (ETag), or a dry run's "
                                                                    "ChangePreview"}, **_CHANGE_ERRORS})

    def delete(request: Request, id: str = id_param, dry_run: bool = _DRY_RUN, if_match: Optional[str] = _IF_MATCH,
               who: Any = Depends(principal)) -> Any:
        result = service.delete(who, kind, id, if_match=_if_match(if_match), dry_run=dry_run)
        if dry_run:
            return _change(request, entity, result, dry_run=True, status=200)
        if any(error for nodes in result.applied.values() for error in nodes.values()):
            try:  # a node refused: the object stays, in ERROR (a delete retries)
                return _object(*service.get(who, kind, id))
            except NotFound:
                pass
        return Response(status_code=204)

    router.add_api_route(
        item, delete, methods=["DELETE"], tags=[tag], summary=f"delete a {kind}", operation_id=f"delete_{kind}",
        status_code=204, response_model=None, response_class=Response,
        responses={204: {"description": "deleted"},
                   200: {"description": "a dry run (ChangePreview), or a node refused the change: the object, "
                                        "left in ERROR (delete again to retry)"}, **_CHANGE_ERRORS})

    if entity.cascading:
        def effective(id: str = id_param, cluster_id: Optional[str] = Query(
                None, description="a pool, member or monitor serving several clusters: resolve against this one"),
                who: Any = Depends(principal)) -> Any:
            return JSONResponse(scrub(service.effective(who, kind, id, cluster_id=cluster_id)))

        router.add_api_route(
            item + "/effective", effective, methods=["GET"], tags=[tag], operation_id=f"effective_{kind}",
            summary=f"the {kind}'s cascading attributes: each effective value and the object it comes from",
            response_model=None, responses={200: {"description": "attribute -> {value, source}"}, **_ERRORS})


def _list_endpoint(service: Any, principal: Callable[..., Any], entity: EntityWire,
                   *, parent: Optional[tuple[str, str]] = None) -> Callable[..., Any]:
    """GET on a collection. Its filter parameters are declared one by one (so the OpenAPI
    document lists them and FastAPI converts ``?port=80`` to an integer); an unknown
    query parameter is a 422, not a silently ignored typo. ``parent``: (path parameter
    and filter field, parent kind) for a nested collection (``/pools/{pool_id}/members``)."""
    parent_field, parent_kind = parent if parent else (None, None)
    filters = {key: field for key, field in entity.filterable.items() if key != parent_field}
    known = {*filters, "sort", "limit", "offset"}

    def endpoint(**kwargs: Any) -> Any:
        request: Request = kwargs["request"]
        who = kwargs["who"]
        unknown = sorted(set(request.query_params) - known)
        if unknown:
            raise ApiError(422, [(f"query.{name}", f"unknown filter (filters: {', '.join(filters)})")
                                 for name in unknown])
        chosen = {key: _text(kwargs[key]) for key in filters if kwargs.get(key) is not None}
        if parent_field is not None:
            service.get(who, parent_kind, kwargs[parent_field])  # 404 for a parent not there (or not yours)
            chosen[parent_field] = kwargs[parent_field]
        sort = _sort(entity, kwargs["sort"])
        limit, offset = kwargs["limit"], kwargs["offset"]
        items, total = service.list(who, entity.kind, filters=chosen, sort=sort, limit=limit, offset=offset)
        page = {"items": scrub(items), "total": total, "limit": limit, "offset": offset}
        return JSONResponse(page, headers=_page_headers(request, total, limit, offset))

    params = [
        inspect.Parameter("request", inspect.Parameter.KEYWORD_ONLY, annotation=Request),
        inspect.Parameter("who", inspect.Parameter.KEYWORD_ONLY, default=Depends(principal)),
    ]
    if parent_field is not None:
        params.append(inspect.Parameter(parent_field, inspect.Parameter.KEYWORD_ONLY, annotation=str,
                                        default=Path(..., description=f"the {parent_kind}'s id")))
    for key, json_type in filters.items():
        params.append(inspect.Parameter(key, inspect.Parameter.KEYWORD_ONLY, annotation=_filter_type(key, json_type),
                                        default=Query(None, description=f"only objects whose {key} is this")))
    params += [
        inspect.Parameter("sort", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[str], default=Query(
            None, description=f"fields, comma-separated, '-' for descending: {', '.join(entity.sortable)}",
            pattern=r"^-?[a-z_]+(,-?[a-z_]+)*$")),
        inspect.Parameter("limit", inspect.Parameter.KEYWORD_ONLY, annotation=int,
                          default=Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description="page size")),
        inspect.Parameter("offset", inspect.Parameter.KEYWORD_ONLY, annotation=int,
                          default=Query(0, ge=0, le=2**31 - 1, description="objects to skip")),
    ]
    endpoint.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    endpoint.__name__ = f"list_{entity.kind}s"
    return endpoint


_INT64 = (-(2**63), 2**63 - 1)  # what SQLite and PostgreSQL (bigint) hold


def _filter_type(key: str, json_type: str) -> Any:
    if key == "provisioning_status":
        return Optional[Literal[PROVISIONING_STATUSES]]  # type: ignore[valid-type]
    if key == "operating_status":
        return Optional[Literal[OPERATING_STATUSES]]  # type: ignore[valid-type]
    if json_type == "integer":
        return Optional[Annotated[int, PydanticField(ge=_INT64[0], le=_INT64[1])]]
    if json_type == "number":
        return Optional[Annotated[float, PydanticField(allow_inf_nan=False)]]
    return Optional[bool] if json_type == "boolean" else Optional[str]


def _text(value: Any) -> str:
    """A filter value as the service takes it: text (``true``/``false`` for booleans)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _sort(entity: EntityWire, sort: Optional[str]) -> Optional[str]:
    if not sort:
        return None
    keys = [key.strip() for key in sort.split(",") if key.strip()]
    bad = [key for key in keys if key.lstrip("-") not in entity.sortable]
    if bad:
        raise ApiError(422, [("query.sort", f"cannot sort by {bad[0].lstrip('-')!r} "
                                            f"(sortable: {', '.join(entity.sortable)})")])
    return ",".join(keys)


def _page_headers(request: Request, total: int, limit: int, offset: int) -> dict[str, str]:
    links = []
    if offset + limit < total:
        links.append(f'<{request.url.include_query_params(limit=limit, offset=offset + limit)}>; rel="next"')
    if offset > 0:
        links.append(f'<{request.url.include_query_params(limit=limit, offset=max(0, offset - limit))}>; rel="prev"')
    headers = {"X-Total-Count": str(total)}
    if links:
        headers["Link"] = ", ".join(links)
    return headers


# -- pools/{id}/members, clusters/{id}/status, vips, tenants ------------------------------------


def _member_routes(router: APIRouter, service: Any, principal: Callable[..., Any]) -> None:
    member = ENTITY_BY_KIND["member"]
    path = "/pools/{pool_id}/members"
    router.add_api_route(
        path, _list_endpoint(service, principal, member, parent=("pool_id", "pool")),
        methods=["GET"], tags=["members"], summary="list a pool's members", operation_id="list_pool_members",
        response_model=None, responses={200: {"model": Page, "description": "a page of members"}, **_ERRORS})

    in_pool = _without_required(member.create, "pool_id")  # pool_id comes from the path

    def create(request: Request, pool_id: str = Path(..., description="the pool's id"),
               body: in_pool = Body(...),  # type: ignore[valid-type]
               dry_run: bool = _DRY_RUN, who: Any = Depends(principal)) -> Any:
        data = _payload(body, "member")
        if data.get("pool_id", pool_id) != pool_id:
            raise ApiError(422, [("pool_id", "differs from the pool in the URL (leave it out)")])
        data["pool_id"] = pool_id
        result = service.create(who, "member", data, dry_run=dry_run)
        return _change(request, member, result, dry_run=dry_run, status=201)

    router.add_api_route(
        path, create, methods=["POST"], tags=["members"], summary="add a member to a pool",
        operation_id="create_pool_member", status_code=201, response_model=None,
        responses={201: {"model": member.read, "description": "created (ETag, Location)"},
                   200: {"model": ChangePreview, "description": "dry run"}, **_CHANGE_ERRORS})


def _without_required(model: type[BaseModel], name: str) -> type[BaseModel]:
    from pydantic import create_model

    info = model.model_fields[name]
    return create_model(f"{model.__name__}InPool", __base__=model,
                        **{name: (info.annotation, type(info)(default=None, description=info.description))})


def _cluster_status_route(router: APIRouter, service: Any, principal: Callable[..., Any]) -> None:
    def status(id: str = Path(..., description="the cluster's id"), who: Any = Depends(principal)) -> Any:
        return JSONResponse(scrub(service.status_tree(who, id)))

    router.add_api_route(
        "/clusters/{id}/status", status, methods=["GET"], tags=["clusters"], operation_id="cluster_status",
        summary="the status tree: provisioning and operating status of the cluster and everything on it",
        response_model=None, responses={200: {"description": "nested statuses"}, **_ERRORS})


def _vip_route(router: APIRouter, service: Any, principal: Callable[..., Any]) -> None:
    def create_vip(request: Request, body: VipCreate = Body(...),  # type: ignore[valid-type]
                   dry_run: bool = _DRY_RUN, who: Any = Depends(principal)) -> Any:
        result = service.legacy_vip(who, _payload(body), dry_run=dry_run)
        if dry_run:
            return _preview(result.obj, result.diffs)
        headers = {}
        listener = (result.obj or {}).get("listener")
        if listener:
            headers["Location"] = str(request.url_for("get_listener", id=listener["id"]))
        return JSONResponse(scrub(result.obj), status_code=201, headers=headers)

    router.add_api_route(
        "/vips", create_vip, methods=["POST"], tags=["vips"], operation_id="create_vip", status_code=201,
        summary="legacy workflow: a VIP for a pool (creates cluster, instance, listener and default acl)",
        response_model=None,
        responses={201: {"description": "the objects: {cluster, instance, listener, acl, loadbalancers} "
                                        "(Location: the listener)"},
                   200: {"model": ChangePreview, "description": "dry run"}, **_CHANGE_ERRORS})


def _cluster_reapply_route(router: APIRouter, service: Any, principal: Callable[..., Any]) -> None:
    def reapply(id: str = Path(..., description="the cluster's id"), who: Any = Depends(principal)) -> Any:
        result = service.reapply(who, id)
        return JSONResponse(scrub({"cluster": result.obj, "applied": result.applied}))

    router.add_api_route(
        "/clusters/{id}/reapply", reapply, methods=["POST"], tags=["clusters"], operation_id="cluster_reapply",
        summary="push the cluster's current Spec to every node again (a node back from a failure)",
        response_model=None,
        responses={200: {"description": "the cluster, and per cluster id, node id -> null (applied) or its error"},
                   403: {"model": ErrorBody, "description": "a shared cluster: only its owner"}, **_CHANGE_ERRORS})


def _tenant_routes(router: APIRouter, service: Any, principal: Callable[..., Any]) -> None:
    def admin(who: Any = Depends(principal)) -> Any:
        if not who.is_admin:
            raise ApiError(403, [("", "admin only")])
        return who

    def create_tenant(body: TenantCreate, who: Any = Depends(admin)) -> Any:
        return JSONResponse(service.create_tenant(body.name), status_code=201)

    router.add_api_route(
        "/tenants", create_tenant, methods=["POST"], tags=["tenants"], operation_id="create_tenant", status_code=201,
        summary="create a tenant (admin)", response_model=None,
        responses={201: {"model": TenantOut, "description": "created"},
                   403: {"model": ErrorBody, "description": "admin only"}, **_CHANGE_ERRORS})

    def list_tenants(who: Any = Depends(admin)) -> Any:
        return JSONResponse({"items": service.list_tenants(who)})

    router.add_api_route(
        "/tenants", list_tenants, methods=["GET"], tags=["tenants"], operation_id="list_tenants",
        summary="every tenant (admin)", response_model=None,
        responses={200: {"description": "{items: [tenant]}"}, 403: {"model": ErrorBody, "description": "admin only"},
                   **_ERRORS})

    def revoke_token(id: str = Path(..., description="the token's id: lbc_<id>_<secret>"),
                     who: Any = Depends(principal)) -> Any:
        service.revoke_token(who, id)
        return Response(status_code=204)

    router.add_api_route(
        "/tokens/{id}", revoke_token, methods=["DELETE"], tags=["tenants"], operation_id="revoke_token",
        summary="revoke a token (an admin any, a tenant its own)", status_code=204, response_model=None,
        response_class=Response, responses={204: {"description": "revoked"}, **_ERRORS})

    def create_token(id: str = Path(..., description="the tenant's id"), body: TokenCreate = Body(TokenCreate()),
                     who: Any = Depends(admin)) -> Any:
        token = service.create_token(id, admin=body.admin)
        return JSONResponse({"tenant_id": id, "admin": body.admin, "token": token}, status_code=201)

    router.add_api_route(
        "/tenants/{id}/tokens", create_token, methods=["POST"], tags=["tenants"], operation_id="create_token",
        status_code=201, summary="create a bearer token for a tenant (admin; shown once)", response_model=None,
        responses={201: {"model": TokenOut, "description": "the token, shown this once"},
                   403: {"model": ErrorBody, "description": "admin only"}, **_ERRORS})


# -- shaping answers ------------------------------------------------------------------------------


def _payload(body: BaseModel, kind: Optional[str] = None) -> dict[str, Any]:
    """What the client sent: declared fields it set, and any others (the service names
    unknown ones and accepts read-only ones sent back unchanged). ``kind``, the wire
    form's discriminator, is dropped when it is right, so a GET result can be PUT back."""
    data = body.model_dump(exclude_unset=True)
    if kind is not None and data.get("kind") == kind:
        del data["kind"]
    return data


def _if_match(header: Optional[str]) -> Optional[str]:
    """If-Match as sent (``"3"``, a list, ``*``): the service compares it with the
    current ETag inside the change's transaction (the test-and-set)."""
    if header is None:
        return None
    if not header.strip():
        raise ApiError(400, [("header.if-match", "empty If-Match")])
    return header.strip()


def _quoted(etag: str) -> str:
    return etag if etag.startswith(('"', "W/")) else f'"{etag}"'


def _object(obj: dict[str, Any], etag: Optional[str], *, status: int = 200,
            headers: Optional[dict[str, str]] = None) -> JSONResponse:
    out = dict(headers or {})
    if etag:
        out["ETag"] = _quoted(etag)
    return JSONResponse(scrub(obj), status_code=status, headers=out)


def _preview(obj: Any, diffs: dict[str, list[dict[str, Any]]]) -> JSONResponse:
    """A dry run's answer. A Spec change whose path ends in a secret's name shows
    ``(secret)`` for its values (the Spec's own diff does so already)."""
    shown = {cluster_id: [_redacted(change) for change in changes] for cluster_id, changes in diffs.items()}
    return JSONResponse(scrub({"dry_run": True, "object": obj, "diffs": shown}))


def _redacted(change: dict[str, Any]) -> dict[str, Any]:
    leaf = str(change.get("path", "")).rsplit(".", 1)[-1]
    if leaf not in SECRET_FIELDS:
        return change
    return {**change, **{key: "(secret)" for key in ("old", "new") if change.get(key) is not None}}


def _change(request: Request, entity: EntityWire, result: Any, *, dry_run: bool, status: int) -> JSONResponse:
    if dry_run:
        return _preview(result.obj, result.diffs)
    headers = {}
    if status == 201 and result.obj is not None:
        headers["Location"] = str(request.url_for(f"get_{entity.kind}", id=result.obj["id"]))
    return _object(result.obj, result.etag, status=status, headers=headers)
