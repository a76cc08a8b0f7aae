"""Spec files: YAML or JSON text -> plain data -> ``parse_spec``.

The only I/O of ``lbcore.spec`` is ``load_spec`` reading the file it is given.
A repeated key in a mapping is an error here (YAML and JSON parsers would silently
keep the last one, which hides a typo'd override).
"""

from __future__ import annotations

import json
import os
from typing import Any

import yaml

from lbcore.spec._errors import SpecError, SpecIssue
from lbcore.spec._model import Spec
from lbcore.spec._parse import parse_spec

__all__ = ["load_spec", "loads_spec", "load_data"]

FORMATS = ("yaml", "json")
_EXTENSIONS = {".yaml": "yaml", ".yml": "yaml", ".json": "json"}


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """Safe YAML that refuses repeated keys."""


def _construct_mapping(loader: Any, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            repeated = key in seen
            seen.add(key)
        except TypeError:  # an unhashable key: the constructor below says so
            continue
        if repeated:
            raise yaml.constructor.ConstructorError(
                "while reading a mapping", node.start_mark, f"found a repeated key {key!r}", key_node.start_mark
            )
    return yaml.constructor.SafeConstructor.construct_mapping(loader, node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _no_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"found a repeated key {key!r}")
        out[key] = value
    return out


def _fail(source: str, message: str) -> SpecError:
    return SpecError([SpecIssue("", f"{source}: {message}")])


def _yaml(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = exc.problem or exc.context or "invalid YAML"
        raise _fail(source, f"{where}{problem}") from None
    except yaml.YAMLError as exc:
        raise _fail(source, f"invalid YAML: {exc}") from None


def _json(text: str, source: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_no_repeats)
    except json.JSONDecodeError as exc:
        raise _fail(source, f"line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except ValueError as exc:
        raise _fail(source, str(exc)) from None


def load_data(text: str, *, fmt: str | None = None, source: str = "<string>") -> Any:
    """Plain data from YAML or JSON text; ``fmt`` None sniffs (``{`` first: JSON)."""
    if fmt not in (None, *FORMATS):
        raise ValueError(f"unknown spec format {fmt!r}; expected one of {FORMATS}")
    if fmt == "json":
        return _json(text, source)
    if fmt == "yaml":
        return _yaml(text, source)
    if text.lstrip().startswith("{"):
        try:
            return _json(text, source)
        except SpecError as json_error:
            try:
                return _yaml(text, source)
            except SpecError:
                raise json_error from None
    return _yaml(text, source)


def loads_spec(text: str, *, fmt: str | None = None, source: str = "<string>") -> Spec:
    """A Spec from YAML or JSON text; SpecError for text that does not parse or validate."""
    data = load_data(text, fmt=fmt, source=source)
    if data is None:
        raise _fail(source, "the spec is empty")
    return parse_spec(data)


def load_spec(path: str | os.PathLike[str]) -> Spec:
    """A Spec from a .yaml/.yml/.json file (other names: the content decides)."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        raise _fail(name, f"cannot read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _fail(name, f"not UTF-8 text (byte {raw[exc.start]:#04x} at offset {exc.start})") from None
    fmt = _EXTENSIONS.get(os.path.splitext(name)[1].lower())
    return loads_spec(text, fmt=fmt, source=name)
