"""Sidecars whose managed OPA pulls bundles from a store, and decisions flowing through them.

Shared by tests/integration/test_sidecar_bundle_pull*.py and ``tests.bench.propagation
--via-sidecars``: configs in pull mode (``policy.bundle.service``) for a :class:`BundleStore`,
production bundles built and signed at a chosen revision, and :class:`DecisionFeed`, which keeps
``Decide`` calls going against one sidecar and notes when each revision first answered.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from sidecar._proto import policy_pb2 as pb
from sidecar.app.bundle import build_local_bundle
from sidecar.app.sidecar import Sidecar
from sidecar.bundles.build import BuiltBundle
from sidecar.config import Config, load_config
from sidecar.config._bundle import BundleServiceSettings
from tests.support.bundle_stores import BundleStore
from tests.support.opa import SigningKeys
from tests.support.sidecar import RunningSidecar, isolated_config

__all__ = [
    "CASES_CONFIG",
    "DecisionFeed",
    "active_revisions",
    "build_revision",
    "feeding",
    "pulling_config",
    "signed_config",
]

CASES_CONFIG = Path(__file__).resolve().parents[1] / "cases" / "sidecar.yaml"
_REQUEST = pb.DecideRequest(
    image=pb.Image(
        registry="ci", repository="team/app", tag="dev-1.0", digest="sha256:" + "c" * 64
    ),
    caller=pb.Caller(subject="propagation-test"),
)


def signed_config(keys: SigningKeys, base: Config | None = None) -> Config:
    """Return the cases config (or ``base``) signing and verifying bundles with ``keys``."""
    config = base or load_config(CASES_CONFIG)
    bundle = dataclasses.replace(
        config.policy.bundle, signing_key=str(keys.private), verification_key=str(keys.public)
    )
    return dataclasses.replace(config, policy=dataclasses.replace(config.policy, bundle=bundle))


def build_revision(config: Config, work: Path, revision: str) -> BuiltBundle:
    """Build and sign the production bundle (rego/, bundles/default, legacy rules) as ``revision``."""
    work.mkdir(parents=True, exist_ok=True)
    return build_local_bundle(config, output=work / f"{revision}.tar.gz", revision=revision).bundle


def pulling_config(
    config: Config,
    store: BundleStore,
    state_dir: Path,
    *,
    min_delay_s: int = 1,
    max_delay_s: int = 2,
    long_poll_timeout_s: int = 10,
    read_token: str | None = None,
) -> Config:
    """Return ``config`` on free ports under ``state_dir``, its managed OPA pulling from ``store``.

    ``read_token``: the bearer token an http store wants for downloads (its upload token is not).
    """
    service = BundleServiceSettings(
        url=store.target,
        store=store.kind,
        endpoint_url=store.endpoint,
        credentials={"s3": "environment", "gcs": "none", "http": "none"}[store.kind],
        token=read_token,
        min_delay_s=min_delay_s,
        max_delay_s=max_delay_s,
        long_poll_timeout_s=long_poll_timeout_s,
    )
    isolated = isolated_config(config, state_dir)
    bundle = dataclasses.replace(isolated.policy.bundle, service=service)
    return dataclasses.replace(isolated, policy=dataclasses.replace(isolated.policy, bundle=bundle))


@dataclass
class DecisionFeed:
    """Sends ``Decide`` to one sidecar back to back; records when each revision first answered."""

    running: RunningSidecar
    first_seen: dict[str, float] = field(default_factory=dict)
    answers: list[pb.DecideResponse] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # monotonic answer time of each

    async def run(self) -> None:
        """Decide until cancelled (a failed call fails the feed: decisions must keep flowing)."""
        while True:
            response = await self.running.stub.Decide(_REQUEST, timeout=10)
            now = time.monotonic()
            self.first_seen.setdefault(response.bundle_revision, now)
            self.answers.append(response)
            self.times.append(now)

    async def until(
        self,
        revision: str,
        task: asyncio.Task[None],
        *,
        timeout_s: float,
        since: float = 0.0,
    ) -> float:
        """Return when the first decision carrying ``revision`` answered (monotonic, ≥ since)."""
        deadline = time.monotonic() + timeout_s
        index = bisect.bisect_left(self.times, since)
        while True:
            while index < len(self.answers):
                if self.answers[index].bundle_revision == revision:
                    return self.times[index]
                index += 1
            if task.done():
                task.result()  # re-raise why the feed stopped
            if time.monotonic() > deadline:
                seen = sorted(self.first_seen)
                raise TimeoutError(f"no decision carried {revision!r} in {timeout_s}s: {seen}")
            await asyncio.sleep(0.005)

    async def more(self, count: int, task: asyncio.Task[None], *, timeout_s: float) -> None:
        """Wait until ``count`` more decisions have answered."""
        target, deadline = len(self.answers) + count, time.monotonic() + timeout_s
        while len(self.answers) < target:
            if task.done():
                task.result()
            assert time.monotonic() < deadline, f"decisions stalled at {len(self.answers)}"
            await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def feeding(
    sidecars: Sequence[RunningSidecar],
) -> AsyncIterator[list[tuple[DecisionFeed, asyncio.Task[None]]]]:
    """Keep decisions flowing through every sidecar while the block runs."""
    feeds = [DecisionFeed(running) for running in sidecars]
    tasks = [asyncio.create_task(feed.run()) for feed in feeds]
    try:
        yield list(zip(feeds, tasks, strict=True))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks)


async def active_revisions(sidecar: Sidecar) -> dict[str, float]:
    """Scrape ``/metrics``: revision → value of ``policy_sidecar_bundle_revision_info``."""
    metrics = sidecar.metrics
    assert metrics is not None, "the sidecar runs without /metrics"
    url = f"http://127.0.0.1:{metrics.port}/metrics"
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
        session.get(url) as response,
    ):
        text = await response.text()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("policy_sidecar_bundle_revision_info{"):
            labels, _, value = line.rpartition(" ")
            revision = labels.split('revision="', 1)[1].split('"', 1)[0]
            out[revision] = float(value)
    return out
