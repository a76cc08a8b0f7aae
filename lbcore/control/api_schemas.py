"""The REST layer's pydantic schemas, derived from the model's own field tables.

Each model class (``lbcore.control.model``) already carries its wire schema as data:
``FIELDS`` (writable fields: type, required, nullable, write-only, choices) and
``READ_ONLY``. This module turns that table into pydantic models, so the OpenAPI
document, request typing and the CLI's options come from the one description and
never drift from it:

- ``<Kind>Create``: the body of a create; required fields required.
- ``<Kind>Update``: the body of PUT/PATCH; every field optional (partial update, as
  Octavia's PUT); fields not sent keep their value.
- ``<Kind>``: what the API returns: readable fields and read-only ones; never a
  write-only field (a private key, a passphrase).

The pydantic layer checks JSON types only (strict: ``"80"`` is not a port); values
(ranges, addresses, PEM, conditions) are checked once, by the service, and both kinds
of error reach the client in one shape (``ErrorBody``). Unknown body fields are
passed on to the service, which names them (with a did-you-mean) and accepts
read-only fields sent back unchanged, so a GET result can be PUT back as it is.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Optional

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    StrictBool,
    StrictStr,
    WithJsonSchema,
    create_model,
)
from pydantic import Field as PydanticField
from sqlalchemy import JSON, DateTime

from lbcore.control.cascade import attrs_for
from lbcore.control.model import MODELS, Entity
from lbcore.control.schema import Field
from lbcore.control.status import OPERATING_STATUSES, PROVISIONING_STATUSES

__all__ = [
    "ENTITIES",
    "ENTITY_BY_KIND",
    "EntityWire",
    "ErrorBody",
    "ErrorItem",
    "ChangePreview",
    "Page",
    "TenantCreate",
    "TenantOut",
    "TokenCreate",
    "TokenOut",
    "VipCreate",
    "is_text_field",
    "json_schema",
    "SECRET_FIELDS",
]

# JSON type name -> (Python types, what a message calls it, JSON schema). bool is no integer.
_JSON_TYPES: dict[str, tuple[tuple[type, ...], str, dict[str, Any]]] = {
    "string": ((str,), "a string", {"type": "string"}),
    "integer": ((int,), "an integer", {"type": "integer"}),
    "number": ((int, float), "a number", {"type": "number"}),
    "boolean": ((bool,), "true or false", {"type": "boolean"}),
    "array": ((list,), "a list", {"type": "array", "items": {}}),
    "object": ((dict,), "an object", {"type": "object"}),
    "null": ((type(None),), "null", {"type": "null"}),
}
# Durations are seconds or the Spec's text ("2s", "500ms"): the service parses both.
_WIDER = {"number": ("number", "string")}


def _json_names(field: Field) -> tuple[str, ...]:
    names: list[str] = []
    for name in field.type.split("|"):
        names.extend(_WIDER.get(name, (name,)))
    if field.nullable:
        names.append("null")
    return tuple(dict.fromkeys(names))


def _json_value(names: tuple[str, ...]) -> Any:
    """A type that checks the JSON type only (strict: "80" is no integer, true is no 1)
    and passes the value on unchanged, with one plain message when it fails."""
    types = tuple(t for name in names for t in _JSON_TYPES[name][0])
    wanted = [_JSON_TYPES[name][1] for name in names]
    expected = wanted[0] if len(wanted) == 1 else ", ".join(wanted[:-1]) + " or " + wanted[-1]
    schemas = [_JSON_TYPES[name][2] for name in names]

    def check(value: Any) -> Any:
        if isinstance(value, bool) and bool not in types:
            raise ValueError(f"expected {expected}, got a boolean")
        if not isinstance(value, types):
            raise ValueError(f"expected {expected}, got {_what(value)}")
        return value

    schema = schemas[0] if len(schemas) == 1 else {"anyOf": schemas}
    return Annotated[Any, BeforeValidator(check), WithJsonSchema(schema)]


def _what(value: Any) -> str:
    for name, (types, label, _) in _JSON_TYPES.items():
        if isinstance(value, types) and not (isinstance(value, bool) and name in ("integer", "number")):
            return label if name != "boolean" else "a boolean"
    return type(value).__name__


# Read-only fields every entity returns, with their types (the others are free-form).
_READ_ONLY_TYPES: dict[str, Any] = {
    "id": str,
    "kind": str,
    "created_at": str,
    "updated_at": str,
    "version": int,
    "provisioning_status": Literal[PROVISIONING_STATUSES],  # type: ignore[valid-type]
    "operating_status": Literal[OPERATING_STATUSES],  # type: ignore[valid-type]
}


def _schema_extra(field: Field) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if field.choices:
        extra["enum"] = list(field.choices) + ([None] if field.nullable else [])
    if field.ref:
        extra["x-ref-kind"] = field.ref
    if not field.mutable:
        extra["x-immutable"] = True
    if field.write_only:
        extra["writeOnly"] = True
    if field.admin_only:
        extra["x-admin-only"] = True
    return extra


def _default(field: Field) -> Any:
    return field.default() if callable(field.default) else field.default


def _pascal(kind: str) -> str:
    return "".join(part.capitalize() for part in kind.split("_"))


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow")


class _Out(BaseModel):
    model_config = ConfigDict(extra="allow")


def _body_model(name: str, fields: dict[str, Field], *, creating: bool, doc: str) -> type[BaseModel]:
    spec: dict[str, Any] = {}
    for key, field in fields.items():
        extra = _schema_extra(field)
        kwargs: dict[str, Any] = {"description": field.description or None}
        if creating and field.required:
            default: Any = ...
        elif creating:
            default = _default(field)
        else:
            default = None  # not sent: unchanged (model_dump(exclude_unset=True) leaves it out)
            extra["x-omit-default"] = True
        spec[key] = (_json_value(_json_names(field)),
                     PydanticField(default, json_schema_extra=_extra_hook(extra), **kwargs))
    return create_model(name, __base__=_Body, __doc__=doc, **spec)


def _extra_hook(extra: dict[str, Any]) -> Any:
    if not extra:
        return None

    def hook(schema: dict[str, Any]) -> None:
        if extra.get("x-omit-default"):
            schema.pop("default", None)
        schema.update({key: value for key, value in extra.items() if key != "x-omit-default"})

    return hook


def _out_model(model: type[Entity]) -> type[BaseModel]:
    spec: dict[str, Any] = {}
    for key, field in model.all_fields().items():
        if not field.write_only:
            names = _json_names(field) if field.required else tuple(dict.fromkeys((*_json_names(field), "null")))
            spec[key] = (_json_value(names), PydanticField(... if field.required else None,
                                                           description=field.description or None))
    for key, description in {"kind": model.KIND, **model.read_only()}.items():
        typ = _READ_ONLY_TYPES.get(key, Any)
        spec[key] = (typ, PydanticField(... if key in _READ_ONLY_TYPES else None, description=description or None))
    return create_model(_pascal(model.KIND), __base__=_Out, __doc__=(model.__doc__ or "").strip() or None, **spec)


@dataclass(frozen=True)
class EntityWire:
    """One entity kind as the REST layer and the CLI see it."""

    kind: str
    model: type[Entity]
    create: type[BaseModel]
    update: type[BaseModel]
    read: type[BaseModel]

    @property
    def collection(self) -> str:
        """The URL segment: ``tls-certificates``."""
        return self.kind.replace("_", "-") + "s"

    @property
    def path(self) -> str:
        return f"/v1/{self.collection}"

    @property
    def cli_name(self) -> str:
        return self.kind.replace("_", "-")

    @property
    def parent_field(self) -> str | None:
        return self.model.PARENT[0] if self.model.PARENT else None

    @property
    def cascading(self) -> bool:
        """Whether the kind takes part in cascading attributes (has an ``effective`` view)."""
        return bool(attrs_for(self.kind))

    @property
    def write_only(self) -> frozenset[str]:
        return frozenset(key for key, field in self.model.all_fields().items() if field.write_only)

    def field(self, name: str) -> Field | None:
        return self.model.all_fields().get(name)

    @property
    def sortable(self) -> dict[str, str]:
        """Sort keys, name -> JSON type: the scalar columns (what the service sorts and
        filters on), never a write-only one."""
        return _scalar_columns(self.model)

    @property
    def filterable(self) -> dict[str, str]:
        """Query filters (exact match): the sort keys but timestamps."""
        return {key: kind for key, kind in self.sortable.items() if kind != "date-time"}


def _scalar_columns(model: type[Entity]) -> dict[str, str]:
    hidden = {key for key, field in model.all_fields().items() if field.write_only}
    out: dict[str, str] = {}
    for column in model.__table__.columns:
        if column.key in hidden or isinstance(column.type, JSON):
            continue
        if isinstance(column.type, DateTime) or isinstance(getattr(column.type, "impl", None), DateTime):
            out[column.key] = "date-time"
            continue
        try:
            python_type = column.type.python_type
        except NotImplementedError:
            python_type = str
        out[column.key] = {bool: "boolean", int: "integer", float: "number"}.get(python_type, "string")
    first = ("id", "name")
    return {key: out[key] for key in (*first, *(key for key in out if key not in first)) if key in out}


def _wire(model: type[Entity]) -> EntityWire:
    name = _pascal(model.KIND)
    fields = model.all_fields()
    return EntityWire(
        kind=model.KIND,
        model=model,
        create=_body_model(f"{name}Create", fields, creating=True, doc=f"Create a {model.KIND}."),
        update=_body_model(f"{name}Update", fields, creating=False,
                           doc=f"Change a {model.KIND}: only the fields sent change (null unsets a nullable field)."),
        read=_out_model(model),
    )


ENTITIES: tuple[EntityWire, ...] = tuple(_wire(model) for model in MODELS.values())
ENTITY_BY_KIND: dict[str, EntityWire] = {entity.kind: entity for entity in ENTITIES}
SECRET_FIELDS: frozenset[str] = frozenset().union(*(entity.write_only for entity in ENTITIES))


@functools.cache
def json_schema(schema: type[BaseModel]) -> dict[str, Any]:
    """``schema.model_json_schema()``, computed once (the CLI asks for it per field)."""
    return schema.model_json_schema()


def is_text_field(schema: type[BaseModel], name: str) -> bool:
    """Whether body field ``name`` of ``schema`` takes a plain string (and maybe null):
    the CLI then passes a value as it is instead of reading it as JSON."""
    prop = json_schema(schema)["properties"].get(name, {})
    types = {item.get("type") for item in prop.get("anyOf", [prop])}
    return "string" in types and types <= {"string", "null"}


# -- the other bodies --------------------------------------------------------------------------------


class ErrorItem(BaseModel):
    path: str = PydanticField(
        description="the field (``port``, ``query.limit``, a Spec path); empty: the request as a whole")
    message: str


class ErrorBody(BaseModel):
    """Every 4xx and 5xx answer."""

    errors: list[ErrorItem]


class Page(BaseModel):
    """A page of a list; the ``Link`` header carries ``next``/``prev`` too."""

    items: list[dict[str, Any]]
    total: int = PydanticField(description="objects matching the filters, over all pages")
    limit: int
    offset: int


class ChangePreview(BaseModel):
    """The answer of a change made with ``?dry_run=true``: nothing was changed."""

    dry_run: Literal[True] = True
    object: Optional[dict[str, Any]] = PydanticField(None, description="the object as it would be (null for a delete)")
    diffs: dict[str, list[dict[str, Any]]] = PydanticField(
        default_factory=dict, description="per cluster id: the Spec changes (path, kind, old, new)")


def _vip_model() -> type[BaseModel]:
    from lbcore.control.service import LEGACY_FIELDS

    fields = {key: field for key, field in LEGACY_FIELDS.items() if key != "dry_run"}  # ?dry_run=true, as elsewhere
    return _body_model("VipCreate", fields, creating=True, doc=(
        "The legacy workflow's last step, for an existing pool (with its members and monitor): the control plane "
        "creates what is missing of the cluster (``cluster_id``, else a cluster of yours on ``network``, else a new "
        "single-node one with the ``loadbalancers`` given) and the instance on ``address``, then a listener on "
        "``port`` and the default acl binding the pool."))


VipCreate = _vip_model()


class TenantCreate(BaseModel):
    name: StrictStr = PydanticField(min_length=1, max_length=255)


class TenantOut(BaseModel):
    id: str
    name: str
    created_at: Optional[str] = None


class TokenCreate(BaseModel):
    admin: StrictBool = PydanticField(False, description="an admin token (every tenant, admin-only fields)")


class TokenOut(BaseModel):
    tenant_id: str
    admin: bool
    token: str = PydanticField(description="shown this once; only its hash is kept")
