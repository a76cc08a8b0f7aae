"""The control plane's REST API: ``create_app(service)`` returns the FastAPI app.

Octavia's shape, lbcore's entities (routes in ``api_routes``, schemas derived from
the model's field tables in ``api_schemas``)::

    /v1/{clusters,loadbalancers,instances,listeners,tls-certificates,pools,members,healthmonitors,acls}
        GET (filters ?field=value, ?sort=name,-created_at, ?limit=&offset=), POST
    /v1/{kind}/{id}              GET (ETag), PUT/PATCH and DELETE (If-Match -> 412)
    /v1/{kind}/{id}/effective    cascading attributes and where each comes from
    /v1/pools/{pool_id}/members  GET, POST
    /v1/clusters/{id}/status     the status tree
    /v1/clusters/{id}/reapply    POST: push the cluster's Spec to its nodes again
    /v1/vips                     POST: the legacy workflow
    /v1/tenants                  GET, POST (admin)
    /v1/tenants/{id}/tokens      POST (admin): a token, shown once
    /v1/tokens/{id}              DELETE: revoke

Every change takes ``?dry_run=true``: the answer is the Spec diff per cluster and
nothing changes. Every request but ``/healthz`` and the OpenAPI document needs
``Authorization: Bearer TOKEN`` (401 otherwise); the service scopes every query to
the caller's tenant, so another tenant's object is a 404.

One error shape for every 4xx/5xx, whoever found the problem (pydantic, the
service's ``Invalid``, a 404 from routing)::

    {"errors": [{"path": "port", "message": "must be 1..65535"}]}

``path`` is a body field (``port``, ``attrs``), ``query.NAME`` or ``header.NAME``,
a Spec path for a Spec the change would make invalid, or empty for the request as
a whole. A malformed JSON body is a 400; every other bad input a 422. Write-only
fields (a certificate's private key and passphrase) are dropped from every answer,
whatever the service returns.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable, Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from lbcore import __version__
from lbcore.control.api_schemas import SECRET_FIELDS
from lbcore.control.errors import ControlError, Invalid, PreconditionFailed

__all__ = ["ApiError", "create_app", "error_response", "scrub"]

log = logging.getLogger("lbcore.control.api")


class ApiError(Exception):
    """A refusal decided in the REST layer (401, 400, a bad query parameter)."""

    def __init__(self, status: int, errors: Sequence[tuple[str, str]], headers: dict[str, str] | None = None) -> None:
        super().__init__("; ".join(f"{p}: {m}" if p else m for p, m in errors))
        self.status = status
        self.errors = list(errors)
        self.headers = headers or {}


def error_response(status: int, errors: Iterable[tuple[str, str]],
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"errors": [{"path": path, "message": message} for path, message in errors]}
    return JSONResponse(body, status_code=status, headers=headers)


def scrub(data: Any) -> Any:
    """``data`` without any write-only field, at any depth (a belt to the model's braces)."""
    if isinstance(data, dict):
        return {key: scrub(value) for key, value in data.items() if key not in SECRET_FIELDS}
    if isinstance(data, list):
        return [scrub(item) for item in data]
    return data


def create_app(service: Any, *, title: str = "lbcore control plane") -> FastAPI:
    """The API over ``service`` (a ``lbcore.control.service.ControlService``)."""
    from lbcore.control import api_routes

    app = FastAPI(
        title=title,
        version=__version__,
        description=__doc__.split("\n", 2)[2] if __doc__ else None,
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.service = service
    _install_error_handlers(app)
    app.include_router(api_routes.build_router(service))

    @app.get("/healthz", tags=["meta"], summary="liveness (no token needed)")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


# -- errors ---------------------------------------------------------------------------------------

_GENERIC = {400: "bad request", 401: "unauthorized", 403: "forbidden", 404: "not found", 405: "method not allowed",
            406: "not acceptable", 409: "conflict", 412: "precondition failed", 415: "unsupported media type"}


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ControlError)
    def control_error(request: Request, exc: ControlError) -> JSONResponse:
        headers: dict[str, str] = {}
        if isinstance(exc, Invalid):
            errors = exc.errors or [("", exc.message)]
        else:
            errors = [("", exc.message)]
        if isinstance(exc, PreconditionFailed):
            headers["ETag"] = _quoted(exc.current)
        if exc.status >= 500:
            log.error("control plane error on %s %s: %s", request.method, request.url.path, exc.message)
        return error_response(exc.status, errors, headers)

    @app.exception_handler(ApiError)
    def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.errors, exc.headers)

    @app.exception_handler(RequestValidationError)
    def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        status, errors = validation_errors(exc.errors())
        return error_response(status, errors)

    @app.exception_handler(StarletteHTTPException)
    def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else _GENERIC.get(exc.status_code, "error")
        return error_response(exc.status_code, [("", detail)], dict(exc.headers or {}))

    @app.exception_handler(Exception)
    def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(500, [("", "internal error (logged by the control plane)")])


def validation_errors(items: Sequence[dict[str, Any]]) -> tuple[int, list[tuple[str, str]]]:
    """pydantic/FastAPI errors as (status, [(path, message)]): JSON that does not parse
    is a 400, anything else a 422; one message per path."""
    status = 422
    out: dict[str, str] = {}
    for item in items:
        loc = list(item.get("loc") or ())
        kind = item.get("type", "")
        if kind == "json_invalid":
            status = 400
            reason = (item.get("ctx") or {}).get("error", "")
            out.setdefault("", f"the body is not valid JSON{': ' + str(reason) if reason else ''}")
            continue
        path = _path(loc)
        out.setdefault(path, _message(item, loc))
    return status, list(out.items())


def _path(loc: list[Any]) -> str:
    """``("body", "attrs", "x")`` -> ``attrs.x``; ``("query", "limit")`` -> ``query.limit``."""
    if not loc:
        return ""
    source, rest = loc[0], loc[1:]
    text = ""
    for part in rest:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    if source == "body":
        return text
    return f"{source}.{text}" if text else str(source)


def _message(item: dict[str, Any], loc: list[Any]) -> str:
    kind = item.get("type", "")
    if kind == "missing":
        return "a JSON body is required" if loc == ["body"] else "required"
    if kind in ("model_attributes_type", "dict_type") and loc == ["body"]:
        return "expected a JSON object (Content-Type: application/json)"
    if kind == "value_error":
        error = (item.get("ctx") or {}).get("error")
        if error is not None:
            return str(error)
    return str(item.get("msg", "invalid"))


def _quoted(etag: str) -> str:
    return etag if etag.startswith(('"', "W/")) else f'"{etag}"'
