"""Sensitive-data fixtures: an encrypted customer allowlist and sidecar configs that load it.

The secret strings are unusual on purpose, so finding one anywhere (bundle, bucket, log, span,
record) can only mean a leak.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from sidecar._proto import policy_pb2 as pb
from sidecar.sensitive import FileKey, KmsKey, generate_key_file, seal
from tests.support.moto import MotoServer

__all__ = [
    "ALLOWED",
    "ALLOWLIST",
    "CASES_CONFIG",
    "DENIED",
    "SECRETS",
    "assert_no_secret",
    "customer_request",
    "sensitive_config",
]

CASES_CONFIG = Path(__file__).resolve().parents[1] / "cases" / "sidecar.yaml"
ALLOWED = "cust-9f2c-allowlisted-secret"
DENIED = "cust-0000-not-on-the-list"
OTHER = "cust-5e7a-second-secret"
# data.sensitive.customers.allowlist: prod-us takes only ALLOWED's images, prod-ap only OTHER's.
ALLOWLIST = {"allowlist": {"prod-us": [ALLOWED], "prod-ap": [OTHER]}}
SECRETS = (ALLOWED, OTHER)


def customer_request(customer: str, tag: str = "prod-1.0") -> pb.DecideRequest:
    """A push of a scanned prod image labelled with ``customer``."""
    labels = {
        "customer-id": customer,
        "security.scan.status": "passed",
        "security.scan.completed-at": f"{datetime.now(UTC) - timedelta(hours=1):%Y-%m-%dT%H:%M:%SZ}",
        "security.scan.critical": "0",
    }
    image = pb.Image(registry="ci", repository="team/app", tag=tag, labels=labels)
    # No registry holds the image: its labels are believed only from a caller with an override role.
    return pb.DecideRequest(image=image, caller=pb.Caller(subject="test", roles=["replay"]))


def _cases_config(state: Path) -> dict[str, Any]:
    raw: dict[str, Any] = yaml.safe_load(CASES_CONFIG.read_text(encoding="utf-8"))
    policy = raw["policy"]
    policy["bundle"]["data_dirs"] = [
        str((CASES_CONFIG.parent / d).resolve()) for d in policy["bundle"]["data_dirs"]
    ]
    policy["bundle"]["output"] = str(state / "bundle.tar.gz")
    policy["state_dir"] = str(state)
    policy["listen"] = "127.0.0.1:0"
    policy["metrics_listen"] = "127.0.0.1:0"
    return raw


def sensitive_config(
    work: Path,
    *,
    moto: MotoServer | None = None,
    kms_key_id: str | None = None,
    document: Any = None,
    policy: Mapping[str, Any] | None = None,
) -> Path:
    """Encrypt ``document`` (default ALLOWLIST) and write a cases config that loads it.

    With ``moto`` and ``kms_key_id`` the KEK is that KMS key, else a fresh key file.
    """
    work.mkdir(parents=True, exist_ok=True)
    raw = _cases_config(work / "state")
    settings: dict[str, Any] = {"documents": {"customers": str(work / "customers.enc.json")}}
    if moto is not None and kms_key_id is not None:
        key: FileKey | KmsKey = KmsKey(
            kms_key_id, region=moto.region, endpoint_url=moto.endpoint_url
        )
        settings.update(
            kms_key_id=kms_key_id, kms_region=moto.region, kms_endpoint_url=moto.endpoint_url
        )
    else:
        generate_key_file(work / "kek.key")
        key = FileKey(work / "kek.key")
        settings["key_file"] = str(work / "kek.key")
    envelope = seal(ALLOWLIST if document is None else document, key, "customers")
    (work / "customers.enc.json").write_bytes(envelope.to_bytes())
    raw["policy"]["sensitive_data"] = settings
    raw["policy"]["decision_records"] = {"mask": ["input.image.labels.customer-id"]}
    raw["policy"].update(policy or {})
    path = work / "sidecar.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def assert_no_secret(where: str, blobs: Iterable[bytes | str | Any]) -> None:
    """Fail naming ``where`` if any secret appears in any blob (objects are JSON-encoded)."""
    for blob in blobs:
        if isinstance(blob, bytes):
            text = blob.decode("utf-8", errors="replace")
        elif isinstance(blob, str):
            text = blob
        else:
            text = json.dumps(blob, default=str)
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} leaked into {where}: {text[:500]}"
