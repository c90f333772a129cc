"""Registry authentication: credential sources (static, ECR, GCP) and the challenge/token flow.

A registry's ``auth.type`` picks the credential source: ``anonymous`` (none), ``basic`` (username
and password), ``token`` (``auth.token`` as the password of ``auth.username``, default
``oauth2`` — how GitHub/GitLab personal and deploy tokens log in), ``ecr``/``aws`` (boto3
``ecr.get_authorization_token``) and ``gcr``/``gcp``/``google`` (google-auth access token as user
``oauth2accesstoken``). A registry of type ``ecr``/``gcr`` with no auth type uses its cloud's
source. The credentials are then used the way the registry's ``WWW-Authenticate`` challenge asks:
``Basic`` sends them directly, ``Bearer`` exchanges them at the realm for a token per scope.
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sidecar.config import RegistryConfig
from sidecar.errors import RegistryError, SecretUnusable
from sidecar.typing import RegistryCredentials

__all__ = [
    "Authenticator",
    "Challenge",
    "CredentialSource",
    "EcrCredentials",
    "GcpCredentials",
    "StaticCredentials",
    "TokenFetch",
    "UnwiredSecret",
    "aws_session",
    "basic_header",
    "credentials_for",
    "parse_challenge",
]

_AWS = frozenset({"ecr", "aws"})
_GCP = frozenset({"gcr", "gcp", "google", "gar", "artifact-registry"})
_CHALLENGE_PARAM = re.compile(r'(\w+)=(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))')
_REFRESH_MARGIN_S = 60.0  # renew a little early so no request goes out with a dying token
_DEFAULT_TOKEN_TTL_S = 60.0  # the distribution token spec's default when expires_in is absent

TokenFetch = Callable[[str, Mapping[str, Any], str | None], Awaitable[Mapping[str, Any]]]
"""``(realm, query params, Authorization header or None) -> token response JSON``."""


@dataclass(frozen=True, slots=True)
class Challenge:
    """A parsed ``WWW-Authenticate`` header: scheme (lower case) and its parameters."""

    scheme: str
    params: Mapping[str, str] = field(default_factory=dict)


def parse_challenge(header: str) -> Challenge | None:
    """Parse ``Bearer realm="…",service="…",scope="…"`` (or ``Basic realm=…``); None if empty."""
    scheme, _, rest = header.strip().partition(" ")
    if not scheme:
        return None
    params = {
        m[1].lower(): (m[2] if m[2] else m[3]).replace('\\"', '"')
        for m in _CHALLENGE_PARAM.finditer(rest)
    }
    return Challenge(scheme.lower(), params)


def basic_header(username: str, password: str) -> str:
    """Return an ``Authorization: Basic`` value."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


# Where a registry's username/password come from (sidecar/typing.py: the seam with sidecar/secrets).
CredentialSource = RegistryCredentials


@dataclass(frozen=True, slots=True)
class StaticCredentials:
    """A fixed username and password (basic auth, or a token used as the password)."""

    username: str
    password: str = field(repr=False)

    async def get(self) -> tuple[str, str]:
        """Return the configured pair."""
        return self.username, self.password

    def refused(self, credentials: tuple[str, str]) -> bool:
        """Nothing to refresh: the config holds only these."""
        return False


@dataclass(frozen=True, slots=True)
class UnwiredSecret:
    """A registry configured for a secret manager in a client built without one: always refuses.

    Going anonymous instead would hide the misconfiguration until a push is denied.
    """

    registry: str

    async def get(self) -> tuple[str, str]:
        """Raise SecretUnusable: this client cannot read the registry's secret."""
        raise SecretUnusable(
            f"registry {self.registry}: auth.use_secrets_manager is set, but this client has no "
            "secret manager to read it from"
        )

    def refused(self, credentials: tuple[str, str]) -> bool:
        """Never reached (get() always raises)."""
        return False


def aws_session(registry: RegistryConfig, *, sts_endpoint_url: str | None = None) -> Any:
    """Return the boto3 session of an ECR registry (blocking: call it in a thread).

    Its AWS profile and credentials file, in its region; with ``auth.role_arn``, the role
    assumed through STS (at ``sts_endpoint_url`` when given).
    """
    import boto3  # noqa: PLC0415 - boto3 is slow to import and only ECR registries need it
    import botocore.session  # noqa: PLC0415

    auth = registry.auth
    core = botocore.session.Session(profile=auth.profile or None)
    if auth.credentials_file:
        core.set_config_variable("credentials_file", auth.credentials_file)
    session = boto3.Session(botocore_session=core, region_name=registry.region or None)
    if auth.role_arn:
        sts = session.client("sts", endpoint_url=sts_endpoint_url)
        creds = sts.assume_role(RoleArn=auth.role_arn, RoleSessionName="policy-sidecar")[
            "Credentials"
        ]
        session = boto3.Session(
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
            region_name=registry.region or None,
        )
    return session


