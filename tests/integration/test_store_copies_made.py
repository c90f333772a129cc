"""The job store knows which copies the sidecar made of a source image (``propagate_deletes``).

Only succeeded, real (not dry-run) copy jobs from that source repository count, matched by
tag and/or digest; a failed copy, a dry run, a delete job or another source's copy never does.
"""

from __future__ import annotations

import pytest

from sidecar.model.jobs import JobSpec, JobState
from sidecar.store import SqlJobStore

pytestmark = [pytest.mark.integration, pytest.mark.store_backends("sqlite", "postgresql")]

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64


def _spec(dest: str, tag: str, digest: str = D1, **fields: object) -> JobSpec:
    source = {"source_registry": "harbor", "source_repository": "library/app"}
    source.update({k: str(v) for k, v in fields.items() if k.startswith("source_")})
    return JobSpec(
        digest=digest,
        destination_registry=dest,
        destination_repository="library/app",
        tag=tag,
        dry_run=bool(fields.get("dry_run", False)),
        kind=str(fields.get("kind", "copy")),
        **source,
    )


async def _run(store: SqlJobStore, specs: list[JobSpec], state: JobState) -> None:
    await store.enqueue(specs)
    for job in await store.claim("w", limit=len(specs), lease_s=30):
        await store.finish(job.job_id, "w", state)


async def test_only_the_sidecars_succeeded_real_copies_of_that_source_are_found(
    store: SqlJobStore,
) -> None:
    await _run(store, [_spec("dev-us", "dev-1"), _spec("prod-us", "dev-1"),
                       _spec("dev-us", "dev-2", D2)], JobState.SUCCEEDED)  # fmt: skip
    await _run(store, [_spec("sandbox", "dev-1")], JobState.FAILED)
    await _run(store, [_spec("qa", "dev-1", dry_run=True)], JobState.SUCCEEDED)
    await _run(store, [_spec("dr", "dev-1", kind="delete")], JobState.SUCCEEDED)
    await _run(store, [_spec("edge", "dev-1", source_registry="other")], JobState.SUCCEEDED)

    by_tag = await store.copies_made("harbor", "library/app", tag="dev-1")
    assert by_tag == [
        (D1, "dev-us", "library/app", "dev-1"),
        (D1, "prod-us", "library/app", "dev-1"),
    ]
    by_digest = await store.copies_made("harbor", "library/app", digest=D2)
    assert by_digest == [(D2, "dev-us", "library/app", "dev-2")]
    both = await store.copies_made("harbor", "library/app", tag="dev-2", digest=D1)
    assert both == []
    assert await store.copies_made("harbor", "library/other", tag="dev-1") == []
