"""The ``policy-sidecar`` command line as a user runs it: real processes, real OPA, real bundles."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from sidecar.store import open_job_store
from tests.support.compat import COMPAT_FILES, compat_dir

# clock: decisions here use the sidecar's wall clock (scan ages, token expiry)
pytestmark = pytest.mark.clock

ROOT = Path(__file__).resolve().parents[2]
CASES_CONFIG = ROOT / "tests" / "cases" / "sidecar.yaml"
COMPAT = compat_dir()


def cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run ``python -m sidecar ARGS`` and return the finished process."""
    return subprocess.run(
        [sys.executable, "-m", "sidecar", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=ROOT,
    )


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """The shared case config, with state and bundle output under tmp_path."""
    raw: dict[str, Any] = yaml.safe_load(CASES_CONFIG.read_text(encoding="utf-8"))
    raw["policy"]["state_dir"] = str(tmp_path / "state")
    raw["policy"]["bundle"]["output"] = str(tmp_path / "bundle.tar.gz")
    raw["policy"]["bundle"]["data_dirs"] = [
        str((CASES_CONFIG.parent / d).resolve()) for d in raw["policy"]["bundle"]["data_dirs"]
    ]
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def test_invalid_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("registries:\n  - name: a\n    metadata: {gdpr: perhaps}\n", encoding="utf-8")
    proc = cli("--config", str(bad), "decide", "--image", "a/x:1")
    assert proc.returncode == 2
    assert "registries[0].metadata.gdpr" in proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize("name", COMPAT_FILES)
def test_freightliner_example_configs_load(name: str, tmp_path: Path) -> None:
    # `bundle keygen` touches no OPA, so a zero exit proves the config loaded and validated.
    proc = cli("--config", str(COMPAT / name), "bundle", "keygen", str(tmp_path / "keys"))
    assert proc.returncode == 0, proc.stderr


def test_bundle_build_and_verify(config: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.tar.gz"
    built = cli(
        "--config", str(config), "bundle", "build", "--output", str(out), "--revision", "test-rev-1"
    )
    assert built.returncode == 0, built.stderr
    report = json.loads(built.stdout)
    assert report["revision"] == "test-rev-1" and out.exists()
    with tarfile.open(out) as tar:
        names = tar.getnames()
        manifest = json.load(tar.extractfile("/.manifest") or tar.extractfile(".manifest"))  # type: ignore[arg-type]
    assert any(n.endswith(".signatures.json") for n in names)
    assert not any(n.endswith("_test.rego") for n in names)
    assert manifest["revision"] == "test-rev-1"
    assert set(manifest["roots"]) == {"replication", "system"}
    verified = cli("--config", str(config), "bundle", "verify", str(out))
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)["revision"] == "test-rev-1"


def test_decide_image_through_the_full_path(config: Path) -> None:
    proc = cli(
        "--config",
        str(config),
        "decide",
        "--image",
        "ci/team/app:dev-3",
        "--label",
        "criticality=high",
    )
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout)
    assert answer["decision_id"] and answer["bundle_revision"] and not answer["degraded"]
    decision = answer["decision"]
    # A dev-* image goes to dev registries only; nothing else is routed.
    assert decision["allow"] is True and decision["routes"]
    assert all(r["registry"].startswith("dev") for r in decision["routes"])


def test_decide_bad_image_reference_exits_2(config: Path) -> None:
    proc = cli("--config", str(config), "decide", "--image", "no-slash")
    assert proc.returncode == 2
    assert "--image" in proc.stderr


@pytest.mark.integration
def test_bench_reports_both_paths_and_writes_the_report(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = cli(
        "bench",
        "--concurrency",
        "1,4",
        "--requests",
        "20",
        "--policies",
        "200",
        "--rate",
        "20",
        "--duration",
        "1",
        "--output",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report == json.loads(done.stdout)
    assert [level["concurrency"] for level in report["levels"]] == [1, 4]
    for level in report["levels"]:
        for path in ("sidecar", "opa"):
            assert level[path]["errors"] == 0
            assert 0 < level[path]["p50_ms"] <= level[path]["p99_ms"]
            assert level[path]["throughput_rps"] > 0
    (level,) = report["open_loop"]
    assert level["rate"] == 20
    for path in ("sidecar", "opa"):
        assert level[path]["errors"] == 0 and level[path]["requests"] == 20
        assert 0 < level[path]["p50_ms"] <= level[path]["p99_ms"]
    assert report["rss_mib"]["sidecar"] > 0 and report["rss_mib"]["opa"] > 0


def test_unknown_registry_key_warns_and_strict_exits_2(tmp_path: Path) -> None:
    typo = tmp_path / "typo.yaml"
    typo.write_text("registries:\n  - name: a\n    endpont: a.io\n", encoding="utf-8")
    loose = cli("--config", str(typo), "bundle", "keygen", str(tmp_path / "keys"))
    assert loose.returncode == 0, loose.stderr
    assert "registries[0].endpont" in loose.stderr
    strict = cli("--strict", "--config", str(typo), "bundle", "keygen", str(tmp_path / "k2"))
    assert strict.returncode == 2
    assert f"{typo}:3: registries[0].endpont: unknown registry key" in strict.stderr
    assert "did you mean 'endpoint'" in strict.stderr


def test_a_reader_that_stops_early_gets_no_traceback() -> None:
    """`policy-sidecar config schema | head -1`: the pipe closes, the CLI exits quietly with 0."""
    cmd = [sys.executable, "-m", "sidecar", "config", "schema"]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.readline().strip() == b"{"
        proc.stdout.close()  # what `head -1` does after its line
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=60) == 0, err
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


def test_jobs_events_lists_the_inbox_from_the_store_without_a_server(config: Path) -> None:
    state = yaml.safe_load(config.read_text(encoding="utf-8"))["policy"]["state_dir"]

    async def record() -> None:
        store = await open_job_store(f"sqlite://{state}/jobs.db")
        try:
            await store.record_event("evt-dead", b"{}")
            await store.record_event("evt-new", b"{}")
            await store.fail_event("evt-dead", error="boom", retry_in_s=1, max_attempts=1)
        finally:
            await store.close()

    asyncio.run(record())
    listed = cli("--config", str(config), "jobs", "--events", "--json", timeout=60)
    assert listed.returncode == 0, listed.stderr
    doc = json.loads(listed.stdout)
    assert [(e["event_id"], e["state"], e["attempts"], e["last_error"]) for e in doc] == [
        ("evt-dead", "dead", 1, "boom"),
        ("evt-new", "pending", 0, ""),
    ]
    assert all(e["received_at"] for e in doc)
    table = cli("--config", str(config), "jobs", "--events", timeout=60)
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split()[:3] == ["EVENT", "STATE", "ATTEMPTS"]
    assert "evt-dead  dead" in table.stdout
