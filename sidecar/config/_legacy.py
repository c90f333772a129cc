"""Freightliner's legacy replication inputs, ReplicationRules and sync configs: read and checked.

Both become bundle data (``sidecar.fallback.legacy``); this module only reads them and refuses what
the policy could not honour, at load time, so a typo is an exit-2 config error and not a rule that
silently never matches.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, ConfigDict, Field, PlainValidator, ValidationInfo

from sidecar.config._cron import Cron
from sidecar.config._glob import destination_template, glob_regex, tag_glob_problem
from sidecar.config._model import Bool, Int, NonEmpty, Str, Strings, keys, read_record
from sidecar.config._read import Node, read_yaml, resolve_path
from sidecar.config._registries import RegistryConfig, endpoint_host
from sidecar.config._scalars import as_str

__all__ = [
    "ReplicationRule",
    "SyncConfig",
    "SyncConfigPath",
    "SyncImage",
    "is_sync_config",
    "load_sync_config",
    "parse_sync_config",
    "read_rule",
]

_TAG_SELECTORS = ("tags", "tag_regex", "semver_constraint", "all_tags", "latest_n")
_NEEDS_TAG_LIST = ("semver_constraint", "latest_n")
_SYNC_MARKERS = ("source", "destination", "images")
_FORBID = ConfigDict(extra="forbid")


def _required(text: str) -> str:
    if not text:
        raise ValueError("required")
    return text


def _glob(pattern: str) -> str:
    glob_regex(pattern)  # its ValueError is the problem
    return pattern


def _tag_glob(pattern: str) -> str:
    problem = tag_glob_problem(pattern)
    if problem:
        raise ValueError(problem)
    return pattern


def _registry(name: str, info: ValidationInfo) -> str:
    known: Collection[str] = (info.context or {}).get("registry_names") or ()
    if name and known and name not in known:
        raise ValueError(f"names no registry of the inventory (known: {', '.join(sorted(known))})")
    return name


def _cron(expression: str) -> str:
    if expression:
        Cron.parse(expression)  # its ValueError is the problem
    return expression


def _regex(text: str) -> str:
    try:
        re.compile(text)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from exc
    return text


_Glob = Annotated[Str, AfterValidator(_glob)]
_TagGlob = Annotated[Str, AfterValidator(_tag_glob)]
_Registry = Annotated[Str, AfterValidator(_registry)]


@dataclass(frozen=True, slots=True)
class ReplicationRule:
    """Freightliner's ReplicationRule, as written in ``policy.legacy.rules``."""

    __pydantic_config__ = _FORBID

    source_repository: Annotated[_Glob, AfterValidator(_required)]
    destination_registry: Annotated[_Registry, AfterValidator(_required)]
    source_registry: _Registry = ""
    destination_repository: Str = ""
    tag_filter: _TagGlob = ""
    # Cron (UTC) or a macro (@hourly...): the serving sidecar reconciles this rule's source
    # repositories on it (sidecar.reconcile, docs/reconcile.md).
    schedule: Annotated[Str, AfterValidator(_cron)] = ""
    include_tags: tuple[Annotated[NonEmpty, AfterValidator(_tag_glob)], ...] = ()
    exclude_tags: tuple[Annotated[NonEmpty, AfterValidator(_tag_glob)], ...] = ()
    force_overwrite: Bool = False


@dataclass(frozen=True, slots=True)
class SyncImage:
    """One ``images[]`` entry of a Freightliner sync config (only policy-expressible selectors)."""

    __pydantic_config__ = _FORBID

    repository: _Glob
    tags: Strings = ()
    tag_regex: Annotated[Str, AfterValidator(_regex)] = ""
    all_tags: Bool = False
    destination_repository: Str = ""
    destination_prefix: Str = ""
    destination_suffix: Str = ""
    limit: Annotated[Int, Field(ge=0)] | None = None
    architectures: Strings = ()


@dataclass(frozen=True, slots=True)
class SyncConfig:
    """A Freightliner sync config; its registry hosts resolved to inventory names where possible."""

    path: str
    source_host: str
    destination_host: str
    source_registry: str
    destination_registry: str
    images: tuple[SyncImage, ...]


