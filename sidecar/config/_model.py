"""The pydantic side of the config: the field types every record uses, and one translation layer.

The records (frozen dataclasses such as ``HealthSettings``) declare each setting once, with its
type, bounds and default, as ``Annotated`` pydantic metadata; :func:`read_record` validates a YAML
mapping into such a record with pydantic, and turns the first ValidationError into the same
ConfigError the hand-written readers raise (file, line, dotted key, problem). The scalar coercions
keep the config's YAML-friendly rules: numeric strings are numbers, an unquoted account id is a
string, "30s" is 30 seconds, a bare 1.5 where a string is expected asks to be quoted.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import MISSING, fields
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, TypeVar

from pydantic import BeforeValidator, Field, TypeAdapter, ValidationError, ValidationInfo
from pydantic.functional_validators import AfterValidator

from sidecar.config._read import Node, resolve_path
from sidecar.config._scalars import (
    as_bool,
    as_int,
    as_number,
    as_seconds,
    as_str,
    bundle_target,
    expanded,
    host_port,
    kind,
    url,
)
from sidecar.errors import ConfigError

__all__ = [
    "URL",
    "Bool",
    "Duration",
    "Expanded",
    "HostPort",
    "Int",
    "Key",
    "NonEmpty",
    "Number",
    "Path_",
    "Secret",
    "Str",
    "Strings",
    "Target",
    "frozen",
    "keys",
    "read_record",
    "required",
    "translate",
]

_R = TypeVar("_R")
_T = TypeVar("_T")


def _path(text: str, info: ValidationInfo) -> str:
    """Resolve a path against the config file's directory (the validation context's ``base``)."""
    base = info.context.get("base") if isinstance(info.context, dict) else None
    return resolve_path(text, base if isinstance(base, Path) else Path.cwd())


Str = Annotated[str, BeforeValidator(as_str, json_schema_input_type=str)]
NonEmpty = Annotated[Str, Field(min_length=1)]
Bool = Annotated[bool, BeforeValidator(as_bool, json_schema_input_type=bool)]
Int = Annotated[int, BeforeValidator(as_int, json_schema_input_type=int)]
Number = Annotated[float, BeforeValidator(as_number, json_schema_input_type=float)]
Duration = Annotated[
    float,
    BeforeValidator(as_seconds, json_schema_input_type=float | str),
    Field(description="seconds, or a duration such as '30s', '1.5m', '250ms'"),
]
Strings = tuple[NonEmpty, ...]
HostPort = Annotated[Str, AfterValidator(host_port), Field(description="HOST:PORT")]
URL = Annotated[NonEmpty, AfterValidator(url), Field(description="http(s)://host:port")]
Path_ = Annotated[NonEmpty, AfterValidator(_path)]
Secret = Annotated[Str, AfterValidator(expanded), Field(description="a secret, e.g. ${VARIABLE}")]
# A value an unset ${VARIABLE} must not reach as literal text (a username, a secret's name).
Expanded = Annotated[Str, AfterValidator(expanded)]
Target = Annotated[NonEmpty, AfterValidator(bundle_target)]
# A mapping key written by the user (a tenant, a prefix, a document name): YAML may read it as a
# number or a boolean; it is taken as written.
Key = Annotated[str, BeforeValidator(str, json_schema_input_type=str)]


def frozen(mapping: Mapping[str, _T]) -> Mapping[str, _T]:
    """A read-only copy of a validated mapping (the records are frozen)."""
    return MappingProxyType(dict(mapping))


_BOUNDS = {"greater_than_equal": ("ge", "at least"), "less_than_equal": ("le", "at most")}
_WORDING = {"string_too_short": "must not be empty", "missing": "required"}


def _number(value: object) -> str:
    """A bound's value as the config wrote it: "0" from 0, 0.0 or the numeric string "0"."""
    try:
        return f"{float(value):g}"  # type: ignore[arg-type]  # anything float() refuses is shown as is
    except (TypeError, ValueError):
        return repr(value)


def _problem(error: Mapping[str, Any]) -> str:
    """The config's wording for one pydantic error."""
    kind_, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    if "error" in ctx:  # a ValueError of a field validator: its text is the problem
        return str(ctx["error"])
    if kind_ in _BOUNDS:
        key, words = _BOUNDS[kind_]
        # The input is what the file held, before coercion: a numeric string reads as its number.
        return f"must be {words} {_number(ctx[key])}, got {_number(value)}"
    if kind_ in ("tuple_type", "list_type", "dict_type"):
        expected = "a mapping" if kind_ == "dict_type" else "a list"
        return f"expected {expected}, got {kind(value)}"
    return _WORDING.get(kind_, str(error["msg"]))


def _at(node: Node, loc: tuple[int | str, ...], value: object) -> Node:
    for part in loc:
        if part == "[key]":  # pydantic's marker for a problem with a mapping key, not its value
            continue
        node = node.at(
            f"{node.path}[{part}]" if isinstance(part, int) else f"{node.path}.{part}", value
        )
    return node


def translate(exc: ValidationError, node: Node, given: Mapping[str, Node]) -> ConfigError:
    """Return the ConfigError for the first problem of ``exc`` about the mapping at ``node``."""
    error = exc.errors()[0]
    loc = tuple(error["loc"])
    head = given.get(str(loc[0])) if loc else None
    where = _at(head, loc[1:], error.get("input")) if head else _at(node, loc, None)
    return where.error(_problem(error))


_ADAPTERS: dict[type[Any], TypeAdapter[Any]] = {}


def _adapter(record: type[Any]) -> TypeAdapter[Any]:
    """The pydantic validator of a record type, built once per process.

    Its core schema is kept on the class, where pydantic looks for it: a record nesting this one
    (read after it, as sections are) reuses it instead of generating it again. Not for a record
    without a config of its own: its schema follows the config of the record that nests it.
    """
    adapter = _ADAPTERS.get(record)
    if adapter is None:
        adapter = _ADAPTERS[record] = TypeAdapter(record)
        if getattr(record, "__pydantic_config__", None) is not None:
            type.__setattr__(record, "__pydantic_core_schema__", adapter.core_schema)
    return adapter


def keys(record: type[Any]) -> tuple[str, ...]:
    """The keys a record reads from the file: its init fields."""
    return tuple(f.name for f in fields(record) if f.init)


def required(record: type[Any]) -> tuple[str, ...]:
    """The record's fields without a default."""
    return tuple(
        f.name for f in fields(record) if f.default is MISSING and f.default_factory is MISSING
    )


def read_record(
    record: type[_R],
    node: Node,
    *,
    base: Path | None = None,
    given: Mapping[str, object] | None = None,
    known: Collection[str] | None = None,
    context: Mapping[str, object] | None = None,
    lenient: bool = False,
) -> _R:
    """Validate the mapping at ``node`` into ``record`` with pydantic.

    Keys are folded to snake_case and an unknown key is an error with a "did you mean" hint (the
    ``policy:`` section is ours); ``lenient`` skips unknown keys instead (Freightliner's sections).
    Null means "the default". ``given`` holds values already read (nested sections read by their
    own code); ``base`` resolves relative paths.
    """
    wanted = known if known is not None else keys(record)
    read = node.fields(wanted, strict=not lenient)
    read = {k: n for k, n in read.items() if k in wanted}
    data: dict[str, object] = {k: n.value for k, n in read.items() if not n.is_null}
    data.update(given or {})
    try:
        result: _R = _adapter(record).validate_python(
            data, context={"base": base, **(context or {})}
        )
    except ValidationError as exc:
        raise translate(exc, node, read) from None
    return result