class EcrCredentials:
    """ECR: ``get_authorization_token`` through boto3, cached until shortly before it expires."""

    def __init__(self, registry: RegistryConfig, *, endpoint_url: str | None = None) -> None:
        """Use the registry's region, account id, profile, role and credentials file."""
        self._registry = registry
        self._endpoint_url = (
            endpoint_url or str(registry.metadata.get("ecr_endpoint_url") or "") or None
        )
        self._cached: tuple[str, str, float] | None = None
        self._lock = asyncio.Lock()

    def _fetch(self) -> tuple[str, str, float]:
        ecr = aws_session(self._registry, sts_endpoint_url=self._endpoint_url).client(
            "ecr", endpoint_url=self._endpoint_url
        )
        ids = [self._registry.account_id] if self._registry.account_id else []
        answer = ecr.get_authorization_token(**({"registryIds": ids} if ids else {}))
        data = answer["authorizationData"][0]
        user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
        expires = data.get("expiresAt")
        expiry = expires.timestamp() if isinstance(expires, datetime) else time.time() + 3600
        # An already-expired token (skewed clock, emulators) would be refetched on every request.
        expiry = max(expiry, time.time() + 2 * _REFRESH_MARGIN_S)
        return user, password, expiry

    async def get(self) -> tuple[str, str]:
        """Return ``("AWS", password)`` from ECR, fetching a new token when near expiry."""
        async with self._lock:
            if self._cached is None or self._cached[2] - _REFRESH_MARGIN_S < time.time():
                try:
                    self._cached = await asyncio.to_thread(self._fetch)
                except Exception as exc:  # boto3 raises many unrelated types; all mean "no token"
                    raise RegistryError(
                        f"registry {self._registry.name}: ECR authorization token: "
                        f"{type(exc).__name__}: {exc}",
                        status=401,
                    ) from exc
            return self._cached[0], self._cached[1]

    def refused(self, credentials: tuple[str, str]) -> bool:
        """Drop a refused token (revoked early): the next :meth:`get` asks ECR for a new one."""
        cached = self._cached
        if cached is None:
            return False
        if (cached[0], cached[1]) == credentials:
            self._cached = None
        return True


class GcpCredentials:
    """GCP: a google-auth access token presented as user ``oauth2accesstoken``."""

    def __init__(
        self, registry_name: str, credentials: Any, *, load: Callable[[], Any] | None = None
    ) -> None:
        """Wrap a ``google.auth.credentials.Credentials`` object (refreshed when invalid).

        With ``load`` instead, the credentials are loaded on first use: a missing service-account
        file then fails that registry's requests, naming the file, not the sidecar's startup.
        """
        self._name = registry_name
        self._credentials = credentials
        self._load = load
        self._lock = asyncio.Lock()

    @classmethod
    def for_registry(cls, registry: RegistryConfig) -> GcpCredentials:
        """Load, on first use, ``auth.credentials_file``'s service account, else default credentials."""

        def load() -> Any:
            import google.auth  # noqa: PLC0415 - only GCP registries need google-auth loaded
            from google.oauth2 import service_account  # noqa: PLC0415

            scopes = ["https://www.googleapis.com/auth/cloud-platform"]
            if registry.auth.credentials_file:
                return service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
                    registry.auth.credentials_file, scopes=scopes
                )
            creds, _ = google.auth.default(scopes=scopes)
            return creds

        return cls(registry.name, None, load=load)

    async def _loaded(self) -> Any:
        if self._credentials is None and self._load is not None:
            try:
                self._credentials = await asyncio.to_thread(self._load)
            except Exception as exc:  # DefaultCredentialsError, OSError, ValueError
                raise RegistryError(
                    f"registry {self._name}: auth: GCP credentials: {exc}", status=401
                ) from exc
        return self._credentials

    async def get(self) -> tuple[str, str]:
        """Return ``("oauth2accesstoken", access_token)``, refreshing an expired token first."""
        async with self._lock:
            credentials = await self._loaded()
            if not credentials.valid or not credentials.token:
                from google.auth.transport.requests import Request  # noqa: PLC0415

                try:
                    await asyncio.to_thread(credentials.refresh, Request())
                except Exception as exc:  # RefreshError, TransportError: no token either way
                    raise RegistryError(
                        f"registry {self._name}: GCP access token: {type(exc).__name__}: {exc}",
                        status=401,
                    ) from exc
            return "oauth2accesstoken", str(credentials.token)

    def refused(self, credentials: tuple[str, str]) -> bool:
        """google-auth refreshes by expiry itself; a refused live token is not asked for again."""
        return False


