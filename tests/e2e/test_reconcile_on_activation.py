"""A serving sidecar reconciles when a new bundle revision activates (``policy.reconcile.on_revision``).

The sidecar's managed OPA pulls signed bundles from the built-in HTTP bundle store; a revision
published there is seen by the revision watcher, which triggers a reconcile plan — once per
revision, recorded on that revision's lease in the job store. The case config's registries are a
closed port: the plan reports them unreadable, which is all this test needs of them (the plan
itself is tested on real registries in test_reconcile_triggers.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sidecar._proto import policy_pb2 as pb
from sidecar.bundles.keys import generate_keypair
from sidecar.config import ReconcileSettings
from sidecar.config._admin import AdminPublishSettings
from tests.support.admin import admin_config
from tests.support.bundle_stores import BundleStore, bundle_store
from tests.support.opa import SigningKeys
from tests.support.pulling import build_revision, pulling_config, signed_config
from tests.support.sidecar import RunningSidecar, running_sidecar

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

_DEADLINE_S = 60.0


@contextlib.asynccontextmanager
async def _pulling_sidecar(
    work: Path, on_revision: str
) -> AsyncIterator[tuple[RunningSidecar, BundleStore]]:
    keys = SigningKeys(*generate_keypair(work / "keys"))
    async with bundle_store("http", work / "http") as store:
        config = admin_config(work / "state", publish=AdminPublishSettings(token=store.token))
        config = pulling_config(signed_config(keys, config), store, work / "state")
        settings = ReconcileSettings(sources=("ci",), on_revision=on_revision)  # type: ignore[arg-type]
        config = dataclasses.replace(
            config, policy=dataclasses.replace(config.policy, reconcile=settings)
        )
        await store.publish(build_revision(config, work / "built", "boot"))
        async with running_sidecar(config) as running:
            await _until_decisions_carry(running, "boot")
            yield running, store


async def _until_decisions_carry(running: RunningSidecar, revision: str) -> None:
    deadline = time.monotonic() + _DEADLINE_S
    request = pb.DecideRequest(image=pb.Image(registry="ci", repository="team/app", tag="dev-1"))
    while (answer := await running.stub.Decide(request)).bundle_revision != revision:
        assert time.monotonic() < deadline, f"still {answer.bundle_revision!r}, not {revision!r}"
        await asyncio.sleep(0.05)


def _triggered(running: RunningSidecar, mode: str) -> float:
    value = running.sidecar.telemetry.metrics_registry.get_sample_value(
        "policy_sidecar_reconcile_triggered_total",
        {"trigger": "revision", "mode": mode, "outcome": "ok"},
    )
    return value or 0.0


async def test_an_activated_revision_triggers_one_reconcile_plan(tmp_path: Path) -> None:
    async with _pulling_sidecar(tmp_path, "plan") as (running, store):
        parts = running.sidecar.parts
        assert parts is not None
        # The revision the sidecar started on is no activation.
        assert _triggered(running, "plan") == 0
        await store.publish(build_revision(running.sidecar.config, tmp_path / "r1", "r1"))
        await _until_decisions_carry(running, "r1")
        deadline = time.monotonic() + _DEADLINE_S
        while await parts.store.lease_last_run("reconcile-revision:r1") is None:
            assert time.monotonic() < deadline, "no reconcile ran for revision r1"
            await asyncio.sleep(0.1)
        assert _triggered(running, "plan") == 1
        assert await parts.store.lease_last_run("reconcile-revision:boot") is None
        # The plan's gauges were set by that run (every registry of the case config is closed).
        gauge = running.sidecar.telemetry.metrics_registry.get_sample_value(
            "policy_sidecar_reconcile_plan_actions", {"kind": "copy"}
        )
        assert gauge == 0


async def test_on_revision_off_triggers_nothing(tmp_path: Path) -> None:
    async with _pulling_sidecar(tmp_path, "off") as (running, store):
        parts = running.sidecar.parts
        assert parts is not None and running.sidecar.revision_trigger is None
        await store.publish(build_revision(running.sidecar.config, tmp_path / "r1", "r1"))
        await _until_decisions_carry(running, "r1")
        watcher = running.sidecar.revisions
        assert watcher is not None
        deadline = time.monotonic() + _DEADLINE_S
        while await watcher.check() != "r1":
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)
        assert await parts.store.lease_last_run("reconcile-revision:r1") is None
        assert _triggered(running, "plan") == 0
