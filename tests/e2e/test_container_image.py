"""The container image, built from Debian packages, goes through a registry, runs and decides.

scripts/build-image.sh makes the image without pulling any base image (mmdebstrap rootfs + the
wheel + the pinned OPA, committed by buildah). This test pushes its OCI archive to a real
docker-registry, pulls it with podman into a private store, checks its user and layout, runs it with
a read-only root filesystem and only /var/lib/policy-sidecar writable, and makes one Decide through
it that the OPA inside answers.

The runtime is runc: crun 1.8 refuses this machine's hybrid cgroup layout ("cgroups in hybrid mode
not supported"). The container's rlimits are set at or below this machine's hard limits (podman's
defaults are above them and refused).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.packaged import decide_dev_image, standalone_config
from tests.support.ports import free_ports
from tests.support.registry import registry_server

pytestmark = pytest.mark.timeout(900)

ROOT = Path(__file__).resolve().parents[2]
TAG = "policy-sidecar:test"
ARCHIVE = ROOT / "build" / "image" / "policy-sidecar.oci.tar"
DIGEST = "sha256:" + "e" * 64


def _run(*argv: str | Path, timeout: float = 300) -> str:
    proc = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=timeout, check=False
    )
    assert proc.returncode == 0, f"{argv}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """podman with its own image store and runc, built image pulled through a docker-registry."""
    _run("bash", ROOT / "scripts" / "build-image.sh", TAG, timeout=600)
    work = tmp_path_factory.mktemp("podman")
    runc = shutil.which("runc") or "/usr/sbin/runc"
    cmd = [
        "podman",
        "--root",
        str(work / "storage"),
        "--runroot",
        str(work / "run"),
        "--runtime",
        runc,
    ]
    with registry_server(work / "registry") as registry:
        ref = f"{registry.host}/platform/policy-sidecar:test"
        _run(
            "skopeo",
            "copy",
            "--dest-tls-verify=false",
            f"oci-archive:{ARCHIVE}:{TAG}",
            f"docker://{ref}",
        )
        _run(*cmd, "pull", "--tls-verify=false", ref)
        yield [*cmd, ref]
    subprocess.run([*cmd, "rm", "-af"], capture_output=True, check=False, timeout=60)
    # The build's local image (system store): each run would otherwise leave 380 MB behind.
    subprocess.run(["buildah", "rmi", TAG], capture_output=True, check=False, timeout=60)


def test_the_image_runs_as_non_root_with_its_state_volume(podman: list[str]) -> None:
    *cmd, ref = podman
    (info,) = json.loads(_run(*cmd, "image", "inspect", ref))
    config = info["Config"]
    assert config["User"] == "65532:65532"
    assert "/var/lib/policy-sidecar" in config["Volumes"]
    assert config["Entrypoint"] == ["/usr/bin/python3.11", "-m", "sidecar"]


def test_the_image_serves_a_decision_with_a_read_only_root(
    podman: list[str], tmp_path: Path
) -> None:
    *cmd, ref = podman
    grpc_port, metrics_port = free_ports(2)
    state, conf = tmp_path / "state", tmp_path / "conf"
    state.mkdir()
    conf.mkdir()
    os.chown(state, 65532, 65532)
    config = standalone_config(grpc_port, metrics_port, "/var/lib/policy-sidecar")
    (conf / "sidecar.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    nproc = min(4096, resource.getrlimit(resource.RLIMIT_NPROC)[1])
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    name = f"policy-sidecar-test-{grpc_port}"
    _run(
        *cmd,
        "run",
        "-d",
        "--name",
        name,
        "--network",
        "host",
        "--read-only",
        "--ulimit",
        f"nofile={nofile}:{nofile}",
        "--ulimit",
        f"nproc={nproc}:{nproc}",
        "-v",
        f"{state}:/var/lib/policy-sidecar",
        "-v",
        f"{conf}:/etc/policy-sidecar:ro",
        ref,
        "--config",
        "/etc/policy-sidecar/sidecar.yaml",
        "serve",
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            _wait_serving(channel, cmd, name)
            reply = decide_dev_image(channel, DIGEST, "container-image-test")
        logs = _run(*cmd, "logs", name)
    finally:
        subprocess.run([*cmd, "rm", "-f", name], capture_output=True, check=False, timeout=60)
    assert not reply.degraded, logs
    assert reply.bundle_revision, logs
    decision = reply.decision
    assert {r.registry for r in decision.routes} | {d.registry for d in decision.deferred} == {
        "dev-us"
    }
    # Everything it wrote is in its state volume: the bundle it built, its keys, its job store.
    assert (state / "bundles" / "bundle.tar.gz").is_file()
    assert (state / "jobs.db").is_file()


def _wait_serving(channel: grpc.Channel, cmd: list[str], name: str) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + 90
    while True:
        try:
            status = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
            if status.status == health_pb2.HealthCheckResponse.SERVING:
                return
        except grpc.RpcError:
            pass
        if time.monotonic() > deadline:
            logs = subprocess.run(
                [*cmd, "logs", name], capture_output=True, text=True, check=False, timeout=30
            )
            pytest.fail(f"the container never served:\n{logs.stdout}\n{logs.stderr}")
        time.sleep(0.5)
