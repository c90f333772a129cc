"""Each revision's reconcile outcomes in the job store: shared by replicas, kept across restarts.

SQLite and PostgreSQL (the ``store`` fixture); the encoding is the reconciler's own
(sidecar.reconcile.baselines), and what comes back from the store is checked, never trusted.
"""

from __future__ import annotations

import base64
import json
import zlib

import pytest

from sidecar.model.decision import Decision, DecisionResult, Route
from sidecar.reconcile.baselines import MAX_BASELINE_BYTES, Baseline, Baselines, decode, encode
from sidecar.store import SqlJobStore

pytestmark = [pytest.mark.integration, pytest.mark.store_backends("sqlite", "postgresql")]

DIGEST = "sha256:" + "b" * 64
PLACE = ("ci", "web/app", "v1", DIGEST)


def _result(revision: str, *routes: str, allow: bool = True) -> DecisionResult:
    decision = Decision(
        allow=allow,
        routes=tuple(Route(registry=r, repository="web/app", tag="v1", rank=n + 1)
                     for n, r in enumerate(routes)),
    )  # fmt: skip
    return DecisionResult(decision, decision_id=f"d-{revision}", bundle_revision=revision)


async def test_a_new_process_reads_the_outcomes_another_recorded(store: SqlJobStore) -> None:
    first = Baselines(store)
    await first.record([(PLACE, _result("r1", "prod-eu", "prod-us"))], [("r1", PLACE)])
    restarted = Baselines(store)  # nothing in memory: read from the store
    baseline = await restarted.get("r1")
    assert baseline is not None
    assert baseline.outcomes[PLACE] == (
        True, (("prod-eu", "web/app", "v1"), ("prod-us", "web/app", "v1")), ()
    )  # fmt: skip
    assert baseline.cleanups == {PLACE}
    assert await restarted.get("r0") is None


async def test_a_later_record_of_the_same_revision_adds_to_what_the_store_held(
    store: SqlJobStore,
) -> None:
    other = ("ci", "web/api", "v1", DIGEST)
    await Baselines(store).record([(PLACE, _result("r1", "prod-eu"))], [])
    # A scoped run in another process decides only web/api under the same revision.
    await Baselines(store).record([(other, _result("r1", allow=False))], [])
    baseline = await Baselines(store).get("r1")
    assert baseline is not None and set(baseline.outcomes) == {PLACE, other}


async def test_only_the_newest_revisions_are_kept(store: SqlJobStore) -> None:
    baselines = Baselines(store)
    for n in range(12):
        await baselines.record([(PLACE, _result(f"r{n}", "prod-eu"))], [])
    fresh = Baselines(store)
    kept = [n for n in range(12) if await fresh.get(f"r{n}") is not None]
    assert kept == list(range(4, 12))  # KEEP_BASELINES = 8


async def test_a_corrupt_stored_baseline_is_no_baseline(store: SqlJobStore) -> None:
    await store.save_baseline("r1", "not base64 at all !")
    assert await Baselines(store).get("r1") is None  # the re-plan is whole, nothing raised


def _packed(doc: object) -> str:
    return base64.b64encode(zlib.compress(json.dumps(doc).encode())).decode()


@pytest.mark.parametrize(
    "text",
    [
        "",
        "%%%",
        base64.b64encode(b"not zlib").decode(),
        _packed({"format": 2, "outcomes": [], "cleanups": []}),
        _packed({"format": 1, "outcomes": [["a", "b", "c"]], "cleanups": []}),
        _packed({"format": 1, "outcomes": [["a", "b", "c", "d", "yes", [], []]], "cleanups": []}),
        _packed(
            {"format": 1, "outcomes": [["a", "b", "c", "d", True, [["x"]], []]], "cleanups": []}
        ),
        _packed({"format": 1, "outcomes": [], "cleanups": [[1, 2, 3, 4]]}),
        _packed([1, 2, 3]),
        base64.b64encode(zlib.compress(b"{not json")).decode(),
        # A bomb: zeros that inflate past the bound.
        base64.b64encode(zlib.compress(b"0" * (MAX_BASELINE_BYTES + 1))).decode(),
    ],
)
def test_anything_but_an_encoded_baseline_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a stored baseline"):
        decode(text)


def test_an_encoded_baseline_reads_back_the_same() -> None:
    baseline = Baseline(
        {PLACE: (True, (("prod-eu", "web/app", "v1"),), ("sandbox",))}, {PLACE}
    )  # fmt: skip
    assert decode(encode(baseline)) == baseline
