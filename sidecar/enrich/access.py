"""Pull history by region (``input.access``) from the pull counts the registry webhooks recorded."""

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

    def __init__(self, store: PullCounts) -> None:
        """Read pull counts from ``store``."""
        self._store = store

    async def contribute(self, request: DecideRequest, draft: PolicyInput) -> Contribution:
        """Return the draft with the repository's recorded pulls merged under ``draft.access``."""
        recorded = await self._store.pulls(draft.image.ref.repository)
        if not recorded:
            return Contribution(draft)
        merged = {**recorded, **draft.access}
        return Contribution(dataclasses.replace(draft, access=merged))
