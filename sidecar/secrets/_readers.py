"""The two secret managers, read with their own SDKs: AWS Secrets Manager and GCP Secret Manager.

Both SDKs are blocking and slow to import: each reader imports its SDK on its first read, which
:class:`~sidecar.secrets._cache.SecretCache` runs in a worker thread, so neither is loaded unless
a registry uses it and neither ever runs on the event loop. A failure is a :class:`ReadFailed`
whose text names the kind of failure (not found, access denied, unreachable), never a value.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

from sidecar.config import SecretRef, SecretsSettings

__all__ = ["AwsSecretsManager", "GcpSecretManager", "ReadFailed", "SecretReader"]

# AWS error codes, and what they mean to an operator.
_AWS_PROBLEMS = {
    "ResourceNotFoundException": "not found",
    "AccessDeniedException": "access denied",
    "AccessDenied": "access denied",
    "UnrecognizedClientException": "the sidecar's AWS credentials were refused",
    "InvalidSignatureException": "the sidecar's AWS credentials were refused",
    "ExpiredTokenException": "the sidecar's AWS credentials have expired",
    "DecryptionFailure": "cannot be decrypted with its KMS key",
    "InvalidRequestException": "cannot be read now (deleted, or scheduled for deletion)",
    "InvalidParameterException": "is not a valid secret id",
}
_AWS_TRANSIENT = frozenset(
    {"InternalServiceError", "ThrottlingException", "TooManyRequestsException", "RequestTimeout"}
)
# google.api_core exception class names, and what they mean.
_GCP_PROBLEMS = {
    "NotFound": "not found (no such secret, or no enabled version)",
    "PermissionDenied": "access denied",
    "Unauthenticated": "the sidecar's GCP credentials were refused",
    "FailedPrecondition": "version is disabled or destroyed",
    "InvalidArgument": "is not a valid secret version name",
    "DefaultCredentialsError": "no GCP credentials (set secrets.gcp_credentials_file)",
}
_GCP_TRANSIENT = frozenset(
    {
        "ServiceUnavailable",
        "DeadlineExceeded",
        "InternalServerError",
        "TooManyRequests",
        "ResourceExhausted",
        "RetryError",
        "TransportError",
    }
)


class ReadFailed(Exception):
    """A secret could not be read; ``transient`` when asking again later can succeed."""

    def __init__(self, problem: str, *, transient: bool = False) -> None:
        super().__init__(problem)
        self.problem = problem
        self.transient = transient


class SecretReader(Protocol):
    """Reads one secret's current value (blocking: the cache calls it in a worker thread)."""

    def read(self, ref: SecretRef) -> bytes:
        """Return the secret's bytes; raise ReadFailed naming what went wrong."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


class AwsSecretsManager:
    """AWS Secrets Manager through boto3 (``get_secret_value``), one client per region."""

    def __init__(self, settings: SecretsSettings) -> None:
        """Use ``aws_endpoint_url`` (if set) and ``fetch_timeout_s``; credentials: boto3's chain."""
        self._settings = settings
        self._clients: dict[str, Any] = {}
        # boto3 clients are thread-safe once made; making one (and the session) is not.
        self._lock = threading.Lock()

    def _client(self, region: str) -> Any:
        with self._lock:
            client = self._clients.get(region)
            if client is None:
                import boto3  # noqa: PLC0415 - loaded only when a registry uses AWS Secrets Manager
                from botocore.config import Config  # noqa: PLC0415

                timeout = self._settings.fetch_timeout_s
                client = boto3.session.Session().client(
                    "secretsmanager",
                    region_name=region or None,
                    endpoint_url=self._settings.aws_endpoint_url,
                    config=Config(
                        connect_timeout=timeout,
                        read_timeout=timeout,
                        # The job's own retry policy retries; one quick SDK retry for blips.
                        retries={"max_attempts": 2, "mode": "standard"},
                    ),
                )
                self._clients[region] = client
            return client

    def read(self, ref: SecretRef) -> bytes:
        """Return the current version's ``SecretString`` (UTF-8) or ``SecretBinary``."""
        import botocore.exceptions as errors  # noqa: PLC0415 - see _client

        try:
            answer = self._client(ref.region).get_secret_value(SecretId=ref.secret_id)
        except errors.ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", "")) or "ClientError"
            if code in _AWS_TRANSIENT:
                raise ReadFailed(
                    f"AWS Secrets Manager is unavailable ({code})", transient=True
                ) from None
            problem = _AWS_PROBLEMS.get(code, "refused")
            raise ReadFailed(f"{problem} ({code})") from None
        except errors.NoRegionError:
            raise ReadFailed("no AWS region: set secrets.aws_secret_region") from None
        except errors.NoCredentialsError:
            raise ReadFailed("no AWS credentials for the sidecar to read it with") from None
        except (
            errors.EndpointConnectionError,
            errors.ConnectTimeoutError,
            errors.ReadTimeoutError,
        ) as exc:
            raise ReadFailed(
                f"AWS Secrets Manager is unreachable ({type(exc).__name__})", transient=True
            ) from None
        except errors.BotoCoreError as exc:
            raise ReadFailed(f"cannot be read ({type(exc).__name__})") from None
        if "SecretString" in answer:
            return str(answer["SecretString"]).encode()
        if "SecretBinary" in answer:
            return bytes(answer["SecretBinary"])
        raise ReadFailed("has no value (neither SecretString nor SecretBinary)")

    def close(self) -> None:
        """Close every client's connection pool."""
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()


