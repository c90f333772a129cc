"""The impact preview's diff of two plans: one row per place whose action changes, and totals."""

from __future__ import annotations

from sidecar.reconcile import Plan, PlanAction, compare

A = "sha256:" + "a" * 64
SOURCE = f"ci/web/app:prod-1@{A}"


def _action(
    kind: str, registry: str, *, blocked: str = "", repository: str = "web/app"
) -> PlanAction:
    return PlanAction(kind, registry, repository, "prod-1", A, SOURCE, size_bytes=100,
                      blocked=blocked)  # fmt: skip


def _plan(*actions: PlanAction, revision: str) -> Plan:
    return Plan(tuple(actions), images=1, bundle_revision=revision)


def test_every_changed_place_is_one_row_classified_and_unchanged_places_are_not_listed() -> None:
    before = _plan(
        _action("keep", "eu"),
        _action("keep", "us"),
        _action("copy", "dev"),
        _action("remove", "sandbox"),
        _action("remove", "ap", blocked="tag matches policy.reconcile.protect"),
        revision="r1",
    )
    after = _plan(
        _action("keep", "eu"),
        _action("remove", "us"),
        _action("copy", "eu", repository="mirror/web/app"),
        _action("keep", "sandbox"),
        _action("remove", "ap"),
        revision="r2",
    )
    impact = compare(before, after)
    rows = {(c.target, c.kind, c.before, c.after) for c in impact.changes}
    assert rows == {
        ("us/web/app:prod-1", "removal_added", "keep", "remove"),
        ("dev/web/app:prod-1", "copy_dropped", "copy", "-"),
        ("eu/mirror/web/app:prod-1", "copy_added", "-", "copy"),
        ("sandbox/web/app:prod-1", "removal_dropped", "remove", "keep"),
        # A blocked removal did nothing: unblocked, it is a removal the candidate adds.
        ("ap/web/app:prod-1", "removal_added", "remove (blocked)", "remove"),
    }
    totals = impact.totals()
    assert (totals["removal_added"], totals["removal_dropped"]) == (2, 1)
    assert (totals["copy_added"], totals["copy_dropped"]) == (1, 1)
    assert totals["images_changed"] == 1 and totals["routes_changed"] == 1
    assert (totals["bytes_to_copy_before"], totals["bytes_to_copy_after"]) == (100, 100)
    assert (totals["bytes_freed_before"], totals["bytes_freed_after"]) == (100, 200)
    assert (impact.before_revision, impact.after_revision) == ("r1", "r2")


def test_the_same_plan_under_another_revision_changes_nothing() -> None:
    plan = _plan(_action("keep", "eu"), _action("copy", "us"), revision="r1")
    impact = compare(plan, _plan(*plan.actions, revision="r2"))
    assert impact.changes == () and impact.totals()["routes_changed"] == 0
