"""Parses ``policy.sensitive_data``: encrypted policy documents and the key that opens them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from sidecar.config._model import Duration, Key, NonEmpty, Path_, frozen, keys, read_record
from sidecar.config._read import Node
from sidecar.config._scalars import as_moment

__all__ = ["SENSITIVE_ROOT", "SensitiveDataSettings", "parse_sensitive_data"]

# The data root the sidecar loads decrypted documents under (data.sensitive.*). No bundle may
# own it: OPA refuses Data API writes under a bundle's roots (sidecar/bundles/build.py).
SENSITIVE_ROOT = "sensitive"
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*(/[A-Za-z0-9_][A-Za-z0-9_-]*)*")


def _name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ValueError(
            "a document name is a data path under data.sensitive: segments of letters, "
            "digits, '_' and '-' joined by '/'"
        )
    return name


def _existing(what: str) -> AfterValidator:
    def check(path: str) -> str:
        if not Path(path).is_file():
            raise ValueError(f"{what} {path} does not exist")
        return path

    return AfterValidator(check)


def _endpoint(text: str) -> str:
    if not re.match(r"https?://[^/]+", text):
        raise ValueError(f"expected an http(s):// URL, got {text!r}")
    return text


_Documents = Mapping[
    Annotated[Key, AfterValidator(_name)], Annotated[Path_, _existing("encrypted file")]
]


@dataclass(frozen=True, slots=True)
class SensitiveDataSettings:
    """``policy.sensitive_data``: data path under ``data.sensitive`` → encrypted file, and the key."""

    __pydantic_config__ = ConfigDict(extra="forbid")

    documents: Annotated[_Documents, AfterValidator(frozen)] = field(default_factory=dict)
    key_file: Annotated[Path_, _existing("key file")] | None = None
    kms_key_id: NonEmpty | None = None
    kms_region: NonEmpty | None = None
    kms_endpoint_url: Annotated[NonEmpty, AfterValidator(_endpoint)] | None = None
    check_interval_s: Annotated[Duration, Field(ge=0.1)] = 10.0
    # Rollback floor: a file sealed before this time is refused (an old copy put back).
    not_before: (
        Annotated[datetime, BeforeValidator(as_moment, json_schema_input_type=str)] | None
    ) = None
    # The config file, so errors found later (decryption at startup) can name it; where a
    # setting was written is not part of what it means, hence not compared.
    source: SkipJsonSchema[str] = field(default="", compare=False)

    @property
    def enabled(self) -> bool:
        """Whether any encrypted document is configured."""
        return bool(self.documents)


def parse_sensitive_data(node: Node, base: Path) -> SensitiveDataSettings:
    """Parse ``policy.sensitive_data``; relative paths resolve against ``base``."""
    known = [k for k in keys(SensitiveDataSettings) if k != "source"]
    settings = read_record(
        SensitiveDataSettings, node, base=base, known=known, given={"source": node.source}
    )
    names = list(settings.documents)
    for index, name in enumerate(names):
        other = next((o for o in names[:index] if _overlap(name, o)), None)
        if other is not None:
            documents = node.fields()["documents"]
            raise documents.child(name, None).error(
                f"overlaps document {other!r}: one would replace the other"
            )
    if settings.documents and (settings.key_file is None) == (settings.kms_key_id is None):
        raise node.error(
            "set exactly one of key_file and kms_key_id: the key that opens the documents"
        )
    return settings


def _overlap(name: str, other: str) -> bool:
    return name.startswith(other + "/") or other.startswith(name + "/")
