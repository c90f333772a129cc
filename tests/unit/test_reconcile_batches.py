"""How the reconciler splits its inputs into OPA batch queries (``batch_spans``): every input
exactly once, in order, no batch over ``batch_size``, and no core left idle at the tail."""

from __future__ import annotations

import pytest

from sidecar.reconcile import batch_spans


@pytest.mark.parametrize(
    ("count", "size", "concurrency"),
    [
        (1, 200, 2),
        (3, 200, 2),
        (199, 200, 1),
        (1000, 200, 2),
        (3334, 200, 2),
        (10, 3, 4),
        (7, 1, 3),
    ],
)
def test_every_input_once_in_order_within_the_size(count: int, size: int, concurrency: int) -> None:
    spans = batch_spans(count, size, concurrency)
    covered = [i for start, end in spans for i in range(start, end)]
    assert covered == list(range(count))
    assert all(0 < end - start <= size for start, end in spans)


def test_the_batches_fill_every_query_in_flight() -> None:
    # Five batches of 200 with two in flight: the fifth would run alone on one core.
    assert [end - start for start, end in batch_spans(1000, 200, 2)] == [
        167,
        167,
        167,
        167,
        166,
        166,
    ]
    # Two inputs, two cores: two queries.
    assert batch_spans(2, 200, 2) == [(0, 1), (1, 2)]
    assert batch_spans(0, 200, 2) == []
    # Batches stay as even as they can be.
    sizes = [end - start for start, end in batch_spans(3334, 200, 2)]
    assert len(sizes) % 2 == 0 and max(sizes) - min(sizes) <= 1
