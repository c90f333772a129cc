"""Keeps the decrypted sensitive data loaded in OPA (``PUT /v1/data/sensitive``) and gates decisions.

OPA holds Data API writes in memory only, so a restarted OPA has lost them: the managed OPA calls
:meth:`SensitiveDataLoader.put` on every launch before it counts as ready, and a watcher checks
every ``check_interval_s`` that ``data.sensitive`` is still there (an external OPA restarts
without telling us) and loads it again when not. :class:`SensitiveGate` makes decisions fail over
to the fail mode while the data is not known to be loaded, instead of being decided without it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import orjson

from sidecar.config import SENSITIVE_ROOT
from sidecar.errors import BundleError, PolicyUnavailable
from sidecar.model.decision import EngineAnswer
from sidecar.sensitive.documents import SensitiveData
from sidecar.tasks import cancel_and_wait
from sidecar.telemetry import get_logger
from sidecar.typing import PolicyEngine

__all__ = ["SensitiveDataLoader", "SensitiveGate"]

_log = get_logger("sidecar.sensitive")
# While the data is missing, look again this often (OPA is probably just starting).
_RETRY_S = 0.5


class SensitiveDataLoader:
    """Loads :class:`SensitiveData` into an OPA and keeps it there."""

    def __init__(
        self,
        data: SensitiveData,
        *,
        timeout_s: float = 5.0,
        check_interval_s: float = 10.0,
        token: str | None = None,
    ) -> None:
        self._data = data
        # The managed OPA's API token (None: an external OPA without authentication).
        self._auth = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._interval = check_interval_s
        self._loaded = False
        self._watcher: asyncio.Task[None] | None = None

    @property
    def loaded(self) -> bool:
        """Whether OPA was last seen holding the data."""
        return self._loaded

    async def put(self, base_url: str) -> None:
        """Load the data into the OPA at ``base_url``; PolicyUnavailable or BundleError on failure."""
        url = f"{base_url.rstrip('/')}/v1/data/{SENSITIVE_ROOT}"
        status, body = await self._request("PUT", url, self._data.body)
        if status >= 300:
            # ``loaded`` is left alone: this may be a probe OPA (a reload being tried) while the
            # serving one still holds the data; the watcher judges the serving one.
            message = _message(body)
            if status < 500:
                # The usual cause: a bundle whose manifest claims the root (or has no roots).
                raise BundleError(
                    f"OPA at {base_url} refused data.{SENSITIVE_ROOT} (HTTP {status}): {message}; "
                    f"no bundle may own the root {SENSITIVE_ROOT!r}"
                )
            raise PolicyUnavailable(f"OPA at {base_url} answered HTTP {status}: {message}")
        self._loaded = True
        _log.info(
            "sensitive data loaded into OPA",
            opa_url=base_url,
            documents=list(self._data.names),
            digest=self._data.digest,
        )

    async def present(self, base_url: str) -> bool:
        """Return whether OPA holds every top-level document; PolicyUnavailable if unreachable."""
        query = orjson.dumps({"query": f"names := object.keys(data.{SENSITIVE_ROOT})"})
        status, body = await self._request("POST", f"{base_url.rstrip('/')}/v1/query", query)
        if status >= 300:
            raise PolicyUnavailable(f"OPA at {base_url} answered HTTP {status}: {_message(body)}")
        rows = body.get("result") if isinstance(body, dict) else None
        names = rows[0].get("names", []) if isinstance(rows, list) and rows else []
        return self._data.roots <= set(names)

    async def check(self, base_url: str) -> None:
        """Load the data again if OPA lost it; log (never raise) what goes wrong."""
        try:
            if await self.present(base_url):
                self._loaded = True
                return
            self._loaded = False
            _log.warning("sensitive data missing from OPA; loading it again", opa_url=base_url)
            await self.put(base_url)
        except (PolicyUnavailable, BundleError) as exc:
            self._loaded = False
            _log.error("sensitive data not loaded into OPA", opa_url=base_url, error=exc.message)

    def start_watching(self, base_url: Callable[[], str]) -> None:
        """Check every ``check_interval_s`` (more often while the data is missing) in a task."""
        if self._watcher is None:
            self._watcher = asyncio.create_task(self._watch(base_url), name="sensitive-data-watch")

    async def stop(self) -> None:
        """Stop the watcher; safe to call twice."""
        if self._watcher is not None:
            await cancel_and_wait(self._watcher)
            self._watcher = None

    async def _watch(self, base_url: Callable[[], str]) -> None:
        while True:
            await asyncio.sleep(self._interval if self._loaded else min(_RETRY_S, self._interval))
            await self.check(base_url())

    async def _request(self, method: str, url: str, body: bytes) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json", **self._auth}
        try:
            async with (
                aiohttp.ClientSession(timeout=self._timeout) as session,
                session.request(method, url, data=body, headers=headers) as response,
            ):
                raw = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise PolicyUnavailable(
                f"OPA at {url} unreachable: {type(exc).__name__}: {exc}"
            ) from None
        try:
            return status, orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            return status, {}


def _message(body: Any) -> str:
    if isinstance(body, dict):
        return str(body.get("message") or body.get("code") or "no details")
    return "no details"


class SensitiveGate:
    """A PolicyEngine that refuses to evaluate while ``data.sensitive`` may be missing in OPA."""

    def __init__(self, engine: PolicyEngine, ready: Callable[[], bool]) -> None:
        self._engine = engine
        self._ready = ready

    async def evaluate(self, policy_input: Mapping[str, Any]) -> EngineAnswer:
        """Evaluate on the wrapped engine, or PolicyUnavailable while the data is not loaded."""
        if not self._ready():
            # A decision without the allowlists would be wrong, not merely late: fail over.
            raise PolicyUnavailable(
                f"sensitive policy data (data.{SENSITIVE_ROOT}) is not loaded into OPA yet"
            )
        return await self._engine.evaluate(policy_input)

    async def close(self) -> None:
        """Close the wrapped engine."""
        await self._engine.close()
