"""The registry prober against real docker-registry processes stopped and started under it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from sidecar.config import Config, HealthSettings
from sidecar.enrich import StaticEnricher
from sidecar.errors import RegistryUnavailable
from sidecar.health import HealthMonitor, HealthState, ProbedHealth, PullResolver
from sidecar.model.decision import Caller, DecideRequest, ImageRef
from sidecar.oci import RegistryClients
from sidecar.store import SqlJobStore
from sidecar.testing import CapturedLogs
from tests.support.images import push_image, registry_config
from tests.support.registry import RegistryServer, registry_server

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

FAST = HealthSettings(failure_threshold=2, success_threshold=2, min_dwell_s=0.0, timeout_s=2.0)


class Clock:
    """A monotonic clock moved by hand (for the minimum dwell)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Outage:
    """One real registry that the test stops and starts again on the same port and data."""

    def __init__(self, server: RegistryServer, stack: contextlib.ExitStack) -> None:
        self.server, self._stack = server, stack
        self.port = int(server.host.rpartition(":")[2])

    def stop(self) -> None:
        self.server.stop()

    def start(self) -> None:
        self.server = self._stack.enter_context(
            registry_server(
                self.server.root,
                username=self.server.username,
                password=self.server.password,
                port=self.port,
            )
        )


@pytest.fixture
def registries(tmp_path: Path) -> Iterator[tuple[Outage, RegistryServer]]:
    """``eu`` (basic auth, will go down) and ``us`` (stays up)."""
    with contextlib.ExitStack() as stack:
        eu = stack.enter_context(
            registry_server(tmp_path / "eu", username="probe", password="s3cret-probe")
        )
        us = stack.enter_context(registry_server(tmp_path / "us"))
        yield Outage(eu, stack), us


@contextlib.asynccontextmanager
async def prober(
    eu: RegistryServer,
    us: RegistryServer,
    store: SqlJobStore,
    settings: HealthSettings = FAST,
    **options: object,
) -> AsyncIterator[tuple[HealthMonitor, Config, CollectorRegistry]]:
    """A monitor (rounds driven by the test) over our OCI clients for the two registries."""
    config = Config(
        registries=(
            registry_config("eu", eu.url, username=eu.username, password=eu.password),
            registry_config("us", us.url),
        )
    )
    clients = RegistryClients(config.registries, timeout_s=settings.timeout_s)
    metrics = CollectorRegistry()

    async def ping(name: str) -> float:
        return await clients.get(name).ping()

    monitor = HealthMonitor(
        ["eu", "us"],
        ping,
        settings,
        ledger=store,
        metrics_registry=metrics,
        **options,  # type: ignore[arg-type]
    )
    try:
        yield monitor, config, metrics
    finally:
        await monitor.stop()
        await clients.close()


async def _healthy_in_decision(monitor: HealthMonitor, config: Config, **request: object) -> bool:
    enricher = StaticEnricher(config, extra_sources=(ProbedHealth(monitor),))
    # Stating registry_health takes an override role (docs/facts.md): an operator insisting.
    operator = Caller("operator", roles=("fact-override",))
    image = ImageRef("us", "a/b", "v1")
    draft = await enricher.enrich(DecideRequest(image, caller=operator, **request))  # type: ignore[arg-type]
    return next(r.healthy for r in draft.registries if r.name == "eu")