def credentials_for(registry: RegistryConfig) -> CredentialSource | None:
    """Return the credential source ``registry.auth``/``registry.type`` configure (None: anonymous)."""
    auth = registry.auth
    if auth.use_secrets_manager:
        # The composition root hands such a registry its secret's credentials; a client built
        # without them must fail loudly, never fall back to anonymous.
        return UnwiredSecret(registry.name)
    kind = auth.type.strip().lower()
    if kind in ("", "anonymous", "none") and registry.type.lower() in _AWS | _GCP:
        kind = "" if auth.username else registry.type.lower()
    if kind in _AWS:
        return EcrCredentials(registry)
    if kind in _GCP:
        return GcpCredentials.for_registry(registry)
    if kind == "token" and auth.token:
        return StaticCredentials(auth.username or "oauth2", auth.token)
    if auth.username:
        return StaticCredentials(auth.username, auth.password or auth.token)
    return None


class Authenticator:
    """Chooses the Authorization header per request scope from the registry's last challenge."""

    def __init__(
        self,
        registry_name: str,
        credentials: CredentialSource | None,
        fetch_token: TokenFetch,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Start without a challenge: credentials (if any) go as Basic until the registry objects."""
        self._name = registry_name
        self._credentials = credentials
        self._fetch_token = fetch_token
        self._clock = clock
        self.challenge: Challenge | None = None
        self._tokens: dict[tuple[str, ...], tuple[str, float]] = {}
        self._lock = asyncio.Lock()
        # The last Basic header sent and the credentials in it: a 401 to it marks them refused.
        self._basic: tuple[str, tuple[str, str]] | None = None

    async def credentials(self) -> tuple[str, str] | None:
        """The registry's own (user, secret), as its source gives them now (None: anonymous)."""
        return await self._credentials.get() if self._credentials is not None else None

    async def header(self, scopes: tuple[str, ...]) -> str | None:
        """Return the Authorization value for a request needing ``scopes`` (None: send none)."""
        challenge = self.challenge
        if challenge is None or challenge.scheme == "basic":
            if self._credentials is None:
                return None
            credentials = await self._credentials.get()
            header = basic_header(*credentials)
            self._basic = (header, credentials)
            return header
        if challenge.scheme != "bearer":
            return None
        key = tuple(sorted(set(scopes)))
        cached = self._tokens.get(key)
        if cached is not None and cached[1] > self._clock():
            return f"Bearer {cached[0]}"
        async with self._lock:
            cached = self._tokens.get(key)
            if cached is None or cached[1] <= self._clock():
                cached = await self._token(challenge, key)
                self._tokens[key] = cached
        return f"Bearer {cached[0]}"

    async def _token(self, challenge: Challenge, scopes: tuple[str, ...]) -> tuple[str, float]:
        realm = challenge.params.get("realm", "")
        if not realm:
            raise RegistryError(
                f"registry {self._name}: Bearer challenge without a realm", status=401
            )
        params: dict[str, Any] = {"scope": list(scopes)} if scopes else {}
        if challenge.params.get("service"):
            params["service"] = challenge.params["service"]
        creds = await self._credentials.get() if self._credentials else None
        try:
            answer = await self._fetch_token(realm, params, basic_header(*creds) if creds else None)
        except RegistryError as exc:
            # The token service refused our credentials: a rotated secret is read again, and
            # the exchange tried once more with what it holds now (once: never a loop).
            if exc.status != 401 or creds is None or self._credentials is None:
                raise
            if not self._credentials.refused(creds):
                raise
            creds = await self._credentials.get()
            answer = await self._fetch_token(realm, params, basic_header(*creds))
        token = answer.get("token") or answer.get("access_token")
        if not token:
            raise RegistryError(
                f"registry {self._name}: token endpoint {realm} sent no token", status=401
            )
        ttl = float(answer.get("expires_in") or _DEFAULT_TOKEN_TTL_S)
        return str(token), self._clock() + max(1.0, ttl - min(_REFRESH_MARGIN_S, ttl / 4))

    def learn(self, www_authenticate: str, sent: str | None = None) -> bool:
        """Record a 401's challenge; True when retrying (once) can succeed.

        ``sent`` is the Authorization header the refused request carried: Basic credentials the
        registry refused are dropped from their source (a rotated secret is read again).
        """
        challenge = parse_challenge(www_authenticate)
        if challenge is None:
            return False
        changed = self.challenge is None or self.challenge.scheme != challenge.scheme
        self.challenge = challenge
        if challenge.scheme == "bearer":
            # A token we hold was refused (revoked, or too narrow): drop them all and ask again.
            had_tokens = bool(self._tokens)
            self._tokens.clear()
            return changed or had_tokens
        if self._credentials is None:
            return False
        basic = self._basic
        refreshed = (
            challenge.scheme == "basic"
            and basic is not None
            and sent == basic[0]
            and self._credentials.refused(basic[1])
        )
        return changed or refreshed
