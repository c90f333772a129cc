"""Masks configured fields and known secret values in decision records before they are stored.

A mask path names a field of the policy input: ``input.image.labels.customer-id``. Segments are
separated by dots; a key holding dots is written in brackets and quotes
(``input.image.labels["security.scan.status"]``); ``*`` matches every key of an object or every
element of a list; a number matches that list index. The masked value, whatever its type, becomes
``"***"``. Independently of the paths, every string equal to a secret value (a string in the
decrypted sensitive policy data) is replaced too, anywhere in the record, and a secret of at
least ``SUBSTRING_MIN`` characters is also cut out of longer strings (a reason message quoting it).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any

__all__ = ["MASKED", "SUBSTRING_MIN", "RecordMask", "parse_mask_path"]

MASKED = "***"
# Shorter secrets ("eu", "gold") occur by chance inside ordinary text: those match whole strings only.
SUBSTRING_MIN = 8
_ROOT = "input"
_PLAIN = re.compile(r"[^.\[\]\"]+")
_QUOTED = re.compile(r'\["((?:[^"\\]|\\.)*)"\]')
_ANY = "*"


def parse_mask_path(text: str) -> tuple[str, ...]:
    """Return the segments of ``text`` after ``input``; ValueError naming what is wrong."""
    segments: list[str] = []
    pos = 0
    while pos < len(text):
        if text.startswith("[", pos):
            found = _QUOTED.match(text, pos)
            if found is None:
                raise ValueError(f'{text!r}: expected ["key"] at offset {pos}')
            segments.append(re.sub(r"\\(.)", r"\1", found.group(1)))
            pos = found.end()
        else:
            found = _PLAIN.match(text, pos)
            if found is None:
                raise ValueError(f"{text!r}: empty segment at offset {pos}")
            segments.append(found.group(0))
            pos = found.end()
        if pos < len(text):
            if text[pos] == ".":
                pos += 1
                if pos == len(text):
                    raise ValueError(f"{text!r}: ends with '.'")
            elif text[pos] != "[":
                raise ValueError(f"{text!r}: unexpected {text[pos]!r} at offset {pos}")
    if not segments or segments[0] != _ROOT:
        raise ValueError(f"{text!r}: a mask path starts with 'input.' (the policy input)")
    if len(segments) == 1:
        raise ValueError(f"{text!r}: name a field inside the input, not the whole input")
    return tuple(segments[1:])


def _mask_at(value: Any, path: Sequence[str]) -> Any:
    """Return ``value`` with the field at ``path`` (relative to it) replaced by MASKED."""
    if not path:
        return MASKED
    head, rest = path[0], path[1:]
    if isinstance(value, Mapping):
        return {k: _mask_at(v, rest) if head in (_ANY, k) else v for k, v in value.items()}
    if isinstance(value, list):
        return [
            _mask_at(v, rest) if head == _ANY or head == str(i) else v for i, v in enumerate(value)
        ]
    return value


class _Redactor:
    """Replaces secret values: whole strings, and long secrets inside longer strings."""

    def __init__(self, secrets: Collection[str]) -> None:
        self.secrets = frozenset(s for s in secrets if s)
        long = sorted((s for s in self.secrets if len(s) >= SUBSTRING_MIN), key=len, reverse=True)
        self._inside = re.compile("|".join(map(re.escape, long))) if long else None

    def __call__(self, value: Any) -> Any:
        if isinstance(value, str):
            if value in self.secrets:
                return MASKED
            return self._inside.sub(MASKED, value) if self._inside is not None else value
        if isinstance(value, Mapping):
            return {k: self(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self(v) for v in value]
        return value


class RecordMask:
    """What to hide in a decision record: configured input paths and secret string values."""

    def __init__(self, paths: Sequence[str] = (), secrets: Collection[str] = ()) -> None:
        self._paths = tuple(parse_mask_path(p) for p in paths)
        self._redact = _Redactor(secrets)

    @property
    def active(self) -> bool:
        """Whether anything is masked at all (records skip the work otherwise)."""
        return bool(self._paths or self._redact.secrets)

    def __repr__(self) -> str:
        # Never show the secret values themselves, only how many there are.
        return f"RecordMask(paths={len(self._paths)}, secrets={len(self._redact.secrets)})"

    def input(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        """Return a masked copy of a policy input document."""
        masked: Any = dict(doc)
        for path in self._paths:
            masked = _mask_at(masked, path)
        return dict(self._redact(masked))

    def result(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        """Return a copy of a decision document with secret string values masked."""
        return dict(self._redact(doc))
