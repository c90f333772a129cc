"""The config's scalar rules, shared by the Node reader and the pydantic field types.

Each function takes a raw YAML value and returns the typed value or raises ValueError with the
problem as users read it; the caller adds the file, line and dotted key.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from urllib.parse import urlsplit

from sidecar.config._target import parse_target
from sidecar.errors import InvalidArgument

__all__ = [
    "as_bool",
    "as_int",
    "as_moment",
    "as_number",
    "as_seconds",
    "as_str",
    "bundle_target",
    "choice",
    "expanded",
    "host_port",
    "kind",
    "url",
]

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


def as_str(value: object) -> str:
    """A string; integers are taken (YAML reads an unquoted account id as one), floats are not."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        if isinstance(value, float):
            raise ValueError(f"expected a string, got the number {value!r}; quote it")
        raise ValueError(f"expected a string, got {kind(value)}")
    text = str(value)
    if "\x00" in text:
        # No name, URL or path may hold one; a path with it makes the OS calls raise ValueError.
        raise ValueError("must not contain a NUL character")
    return text


def as_bool(value: object) -> bool:
    """true or false, nothing else (YAML's yes/no and strings are refused)."""
    if isinstance(value, bool):
        return value
    raise ValueError(f"expected true or false, got {value!r}")


def as_int(value: object) -> int:
    """An integer; a string of digits is taken."""
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer, got {value!r}")
    return value


def as_number(value: object) -> float:
    """A finite number; a numeric string is taken."""
    number = value
    if isinstance(number, str):
        try:
            number = float(number)
        except ValueError:
            raise ValueError(f"expected a number, got {value!r}") from None
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        raise ValueError(f"expected a number, got {value!r}")
    if not math.isfinite(number):
        raise ValueError(f"expected a finite number, got {number!r}")
    return float(number)


def as_seconds(value: object) -> float:
    """Seconds, from a number or a Go-style duration ("30s", "1.5m", "250ms", "2h")."""
    if isinstance(value, str):
        found = _DURATION.match(value.strip())
        if found is None:
            raise ValueError(f"expected seconds or a duration like '30s', got {value!r}")
        return float(found.group(1)) * _DURATION_UNITS[found.group(2)]
    return as_number(value)


def choice(options: Collection[str]) -> Callable[[object], str]:
    """A validator for a string that must be one of ``options`` (with a "did you mean" hint)."""

    def check(value: object) -> str:
        text = as_str(value)
        if text not in options:
            hint = difflib.get_close_matches(text, list(options), n=1)
            suffix = f"; did you mean {hint[0]!r}?" if hint else ""
            raise ValueError(f"{text!r} is not one of {', '.join(options)}{suffix}")
        return text

    return check


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expanded(secret: str) -> str:
    """A secret must hold no ``${VAR}`` left as written (anywhere in it): its variable is unset.

    Config loading expands set variables and keeps unset ones as written; a reference whose
    variable is set came from the variable's own value and stays.
    """
    for found in _ENV_REF.finditer(secret):
        if found.group(1) not in os.environ:
            raise ValueError(f"{found.group(0)} is not set in the environment")
    return secret


def bundle_target(url: str) -> str:
    """A ``bundle publish --to`` URL (s3://, gs:// or http(s)://HOST/bundles/NAME)."""
    try:
        parse_target(url)
    except InvalidArgument as exc:
        raise ValueError(exc.message.removeprefix("--to: ")) from None
    return url


def host_port(text: str) -> str:
    """HOST:PORT with a port of 0-65535; "" stays "" (off)."""
    host, colon, port = text.rpartition(":")
    if text and (not colon or not host or not port.isdigit() or int(port) > 65535):
        raise ValueError(f"expected HOST:PORT (port 0-65535), got {text!r}")
    return text


def url(text: str) -> str:
    """An http(s)://host[:port] URL, trailing slash dropped."""
    try:
        parts = urlsplit(text)
    except ValueError:  # e.g. "http://[x": an unbalanced IPv6 bracket
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"expected an http(s)://host:port URL, got {text!r}")
    return text.rstrip("/")


def as_moment(value: object) -> datetime:
    """An RFC 3339 time with a time zone (YAML may already have read it as a datetime)."""
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(as_str(value).replace("Z", "+00:00"))
        except ValueError:
            raise ValueError("expected an RFC 3339 time, e.g. 2027-01-01T00:00:00Z") from None
    if moment.tzinfo is None:
        raise ValueError("needs a time zone (e.g. a trailing Z)")
    return moment.astimezone(UTC)
