"""Renders the OPA configuration that makes OPA poll a bundle store (the deploy/opa/*.yaml shapes).

``deploy/opa/s3.yaml``, ``gcs.yaml`` and ``http.yaml`` document the same structure with
placeholders; a test keeps them and this renderer in step. Every config verifies the bundle
signature with the RS256 public key under ``keys.<key_id>``, so OPA refuses an unsigned or tampered
bundle and keeps serving the revision it has.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlsplit

from sidecar.config import parse_target
from sidecar.errors import InvalidArgument

__all__ = ["GCS_READ_SCOPE", "opa_config"]

GCS_READ_SCOPE = "https://www.googleapis.com/auth/devstorage.read_only"
_GCS_ENDPOINT = "https://storage.googleapis.com"


def opa_config(
    store_url: str,
    *,
    verification_key_pem: str,
    bundle_name: str = "replication",
    key_id: str = "replication",
    endpoint_url: str | None = None,
    region: str = "us-east-1",
    token: str | None = None,
    gcs_credentials: str | None = "gcp_metadata",
    min_delay_s: int = 2,
    max_delay_s: int = 4,
    long_poll_timeout_s: int = 60,
    persistence_directory: str | None = None,
) -> dict[str, Any]:
    """Return an OPA config dict polling the bundle published at ``store_url``.

    ``store_url`` is a ``bundle publish --to`` URL. ``endpoint_url`` replaces the S3/GCS endpoint
    (emulators, gateways; S3 is then addressed path-style). ``gcs_credentials`` is
    ``"gcp_metadata"`` (workload identity / GCE metadata server) or None for an emulator or a
    public bucket. The HTTP store long-polls (``long_poll_timeout_s``) and sends ``token`` as a
    bearer token when given; the polling delays apply to object stores and as OPA's fallback.
    With ``persistence_directory`` OPA keeps the last activated bundle there and a restarted OPA
    activates it (verified again) before the store answers.
    """
    if min_delay_s < 1 or max_delay_s < min_delay_s:
        raise InvalidArgument("polling", "need 1 <= min_delay_s <= max_delay_s")
    target = parse_target(store_url)
    polling: dict[str, Any] = {"min_delay_seconds": min_delay_s, "max_delay_seconds": max_delay_s}
    service: dict[str, Any]
    if target.store == "s3":
        base = endpoint_url.rstrip("/") if endpoint_url else None
        service = {
            "url": f"{base}/{target.bucket}"
            if base
            else f"https://{target.bucket}.s3.{region}.amazonaws.com",
            # AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_REGION from OPA's environment.
            "credentials": {"s3_signing": {"environment_credentials": {}}},
        }
        resource = quote(target.key, safe="/")
    elif target.store == "gcs":
        base = (endpoint_url or _GCS_ENDPOINT).rstrip("/")
        service = {"url": f"{base}/storage/v1/b/{target.bucket}/o"}
        if gcs_credentials == "gcp_metadata":
            service["credentials"] = {"gcp_metadata": {"scopes": [GCS_READ_SCOPE]}}
        elif gcs_credentials is not None:
            raise InvalidArgument("gcs_credentials", "use 'gcp_metadata' or None")
        # The JSON API names an object in one path segment ('/' as %2F); alt=media = its bytes.
        resource = f"{quote(target.key, safe='')}?alt=media"
    else:
        parts = urlsplit(target.url)
        prefix = parts.path[: -len(f"bundles/{target.key}")].rstrip("/")
        service = {"url": f"{parts.scheme}://{parts.netloc}{prefix}"}
        if token:
            service["credentials"] = {"bearer": {"token": token}}
        resource = f"bundles/{target.key}"
        polling["long_polling_timeout_seconds"] = long_poll_timeout_s
    config: dict[str, Any] = {
        "services": {"bundles": service},
        "bundles": {
            bundle_name: {
                "service": "bundles",
                "resource": resource,
                # Not persisted by default: a restarted OPA downloads (and verifies) it again.
                "persist": persistence_directory is not None,
                "polling": polling,
                "signing": {"keyid": key_id},
            }
        },
        "keys": {key_id: {"algorithm": "RS256", "key": verification_key_pem}},
    }
    if persistence_directory is not None:
        config["persistence_directory"] = persistence_directory
    return config
