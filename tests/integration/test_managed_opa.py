"""ManagedOpa with the real opa: readiness, supervision, signed-bundle enforcement, reload, stop."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sidecar.bundles.build import BuiltBundle
from sidecar.bundles.keys import generate_keypair
from sidecar.errors import BundleError, PolicyUnavailable
from sidecar.policy.managed import ManagedOpa
from sidecar.policy.opa import OpaEngine
from tests.support.opa import (
    SigningKeys,
    build_test_bundle,
    rewrite_bundle,
    running_opa,
    write_source_tree,
)

pytestmark = pytest.mark.integration

PUSH = {"event": "push", "image": {"tag": "prod-1.0"}}


async def _until(condition: Callable[[], bool], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def _process_exists(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def _tamper(files: dict[str, bytes]) -> None:
    files["replication/decision.rego"] += b"\nextra := true\n"


def _unsign(files: dict[str, bytes]) -> None:
    del files[".signatures.json"]


async def test_start_serves_the_verified_bundle_on_loopback(
    opa_server: ManagedOpa, opa_engine: OpaEngine, opa_bundle: BuiltBundle
) -> None:
    assert opa_server.ready
    assert opa_server.url.startswith("http://127.0.0.1:")
    assert await opa_engine.active_revision() == opa_bundle.revision
    assert (await opa_engine.evaluate(PUSH)).result["allow"] is True


async def test_killed_opa_is_restarted_on_the_same_port(
    opa_bundle: BuiltBundle, opa_keys: SigningKeys
) -> None:
    # A 1 s first backoff leaves a wide window to observe the outage deterministically.
    async with running_opa(opa_bundle.path, opa_keys, backoff_s=(1.0, 5.0)) as managed:
        url, pid = managed.url, managed.pid
        assert pid is not None
        engine = OpaEngine(url, timeout_s=2.0, token=managed.token)
        try:
            await engine.evaluate(PUSH)  # leaves a kept-alive connection that the kill breaks
            os.kill(pid, signal.SIGKILL)
            await _until(lambda: not managed.ready)
            with pytest.raises(PolicyUnavailable):
                await engine.evaluate(PUSH)
            await _until(lambda: managed.ready)

            assert managed.restarts == 1
            assert managed.url == url
            assert managed.pid not in (None, pid)
            assert not _process_exists(pid)
            assert (await engine.evaluate(PUSH)).result["tag"] == "prod-1.0"
        finally:
            await engine.close()


async def test_stop_leaves_no_process_and_frees_the_port(
    opa_bundle: BuiltBundle, opa_keys: SigningKeys
) -> None:
    async with running_opa(opa_bundle.path, opa_keys) as managed:
        pid, url = managed.pid, managed.url
        assert pid is not None
        assert _process_exists(pid)

    assert not managed.ready
    assert not _process_exists(pid)
    engine = OpaEngine(url, timeout_s=2.0)
    try:
        with pytest.raises(PolicyUnavailable, match="unreachable"):
            await engine.evaluate(PUSH)
    finally:
        await engine.close()


@pytest.mark.parametrize(
    "case",
    [
        ("tampered", "digest mismatch"),
        ("unsigned", "missing .signatures.json"),
        ("wrong key", "verification error"),
    ],
    ids=lambda case: case[0],
)
async def test_bad_bundles_are_refused_with_opas_reason(
    case: tuple[str, str],
    opa_binary: Path,
    opa_bundle: BuiltBundle,
    opa_keys: SigningKeys,
    tmp_path: Path,
) -> None:
    (damage, opa_says), bundle, keys = case, opa_bundle.path, opa_keys
    if damage == "tampered":
        bundle = rewrite_bundle(bundle, tmp_path / "bad.tar.gz", _tamper)
    elif damage == "unsigned":
        bundle = rewrite_bundle(bundle, tmp_path / "bad.tar.gz", _unsign)
    else:
        other = generate_keypair(tmp_path / "other-keys")
        keys = SigningKeys(*other)
    managed = ManagedOpa(opa_binary, bundle, verification_key=keys.public)

    with pytest.raises(PolicyUnavailable, match="exited with code 1 during startup") as caught:
        await managed.start()

    assert opa_says in caught.value.message
    assert managed.pid is None
    assert not managed.ready


async def test_occupied_port_is_reported_with_opas_error(
    opa_binary: Path, opa_bundle: BuiltBundle, opa_keys: SigningKeys
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        managed = ManagedOpa(
            opa_binary, opa_bundle.path, verification_key=opa_keys.public, port=port
        )
        with pytest.raises(PolicyUnavailable, match=r"is already in use by another process"):
            await managed.start()


async def test_reload_serves_the_new_revision_on_the_same_url(
    opa_server: ManagedOpa,
    opa_engine: OpaEngine,
    opa_keys: SigningKeys,
    tmp_path: Path,
) -> None:
    source = write_source_tree(tmp_path / "v2", settings={"mode": "v2"})
    new = build_test_bundle(source, opa_keys, tmp_path / "v2.tar.gz", revision="v2")
    url = opa_server.url

    await opa_server.reload(new.path)

    answer = await opa_engine.evaluate(PUSH)
    assert (answer.bundle_revision, answer.result["mode"]) == ("v2", "v2")
    assert opa_server.url == url
    assert opa_server.ready
    assert opa_server.bundle_path == new.path


async def test_reload_with_a_bad_bundle_keeps_the_previous_revision_serving(
    opa_server: ManagedOpa,
    opa_engine: OpaEngine,
    opa_bundle: BuiltBundle,
    tmp_path: Path,
) -> None:
    pid = opa_server.pid
    tampered = rewrite_bundle(opa_bundle.path, tmp_path / "tampered.tar.gz", _tamper)

    with pytest.raises(BundleError, match="refused by OPA") as caught:
        await opa_server.reload(tampered)

    assert "digest mismatch" in str(caught.value)
    assert opa_server.ready
    assert opa_server.pid == pid
    answer = await opa_engine.evaluate(PUSH)
    assert answer.bundle_revision == opa_bundle.revision
