"""Reads YAML config documents into typed values, with errors that name the file and the dotted key.

Every value is wrapped in a :class:`Node` that knows where it came from, so a reader anywhere in the
config code can raise a ConfigError such as ``sidecar.yaml: registries[3].metadata.gdpr: expected
true or false, got 'perhaps'`` without threading paths around by hand.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import re
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import yaml

from sidecar.config._scalars import as_bool, as_number, as_str, choice, kind
from sidecar.errors import ConfigError
from sidecar.telemetry import get_logger

__all__ = ["Node", "Warnings", "did_you_mean", "read_yaml", "resolve_path"]

_T = TypeVar("_T")
_log = get_logger("sidecar.config")

# Only the braced form is expanded: a bare "$1" is a legacy-rule capture, not a variable.
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_ACRONYM_BOUNDARY = re.compile(r"([A-Z]+)([A-Z][a-z])")
_WORD_BOUNDARY = re.compile(r"([a-z0-9])([A-Z])")


def snake_case(key: str) -> str:
    """Return the snake_case form of a camelCase or PascalCase key (accountID → account_id)."""
    return _WORD_BOUNDARY.sub(r"\1_\2", _ACRONYM_BOUNDARY.sub(r"\1_\2", key)).lower()


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses a mapping with the same key twice instead of keeping the last."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> object:
    seen: set[object] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if isinstance(key, str) and key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} appears twice in one mapping", key_node.start_mark
            )
        seen.add(key if isinstance(key, str) else id(key))
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_unique_mapping,
)


def _expand(value: object) -> object:
    """Expand ``${VAR}`` in every string; unset variables stay as written (Freightliner does so)."""
    if isinstance(value, str):
        return _ENV_REF.sub(lambda m: os.environ.get(m.group(1), m.group(0)), value)
    if isinstance(value, list):
        return [_expand(v) for v in value]
    if isinstance(value, dict):
        return {k: _expand(v) for k, v in value.items()}
    return value


def _lines(node: yaml.Node, path: str, out: dict[str, int]) -> None:
    """Record the 1-based line of every value under ``node`` by the dotted path Node gives it."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = str(key_node.value)
            child = f"{path}.{key}" if path else key
            out.setdefault(child, key_node.start_mark.line + 1)
            _lines(value_node, child, out)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = f"{path}[{index}]"
            out.setdefault(child, item.start_mark.line + 1)
            _lines(item, child, out)


def _load(text: str) -> tuple[object, dict[str, int]]:
    loader = _UniqueKeyLoader(text)
    try:
        root = loader.get_single_node()
        lines: dict[str, int] = {}
        if root is None:
            return None, lines
        _lines(root, "", lines)
        return loader.construct_document(root), lines
    finally:
        loader.dispose()


def read_yaml(path: Path) -> Node:
    """Load ``path`` as YAML, ``${VAR}`` expanded; raise ConfigError with the line on failure.

    The returned Node knows the line of every value, so errors name it: ``file:LINE: key: …``.
    """
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("(file)", f"cannot read: {exc}", source) from exc
    try:
        doc, lines = _load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "(document)"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(where, f"not valid YAML: {problem}", source) from exc
    return Node({} if doc is None else _expand(doc), "", source, lines)


