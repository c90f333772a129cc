"""The built wheel, installed into a clean virtual environment away from the checkout, serves.

What a platform team does with the package: build the sdist and the wheel from it (uv with the
locked setuptools, no build isolation: nothing is fetched to build), install the wheel with its
runtime dependencies only (versions pinned by requirements.lock, from uv's cache) into a new
virtual environment, and run that environment's ``policy-sidecar serve`` from a directory that is
not the checkout. The default policy and bundle data must come from the package itself; the built
bundle must land under ``state_dir``, never in site-packages; one Decide over gRPC is answered by
the managed OPA (not the fail mode).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sidecar.tools import find_tool
from tests.support.packaged import decide_dev_image, standalone_config
from tests.support.ports import free_ports

pytestmark = pytest.mark.timeout(240)

ROOT = Path(__file__).resolve().parents[2]
UV = Path(sys.executable).with_name("uv")
DIGEST = "sha256:" + "d" * 64
# Dev-only packages (pyproject's dev extra) that the runtime must not pull in.
DEV_ONLY = ("grpcio-tools", "opa-python-client", "pyopenssl", "pytest", "setuptools", "uv")


def _run(*argv: str | Path, cwd: Path, timeout: float = 180) -> str:
    proc = subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_clean_env(),
        check=False,
    )
    assert proc.returncode == 0, f"{argv} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _clean_env() -> dict[str, str]:
    """Our environment without anything that points Python at the checkout or the dev venv."""
    drop = {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONSAFEPATH"}
    return {k: v for k, v in os.environ.items() if k not in drop} | {"PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(wheel, venv): the wheel built from the sdist and installed into a fresh venv."""
    work = tmp_path_factory.mktemp("wheel")
    dist = work / "dist"
    _run(
        UV,
        "build",
        "--no-build-isolation",
        "--python",
        sys.executable,
        "--out-dir",
        dist,
        ROOT,
        cwd=work,
    )
    wheels = list(dist.glob("policy_sidecar-*.whl"))
    assert len(wheels) == 1, sorted(p.name for p in dist.iterdir())
    venv = work / "venv"
    _run(UV, "venv", "--python", sys.executable, venv, cwd=work)
    _run(
        UV,
        "pip",
        "install",
        "--python",
        venv / "bin" / "python",
        "--constraint",
        ROOT / "requirements.lock",
        wheels[0],
        cwd=work,
    )
    return wheels[0], venv


def test_the_wheel_carries_the_default_policy_and_bundle_data(
    installed: tuple[Path, Path],
) -> None:
    wheel, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    for rego in sorted((ROOT / "rego").rglob("*.rego")):
        assert f"sidecar/_defaults/{rego.relative_to(ROOT)}" in names
    for data in sorted((ROOT / "bundles" / "default").rglob("data.json")):
        assert f"sidecar/_defaults/{data.relative_to(ROOT)}" in names
    assert not [n for n in names if n.endswith(".tar.gz")], "a built bundle slipped into the wheel"


def test_the_runtime_environment_holds_no_dev_only_package(installed: tuple[Path, Path]) -> None:
    _, venv = installed
    listed = _run(
        UV, "pip", "list", "--python", venv / "bin" / "python", "--format", "freeze", cwd=venv
    )
    present = {line.split("==")[0].lower() for line in listed.splitlines() if "==" in line}
    assert "policy-sidecar" in present
    assert not present & set(DEV_ONLY)


def test_installed_serve_answers_a_decision_from_opa(
    installed: tuple[Path, Path], tmp_path: Path
) -> None:
    _, venv = installed
    grpc_port, metrics_port = free_ports(2)
    state = tmp_path / "state"
    # The pinned OPA of the tools cache (an image would ship it on PATH).
    opa = {"binary": str(find_tool("opa"))}
    config = standalone_config(grpc_port, metrics_port, str(state), opa=opa)
    run = tmp_path / "run"
    run.mkdir()
    (run / "sidecar.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    before = _files(venv)
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [venv / "bin" / "policy-sidecar", "--config", "sidecar.yaml", "serve"],
            cwd=run,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=_clean_env(),
        )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            _wait_serving(channel, proc, log)
            reply = decide_dev_image(channel, DIGEST, "installed-wheel-test")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    served = log.read_text(encoding="utf-8", errors="replace")
    assert not reply.degraded, served
    assert reply.bundle_revision, served
    decision = reply.decision
    outcome = {r.registry for r in decision.routes} | {d.registry for d in decision.deferred}
    assert outcome == {"dev-us"}, reply
    assert proc.returncode == 0, served
    # The bundle was built from the packaged sources into state_dir; the venv gained no file.
    assert (state / "bundles" / "bundle.tar.gz").is_file()
    assert _files(venv) - before == set()


def _files(venv: Path) -> set[Path]:
    """The venv's files, less the bytecode Python caches on import."""
    return {p for p in venv.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def _wait_serving(channel: grpc.Channel, proc: subprocess.Popen[bytes], log: Path) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, log.read_text(encoding="utf-8", errors="replace")
        try:
            status = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
            if status.status == health_pb2.HealthCheckResponse.SERVING:
                return
        except grpc.RpcError:
            pass
        assert time.monotonic() < deadline, log.read_text(encoding="utf-8", errors="replace")
        time.sleep(0.2)
