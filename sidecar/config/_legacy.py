"""Freightliner's legacy replication inputs, ReplicationRules and sync configs: read and checked.

Both become bundle data (``sidecar.fallback.legacy``); this module only reads them and refuses what
the policy could not honour, at load time, so a typo is an exit-2 config error and not a rule that
silently never matches.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import ConfigDict

from sidecar.config._glob import destination_template, glob_regex, tag_glob_problem
from sidecar.config._read import Node, read_yaml
from sidecar.config._registries import RegistryConfig, endpoint_host

__all__ = [
    "ReplicationRule",
    "SyncConfig",
    "SyncImage",
    "is_sync_config",
    "load_sync_config",
    "parse_rules",
    "parse_sync_config",
]

_RULE_KEYS = (
    "source_registry",
    "source_repository",
    "destination_registry",
    "destination_repository",
    "tag_filter",
    "schedule",
    "include_tags",
    "exclude_tags",
    "force_overwrite",
)
_IMAGE_KEYS = (
    "repository",
    "tags",
    "tag_regex",
    "semver_constraint",
    "all_tags",
    "latest_n",
    "destination_repository",
    "destination_prefix",
    "destination_suffix",
    "limit",
    "architectures",
)
_TAG_SELECTORS = ("tags", "tag_regex", "semver_constraint", "all_tags", "latest_n")
_NEEDS_TAG_LIST = ("semver_constraint", "latest_n")
_SYNC_MARKERS = ("source", "destination", "images")


@dataclass(frozen=True, slots=True)
class ReplicationRule:
    """Freightliner's ReplicationRule, as written in ``policy.legacy.rules``."""

    __pydantic_config__ = ConfigDict(extra="forbid")

    source_repository: str
    destination_registry: str
    source_registry: str = ""
    destination_repository: str = ""
    tag_filter: str = ""
    schedule: str = ""
    include_tags: tuple[str, ...] = ()
    exclude_tags: tuple[str, ...] = ()
    force_overwrite: bool = False


@dataclass(frozen=True, slots=True)
class SyncImage:
    """One ``images[]`` entry of a Freightliner sync config (only policy-expressible selectors)."""

    __pydantic_config__ = ConfigDict(extra="forbid")

    repository: str
    tags: tuple[str, ...] = ()
    tag_regex: str = ""
    all_tags: bool = False
    destination_repository: str = ""
    destination_prefix: str = ""
    destination_suffix: str = ""
    limit: int | None = None
    architectures: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SyncConfig:
    """A Freightliner sync config; its registry hosts resolved to inventory names where possible."""

    path: str
    source_host: str
    destination_host: str
    source_registry: str
    destination_registry: str
    images: tuple[SyncImage, ...]


def _text(fields: dict[str, Node], key: str) -> str:
    node = fields.get(key)
    return node.string() if node is not None and not node.is_null else ""


def _glob(node: Node | None, *, tag: bool) -> tuple[str, int]:
    if node is None or node.is_null:
        return "", 0
    pattern = node.string()
    if tag:
        problem = tag_glob_problem(pattern)
        if problem:
            raise node.error(problem)
        return pattern, 0
    try:
        return pattern, glob_regex(pattern)[1]
    except ValueError as exc:
        raise node.error(str(exc)) from exc


def _tag_globs(node: Node | None) -> tuple[str, ...]:
    if node is None:
        return ()
    for item in node.items():
        _glob(item, tag=True)
    return node.string_list()


def _rule(node: Node, known_registries: frozenset[str]) -> ReplicationRule:
    f = node.fields(_RULE_KEYS, strict=True)
    for key in ("source_repository", "destination_registry"):
        if key not in f or f[key].is_null or not f[key].string():
            raise node.child(key, None).error("required")
    source, captures = _glob(f["source_repository"], tag=False)
    destination = _text(f, "destination_repository")
    try:
        destination_template(destination, source, captures)
    except ValueError as exc:
        raise f["destination_repository"].error(str(exc)) from exc
    for key in ("source_registry", "destination_registry"):
        name = _text(f, key)
        if name and known_registries and name not in known_registries:
            raise f[key].error(
                f"names no registry of the inventory (known: {', '.join(sorted(known_registries))})"
            )
    force = f.get("force_overwrite")
    return ReplicationRule(
        source_registry=_text(f, "source_registry"),
        source_repository=source,
        destination_registry=_text(f, "destination_registry"),
        destination_repository=destination,
        tag_filter=_glob(f.get("tag_filter"), tag=True)[0],
        schedule=_text(f, "schedule"),
        include_tags=_tag_globs(f.get("include_tags")),
        exclude_tags=_tag_globs(f.get("exclude_tags")),
        force_overwrite=force.boolean() if force is not None and not force.is_null else False,
    )


def parse_rules(node: Node, known_registries: frozenset[str]) -> tuple[ReplicationRule, ...]:
    """Parse ``policy.legacy.rules``; names must be in ``known_registries`` when it is non-empty."""
    return tuple(_rule(item, known_registries) for item in node.items())


def _image(node: Node) -> SyncImage:
    f = node.fields(_IMAGE_KEYS, strict=True)
    if "repository" not in f or f["repository"].is_null:
        raise node.child("repository", None).error("required")
    repository, captures = _glob(f["repository"], tag=False)
    given = [k for k in _TAG_SELECTORS if k in f and not f[k].is_null and f[k].value is not False]
    if len(given) != 1:
        found = f"got {', '.join(given)}" if given else "got none"
        raise node.error(f"needs exactly one of {', '.join(_TAG_SELECTORS)} ({found})")
    selector = given[0]
    if selector in _NEEDS_TAG_LIST:
        raise f[selector].error(
            "not supported as policy data yet: it needs the registry's tag list, which a "
            "per-image decision does not have; list the tags or use tag_regex instead"
        )
    tag_regex = _text(f, "tag_regex")
    try:
        re.compile(tag_regex)
    except re.error as exc:
        raise f["tag_regex"].error(f"not a valid regular expression: {exc}") from exc
    destination = _text(f, "destination_repository")
    try:
        destination_template(destination, repository, captures)
    except ValueError as exc:
        raise f["destination_repository"].error(str(exc)) from exc
    limit = f.get("limit")
    return SyncImage(
        repository=repository,
        tags=f["tags"].string_list() if "tags" in f else (),
        tag_regex=tag_regex,
        all_tags=f["all_tags"].boolean() if "all_tags" in f else False,
        destination_repository=destination,
        destination_prefix=_text(f, "destination_prefix"),
        destination_suffix=_text(f, "destination_suffix"),
        limit=limit.integer(minimum=0) if limit is not None and not limit.is_null else None,
        architectures=f["architectures"].string_list() if "architectures" in f else (),
    )


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


def parse_sync_config(doc: Node, registries: Sequence[RegistryConfig] = ()) -> SyncConfig:
    """Parse a sync config document; its hosts resolve against ``registries`` endpoints."""
    f = doc.fields()
    hosts: list[str] = []
    for side in ("source", "destination"):
        if side not in f:
            raise doc.child(side, None).error("required in a sync config")
        side_fields = f[side].fields()
        if "registry" not in side_fields:
            raise f[side].child("registry", None).error("required")
        hosts.append(side_fields["registry"].string(allow_empty=False))
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
