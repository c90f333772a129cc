"""The credentials of registries that keep them in a secret manager (``auth.use_secrets_manager``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sidecar.config import RegistryConfig, SecretRef, SecretsSettings, secret_ref
from sidecar.errors import SecretUnusable
from sidecar.secrets._cache import SecretCache
from sidecar.secrets._payload import PayloadOwner, credentials_from
from sidecar.secrets._readers import AwsSecretsManager, GcpSecretManager, ReadFailed, SecretReader
from sidecar.telemetry import get_logger
from sidecar.typing import RegistryCredentials

__all__ = ["ManagedCredentials", "RegistrySecrets"]

_log = get_logger("sidecar.secrets")


class ManagedCredentials:
    """One registry's ``(username, password)``, read from its secret through the shared cache.

    Implements the RegistryCredentials seam (sidecar/typing.py) the OCI client authenticates with.
    Every failure is a SecretUnusable naming the registry and the secret, never the value.
    """

    def __init__(self, registry: RegistryConfig, ref: SecretRef, cache: SecretCache) -> None:
        """Read ``ref`` for ``registry`` (its host picks a Docker-config entry)."""
        self.registry = registry.name
        self.ref = ref
        self._cache = cache
        self._owner = PayloadOwner(
            name=registry.name,
            host=registry.host or registry.name,
            username=registry.auth.username,
            token_type=registry.auth.type.strip().lower() == "token",
        )
        # The value last parsed and what it held: parsing again only when the value changes.
        self._parsed: tuple[bytes, tuple[str, str]] | None = None
        # The value last found unusable and why (logged once per value, not once per request).
        self._unusable: tuple[bytes, str] | None = None

    def __repr__(self) -> str:
        """Name the registry and the secret only."""
        return f"ManagedCredentials(registry={self.registry!r}, secret={self.ref.label!r})"

    def _error(self, problem: str, *, transient: bool = False) -> SecretUnusable:
        return SecretUnusable(
            f"registry {self.registry}: auth: {self.ref.label}: {problem}", transient=transient
        )

    async def get(self) -> tuple[str, str]:
        """Return the credentials the secret holds now; SecretUnusable when it cannot be used."""
        try:
            value = await self._cache.read(self.ref)
        except ReadFailed as exc:
            raise self._error(exc.problem, transient=exc.transient) from None
        parsed = self._parsed
        if parsed is not None and parsed[0] == value:
            return parsed[1]
        unusable = self._unusable
        if unusable is not None and unusable[0] == value:
            raise self._error(unusable[1])
        try:
            credentials = credentials_from(value, self._owner)
        except ValueError as exc:
            self._unusable = (value, str(exc))
            self._cache.distrust(self.ref, value)
            _log.warning(
                "registry_secret_unusable",
                registry=self.registry,
                secret=self.ref.label,
                problem=str(exc),
            )
            raise self._error(str(exc)) from None
        self._parsed, self._unusable = (value, credentials), None
        return credentials

    def refused(self, credentials: tuple[str, str]) -> bool:
        """The registry refused ``credentials``: read the secret again (it may have rotated)."""
        parsed = self._parsed
        if parsed is None or parsed[1] != credentials:
            # Already replaced by a newer read: the retry uses that one.
            return parsed is not None
        return self._cache.forget(self.ref, parsed[0])


def _readers(settings: SecretsSettings, managers: Iterable[str]) -> dict[str, SecretReader]:
    made: dict[str, SecretReader] = {}
    for manager in set(managers):
        made[manager] = (
            AwsSecretsManager(settings) if manager == "aws" else GcpSecretManager(settings)
        )
    return made


class RegistrySecrets:
    """The secret-manager credentials of an inventory, over one cache every client shares."""

    def __init__(
        self,
        registries: Iterable[RegistryConfig],
        settings: SecretsSettings,
        *,
        readers: Mapping[str, SecretReader] | None = None,
    ) -> None:
        """Locate each registry's secret (config has checked they can be); read nothing yet.

        Readers (and their SDKs) exist only for the managers some registry uses.
        """
        refs = {r.name: (r, secret_ref(r, settings)) for r in registries}
        used = {name: (r, ref) for name, (r, ref) in refs.items() if ref is not None}
        managers = [ref.manager for _, ref in used.values()]
        self._readers = dict(readers) if readers is not None else _readers(settings, managers)
        self.cache = SecretCache(
            self._readers, ttl_s=settings.cache_ttl_s, timeout_s=settings.fetch_timeout_s
        )
        self._credentials = {
            name: ManagedCredentials(r, ref, self.cache) for name, (r, ref) in used.items()
        }

    @property
    def names(self) -> tuple[str, ...]:
        """The registries whose credentials come from a secret manager."""
        return tuple(self._credentials)

    def credentials(self, registry: str) -> RegistryCredentials | None:
        """Return ``registry``'s secret-manager credentials, or None when it does not use one."""
        return self._credentials.get(registry)

    def close(self) -> None:
        """Close the managers' clients."""
        for reader in self._readers.values():
            reader.close()