@dataclass(frozen=True, slots=True)
class Node:
    """A raw YAML value plus its dotted key path and source file, with typed, checked accessors."""

    value: object
    path: str
    source: str
    # Dotted path → 1-based line of every value of the file (read_yaml), for error messages.
    lines: Mapping[str, int] = field(default_factory=dict, compare=False, repr=False)

    @property
    def line(self) -> int | None:
        """The line of this value, else of the nearest enclosing value written in the file."""
        path = self.path
        while path:
            if path in self.lines:
                return self.lines[path]
            cut = max(path.rfind("."), path.rfind("["))
            path = path[:cut] if cut > 0 else ""
        return None

    def error(self, problem: str) -> ConfigError:
        """Return a ConfigError about this value, naming its file, line and dotted key."""
        return ConfigError(self.path or "(document)", problem, self.source, self.line)

    def at(self, path: str, value: object) -> Node:
        """Return a node of the same file at another dotted ``path``."""
        return Node(value, path, self.source, self.lines)

    def child(self, key: str, value: object) -> Node:
        """Return the node for mapping key ``key`` holding ``value``."""
        return self.at(f"{self.path}.{key}" if self.path else key, value)

    @property
    def is_null(self) -> bool:
        """Whether the value is absent or YAML null."""
        return self.value is None

    def items(self) -> Iterator[Node]:
        """Iterate the elements of a list (null counts as empty)."""
        if self.value is None:
            return
        if not isinstance(self.value, list):
            raise self.error(f"expected a list, got {kind(self.value)}")
        for index, item in enumerate(self.value):
            yield self.at(f"{self.path}[{index}]", item)

    def raw_mapping(self) -> dict[str, Node]:
        """Return a mapping's entries by key as written (user data such as metadata or labels)."""
        if self.value is None:
            return {}
        if not isinstance(self.value, dict):
            raise self.error(f"expected a mapping, got {kind(self.value)}")
        return {str(k): self.child(str(k), v) for k, v in self.value.items()}

    def fields(self, known: Collection[str] = (), *, strict: bool = False) -> dict[str, Node]:
        """Return a mapping's entries by snake_case key.

        camelCase and PascalCase spellings are folded onto the snake_case key; the same key given
        twice in two spellings is an error. With ``strict`` any key outside ``known`` is an error
        with a "did you mean" hint (our own sections); otherwise unknown keys are kept for the
        caller to ignore (Freightliner's sections, which grow without us).
        """
        out: dict[str, Node] = {}
        written: dict[str, str] = {}
        for key, node in self.raw_mapping().items():
            canonical = snake_case(key)
            if canonical in out:
                raise node.error(f"given twice (also as {written[canonical]!r})")
            if strict and canonical not in known:
                suffix = did_you_mean(canonical, known)
                raise node.error(f"unknown key{suffix} (known: {', '.join(sorted(known))})")
            out[canonical] = node
            written[canonical] = key
        return out

    def _read(self, read: Callable[[object], _T]) -> _T:
        try:
            return read(self.value)
        except ValueError as exc:
            raise self.error(str(exc)) from None

    def string(self, *, allow_empty: bool = True) -> str:
        """Return a string; integers are accepted (YAML reads an unquoted account id as one)."""
        text = self._read(as_str)
        if not allow_empty and not text:
            raise self.error("must not be empty")
        return text

    def optional_string(self) -> str | None:
        """Return a non-empty string, or None for null or ""."""
        return None if self.value is None else (self.string() or None)

    def boolean(self) -> bool:
        """Return a bool; "true"/"false" strings are taken too (registry metadata is str:str)."""
        value = self.value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        return self._read(as_bool)

    def number(self, *, minimum: float) -> float:
        """Return a finite float of at least ``minimum``; numeric strings are accepted."""
        value = self._read(as_number)
        if value < minimum:
            raise self.error(f"must be at least {minimum:g}, got {value:g}")
        return value

    def choice(self, options: Collection[str]) -> str:
        """Return a string that must be one of ``options``."""
        return self._read(choice(options))

    def string_list(self) -> tuple[str, ...]:
        """Return a list of non-empty strings, or "a, b" (registry metadata values are strings)."""
        if isinstance(self.value, str):
            return tuple(part.strip() for part in self.value.split(",") if part.strip())
        return tuple(item.string(allow_empty=False) for item in self.items())


def did_you_mean(word: str, options: Collection[str]) -> str:
    """Return "; did you mean 'x'?" for the option closest to ``word``, else ""."""
    hint = difflib.get_close_matches(word, list(options), n=1)
    return f"; did you mean {hint[0]!r}?" if hint else ""


@dataclass(slots=True)
class Warnings:
    """Problems a config may have and still load (unknown registry keys); ``strict`` refuses them.

    Each warning is logged and kept in ``messages`` (``Config.warnings``) as ``file:line: key: …``.
    """

    strict: bool = False
    messages: list[str] = field(default_factory=list)

    def warn(self, node: Node, problem: str) -> None:
        """Record ``problem`` about ``node`` (loading goes on); raise it as a ConfigError if strict."""
        if self.strict:
            raise node.error(problem)
        self.messages.append(str(node.error(f"{problem} (ignored; --strict refuses it)")))
        _log.warning(
            "config_warning", file=node.source, line=node.line, key=node.path, problem=problem
        )


def resolve_path(text: str, base: Path) -> str:
    """Return ``text`` with ``~`` expanded, made absolute against ``base`` when relative."""
    path = Path(text)
    # "~user" of no known user (or no home) raises RuntimeError: kept as written, as a shell does.
    with contextlib.suppress(RuntimeError):
        path = path.expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())
