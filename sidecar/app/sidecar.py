"""The composition root: builds every part of a running sidecar from one Config, stops them in reverse."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

from opentelemetry.sdk.trace.export import SpanExporter

from sidecar.api.server import BoundListener, GrpcServer
from sidecar.app._shutdown import bounded_exit, bounded_stop
from sidecar.app.events import (
    EventHandlers,
    SqsRuntime,
    event_handlers,
    inbox_processor,
    sqs_pollers,
)
from sidecar.app.governance import AdminRuntime, admin_runtime, data_plane_gate, listeners
from sidecar.app.health import HealthRuntime, health_runtime
from sidecar.app.policy import PolicyRuntime, decision_service, policy_runtime
from sidecar.app.reconcile import build_reconciler
from sidecar.app.replication import ReplicationParts, replication_parts
from sidecar.app.retention import retention_task
from sidecar.audit import AuditTrail
from sidecar.bundles.hosted import hosted_bundle_server
from sidecar.bundles.server import BundleServer
from sidecar.config import Config, Cron, is_loopback
from sidecar.decide import DecisionService
from sidecar.policy.revisions import RevisionWatcher, watch_revisions
from sidecar.reconcile import (
    LEASE,
    ExpiryTrigger,
    Reconciler,
    RevisionTrigger,
    Scheduler,
    TriggerMetrics,
    scheduled,
)
from sidecar.replicate.backlog import PolicyBacklog, policy_backlog
from sidecar.replicate.redecide import RevisionGuard
from sidecar.replicate.service import ReplicationService
from sidecar.sensitive.runtime import load_request_sealer
from sidecar.telemetry import MetricsServer, Telemetry, get_logger
from sidecar.webhooks import WebhookServer

__all__ = ["Sidecar", "run_forever"]

_log = get_logger("sidecar.app")


def _rule_run(
    reconciler: Reconciler, rule: str, mode: str, metrics: TriggerMetrics
) -> Callable[[], Awaitable[object]]:
    """One scheduled run of a legacy rule's reconcile, counted by outcome."""

    async def run() -> object:
        try:
            result = await reconciler.run(dry_run=mode != "apply")
        except Exception:
            metrics.runs.labels("rule_schedule", mode, "error").inc()
            raise
        metrics.runs.labels("rule_schedule", mode, "ok").inc()
        _log.info("legacy rule reconcile finished", rule=rule, mode=mode)
        return result

    return run


def _activation_actor(config: Config, opa_url: str) -> str:
    """Name who served a revision activated outside PolicyAdmin (the audit event's actor)."""
    service = config.policy.bundle.service
    if service is not None:
        return f"bundle-service:{service.url}"
    return f"opa:{opa_url}"


