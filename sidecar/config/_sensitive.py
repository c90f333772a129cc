"""Parses ``policy.sensitive_data``: encrypted policy documents and the key that opens them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from pydantic import ConfigDict
from pydantic.json_schema import SkipJsonSchema

from sidecar.config._read import Node, resolve_path

__all__ = ["SENSITIVE_ROOT", "SensitiveDataSettings", "parse_sensitive_data"]

# The data root the sidecar loads decrypted documents under (data.sensitive.*). No bundle may
# own it: OPA refuses Data API writes under a bundle's roots (sidecar/bundles/build.py).
SENSITIVE_ROOT = "sensitive"
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*(/[A-Za-z0-9_][A-Za-z0-9_-]*)*")


@dataclass(frozen=True, slots=True)
class SensitiveDataSettings:
    """``policy.sensitive_data``: data path under ``data.sensitive`` → encrypted file, and the key."""

    __pydantic_config__ = ConfigDict(extra="forbid")

    documents: Mapping[str, str] = field(default_factory=dict)
    key_file: str | None = None
    kms_key_id: str | None = None
    kms_region: str | None = None
    kms_endpoint_url: str | None = None
    check_interval_s: float = 10.0
    # The config file, so errors found later (decryption at startup) can name it; where a
    # setting was written is not part of what it means, hence not compared.
    source: SkipJsonSchema[str] = field(default="", compare=False)

    @property
    def enabled(self) -> bool:
        """Whether any encrypted document is configured."""
        return bool(self.documents)


def _documents(node: Node, base: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in node.raw_mapping().items():
        if not _NAME.fullmatch(name):
            raise value.error(
                "a document name is a data path under data.sensitive: segments of letters, "
                "digits, '_' and '-' joined by '/'"
            )
        for other in out:
            if name.startswith(other + "/") or other.startswith(name + "/"):
                raise value.error(f"overlaps document {other!r}: one would replace the other")
        path = resolve_path(value.string(allow_empty=False), base)
        if not Path(path).is_file():
            raise value.error(f"encrypted file {path} does not exist")
        out[name] = path
    return out


def parse_sensitive_data(node: Node, base: Path) -> SensitiveDataSettings:
    """Parse ``policy.sensitive_data``; relative paths resolve against ``base``."""
    f = node.fields(SensitiveDataSettings.__dataclass_fields__.keys() - {"source"}, strict=True)
    d = SensitiveDataSettings()

    def text(key: str) -> str | None:
        given = f.get(key)
        return None if given is None or given.is_null else given.string(allow_empty=False)

    documents = _documents(f["documents"], base) if "documents" in f else {}
    key_file, kms_key_id = text("key_file"), text("kms_key_id")
    if documents and (key_file is None) == (kms_key_id is None):
        raise node.error(
            "set exactly one of key_file and kms_key_id: the key that opens the documents"
        )
    if key_file is not None:
        key_file = resolve_path(key_file, base)
        if not Path(key_file).is_file():
            raise f["key_file"].error(f"key file {key_file} does not exist")
    endpoint = text("kms_endpoint_url")
    if endpoint is not None and not re.match(r"https?://[^/]+", endpoint):
        raise f["kms_endpoint_url"].error(f"expected an http(s):// URL, got {endpoint!r}")
    return SensitiveDataSettings(
        documents=MappingProxyType(documents),
        key_file=key_file,
        kms_key_id=kms_key_id,
        kms_region=text("kms_region"),
        kms_endpoint_url=endpoint,
        check_interval_s=(
            f["check_interval_s"].seconds(minimum=0.1)
            if "check_interval_s" in f
            else d.check_interval_s
        ),
        source=node.source,
    )
