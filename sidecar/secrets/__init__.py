"""Registry credentials from secret managers: AWS Secrets Manager and GCP Secret Manager.

A registry with ``auth.use_secrets_manager`` reads its username and password from the secret
that ``auth.secret_name`` (or ``secrets.registry_creds_secret``) names, in the manager of the
top-level ``secrets:`` section. :class:`RegistrySecrets` hands each such registry a
:class:`ManagedCredentials` (the ``RegistryCredentials`` seam of sidecar/typing.py) for its OCI
client: read through one cache with a TTL, off the event loop, read again when the registry
answers 401; a secret that cannot be used fails that registry's requests with a
SecretUnusable naming the registry and the secret, never anonymously. The SDKs (boto3,
google-cloud-secret-manager) are imported only when a registry uses their manager.
"""

from __future__ import annotations

from sidecar.secrets._cache import FAILURE_TTL_S, MIN_REFRESH_S, SecretCache
from sidecar.secrets._payload import MAX_SECRET_BYTES, PayloadOwner, credentials_from
from sidecar.secrets._readers import AwsSecretsManager, GcpSecretManager, ReadFailed, SecretReader
from sidecar.secrets._registry import ManagedCredentials, RegistrySecrets

__all__ = [
    "FAILURE_TTL_S",
    "MAX_SECRET_BYTES",
    "MIN_REFRESH_S",
    "AwsSecretsManager",
    "GcpSecretManager",
    "ManagedCredentials",
    "PayloadOwner",
    "ReadFailed",
    "RegistrySecrets",
    "SecretCache",
    "SecretReader",
    "credentials_from",
]
