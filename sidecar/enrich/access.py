"""Pull history by region (``input.access``): the pulls the registry webhooks recorded within the
pull window (``policy.replication.pull_window``), so access follows where images are pulled now,
not where they were pulled years ago."""

from __future__ import annotations

import dataclasses

from sidecar.enrich.pipeline import Contribution
from sidecar.model.decision import DecideRequest, PolicyInput
from sidecar.typing import PullCounts

__all__ = ["PullAccessSource"]


class PullAccessSource:
    """A FactSource filling ``access`` for the image's repository from ``store.pulls``.

    Regions the caller already reported (``request.access``) keep the caller's count: the request
    states what the caller observed, the store fills the regions it did not mention.
    """

    name = "access.pulls"

    def __init__(self, store: PullCounts, *, window_s: float = 7 * 86400.0) -> None:
        """Read pull counts of the last ``window_s`` seconds (the pull window) from ``store``."""
        self._store = store
        self._window_s = window_s

    async def contribute(self, request: DecideRequest, draft: PolicyInput) -> Contribution:
        """Return the draft with the repository's recorded pulls merged under ``draft.access``."""
        recorded = await self._store.pulls(draft.image.ref.repository, window_s=self._window_s)
        if not recorded:
            return Contribution(draft)
        merged = {**recorded, **draft.access}
        return Contribution(dataclasses.replace(draft, access=merged))
