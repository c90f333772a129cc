"""The proto contract, checked by the pinned buf: lint, no breaking change, current Go stubs.

``buf breaking`` compares proto/ with proto/baseline.binpb, the image of the last released proto
(there is no release tag to compare with: the baseline is committed and refreshed deliberately,
README "Call it from Go"). The Go stubs in clients/go/v1 are committed; regenerating them with
the pinned protoc-gen-go and protoc-gen-go-grpc must change nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from sidecar.tools import find_tool, tools_dir

ROOT = Path(__file__).resolve().parents[2]
BASELINE = ROOT / "proto" / "baseline.binpb"
PROTO = ROOT / "proto" / "freightliner" / "policy" / "v1" / "policy.proto"
GO_STUBS = ROOT / "clients" / "go" / "v1"


def _buf(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    # The Go plugins buf.gen.yaml names are found on PATH, in the pinned tool cache first.
    env = {**os.environ, "PATH": f"{tools_dir()}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(
        [str(find_tool("buf")), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def test_buf_lint_is_clean() -> None:
    result = _buf("lint")
    assert result.returncode == 0, result.stdout + result.stderr


def test_proto_has_no_breaking_change_against_the_baseline() -> None:
    result = _buf("breaking", "--against", str(BASELINE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_buf_breaking_catches_a_renumbered_field(tmp_path: Path) -> None:
    # The check itself works: the same proto with one field renumbered is refused, naming it.
    shutil.copy(ROOT / "buf.yaml", tmp_path / "buf.yaml")
    copy = tmp_path / "proto" / PROTO.relative_to(ROOT / "proto")
    copy.parent.mkdir(parents=True)
    text = PROTO.read_text(encoding="utf-8")
    assert "  string digest = 4;" in text
    copy.write_text(text.replace("  string digest = 4;", "  string digest = 40;", 1), "utf-8")
    result = _buf("breaking", "--against", str(BASELINE), cwd=tmp_path)
    assert result.returncode != 0
    assert 'field "4" with name "digest" on message "Image" was deleted' in result.stdout, (
        result.stdout + result.stderr
    )


def test_go_stubs_are_current(tmp_path: Path) -> None:
    result = _buf("generate", "-o", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    fresh = tmp_path / "clients" / "go" / "v1"
    names = sorted(p.name for p in fresh.glob("*.go"))
    assert names == sorted(p.name for p in GO_STUBS.glob("*.go")), names
    for name in names:
        committed = (GO_STUBS / name).read_text(encoding="utf-8")
        assert committed == (fresh / name).read_text(encoding="utf-8"), (
            f"clients/go/v1/{name} is stale: run scripts/gen-proto.sh"
        )
