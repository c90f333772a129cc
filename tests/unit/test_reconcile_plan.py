"""The reconcile plan as a value: the diff of decisions and observed tags, its order and totals."""

from __future__ import annotations

from sidecar.config import ReconcileSettings
from sidecar.model.decision import Decision, DecisionResult, Denial, Route
from sidecar.reconcile import Observation, ObservedTag, Scope, SourceImage, build_plan, present_at
from sidecar.reconcile.plan import BLOCKED_FOREIGN

A, B = "sha256:" + "a" * 64, "sha256:" + "b" * 64
SCOPE = Scope(ReconcileSettings(sources=("ci",), protect=("release-*",)))


def _image(tag: str, decision: Decision, *, degraded: bool = False, digest: str = A) -> SourceImage:
    return SourceImage(
        ObservedTag("ci", "web/app", tag, digest, size_bytes=1000),
        DecisionResult(decision, "d-" + tag, "rev-1", degraded=degraded),
    )


def _routes(*names: str) -> tuple[Route, ...]:
    return tuple(Route(n, "web/app", "prod-1", i + 1) for i, n in enumerate(names))


def test_routed_registries_are_copied_kept_or_retagged_by_what_they_hold() -> None:
    observation = Observation(
        (
            ObservedTag("ci", "web/app", "prod-1", A, size_bytes=1000),
            ObservedTag("eu", "web/app", "prod-1", A, size_bytes=1000),
            ObservedTag("us", "web/app", "prod-1", B, size_bytes=900),
        )
    )
    image = _image("prod-1", Decision(allow=True, priority=70, routes=_routes("eu", "us", "dev")))
    plan = build_plan([image], observation, SCOPE, ("ci",))
    assert [(a.kind, a.registry, a.rank) for a in plan.actions] == [
        ("copy", "dev", 3),
        ("retag", "us", 2),
        ("keep", "eu", 1),
    ]
    assert plan.counts() == {"copy": 1, "retag": 1, "keep": 1, "remove": 0, "cleanup": 0}
    assert plan.bytes_to_copy == 2000 and plan.bytes_freed == 0
    assert plan.bundle_revision == "rev-1"


def test_a_retag_overwrites_only_a_digest_the_sidecar_wrote_there() -> None:
    observation = Observation(
        (
            ObservedTag("ci", "web/app", "prod-1", A, size_bytes=1000),
            ObservedTag("eu", "web/app", "prod-1", B),  # the sidecar's older copy
            ObservedTag("us", "web/app", "prod-1", B),  # someone else pushed B there
        )
    )
    image = _image("prod-1", Decision(allow=True, routes=_routes("eu", "us")))
    written = {("eu", "web/app", "prod-1", B), ("us", "web/app", "prod-1", A)}
    plan = build_plan([image], observation, SCOPE, ("ci",), written=written)
    assert [(a.kind, a.registry, a.blocked) for a in plan.of("retag")] == [
        ("retag", "eu", ""),
        ("retag", "us", BLOCKED_FOREIGN),
    ]
    # A blocked retag is shown (drift a human must resolve), and copies nothing.
    assert plan.counts()["retag"] == 2
    # Without a job store to ask (written=None) every retag goes ahead, as before.
    plain = build_plan([image], observation, SCOPE, ("ci",))
    assert [a.blocked for a in plain.of("retag")] == ["", ""]


def test_removals_only_where_the_digest_is_held_and_blocked_by_the_rails() -> None:
    observation = Observation(
        (
            ObservedTag("ci", "web/app", "prod-1", A),
            ObservedTag("us", "web/app", "prod-1", A, size_bytes=500),
            ObservedTag("other", "web/app", "prod-1", B),  # someone else's write: never removed
            ObservedTag("ci", "web/app", "release-1", A),
            ObservedTag("us", "web/app", "release-1", A, size_bytes=500),
        )
    )
    remove = (Denial("us", ("NOT_GDPR",)), Denial("other", ("NOT_GDPR",)), Denial("gone", ("X",)))
    images = [
        _image("prod-1", Decision(allow=True, remove=(*remove, Denial("ci", ("NOT_GDPR",))))),
        _image("release-1", Decision(allow=True, remove=remove)),
    ]
    plan = build_plan(images, observation, SCOPE, ("ci",))
    assert [(a.registry, a.tag, a.blocked) for a in plan.of("remove")] == [
        ("ci", "prod-1", "never removed from a source registry"),
        ("us", "prod-1", ""),
        ("us", "release-1", "tag matches policy.reconcile.protect"),
    ]
    assert plan.bytes_freed == 500


def test_a_degraded_decision_plans_no_removal_it_could_execute() -> None:
    observation = Observation(
        (ObservedTag("ci", "web/app", "prod-1", A), ObservedTag("us", "web/app", "prod-1", A))
    )
    image = _image(
        "prod-1", Decision(allow=True, remove=(Denial("us", ("NOT_GDPR",)),)), degraded=True
    )
    plan = build_plan([image], observation, SCOPE, ("ci",))
    assert [a.blocked for a in plan.of("remove")] == [
        "degraded decision (fail mode): never removes"
    ]
    assert plan.degraded == 1 and plan.bytes_freed == 0


def test_present_at_names_registries_holding_the_digest_at_the_same_tag_but_sources() -> None:
    tags = (
        ObservedTag("ci", "web/app", "prod-1", A),
        ObservedTag("mirror", "web/app", "prod-1", A),
        ObservedTag("eu", "web/app", "prod-1", A),
        ObservedTag("us", "web/app", "prod-1", B),
        ObservedTag("dev", "web/app", "other", A),
    )
    assert present_at(tags[0], Observation(tags), ("ci", "mirror")) == ("eu",)


def test_the_plan_order_is_stable_whatever_order_images_come_in() -> None:
    observation = Observation(())
    one = _image("prod-1", Decision(allow=True, routes=_routes("b", "a")))
    two = _image("prod-2", Decision(allow=True, routes=_routes("a")), digest=B)
    first = build_plan([one, two], observation, SCOPE, ("ci",))
    second = build_plan([two, one], observation, SCOPE, ("ci",))
    assert first == second
    assert first.to_json() == second.to_json()
