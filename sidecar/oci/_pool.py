"""One RegistryClient per inventory registry, looked up by name."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from opentelemetry.trace import TracerProvider

from sidecar.config import RegistryConfig
from sidecar.errors import NotFound
from sidecar.oci._client import RegistryClient
from sidecar.typing import RegistryCredentialSource

__all__ = ["RegistryClients"]


def _rate(rates: Mapping[str, float] | float | None, name: str) -> float | None:
    """One rate for every registry, or the registry's own entry of a per-name mapping."""
    if isinstance(rates, Mapping):
        return rates.get(name)
    return rates


class RegistryClients:
    """The clients of every inventory registry (each with its own session and rate limit)."""

    def __init__(
        self,
        registries: Iterable[RegistryConfig],
        *,
        rate_limit_rps: Mapping[str, float] | float | None = None,
        timeout_s: float = 30.0,
        credentials: RegistryCredentialSource | None = None,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        """Create (lazily connecting) clients; ``rate_limit_rps`` is one rate or one per registry.

        ``credentials`` gives a registry's credentials from outside its config (a secret manager);
        a registry it has none for uses its ``auth`` section; ``tracer_provider`` records the
        clients' HTTP client spans.
        """
        self._clients: dict[str, RegistryClient] = {}
        for registry in registries:
            self._clients[registry.name] = RegistryClient(
                registry,
                rate_limit_rps=_rate(rate_limit_rps, registry.name),
                timeout_s=timeout_s,
                credentials=credentials(registry.name) if credentials else None,
                tracer_provider=tracer_provider,
            )

    @property
    def names(self) -> tuple[str, ...]:
        """The registry names, in inventory order."""
        return tuple(self._clients)

    def get(self, name: str) -> RegistryClient:
        """Return the client of registry ``name``; NotFound when the inventory has no such name."""
        try:
            return self._clients[name]
        except KeyError:
            known = ", ".join(self._clients) or "none"
            raise NotFound(f"unknown registry {name!r} (known: {known})") from None

    async def close(self) -> None:
        """Close every client's session."""
        for client in self._clients.values():
            await client.close()
