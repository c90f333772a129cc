"""The three publishers: S3 (boto3), Google Cloud Storage and the built-in HTTP bundle server."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from opentelemetry import trace

from sidecar.bundles._publish_common import (
    ARCHIVE_CONTENT_TYPE,
    BUNDLE_CONTENT_TYPE,
    PublishError,
    PublishResult,
    read_bundle_bytes,
)
from sidecar.bundles.build import BuiltBundle
from sidecar.telemetry import get_logger

__all__ = ["GcsPublisher", "HttpPublisher", "S3Publisher"]

_log = get_logger(__name__)
_tracer = trace.get_tracer(__name__)


def _metadata(bundle: BuiltBundle) -> dict[str, str]:
    # Stored beside the object so an operator can tell what a store holds without downloading it.
    return {"revision": bundle.revision, "digest": bundle.digest}


def _done(store: str, location: str, bundle: BuiltBundle) -> PublishResult:
    result = PublishResult(store, location, bundle.revision, bundle.digest, datetime.now(UTC))
    _log.info(
        "bundle published",
        store=store,
        location=location,
        revision=bundle.revision,
        digest=bundle.digest,
        size_bytes=bundle.size,
    )
    return result


class S3Publisher:
    """Puts the bundle at ``s3://bucket/key`` (``endpoint_url`` for MinIO, moto, gateways)."""

    def __init__(
        self,
        bucket: str,
        key: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        timeout_s: float = 60.0,
    ) -> None:
        # Loaded here, not at import: boto3 takes a second and tens of MiB, and only a sidecar
        # publishing to S3 needs it.
        import boto3  # noqa: PLC0415
        import botocore.config  # noqa: PLC0415

        self._bucket, self._key = bucket, key
        self._client = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            config=botocore.config.Config(
                connect_timeout=timeout_s, read_timeout=timeout_s, retries={"mode": "standard"}
            ),
        )

    def publish(self, bundle: BuiltBundle) -> PublishResult:
        """Upload the archive with PutObject; PublishError (transient for 5xx/network) on failure."""
        import botocore.exceptions  # noqa: PLC0415 - loaded with the client (see __init__)

        location = f"s3://{self._bucket}/{self._key}"
        raw = read_bundle_bytes(bundle)
        with _tracer.start_as_current_span(
            "bundle.publish",
            attributes={
                "bundle.store": "s3",
                "bundle.location": location,
                "bundle.revision": bundle.revision,
            },
        ):
            try:
                self._client.put_object(
                    Bucket=self._bucket,
                    Key=self._key,
                    Body=raw,
                    # Never BUNDLE_CONTENT_TYPE here: it would make OPA long-poll S3 in a hot loop.
                    ContentType=ARCHIVE_CONTENT_TYPE,
                    Metadata=_metadata(bundle),
                )
            except botocore.exceptions.ClientError as exc:
                status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
                raise PublishError(
                    f"S3 refused {location}: {exc}",
                    status=status or None,
                    transient=status >= 500 or status == 429,
                ) from exc
            except botocore.exceptions.BotoCoreError as exc:
                raise PublishError(
                    f"cannot reach S3 for {location}: {exc}", transient=True
                ) from exc
        return _done("s3", location, bundle)


class GcsPublisher:
    """Uploads the bundle to ``gs://bucket/object`` (``endpoint``: an emulator, anonymous auth)."""

    def __init__(
        self, bucket: str, object_name: str, *, endpoint: str | None = None, timeout_s: float = 60.0
    ) -> None:
        self._bucket, self._object = bucket, object_name
        self._endpoint = endpoint
        self._timeout_s = timeout_s

    def _client(self) -> Any:
        # Imported lazily: google-cloud-storage is heavy and only this store needs it.
        from google.auth.credentials import AnonymousCredentials  # noqa: PLC0415
        from google.cloud import storage  # type: ignore[import-untyped,attr-defined,unused-ignore]  # noqa: PLC0415

        if self._endpoint:
            return storage.Client(
                project="policy-sidecar",
                credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
                client_options={"api_endpoint": self._endpoint},
            )
        return storage.Client()  # application default credentials

    def publish(self, bundle: BuiltBundle) -> PublishResult:
        """Upload the archive as one object; PublishError (transient for 5xx/network) on failure."""
        from google.api_core import exceptions as gexc  # noqa: PLC0415
        from google.auth import exceptions as auth_exc  # noqa: PLC0415

        location = f"gs://{self._bucket}/{self._object}"
        raw = read_bundle_bytes(bundle)
        with _tracer.start_as_current_span(
            "bundle.publish",
            attributes={
                "bundle.store": "gcs",
                "bundle.location": location,
                "bundle.revision": bundle.revision,
            },
        ):
            try:
                blob = self._client().bucket(self._bucket).blob(self._object)
                blob.metadata = _metadata(bundle)
                blob.upload_from_string(
                    raw, content_type=ARCHIVE_CONTENT_TYPE, timeout=self._timeout_s
                )
            except gexc.GoogleAPICallError as exc:
                status = int(exc.code or 0)
                raise PublishError(
                    f"GCS refused {location}: {exc.message}",
                    status=status or None,
                    transient=status >= 500 or status == 429,
                ) from exc
            except (auth_exc.GoogleAuthError, OSError) as exc:
                raise PublishError(
                    f"cannot reach GCS for {location}: {exc}", transient=True
                ) from exc
        return _done("gcs", location, bundle)


class HttpPublisher:
    """PUTs the bundle to the built-in bundle server at ``url`` with a bearer token."""

    def __init__(self, url: str, token: str, *, timeout_s: float = 60.0) -> None:
        self._url, self._token, self._timeout_s = url, token, timeout_s

    def publish(self, bundle: BuiltBundle) -> PublishResult:
        """PUT the archive; PublishError with the server's status (401, 413, 400, 5xx)."""
        raw = read_bundle_bytes(bundle)
        request = urllib.request.Request(  # noqa: S310 - parse_target allows only http(s)
            self._url,
            data=raw,
            method="PUT",
            headers={
                "Authorization": f"Bearer {self._token}",
                "Content-Type": BUNDLE_CONTENT_TYPE,
                "X-Bundle-Revision": quote(bundle.revision, safe=""),
            },
        )
        with _tracer.start_as_current_span(
            "bundle.publish",
            attributes={
                "bundle.store": "http",
                "bundle.location": self._url,
                "bundle.revision": bundle.revision,
            },
        ):
            try:
                with urllib.request.urlopen(request, timeout=self._timeout_s) as response:  # noqa: S310
                    body = json.loads(response.read() or b"{}")
            except urllib.error.HTTPError as exc:
                detail = exc.read().decode(errors="replace").strip()[:500]
                raise PublishError(
                    f"bundle server refused {self._url}: HTTP {exc.code} {detail}",
                    status=exc.code,
                    transient=exc.code >= 500 or exc.code == 429,
                ) from exc
            except (urllib.error.URLError, OSError, ValueError) as exc:
                raise PublishError(
                    f"cannot reach bundle server {self._url}: {exc}", transient=True
                ) from exc
        served = str(body.get("digest", ""))
        if served != bundle.digest:
            raise PublishError(f"bundle server stored {served or 'unknown'}, sent {bundle.digest}")
        return _done("http", self._url, bundle)
