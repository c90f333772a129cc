"""The policy runtime (an engine on the configured or a managed OPA) and the decision path on it."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sidecar.app.bundle import LocalBundle, build_local_bundle
from sidecar.app.health import health_sources
from sidecar.app.replication import ReplicationParts, registry_sources
from sidecar.bundles.pull import PullSource, prepare_pull
from sidecar.config import Config
from sidecar.decide import DecisionService
from sidecar.enrich import StaticEnricher, check_request_facts, trust_of, validate_request
from sidecar.fallback.modes import Fallback
from sidecar.masking import RecordMask
from sidecar.model.decision import DecideRequest
from sidecar.policy import ManagedOpa, OpaEngine, new_api_token
from sidecar.policy.decision_cache import CACHEABLE_PATH, DecisionCache
from sidecar.policy.opa_observability import distributed_tracing_args
from sidecar.policy.resilient import resilient_engine
from sidecar.records import DecisionRecords
from sidecar.sensitive.runtime import SensitiveRuntime, gated, keep_in_opa, load_sensitive_runtime
from sidecar.telemetry import Telemetry, get_logger, trace_endpoint
from sidecar.tools import find_tool
from sidecar.typing import PolicyEngine

__all__ = ["PolicyRuntime", "decision_service", "policy_runtime"]

_log = get_logger("sidecar.app")


@dataclass(frozen=True, slots=True)
class PolicyRuntime:
    """A ready policy engine plus what it runs on (the managed OPA, when the sidecar owns one)."""

    engine: PolicyEngine
    url: str
    managed: ManagedOpa | None
    bundle_revision: str
    sensitive: SensitiveRuntime | None = None
    # The managed OPA's API token (None: an external OPA); kept out of any repr or log.
    token: str | None = field(default=None, repr=False)
    # The REST engine itself: batch decisions and other documents (the reconciler's queries).
    opa: OpaEngine | None = None

    def ready(self) -> bool:
        """Return whether decisions can be served now (with the sensitive data, if configured)."""
        opa_ready = self.managed.ready if self.managed is not None else True
        return opa_ready and (self.sensitive is None or self.sensitive.loader.loaded)


@contextlib.asynccontextmanager
async def policy_runtime(config: Config) -> AsyncIterator[PolicyRuntime]:
    """Yield an engine on the configured OPA, or a managed OPA (local bundle, or pulled: service)."""
    opa, telemetry = config.policy.opa, config.policy.telemetry
    timeout_s = opa.timeout_ms / 1000
    # Per launch: every client of the managed OPA's API sends it (an external OPA: none).
    token = None if opa.address else new_api_token()
    # Decrypted first: a wrong key or a tampered file stops the startup before OPA runs.
    sensitive = await load_sensitive_runtime(config.policy.sensitive_data, opa_token=token)
    if opa.address:
        address = opa.address
        engine = OpaEngine(address, timeout_s=timeout_s)
        try:
            async with keep_in_opa(sensitive, lambda: address, load_now=True):
                yield PolicyRuntime(
                    gated(engine, sensitive, lambda: True),
                    address,
                    None,
                    "",
                    sensitive,
                    opa=engine,
                )
        finally:
            await engine.close()
        return
    pull, local = _bundle_source(config)
    managed = ManagedOpa(
        find_tool("opa", opa.binary),
        Path(local.bundle.path) if local else None,
        verification_key=local.verification_key if local else None,
        config_file=pull.config_file if pull else None,
        env=pull.env if pull else None,
        port=opa.port,
        startup_timeout_s=opa.startup_timeout_s,
        extra_args=(
            *distributed_tracing_args(
                trace_endpoint(telemetry.otlp_endpoint, os.environ),
                os.environ.get("OTEL_SERVICE_NAME") or telemetry.service_name,
            ),
            *opa.extra_args,
        ),
        on_launch=sensitive.loader.put if sensitive else None,
        api_token=token,
        decision_logs=opa.decision_logs,
    )
    async with managed:
        with _token_file(opa.token_file, managed.token):
            engine = OpaEngine(managed.url, timeout_s=timeout_s, token=managed.token)
            try:
                # Pulled: whatever OPA activated first (the store's bundle, or its persisted copy).
                revision = local.bundle.revision if local else await engine.active_revision()
                async with keep_in_opa(sensitive, lambda: managed.url, load_now=False):
                    yield PolicyRuntime(
                        gated(engine, sensitive, lambda: managed.ready),
                        managed.url,
                        managed,
                        revision,
                        sensitive,
                        managed.token,
                        opa=engine,
                    )
            finally:
                await engine.close()


@contextlib.contextmanager
def _token_file(path: str | None, token: str) -> Iterator[None]:
    """Write the managed OPA's API token to ``policy.opa.token_file`` (0600) while it runs."""
    if not path:
        yield
        return
    target = Path(path)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # also when an older file was created with another mode
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    try:
        yield
    finally:
        target.unlink(missing_ok=True)


def _bundle_source(config: Config) -> tuple[PullSource | None, LocalBundle | None]:
    """Return the store the managed OPA pulls from (policy.bundle.service), else build locally."""
    if config.policy.bundle.service is not None:
        pull = prepare_pull(config.policy.bundle, Path(config.policy.state_dir))
        _log.info("managed OPA pulls bundles", url=pull.url, opa_config=str(pull.config_file))
        return pull, None
    local = build_local_bundle(config)
    _log.info(
        "bundle built",
        bundle_revision=local.bundle.revision,
        path=str(local.bundle.path),
        digest=local.bundle.digest,
    )
    return None, local


def decision_service(
    config: Config, telemetry: Telemetry, runtime: PolicyRuntime, parts: ReplicationParts
) -> DecisionService:
    """Build the decision path (validate → enrich → policy → record) on ``runtime``."""
    settings = config.policy
    limits = settings.limits
    trust = trust_of(config)
    engine, cache = runtime.engine, None
    if settings.decision_cache.enabled and runtime.opa is not None:
        # The cacheable document answers the decision and the instants it holds until.
        managed = runtime.managed
        engine = gated(
            runtime.opa.at(CACHEABLE_PATH, wrap_as="decision"),
            runtime.sensitive,
            lambda: managed is None or managed.ready,
        )
        cache = DecisionCache(settings.decision_cache.max_entries)

    def validate(request: DecideRequest) -> None:
        validate_request(request, limits, config.inventory())
        # now/registry_health/tenant_usage/access need an override role: refused, not ignored.
        check_request_facts(request, trust)

    return DecisionService(
        enricher=StaticEnricher(
            config,
            # Observation first: probed health, registry facts; a request's registry_health
            # (a static source, override role only) still wins over the probe.
            extra_sources=(*health_sources(parts.health), *registry_sources(config, parts)),
            trust=trust,
        ),
        engine=resilient_engine(engine, settings.opa, telemetry.metrics),
        telemetry=telemetry,
        records=DecisionRecords(
            settings.decision_records.max_entries,
            settings.decision_records.ttl_s,
            max_bytes=settings.decision_records.max_bytes,
            mask=RecordMask(
                settings.decision_records.mask,
                runtime.sensitive.data.secrets if runtime.sensitive else (),
            ),
        ),
        validate=validate,
        engine_url=runtime.url,
        fallback=Fallback.from_config(
            config, sensitive=runtime.sensitive.data.document() if runtime.sensitive else None
        ),
        bundle_revision=runtime.bundle_revision,
        # The batch query bypasses the sensitive-data gate: one query each while that is on.
        batch_engine=runtime.opa if runtime.sensitive is None else None,
        cache=cache,
    )
