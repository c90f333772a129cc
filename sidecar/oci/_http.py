"""The HTTP transport of one registry: one kept-alive aiohttp session, auth, rate limit, error mapping."""

from __future__ import annotations

import ssl
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from contextvars import ContextVar
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import orjson
from opentelemetry.trace import TracerProvider
from yarl import URL

from sidecar.config import RegistryConfig
from sidecar.errors import RegistryError, RegistryUnavailable
from sidecar.oci._auth import Authenticator, credentials_for
from sidecar.oci.ratelimit import TokenBucket
from sidecar.telemetry import (
    foreign_origin,
    get_logger,
    http_client_tracing,
    untraced_unless_in_trace,
)
from sidecar.typing import RegistryCredentials

__all__ = [
    "MAX_TOKEN_BYTES",
    "Transport",
    "base_url",
    "count_requests",
    "credentials_allowed",
    "read_capped",
    "retry_after_seconds",
    "same_origin",
    "ssl_context",
]

_log = get_logger("sidecar.oci")

MAX_TOKEN_BYTES = 1 << 20  # a token service's JSON answer (a JWT or two) is never near this
_DEFAULT_HOSTS = {"dockerhub": "registry-1.docker.io", "docker": "registry-1.docker.io"}
# The request tally of the current task and the tasks it starts (see count_requests).
_TALLY: ContextVar[list[int] | None] = ContextVar("oci_request_tally", default=None)


@contextmanager
def count_requests() -> Iterator[list[int]]:
    """Count the HTTP requests sent inside the block, by this task and every task it starts.

    Yields a one-element list holding the count. Unlike the clients' own counters, it counts only
    this block's requests when other copies share the clients at the same time.
    """
    tally = [0]
    token = _TALLY.set(tally)
    try:
        yield tally
    finally:
        _TALLY.reset(token)


def base_url(registry: RegistryConfig) -> str:
    """Return ``scheme://host[:port]`` of a registry: its endpoint, else its type's default host."""
    endpoint = registry.endpoint.strip().rstrip("/")
    if not endpoint:
        kind = registry.type.lower()
        if kind == "ecr" and registry.account_id and registry.region:
            endpoint = f"{registry.account_id}.dkr.ecr.{registry.region}.amazonaws.com"
        elif kind == "gcr":
            endpoint = f"{registry.region}.gcr.io" if registry.region else "gcr.io"
        elif kind in _DEFAULT_HOSTS:
            endpoint = _DEFAULT_HOSTS[kind]
        else:
            raise RegistryError(f"registry {registry.name}: no endpoint configured")
    if "://" not in endpoint:
        endpoint = "https://" + endpoint
    url = URL(endpoint)
    return str(url.origin())


def same_origin(a: URL, b: URL) -> bool:
    """True when both URLs have the same scheme, host and port (default ports made explicit)."""
    return (a.scheme.lower(), (a.host or "").lower(), a.port) == (
        b.scheme.lower(),
        (b.host or "").lower(),
        b.port,
    )


def credentials_allowed(registry_origin: URL, target: URL, *, insecure: bool = False) -> bool:
    """May the registry's credentials (basic, or a bearer token) go to ``target``?

    Only to the registry's own origin (scheme, host and port of its configured endpoint: plain
    ``http://`` there only because the configuration says so) and, for a token realm on another
    origin, only over https (plain http as well when the registry is configured ``insecure``).
    Upload ``Location``s and redirects elsewhere never get them: see :meth:`Transport.request`.
    """
    if same_origin(target, registry_origin):
        return True
    return target.scheme == "https" or (insecure and target.scheme == "http")


async def read_capped(resp: aiohttp.ClientResponse, limit: int, what: str, kind: str) -> bytes:
    """Read a response body of at most ``limit`` bytes; RegistryError naming the size beyond it."""
    declared = resp.content_length
    if declared is not None and declared > limit:
        raise RegistryError(f"{what}: {kind} is {declared} bytes, more than the {limit} allowed")
    data = bytearray()
    async for chunk in resp.content.iter_chunked(1 << 16):
        data += chunk
        if len(data) > limit:
            raise RegistryError(f"{what}: {kind} exceeds {limit} bytes (read {len(data)} so far)")
    return bytes(data)