def _destination(node: Node, destination: str, source: str) -> None:
    """The destination pattern must use only the captures the source glob has."""
    try:
        destination_template(destination, source, glob_regex(source)[1])
    except ValueError as exc:
        raise node.fields()["destination_repository"].error(str(exc)) from exc


def read_rule(node: Node, registry_names: Collection[str]) -> ReplicationRule:
    """Read one ``policy.legacy.rules`` entry; names must be in ``registry_names`` if non-empty."""
    rule = read_record(ReplicationRule, node, context={"registry_names": registry_names})
    _destination(node, rule.destination_repository, rule.source_repository)
    return rule


def _image(node: Node) -> SyncImage:
    f = node.fields((*keys(SyncImage), *_NEEDS_TAG_LIST), strict=True)
    given = [k for k in _TAG_SELECTORS if k in f and not f[k].is_null and f[k].value is not False]
    if len(given) != 1:
        found = f"got {', '.join(given)}" if given else "got none"
        raise node.error(f"needs exactly one of {', '.join(_TAG_SELECTORS)} ({found})")
    if given[0] in _NEEDS_TAG_LIST:
        raise f[given[0]].error(
            "not supported as policy data yet: it needs the registry's tag list, which a "
            "per-image decision does not have; list the tags or use tag_regex instead"
        )
    image = read_record(SyncImage, node, known=keys(SyncImage), lenient=True)
    _destination(node, image.destination_repository, image.repository)
    return image


def _resolve(host: str, registries: Sequence[RegistryConfig]) -> str:
    """Return the first registry whose endpoint host is ``host``, else ``host`` itself."""
    wanted = endpoint_host(host)
    for registry in registries:
        if registry.host and registry.host == wanted:
            return registry.name
    return host


def is_sync_config(doc: Node) -> bool:
    """Whether a top-level document is a Freightliner sync config (source/destination/images)."""
    return isinstance(doc.value, dict) and any(k in doc.value for k in _SYNC_MARKERS)


@dataclass(frozen=True, slots=True)
class _Side:
    """``source:`` or ``destination:`` of a sync config (Freightliner's other keys are ignored)."""

    registry: NonEmpty


def parse_sync_config(doc: Node, registries: Sequence[RegistryConfig] = ()) -> SyncConfig:
    """Parse a sync config document; its hosts resolve against ``registries`` endpoints."""
    f = doc.fields()
    hosts: list[str] = []
    for side in ("source", "destination"):
        if side not in f:
            raise doc.child(side, None).error("required in a sync config")
        hosts.append(read_record(_Side, f[side], lenient=True).registry)
    images = tuple(_image(item) for item in f.get("images", doc.child("images", None)).items())
    if not images:
        raise doc.child("images", None).error("a sync config needs at least one image")
    return SyncConfig(
        path=doc.source,
        source_host=hosts[0],
        destination_host=hosts[1],
        source_registry=_resolve(hosts[0], registries),
        destination_registry=_resolve(hosts[1], registries),
        images=images,
    )


def load_sync_config(path: str | Path, registries: Sequence[RegistryConfig] = ()) -> SyncConfig:
    """Read and check the Freightliner sync config at ``path``; raise ConfigError if invalid."""
    resolved = Path(path).expanduser().resolve()
    return parse_sync_config(read_yaml(resolved), registries)


def _sync_config(value: object, info: ValidationInfo) -> SyncConfig:
    """Read a ``policy.legacy.sync_configs`` entry: the path of a sync config, checked in full."""
    text = as_str(value)
    if not text:
        raise ValueError("must not be empty")
    context = info.context or {}
    path = resolve_path(text, context.get("base") or Path.cwd())
    if not Path(path).is_file():
        raise ValueError(f"sync config {path} does not exist")
    return load_sync_config(path, context.get("registries", ()))


# Written as the path of a Freightliner sync config; read into its SyncConfig record.
SyncConfigPath = Annotated[SyncConfig, PlainValidator(_sync_config, json_schema_input_type=str)]