async def test_a_stopped_registry_goes_down_after_the_threshold_and_comes_back(
    registries: tuple[Outage, RegistryServer], store: SqlJobStore
) -> None:
    eu, us = registries
    async with prober(eu.server, us, store) as (monitor, config, metrics):
        first = await monitor.probe_round()  # first contact, through eu's basic auth
        assert {(t.registry, t.state) for t in first} == {
            ("eu", HealthState.HEALTHY), ("us", HealthState.HEALTHY),
        }  # fmt: skip
        eu.stop()
        with CapturedLogs("info") as logs:
            assert await monitor.probe_round() == []  # one failure is not an outage
            [down] = await monitor.probe_round()
        assert (down.registry, down.state, down.consecutive) == ("eu", HealthState.UNHEALTHY, 2)
        assert "unreachable" in down.error
        [event] = [e for e in logs.events if e["event"] == "registry_health_changed"]
        assert (event["registry"], event["previous"], event["state"]) == (
            "eu", "healthy", "unhealthy",
        )  # fmt: skip
        assert event["level"] == "warning" and "unreachable" in str(event["error"])
        assert metrics.get_sample_value("policy_sidecar_registry_healthy", {"registry": "eu"}) == 0
        assert metrics.get_sample_value("policy_sidecar_registry_healthy", {"registry": "us"}) == 1
        failed = metrics.get_sample_value(
            "policy_sidecar_registry_probe_seconds_count",
            {"registry": "eu", "outcome": "registry_unavailable"},
        )
        assert failed == 2
        # Decisions see it down; what a caller observed and supplied still wins.
        assert await _healthy_in_decision(monitor, config) is False
        assert await _healthy_in_decision(monitor, config, registry_health={"eu": True}) is True

        eu.start()
        assert await monitor.probe_round() == []
        [up] = await monitor.probe_round()
        assert (up.registry, up.state, up.recovered) == ("eu", HealthState.HEALTHY, True)
        assert metrics.get_sample_value("policy_sidecar_registry_healthy", {"registry": "eu"}) == 1
        assert await _healthy_in_decision(monitor, config) is True
        eu.stop()
        await monitor.probe_round()
        await monitor.probe_round()

    # A restarted sidecar starts from the remembered state: eu is still failed over.
    async with prober(eu.server, us, store) as (restarted, config, _):
        await restarted.start()
        assert restarted.state("eu") is HealthState.UNHEALTHY
        assert await _healthy_in_decision(restarted, config) is False
        assert restarted.state("us") is HealthState.HEALTHY


async def test_a_flapping_registry_does_not_thrash_decisions(
    registries: tuple[Outage, RegistryServer], store: SqlJobStore
) -> None:
    eu, us = registries
    clock = Clock()
    settings = HealthSettings(failure_threshold=2, success_threshold=2, min_dwell_s=30.0)
    async with prober(eu.server, us, store, settings, clock=clock) as (monitor, _, metrics):
        await monitor.probe_round()
        # Down and up between every probe: never two failures in a row, never a flip.
        for _ in range(3):
            eu.stop()
            assert await monitor.probe_round() == []
            eu.start()
            assert await monitor.probe_round() == []
        assert monitor.state("eu") is HealthState.HEALTHY
        eu.stop()
        await monitor.probe_round()
        assert [t.state for t in await monitor.probe_round()] == [HealthState.UNHEALTHY]
        # Back at once, but within the minimum dwell: it stays failed over until the dwell ends.
        eu.start()
        clock.now += 5
        assert await monitor.probe_round() == []
        assert await monitor.probe_round() == []
        clock.now += 30
        assert [t.state for t in await monitor.probe_round()] == [HealthState.HEALTHY]
        flips = metrics.get_sample_value(
            "policy_sidecar_registry_health_transitions_total",
            {"registry": "eu", "state": "unhealthy"},
        )
        assert flips == 1


async def test_resolve_pull_says_unavailable_when_only_a_down_registry_holds_it(
    registries: tuple[Outage, RegistryServer], store: SqlJobStore
) -> None:
    eu, us = registries
    async with prober(eu.server, us, store) as (monitor, config, _):
        await monitor.probe_round()
        clients = RegistryClients(config.registries)
        try:
            pushed = await push_image(clients.get("eu"), "team/app", seed=7)
            resolver = PullResolver(config.registries, clients, health=monitor, store=store)
            image = ImageRef("eu", "team/app", digest=pushed.digest)
            answer = await resolver.resolve(image, "us-east-1")
            assert (answer.chosen.registry, answer.chosen.proximity) == ("eu", "remote")
            assert answer.chosen.pull_ref == f"{eu.server.host}/team/app@{pushed.digest}"
            eu.stop()
            await monitor.probe_round()
            await monitor.probe_round()
            with pytest.raises(RegistryUnavailable) as err:
                await resolver.resolve(image, "us-east-1")
        finally:
            await clients.close()
    assert "eu/team/app: registry is unhealthy" in err.value.message
    assert "us/team/app: does not hold the digest" in err.value.message