def ssl_context(registry: RegistryConfig) -> ssl.SSLContext | bool:
    """Return the TLS settings of ``registry.tls``/``insecure`` (True: system defaults).

    Raises RegistryError naming the setting when a CA, certificate or key cannot be loaded.
    """
    tls = registry.tls
    skip = tls.insecure_skip_verify or registry.insecure
    if not (tls.ca_file or tls.cert_file or skip):
        return True
    try:
        context = ssl.create_default_context(cafile=tls.ca_file or None)
    except (OSError, ssl.SSLError) as exc:
        raise RegistryError(
            f"registry {registry.name}: tls.ca_file {tls.ca_file}: {_reason(exc)}"
        ) from exc
    if tls.cert_file:
        try:
            context.load_cert_chain(tls.cert_file, tls.key_file or None)
        except (OSError, ssl.SSLError) as exc:
            raise RegistryError(
                f"registry {registry.name}: tls.cert_file {tls.cert_file} / tls.key_file "
                f"{tls.key_file or '(in the certificate file)'}: {_reason(exc)}"
            ) from exc
    if skip:
        # Freightliner's insecure/insecure_skip_verify: self-signed registries in test setups.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def retry_after_seconds(value: str | None) -> float | None:
    """Parse ``Retry-After`` (delta seconds or HTTP-date) into seconds from now."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class Transport:
    """Sends requests to one registry through one kept-alive session, authenticated and paced."""

    def __init__(
        self,
        registry: RegistryConfig,
        *,
        rate_limit_rps: float | None,
        burst: int,
        timeout_s: float,
        credentials: RegistryCredentials | None = None,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        """Prepare (but do not open) the session; it opens on first use inside the event loop.

        ``credentials`` (a secret manager's) replaces those ``registry.auth`` configures;
        ``tracer_provider`` records the HTTP client spans (None: OpenTelemetry's global one).
        """
        self.name = registry.name
        self.base = base_url(registry)
        self.origin = URL(self.base).origin()
        self._insecure = registry.insecure
        self._tracer_provider = tracer_provider
        self.requests = 0
        # A registry whose TLS files are missing must not stop the sidecar (nor the other
        # registries): every request to it fails with the reason, and the prober marks it down.
        self._ssl: ssl.SSLContext | bool = True
        self._tls_error: RegistryError | None = None
        try:
            self._ssl = ssl_context(registry)
        except RegistryError as exc:
            self._tls_error = exc
            _log.warning(
                "registry TLS settings unusable", registry=registry.name, error=exc.message
            )
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=timeout_s, sock_connect=timeout_s, sock_read=timeout_s
        )
        self._bucket = TokenBucket(rate_limit_rps, burst) if rate_limit_rps else None
        self._session: aiohttp.ClientSession | None = None
        self.auth = Authenticator(
            registry.name, credentials or credentials_for(registry), self._fetch_token
        )

    def _session_now(self) -> aiohttp.ClientSession:
        if self._tls_error is not None:
            raise self._tls_error
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(ssl=self._ssl, limit=32, keepalive_timeout=60),
                json_serialize=lambda o: orjson.dumps(o).decode(),
                trace_configs=http_client_tracing(self._tracer_provider, origin=str(self.origin)),
            )
        return self._session

    async def close(self) -> None:
        """Close the session (and its kept-alive connections)."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def url(self, path_or_url: str) -> URL:
        """Resolve a path or an upload ``Location`` (relative or absolute) against the registry."""
        if path_or_url.startswith(("http://", "https://")):
            return URL(path_or_url, encoded=True)
        return URL(self.base + path_or_url, encoded=True)

    async def _fetch_token(
        self, realm: str, params: Mapping[str, Any], authorization: str | None
    ) -> Mapping[str, Any]:
        what = f"registry {self.name}: token endpoint {realm}"
        target = URL(realm)
        if target.scheme not in ("http", "https") or not target.host:
            raise RegistryError(f"{what}: not an http(s) URL", status=401)
        if authorization and not credentials_allowed(self.origin, target, insecure=self._insecure):
            # Refuse rather than ask anonymously: an anonymous token would only fail later, less
            # clearly (denied pushes), and the credentials must not cross plain http elsewhere.
            raise RegistryError(
                f"{what}: credentials are not sent to a plain-http token realm on another origin "
                f"than {self.origin} (https, the registry's own origin, or insecure: true)",
                status=401,
            )
        headers = {"Authorization": authorization} if authorization else {}
        query = [(k, v) for k, vs in params.items() for v in (vs if isinstance(vs, list) else [vs])]
        async with self._send("GET", target.with_query(query), headers, None, what) as resp:
            if resp.status != 200:
                raise await self._error(resp, what)
            try:
                doc = orjson.loads(await read_capped(resp, MAX_TOKEN_BYTES, what, "token answer"))
            except orjson.JSONDecodeError as exc:
                raise RegistryError(f"{what}: answer is not JSON", status=resp.status) from exc
        return doc if isinstance(doc, dict) else {}

    @asynccontextmanager
    async def _send(
        self, method: str, url: URL, headers: Mapping[str, str], data: Any, what: str
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """One HTTP exchange with aiohttp failures mapped to our errors (also while reading)."""
        if self._bucket is not None:
            await self._bucket.acquire()
        self.requests += 1
        tally = _TALLY.get()
        if tally is not None:
            tally[0] += 1
        started = False
        try:
            async with AsyncExitStack() as stack:
                # OpenTelemetry's HTTP client span (and the traceparent it sends) only inside a
                # trace and only at the registry's own origin: a blob store or token realm
                # elsewhere learns nothing of our traces. Scoped to sending the request (the span
                # ends when the headers arrive), not to the caller reading the body meanwhile.
                with untraced_unless_in_trace(), foreign_origin(not same_origin(url, self.origin)):
                    resp = await stack.enter_async_context(
                        self._session_now().request(
                            method,
                            url,
                            headers=headers,
                            data=data,
                            allow_redirects=method in ("GET", "HEAD"),
                        )
                    )
                started = True
                yield resp
        except aiohttp.ClientPayloadError as exc:
            raise RegistryError(f"{what}: response body truncated: {exc}", transient=True) from exc
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            detail = f"{type(exc).__name__}: {exc}".rstrip(": ")
            if started:
                # The registry answered, then the connection died mid-body: a truncated transfer.
                raise RegistryError(
                    f"{what}: connection lost mid-response: {detail}", transient=True
                ) from exc
            raise RegistryUnavailable(f"{what}: {self.base} unreachable: {detail}") from exc

    @asynccontextmanager
    async def request(
        self,
        method: str,
        path_or_url: str,
        *,
        what: str,
        scopes: tuple[str, ...] = (),
        headers: Mapping[str, str] | None = None,
        data: Any = None,
        ok: tuple[int, ...] = (200,),
        replayable: bool = True,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Send an authenticated request; yield the response when its status is in ``ok``.

        A 401 teaches the authenticator the registry's challenge and the request is sent once
        more (unless its body is a one-shot stream); any other status outside ``ok`` raises.
        Credentials go only to the registry's own origin: an absolute upload ``Location`` (or
        ``Link``) elsewhere is sent without them, and its 401 challenges are not learnt. (aiohttp
        drops ``Authorization`` itself when following a redirect to another origin.)
        """
        url = self.url(path_or_url)
        own = same_origin(url, self.origin)
        for attempt in (0, 1):
            sent = dict(headers or {})
            authorization = await self.auth.header(scopes) if own else None
            if authorization:
                sent["Authorization"] = authorization
            async with self._send(method, url, sent, data, what) as resp:
                if resp.status in ok:
                    yield resp
                    return
                if (
                    resp.status == 401
                    and own
                    and same_origin(resp.url, self.origin)
                    and attempt == 0
                    and replayable
                    and self.auth.learn(resp.headers.get("WWW-Authenticate", ""), authorization)
                ):
                    continue
                raise await self._error(resp, what)

    async def _error(self, resp: aiohttp.ClientResponse, what: str) -> RegistryError:
        try:
            body = (await resp.content.read(2048)).decode(errors="replace").strip()
        except (aiohttp.ClientError, TimeoutError):
            body = ""
        detail = f"{what}: HTTP {resp.status} {resp.reason or ''}".rstrip()
        if body:
            detail += f": {body[:500]}"
        transient = resp.status == 429 or resp.status >= 500
        retry_after = retry_after_seconds(resp.headers.get("Retry-After")) if transient else None
        return RegistryError(
            detail, status=resp.status, transient=transient, retry_after=retry_after
        )
