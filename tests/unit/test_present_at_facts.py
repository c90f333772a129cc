"""image.present_at (DESIGN §3.1) survives enrichment: the reconciler's observation reaches the policy."""

from __future__ import annotations

from pathlib import Path

from sidecar.config import load_config
from sidecar.enrich import StaticEnricher
from sidecar.model.decision import Caller, DecideRequest, ImageRef

CONFIG = """\
registries:
  - {name: ci, region: us-east-1, metadata: {environment: ci}}
  - {name: prod-us, region: us-east-1, metadata: {environment: prod}}
  - {name: prod-eu, region: eu-west-1, metadata: {environment: prod, gdpr: true}}
"""
REF = ImageRef("ci", "team/app", "prod-1", "sha256:" + "a" * 64)


async def test_present_at_is_kept_for_any_caller_and_its_origin_recorded(tmp_path: Path) -> None:
    (tmp_path / "sidecar.yaml").write_text(CONFIG, encoding="utf-8")
    enricher = StaticEnricher(load_config(tmp_path / "sidecar.yaml"))
    request = DecideRequest(REF, caller=Caller("reconciler"), present_at=("prod-us", "prod-eu"))

    policy_input, provenance = await enricher.enrich_traced(request)

    assert policy_input.image.present_at == ("prod-us", "prod-eu")
    assert policy_input.to_json()["image"]["present_at"] == ["prod-us", "prod-eu"]
    assert provenance.facts["image.present_at"] == "request"
    assert not [d for d in provenance.dropped if d.fact == "image.present_at"]


async def test_without_present_at_the_input_says_not_observed(tmp_path: Path) -> None:
    (tmp_path / "sidecar.yaml").write_text(CONFIG, encoding="utf-8")
    enricher = StaticEnricher(load_config(tmp_path / "sidecar.yaml"))
    policy_input, provenance = await enricher.enrich_traced(DecideRequest(REF))
    assert policy_input.to_json()["image"]["present_at"] == []
    assert "image.present_at" not in provenance.facts