class Sidecar:
    """A running sidecar: policy runtime, decisions, replication, gRPC, webhooks and /metrics."""

    def __init__(self, config: Config, *, span_exporter: SpanExporter | None = None) -> None:
        self.config = config
        settings = config.policy
        self.telemetry = Telemetry(
            settings.telemetry.service_name,
            otlp_endpoint=settings.telemetry.otlp_endpoint,
            span_exporter=span_exporter,
        )
        # One family for every triggered reconcile (revision activations, legacy rule schedules).
        self._trigger_metrics = TriggerMetrics(self.telemetry.metrics_registry)
        self._stack = contextlib.AsyncExitStack()
        self.bundle_server: BundleServer | None = None
        self.runtime: PolicyRuntime | None = None
        self.decisions: DecisionService | None = None
        self.replication: ReplicationService | None = None
        self.parts: ReplicationParts | None = None
        self.health: HealthRuntime | None = None
        self.webhooks: WebhookServer | None = None
        self.sqs: SqsRuntime | None = None
        self.grpc: GrpcServer | None = None
        self.admin: AdminRuntime | None = None
        self.admin_tls: BoundListener | None = None  # policy.admin.listen, once bound
        self.data_tls: BoundListener | None = None  # policy.auth.listen, once bound
        self.revisions: RevisionWatcher | None = None
        self.backlog: PolicyBacklog | None = None
        self.metrics: MetricsServer | None = None
        self.reconciler: Reconciler | None = None
        self.revision_trigger: RevisionTrigger | None = None
        self.expiry_trigger: ExpiryTrigger | None = None

    async def start(self) -> None:
        """Start OPA (or connect), the job store and workers, gRPC, webhooks and /metrics."""
        settings = self.config.policy
        try:
            # Before OPA: this sidecar's own OPA may pull from the bundle server it hosts.
            self.bundle_server = await self._stack.enter_async_context(
                hosted_bundle_server(settings.bundle.serve, Path(settings.state_dir))
            )
            self.runtime = await self._stack.enter_async_context(policy_runtime(self.config))
            self.parts = await self._stack.enter_async_context(
                replication_parts(self.config, self.telemetry)
            )
            self.decisions = self._decision_service(self.runtime, self.parts)
            if self.runtime.bundle_revision:
                self.telemetry.metrics.set_active_revision(self.runtime.bundle_revision)
            # Before the watcher: every activation it sees outside PolicyAdmin is audited.
            self.admin = await self._stack.enter_async_context(
                admin_runtime(
                    self.config,
                    opa_url=self.runtime.url,
                    managed=self.runtime.managed,
                    registry=self.telemetry.metrics_registry,
                )
            )
            source = _activation_actor(self.config, self.runtime.url)
            admin_service = self.admin.service
            decisions = self.decisions

            async def audit_activation(previous: str, revision: str) -> None:
                await admin_service.observe_activation(previous, revision, source)
                if self.revision_trigger is not None:  # after the audit: it may take long
                    await self.revision_trigger.activated(previous, revision)

            self.revisions = await self._stack.enter_async_context(
                watch_revisions(
                    self.runtime.url,
                    self.telemetry.metrics,
                    timeout_s=settings.opa.timeout_ms / 1000,
                    initial=self.runtime.bundle_revision,
                    on_change=audit_activation,
                    token=self.runtime.token,
                    # Each poll re-asserts the served revision: the decision cache follows it.
                    on_revision=decisions.note_revision,
                )
            )
            await self._start_metrics()
            self.replication = ReplicationService(
                decisions=self.decisions,
                store=self.parts.store,
                resolve_digest=self.parts.resolve_digest,
                wake=self.parts.pool.wake,
                sealer=await load_request_sealer(
                    settings.sensitive_data, masked_paths=len(settings.decision_records.mask)
                ),
            )
            self.health = await self._stack.enter_async_context(
                bounded_exit(
                    "health monitor", self._health(self.parts, self.decisions, self.replication)
                )
            )
            self.backlog = await self._stack.enter_async_context(
                bounded_exit(
                    "policy backlog",
                    policy_backlog(
                        self.parts.store,
                        self.replication,
                        interval_s=settings.replication.policy_retry_interval_s,
                    ),
                )
            )
            await self._stack.enter_async_context(
                bounded_exit(
                    "retention task",
                    retention_task(
                        self.parts.store,
                        self.admin.revisions,
                        settings.replication.retention,
                        self.telemetry.metrics_registry,
                        pull_window_s=settings.replication.pull_window,
                    ),
                )
            )
            self.reconciler = self._reconciler(
                self.runtime, self.parts, self.decisions, self.admin.audit
            )
            self.parts.pool.use_redecider(self._revision_guard(self.decisions, self.parts))
            await self.parts.pool.start()
            self._stack.push_async_callback(bounded_stop("worker pool", self.parts.pool.stop))
            await self._stack.enter_async_context(
                bounded_exit(
                    "reconcile schedules",
                    scheduled(self._scheduler(self.parts), *self._rule_schedulers(self.parts)),
                )
            )
            self._start_triggers(self.parts)
            await self._start_events(self.parts, self.replication)
            gate = await self._stack.enter_async_context(
                bounded_exit(
                    "data-plane gate",
                    data_plane_gate(
                        self.config,
                        opa_url=self.runtime.url,
                        registry=self.telemetry.metrics_registry,
                        opa_token=self.runtime.token,
                    ),
                )
            )
            self.grpc = GrpcServer(
                self.decisions,
                settings.listen,
                replication=self.replication,
                resolver=self.health.resolver,
                admin=self.admin.service,
                max_message_bytes=settings.limits.max_message_bytes,
                admin_max_message_bytes=self.admin.max_message_bytes,
                listeners=await listeners(self.config),
                gate=gate,
                reconciler=self.reconciler,
                metrics=self.telemetry.metrics,
                tracer_provider=self.telemetry.provider,
            )
            await self.grpc.start()
            self._stack.push_async_callback(bounded_stop("grpc server", self.grpc.stop))
            self.admin_tls = self.grpc.bound.get("admin-tls")
            self.data_tls = self.grpc.bound.get("tls")
            if gate is None:
                _log.warning(
                    "the data plane is unauthenticated: PolicyService trusts every caller's "
                    "claimed caller (subject, tenant, roles); keep policy.listen on loopback, "
                    "or configure policy.auth",
                    listen=settings.listen,
                )
            elif not is_loopback(settings.listen):
                _log.warning(
                    "policy.listen is plaintext and not loopback: bearer tokens sent there can be "
                    "read on the network; prefer the mTLS listener (policy.auth.listen)",
                    listen=settings.listen,
                )
            await self.grpc.set_serving(True)
        except BaseException:
            await self.stop()
            raise
        _log.info(
            "sidecar ready",
            grpc_port=self.grpc.port,
            metrics_port=self.metrics.port if self.metrics else None,
            webhook_port=self.webhooks.port if self.webhooks else None,
            opa_url=self.runtime.url,
            bundle_revision=self.runtime.bundle_revision,
            managed_opa=self.runtime.managed is not None,
            fail_mode=settings.fail_mode,
        )

    def _health(
        self, parts: ReplicationParts, decisions: DecisionService, replication: ReplicationService
    ) -> contextlib.AbstractAsyncContextManager[HealthRuntime]:
        return health_runtime(
            self.config,
            monitor=parts.health,
            store=parts.store,
            clients=parts.clients,
            decisions=decisions,
            replication=replication,
            wake=parts.pool.wake,
        )

    def _scheduler(self, parts: ReplicationParts) -> Scheduler | None:
        """The scheduled reconcile (``policy.reconcile.schedule``), None when not configured."""
        settings = self.config.policy.reconcile
        reconciler = self.reconciler
        if not settings.schedule or not settings.sources or reconciler is None:
            return None

        async def run() -> object:
            return await reconciler.run(dry_run=not settings.scheduled_apply)

        return Scheduler(
            Cron.parse(settings.schedule),
            run,
            parts.store,
            owner=parts.pool.worker_id,
            lease_s=settings.lease_s,
        )

    def _rule_schedulers(self, parts: ReplicationParts) -> list[Scheduler]:
        """A scheduled reconcile per legacy rule with a ``schedule``: its source repositories."""
        settings = self.config.policy.reconcile
        reconciler = self.reconciler
        schedulers: list[Scheduler] = []
        if reconciler is None:
            return schedulers
        metrics = self._trigger_metrics
        mode = "apply" if settings.scheduled_apply else "plan"
        for index, rule in enumerate(self.config.policy.legacy.rules):
            if not rule.schedule:
                continue
            sources = (rule.source_registry,) if rule.source_registry else settings.sources
            if not sources:
                _log.warning(
                    "legacy rule schedule ignored: the rule names no source_registry and "
                    "policy.reconcile.sources is empty",
                    rule=f"legacy-{index}",
                )
                continue
            scoped = reconciler.scoped(sources=sources, repositories=(rule.source_repository,))
            schedulers.append(
                Scheduler(
                    Cron.parse(rule.schedule),
                    _rule_run(scoped, f"legacy-{index}", mode, metrics),
                    parts.store,
                    owner=parts.pool.worker_id,
                    lease_s=settings.lease_s,
                    lease=f"{LEASE}-rule:legacy-{index}",
                )
            )
        return schedulers

    def _revision_guard(self, decisions: DecisionService, parts: ReplicationParts) -> RevisionGuard:
        """Queued and parked copies are decided again when the revision changed since, or when
        their decision is older than ``replication.redecide_after_s``."""
        watcher = self.revisions
        return RevisionGuard(
            decisions,
            parts.store,
            lambda: watcher.revision if watcher is not None else "",
            max_age_s=self.config.policy.replication.redecide_after_s,
            metrics_registry=self.telemetry.metrics_registry,
        )

    def _on_revision(self, parts: ReplicationParts) -> RevisionTrigger | None:
        """The reconcile a revision activation triggers (``policy.reconcile.on_revision``)."""
        settings = self.config.policy.reconcile
        reconciler = self.reconciler
        if settings.on_revision == "off" or not settings.sources or reconciler is None:
            return None

        async def run(dry_run: bool, since: str) -> object:
            return await reconciler.run(dry_run=dry_run, since=since)

        return RevisionTrigger(
            run,
            parts.store,
            mode=settings.on_revision,
            owner=parts.pool.worker_id,
            lease_s=settings.lease_s,
            metrics=self._trigger_metrics,
        )

    def _start_triggers(self, parts: ReplicationParts) -> None:
        """The reconciles a revision activation and a scan expiry trigger, stopped in bounds."""
        self.revision_trigger = self._on_revision(parts)
        if self.revision_trigger is not None:
            self._stack.push_async_callback(
                bounded_stop("revision trigger", self.revision_trigger.close)
            )
        if self.expiry_trigger is not None:
            self.expiry_trigger.start()
            self._stack.push_async_callback(
                bounded_stop("scan expiry trigger", self.expiry_trigger.close)
            )

    def _on_scan_expiry(
        self, runtime: PolicyRuntime, parts: ReplicationParts
    ) -> ExpiryTrigger | None:
        """The reconcile a scan expiry triggers (``policy.reconcile.on_scan_expiry``)."""
        settings = self.config.policy.reconcile
        if settings.on_scan_expiry == "off" or not settings.sources or runtime.opa is None:
            return None

        async def run(dry_run: bool) -> object:
            reconciler = self.reconciler  # built right after the trigger (it feeds the trigger)
            if reconciler is None:
                return None
            return await reconciler.run(dry_run=dry_run)

        return ExpiryTrigger(
            run,
            parts.store,
            runtime.opa,
            mode=settings.on_scan_expiry,
            owner=parts.pool.worker_id,
            lease_s=settings.lease_s,
            metrics=self._trigger_metrics,
            batch_size=settings.batch_size,
            timeout_s=settings.batch_timeout_s,
            coalesce_s=settings.scan_expiry_coalesce_s,
        )

    def _reconciler(
        self,
        runtime: PolicyRuntime,
        parts: ReplicationParts,
        decisions: DecisionService,
        audit: AuditTrail,
    ) -> Reconciler:
        """The Reconcile RPC's reconciler: this sidecar's clients, decisions, store and workers."""
        # First: the reconciler tells the scan expiry trigger what each of its plans decided.
        trigger = self.expiry_trigger = self._on_scan_expiry(runtime, parts)
        return build_reconciler(
            self.config, self.telemetry, runtime, parts, decisions=decisions, audit=audit,
            on_decided=trigger.learn if trigger is not None else None,
        )  # fmt: skip

    def _decision_service(self, runtime: PolicyRuntime, parts: ReplicationParts) -> DecisionService:
        return decision_service(self.config, self.telemetry, runtime, parts)

    async def _start_metrics(self) -> None:
        listen = self.config.policy.metrics_listen
        if not listen:
            return
        host, _, port = listen.rpartition(":")
        self.metrics = MetricsServer(
            self.telemetry.metrics_registry, host, int(port), ready=self._readiness
        )
        await self.metrics.start()
        self._stack.push_async_callback(bounded_stop("metrics server", self.metrics.stop))

    async def _start_events(self, parts: ReplicationParts, replication: ReplicationService) -> None:
        """The inbox's sources (webhook endpoints, SQS queues) and the one processor draining it."""
        settings = self.config.policy.replication
        if not settings.webhook.listen and not settings.sqs:
            return
        # Built once per process: the handlers register the propagation metric.
        handlers = event_handlers(self.config, replication, parts, self.telemetry)
        await self._start_webhooks(parts, handlers)
        await self._start_sqs(parts, handlers)

    async def _start_webhooks(self, parts: ReplicationParts, handlers: EventHandlers) -> None:
        webhook = self.config.policy.replication.webhook
        if not webhook.listen:
            return
        host, _, port = webhook.listen.rpartition(":")
        self.webhooks = WebhookServer(
            parts.store,
            self.config.registries,
            secret=webhook.secret,
            source_secrets={str(k): v for k, v in webhook.source_secrets.items()},
            retry_interval_s=webhook.retry_interval_s,
            max_attempts=webhook.max_attempts,
            pubsub=webhook.pubsub,
            owner=parts.pool.worker_id,
            lease_s=webhook.lease_s,
            on_push=handlers.on_push,
            on_rescan=handlers.on_rescan,
            on_delete=handlers.on_delete,
            host=host,
            port=int(port),
            metrics_registry=self.telemetry.metrics_registry,
        )
        await self.webhooks.start()
        self._stack.push_async_callback(bounded_stop("webhook server", self.webhooks.stop))

    async def _start_sqs(self, parts: ReplicationParts, handlers: EventHandlers) -> None:
        """Poll the SQS sources into the inbox (its processor: the endpoint's, else our own)."""
        if not self.config.policy.replication.sqs:
            return
        registry = self.telemetry.metrics_registry
        if self.webhooks is not None:
            processor = self.webhooks.processor
        else:
            processor = await self._stack.enter_async_context(
                bounded_exit(
                    "inbox processor",
                    inbox_processor(
                        self.config, parts.store, handlers, registry, owner=parts.pool.worker_id
                    ),
                )
            )
        self.sqs = await self._stack.enter_async_context(
            bounded_exit(
                "sqs pollers",
                sqs_pollers(self.config, parts.store, wake=processor.wake, registry=registry),
            )
        )

    def _readiness(self) -> tuple[bool, str]:
        if self.runtime is None or not self.runtime.ready():
            return False, "policy engine (OPA) is not ready"
        return True, "ready"

    async def stop(self) -> None:
        """Stop serving, then stop OPA; safe to call twice."""
        await self._stack.aclose()
        self.telemetry.shutdown()


async def run_forever(config: Config) -> None:
    """Run the sidecar until SIGINT/SIGTERM, then shut down gracefully."""
    sidecar = Sidecar(config)
    await sidecar.start()
    # Everything built at startup (the config, bundle data, imported modules: hundreds of
    # thousands of objects with 10,000 policies) lives as long as the process. Frozen, the
    # cyclic GC stops re-scanning it: a full collection over it took ~60 ms, a pause in the
    # middle of whichever decisions were running (issue 18, p99). Garbage first, then freeze.
    gc.collect()
    gc.freeze()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        _log.info("sidecar stopping")
        await sidecar.stop()
