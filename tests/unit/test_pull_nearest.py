"""ResolvePull's notion of "nearest": same region, then same area, then egress cost, then name."""

from __future__ import annotations

import pytest

from sidecar.health import nearest, proximity
from sidecar.model.decision import RegistryFacts


def facts(name: str, region: str, cost: float) -> RegistryFacts:
    return RegistryFacts(name=name, region=region, environment="prod", egress_cost_per_gb=cost)


INVENTORY = (
    facts("us-east", "us-east-1", 0.05),
    facts("us-west", "us-west-2", 0.03),
    facts("eu-west", "eu-west-1", 0.09),
    facts("eu-central", "eu-central-1", 0.02),
    facts("ap", "ap-southeast-2", 0.01),
    facts("gcp-eu", "europe-west1", 0.01),
)


@pytest.mark.parametrize(
    ("client", "order"),
    [
        # Same region first, then the same area, then the rest cheapest first.
        ("us-east-1", ["us-east", "us-west", "ap", "gcp-eu", "eu-central", "eu-west"]),
        ("eu-west-1", ["eu-west", "eu-central", "ap", "gcp-eu", "us-west", "us-east"]),
        ("eu-north-1", ["eu-central", "eu-west", "ap", "gcp-eu", "us-west", "us-east"]),
        ("europe-west4", ["gcp-eu", "ap", "eu-central", "us-west", "us-east", "eu-west"]),
        # No client region: cheapest egress first, ties by name.
        ("", ["ap", "gcp-eu", "eu-central", "us-west", "us-east", "eu-west"]),
    ],
)
def test_nearest_orders_by_region_then_area_then_cost(client: str, order: list[str]) -> None:
    assert [r.name for r in nearest(INVENTORY, client)] == order


@pytest.mark.parametrize(
    ("client", "region", "expected"),
    [
        ("us-east-1", "us-east-1", "same_region"),
        ("US-East-1", "us-east-1", "same_region"),
        ("us-east-2", "us-west-2", "same_area"),
        ("eu-west-1", "europe-west1", "remote"),
        ("", "us-east-1", "remote"),
        ("us-east-1", "", "remote"),
    ],
)
def test_proximity(client: str, region: str, expected: str) -> None:
    assert proximity(client, region) == expected
