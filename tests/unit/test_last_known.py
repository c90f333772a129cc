"""The last-known and closed fail modes: cache keying, bounds, and what a miss answers."""

from __future__ import annotations

import dataclasses

import pytest

from sidecar.fallback.modes import POLICY_UNAVAILABLE, Fallback, LastKnownCache
from sidecar.model.decision import (
    Action,
    Decision,
    Denial,
    ImageFacts,
    ImageRef,
    PolicyInput,
    RegistryFacts,
    Route,
)

ALLOW = Decision(allow=True, priority=60, routes=(Route("prod-us", "team/app", "prod-1", 1),))


def _input(tag: str = "prod-1", now: str = "2026-11-28T12:00:00Z") -> PolicyInput:
    return PolicyInput(
        now=now,
        event="push",
        image=ImageFacts(ImageRef("ci", "team/app", tag)),
        registries=(
            RegistryFacts("ci", "us-east-1", "ci"),
            RegistryFacts("prod-us", "us-east-1", "prod"),
            RegistryFacts("prod-eu", "eu-west-1", "prod", healthy=False),
        ),
    )


def test_same_facts_at_another_time_hit_the_cache() -> None:
    cache = LastKnownCache(10)
    cache.put(_input().to_json(), "r1", ALLOW)
    assert cache.get(_input(now="2026-11-29T08:00:00Z").to_json(), "r1") == ALLOW


def test_another_revision_or_other_facts_miss() -> None:
    cache = LastKnownCache(10)
    cache.put(_input().to_json(), "r1", ALLOW)
    assert cache.get(_input().to_json(), "r2") is None
    assert cache.get(_input(tag="prod-2").to_json(), "r1") is None
    unhealthy = dataclasses.replace(_input(), registries=_input().registries[:2])
    assert cache.get(unhealthy.to_json(), "r1") is None


def test_the_cache_is_bounded_and_evicts_the_least_recently_used() -> None:
    cache = LastKnownCache(2)
    for tag in ("a", "b"):
        cache.put(_input(tag=tag).to_json(), "r1", ALLOW)
    assert cache.get(_input(tag="a").to_json(), "r1") == ALLOW  # "a" is now the most recent
    cache.put(_input(tag="c").to_json(), "r1", ALLOW)
    assert len(cache) == 2
    assert cache.get(_input(tag="b").to_json(), "r1") is None
    assert cache.get(_input(tag="a").to_json(), "r1") == ALLOW


def test_last_known_mode_serves_a_hit_and_denies_on_a_miss() -> None:
    fallback = Fallback("last-known", cache=LastKnownCache(5))
    fallback.remember(_input().to_json(), "r1", ALLOW)
    later = _input(now="2026-11-30T00:00:00Z")
    assert fallback.decide(later, "r1") == (ALLOW, "r1", "last-known")
    decision, revision, how = fallback.decide(_input(tag="prod-9"), "r1")
    assert (decision.allow, revision, how) == (False, "r1", "last-known-miss")
    assert {d.registry: d.reasons for d in decision.denied} == {
        "prod-us": (POLICY_UNAVAILABLE,),
        "prod-eu": (POLICY_UNAVAILABLE,),
    }


def test_closed_mode_denies_every_registry_but_the_source() -> None:
    decision, _, how = Fallback("closed").decide(_input(), "")
    assert how == "closed" and not decision.allow and not decision.routes
    assert sorted(d.registry for d in decision.denied) == ["prod-eu", "prod-us"]
    assert [r.code for r in decision.reasons] == [POLICY_UNAVAILABLE]
    assert not decision.deferred


def test_other_modes_do_not_fill_the_cache() -> None:
    cache = LastKnownCache(5)
    Fallback("closed", cache=cache).remember(_input().to_json(), "r1", ALLOW)
    assert len(cache) == 0


def test_unknown_modes_and_legacy_without_data_are_refused() -> None:
    with pytest.raises(ValueError, match="fail mode"):
        Fallback("open")
    with pytest.raises(ValueError, match="bundle data"):
        Fallback("legacy")


def test_a_replayed_decision_never_removes_or_cleans_up() -> None:
    """DESIGN §3.4: a degraded decision never removes — not even one OPA made earlier."""
    destructive = dataclasses.replace(
        ALLOW,
        denied=(Denial("prod-eu", ("NOT_GDPR",)),),
        remove=(Denial("prod-eu", ("NOT_GDPR",)),),
        actions=(Action("cleanup", "acme", 5, 14),),
    )
    fallback = Fallback("last-known", cache=LastKnownCache(5))
    fallback.remember(_input().to_json(), "r1", destructive)
    decision, _, how = fallback.decide(_input(), "r1")
    assert how == "last-known"
    assert decision.routes == ALLOW.routes and decision.denied == destructive.denied
    assert decision.remove == () and decision.actions == ()
