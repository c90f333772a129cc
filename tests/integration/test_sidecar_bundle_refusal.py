"""A tampered or unsigned bundle published to the store never reaches a pulling sidecar's decisions.

Per store (S3 on moto, GCS on fake-gcs-server, the HTTP bundle server): the sidecar's managed
OPA refuses the bad bundle (its log says why), decisions keep carrying the last good revision,
the sidecar stays ready, and the next good bundle still activates.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from sidecar.bundles.build import BuiltBundle
from sidecar.bundles.keys import generate_keypair
from sidecar.bundles.publish import bundle_from_file
from sidecar.policy.managed import ManagedOpa
from tests.support.bundle_stores import STORE_KINDS, bundle_store
from tests.support.opa import SigningKeys, rewrite_bundle
from tests.support.pulling import (
    active_revisions,
    build_revision,
    feeding,
    pulling_config,
    signed_config,
)
from tests.support.sidecar import running_sidecar

pytestmark = pytest.mark.integration

_DEADLINE_S = 60.0


def _relabelled(revision: str, edit: Callable[[dict[str, bytes]], object]) -> Callable[..., None]:
    """An edit that also renames the revision: were the bundle accepted, decisions would say so."""

    def apply(files: dict[str, bytes]) -> None:
        manifest = json.loads(files[".manifest"])
        manifest["revision"] = revision
        files[".manifest"] = json.dumps(manifest).encode()
        edit(files)

    return apply


def _widen_every_route(files: dict[str, bytes]) -> None:
    data = json.loads(files["data.json"])
    data["replication"]["injected_by_attacker"] = True
    files["data.json"] = json.dumps(data).encode()  # the signature still names the old hashes


def _bad_bundles(good: BuiltBundle, work: Path) -> list[tuple[BuiltBundle, str]]:
    tampered = rewrite_bundle(
        good.path, work / "tampered.tar.gz", _relabelled("tampered", _widen_every_route)
    )
    unsigned = rewrite_bundle(
        good.path,
        work / "unsigned.tar.gz",
        _relabelled("unsigned", lambda files: files.pop(".signatures.json")),
    )
    return [
        (bundle_from_file(tampered), "digest mismatch"),
        (bundle_from_file(unsigned), "bundle missing .signatures.json"),
    ]


def _refusals(managed: ManagedOpa, reason: str) -> int:
    return sum(
        1
        for line in managed.output_tail(200).splitlines()
        if "Bundle load failed" in line and reason in line
    )


async def _until_refused(managed: ManagedOpa, reason: str, before: int) -> None:
    deadline = time.monotonic() + _DEADLINE_S
    while _refusals(managed, reason) <= before:
        assert time.monotonic() < deadline, (
            f"OPA never refused ({reason}):\n{managed.output_tail()}"
        )
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("kind", STORE_KINDS)
async def test_a_bad_bundle_is_refused_and_the_last_good_revision_keeps_deciding(
    kind: str, tmp_path: Path
) -> None:
    config = signed_config(SigningKeys(*generate_keypair(tmp_path / "keys")))
    good = build_revision(config, tmp_path / "built", "good")
    later = build_revision(config, tmp_path / "built", "later")
    async with bundle_store(kind, tmp_path / kind) as store:
        await store.publish(good)
        async with running_sidecar(pulling_config(config, store, tmp_path / "sidecar")) as running:
            runtime, metrics = running.sidecar.runtime, running.sidecar.metrics
            assert runtime is not None and runtime.managed is not None and metrics is not None
            async with feeding([running]) as feeds:
                feed, task = feeds[0]
                for bad, reason in _bad_bundles(good, tmp_path):
                    before = _refusals(runtime.managed, reason)
                    await store.publish(bad)
                    await _until_refused(runtime.managed, reason, before)
                    await feed.more(10, task, timeout_s=_DEADLINE_S)
                    assert set(feed.first_seen) == {"good"}, f"{bad.revision} was served"
                    assert not any(answer.degraded for answer in feed.answers)
                assert await active_revisions(running.sidecar) == {"good": 1.0}
                async with (
                    aiohttp.ClientSession() as http,
                    http.get(f"http://127.0.0.1:{metrics.port}/readyz") as ready,
                ):
                    assert ready.status == 200

                # Still polling: the next good bundle activates.
                await store.publish(later)
                await feed.until("later", task, timeout_s=_DEADLINE_S)
