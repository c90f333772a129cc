"""The copy benchmark (tests/bench/copy.py) end to end, on a tiny image set: shape, not speed.

It runs the real thing — docker-registry source and destinations, counting proxies, the sidecar's
copier, skopeo and crane — on three small images (one a two-platform index), and checks the
report has every tool cold and warm with sensible counts. No timing is asserted: figures come
from the full run (docs/benchmarks.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bench.copy import PHASES, TOOLS, main

pytestmark = pytest.mark.integration


def test_tiny_copy_benchmark_reports_every_tool_cold_and_warm(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "report.json"
    argv = ["--images", "3", "--min-mb", "0.05", "--max-mb", "0.5", "--seed", "7"]
    assert main([*argv, "--output", str(output)]) == 0

    report = json.loads(output.read_text())
    facts = report["image_set"]
    assert (facts["images"], facts["indexes"], facts["repositories"]) == (3, 1, 1)
    rows = {(row["tool"], row["phase"]): row for row in report["results"]}
    assert set(rows) == {(tool, phase) for tool in TOOLS for phase in PHASES}
    for (tool, phase), row in rows.items():
        assert row["wall_s"] > 0, (tool, phase)
        assert row["destination_requests"] > 0, (tool, phase)  # at least the check it is there
    for tool in TOOLS:
        cold = rows[(tool, "cold")]
        # Everything distinct had to reach the empty destination, and was read from the source.
        assert cold["blob_bytes_moved"] >= facts["distinct_blob_bytes"], tool
        assert cold["bytes_read_from_source"] >= facts["distinct_blob_bytes"], tool
    warm = rows[("sidecar", "warm")]
    assert warm["blob_bytes_moved"] == 0 and warm["bytes_moved"] == 0
    assert warm["bytes_read_from_source"] == 0 and warm["source_requests"] == 0
    assert warm["destination_requests"] == facts["images"]  # one HEAD of each tag
    assert warm["copier"]["bytes_moved"] == 0
    assert rows[("sidecar", "cold")]["copier"]["bytes_moved"] == facts["distinct_blob_bytes"]
    assert set(report["targets"]) == set(PHASES)
    assert report["command"].endswith(f"--output {output}")

    printed = capsys.readouterr().out
    assert "| sidecar | cold |" in printed and "| crane | warm |" in printed
    assert f"report written to {output}" in printed