class GcpSecretManager:
    """GCP Secret Manager through google-cloud-secret-manager (``access_secret_version``)."""

    def __init__(self, settings: SecretsSettings) -> None:
        """Use ``gcp_endpoint``/``gcp_insecure``/``gcp_credentials_file`` and ``fetch_timeout_s``."""
        self._settings = settings
        self._client: Any = None
        self._lock = threading.Lock()

    def _make_client(self) -> Any:
        from google.cloud import secretmanager_v1  # noqa: PLC0415 - only when a registry uses it

        settings = self._settings
        options = {"api_endpoint": settings.gcp_endpoint} if settings.gcp_endpoint else None
        if settings.gcp_insecure:
            # A local emulator: plaintext gRPC and no credentials (config refuses it without an
            # explicit gcp_endpoint). The SDK has no switch for this, so its transport gets the
            # channel.
            import grpc  # noqa: PLC0415
            from google.cloud.secretmanager_v1.services.secret_manager_service.transports import (  # noqa: PLC0415
                SecretManagerServiceGrpcTransport,
            )

            transport = SecretManagerServiceGrpcTransport(
                channel=grpc.insecure_channel(settings.gcp_endpoint)
            )
            return secretmanager_v1.SecretManagerServiceClient(transport=transport)
        credentials = None
        if settings.gcp_credentials_file:
            from google.oauth2 import service_account  # noqa: PLC0415

            credentials = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
                settings.gcp_credentials_file,
                scopes=["https://www.googleapis.com/auth/cloud-platform"],
            )
        return secretmanager_v1.SecretManagerServiceClient(
            credentials=credentials, client_options=options
        )

    def _client_now(self) -> Any:
        with self._lock:
            if self._client is None:
                try:
                    self._client = self._make_client()
                except Exception as exc:  # DefaultCredentialsError, OSError, ValueError: no client
                    name = type(exc).__name__
                    raise ReadFailed(
                        f"no GCP Secret Manager client: {_GCP_PROBLEMS.get(name, name)}"
                    ) from None
            return self._client

    def read(self, ref: SecretRef) -> bytes:
        """Return the payload of ``projects/P/secrets/S/versions/V`` (its CRC32C checked)."""
        client = self._client_now()
        try:
            # No SDK retries: the caller's timeout bounds the read, the job's policy retries.
            answer = client.access_secret_version(
                name=ref.secret_id, timeout=self._settings.fetch_timeout_s, retry=None
            )
        except Exception as exc:  # google.api_core.exceptions.*, google.auth errors
            name = type(exc).__name__
            if name in _GCP_TRANSIENT:
                raise ReadFailed(
                    f"GCP Secret Manager is unavailable ({name})", transient=True
                ) from None
            raise ReadFailed(f"{_GCP_PROBLEMS.get(name, 'refused')} ({name})") from None
        payload = answer.payload
        data = bytes(payload.data)
        if "data_crc32c" in payload:  # set by the service; guards against corruption in transit
            import google_crc32c  # noqa: PLC0415

            if google_crc32c.value(data) != int(payload.data_crc32c):
                raise ReadFailed("payload failed its CRC32C check", transient=True)
        return data

    def close(self) -> None:
        """Close the client's channel."""
        with self._lock:
            if self._client is not None:
                self._client.transport.close()
                self._client = None
