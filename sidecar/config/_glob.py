"""Freightliner's pattern syntax: Go ``filepath.Match`` globs (as its ``MatchPattern`` uses them).

Both the config checks and the bundle-data converter (``sidecar.fallback.legacy``) need it.
"""

from __future__ import annotations

import re

__all__ = ["destination_template", "glob_regex", "tag_glob_problem"]

_CAPTURE_REF = re.compile(r"\$([1-9])")


def glob_regex(pattern: str) -> tuple[str, int]:
    """Return (anchored regex, number of ``*`` captures) for a Freightliner pattern.

    Without ``*`` Freightliner compares exactly, so everything is escaped. With ``*`` the pattern is
    a Go ``filepath.Match`` glob: ``*`` → ``([^/]*)``, ``?`` → ``[^/]``, ``[...]`` passed through,
    ``\\x`` → literal x. Raises ValueError for a pattern filepath.Match would reject.
    """
    if "*" not in pattern:
        return f"^{re.escape(pattern)}$", 0
    out: list[str] = []
    stars = index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "*":
            out.append("([^/]*)")
            stars += 1
        elif char == "?":
            out.append("[^/]")
        elif char == "\\":
            if index + 1 == len(pattern):
                raise ValueError(f"{pattern!r} ends with a lone backslash")
            index += 1
            out.append(re.escape(pattern[index]))
        elif char == "[":
            end, body = _char_class(pattern, index)
            out.append(body)
            index = end
        else:
            out.append(re.escape(char))
        index += 1
    return "^" + "".join(out) + "$", stars


def _char_class(pattern: str, start: int) -> tuple[int, str]:
    """Translate the ``[...]`` at ``start``; return (index of its ``]``, regex class)."""
    index = start + 1
    negated = index < len(pattern) and pattern[index] == "^"
    index += negated
    parts: list[str] = []
    while True:
        if index >= len(pattern):
            raise ValueError(f"{pattern!r} has an unclosed '['")
        if pattern[index] == "]" and parts:
            return index, "[" + ("^" if negated else "") + "".join(parts) + "]"
        low, index = _class_char(pattern, index)
        if index < len(pattern) and pattern[index] == "-":
            high, index = _class_char(pattern, index + 1)
            parts.append(f"{re.escape(low)}-{re.escape(high)}")
        else:
            parts.append(re.escape(low))


def _class_char(pattern: str, index: int) -> tuple[str, int]:
    if index >= len(pattern) or pattern[index] in "-]":
        raise ValueError(f"{pattern!r} has a malformed character class")
    if pattern[index] == "\\":
        if index + 1 >= len(pattern):
            raise ValueError(f"{pattern!r} ends with a lone backslash")
        return pattern[index + 1], index + 2
    return pattern[index], index + 1


def tag_glob_problem(pattern: str) -> str | None:
    """Return why a tag glob is refused, or None; refused forms match differently in OPA's glob."""
    if "*" not in pattern:
        return None
    if "{" in pattern or "}" in pattern or "[^" in pattern or "[!" in pattern:
        return "braces and negated classes are not supported in tag globs (OPA and Go disagree)"
    try:
        glob_regex(pattern)
    except ValueError as exc:
        return str(exc)
    return None


def destination_template(destination: str, source: str, captures: int) -> str:
    """Return the ``$n`` template for a destination pattern; raise ValueError if it cannot work.

    Freightliner keeps the source name when the destination is empty or repeats the source
    pattern, and replaces a ``*`` in the destination with the source's capture; here each ``*`` of
    the destination becomes the next ``$n``, so the data carries one substitution syntax.
    """
    if destination in ("", source):
        return destination
    template, stars = destination, 0
    while "*" in template:
        stars += 1
        template = template.replace("*", f"${stars}", 1)
    used = [int(n) for n in _CAPTURE_REF.findall(template)]
    if used and max(used) > captures:
        raise ValueError(
            f"uses ${max(used)} but the source pattern {source!r} has {captures} '*' capture(s)"
        )
    return template
