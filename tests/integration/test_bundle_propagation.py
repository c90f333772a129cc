"""Bundles published to S3 (moto), GCS (fake-gcs-server) and the built-in server reach real OPAs.

Two OPAs poll each store with the config ``opa_config`` renders (1-2 s polling for object stores,
long polling for the built-in server), and verify signatures: a tampered or unsigned bundle is
refused and the previous revision keeps serving. Figures: tests/bench/propagation.py.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiohttp
import pytest

from sidecar.bundles.build import BuiltBundle
from sidecar.bundles.publish import bundle_from_file
from tests.support.bundle_stores import STORE_KINDS, PollingOpa, bundle_store, polling_opa, wait_for
from tests.support.opa import SigningKeys, build_test_bundle, rewrite_bundle, write_source_tree

pytestmark = pytest.mark.integration

_POLLING = {"min_delay_s": 1, "max_delay_s": 2, "long_poll_timeout_s": 10}
_REQUIREMENT_S = 30.0


def _bundle(tmp_path: Path, keys: SigningKeys, revision: str) -> BuiltBundle:
    source = write_source_tree(tmp_path / f"src-{revision}", settings={"mode": revision})
    return build_test_bundle(source, keys, tmp_path / f"{revision}.tar.gz", revision=revision)


def _refusals(opa: PollingOpa, reason: str) -> int:
    """Count the bundles OPA refused for ``reason`` so far (its error log lines)."""
    return sum(
        1 for line in opa.log_text().splitlines() if "Bundle load failed" in line and reason in line
    )


async def _until_refused(opa: PollingOpa, reason: str, before: int) -> None:
    deadline = time.monotonic() + 20
    while _refusals(opa, reason) <= before:
        assert time.monotonic() < deadline, f"OPA never refused ({reason}):\n{opa.log_text()}"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("kind", STORE_KINDS)
async def test_two_opas_serve_each_published_revision_within_30s(
    kind: str, tmp_path: Path, opa_keys: SigningKeys
) -> None:
    first, second = _bundle(tmp_path, opa_keys, "rev-a"), _bundle(tmp_path, opa_keys, "rev-b")
    async with bundle_store(kind, tmp_path / kind) as store:
        config = store.opa_config(opa_keys.public, **_POLLING)
        async with (
            polling_opa(config, tmp_path / "opa-1", store.opa_env) as one,
            polling_opa(config, tmp_path / "opa-2", store.opa_env) as two,
        ):
            started = time.monotonic()
            result = await store.publish(first)
            assert (result.store, result.revision, result.digest) == (kind, "rev-a", first.digest)
            assert await wait_for([one, two], "rev-a", since=started) < _REQUIREMENT_S

            started = time.monotonic()
            await store.publish(second)
            took = await wait_for([one, two], "rev-b", since=started)
            assert took < _REQUIREMENT_S, f"{kind}: rev-b took {took:.1f}s to reach both OPAs"
            async with _session() as session:
                # The data changed with the revision, not just the label.
                assert [await opa.served(session) for opa in (one, two)] == [("rev-b", "rev-b")] * 2


@pytest.mark.parametrize("kind", STORE_KINDS)
async def test_tampered_and_unsigned_bundles_are_refused_and_the_last_good_one_serves(
    kind: str, tmp_path: Path, opa_keys: SigningKeys
) -> None:
    good, later = _bundle(tmp_path, opa_keys, "good"), _bundle(tmp_path, opa_keys, "later")

    def tamper(files: dict[str, bytes]) -> None:
        data = json.loads(files["data.json"])
        data["replication"]["settings"]["mode"] = "evil"
        files["data.json"] = json.dumps(data).encode()  # signatures kept: hashes now differ

    tampered = bundle_from_file(rewrite_bundle(good.path, tmp_path / "tampered.tar.gz", tamper))
    unsigned = bundle_from_file(
        rewrite_bundle(
            good.path, tmp_path / "unsigned.tar.gz", lambda files: files.pop(".signatures.json")
        )
    )
    async with bundle_store(kind, tmp_path / kind) as store:
        config = store.opa_config(opa_keys.public, **_POLLING)
        async with polling_opa(config, tmp_path / "opa", store.opa_env) as opa, _session() as http:
            await store.publish(good)
            await wait_for([opa], "good")

            for bad, reason in (
                (tampered, "data.json: digest mismatch"),
                (unsigned, "bundle missing .signatures.json"),
            ):
                before = _refusals(opa, reason)
                await store.publish(bad)
                await _until_refused(opa, reason, before)
                assert await opa.served(http) == ("good", "good")

            # Still polling: a good bundle published after the bad ones activates.
            await store.publish(later)
            await wait_for([opa], "later")
            assert await opa.served(http) == ("later", "later")


def _session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
