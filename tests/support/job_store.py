"""The job store for tests: one ``store`` fixture, on SQLite, or on each backend when marked.

``store`` is an open job store at ``store_url``, closed after the test. It is SQLite in a fresh
file unless the test (or its module) is marked ``@pytest.mark.store_backends("sqlite",
"postgresql")``: then every test of it that uses the store runs once per backend, the PostgreSQL
run on a fresh database of the session server (:mod:`tests.support.postgres`). Tests that must
reopen the store (a restart) open ``store_url`` again with :func:`sidecar.store.open_job_store`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sidecar.store import SqlJobStore, open_job_store

__all__ = ["BACKENDS", "store", "store_database", "store_url"]

BACKENDS = ("sqlite", "postgresql")
_MARKER = "store_backends"


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker (the suite runs with ``--strict-markers``)."""
    config.addinivalue_line(
        "markers",
        f"{_MARKER}(*names): run each test using the job store once per named backend "
        f"({', '.join(BACKENDS)})",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrise ``store_database`` by the backends a ``store_backends`` marker names."""
    marker = metafunc.definition.get_closest_marker(_MARKER)
    if marker is None or "store_database" not in metafunc.fixturenames:
        return
    names = tuple(marker.args)
    if not names or not set(names) <= set(BACKENDS):
        raise pytest.UsageError(f"{_MARKER} takes backends among {BACKENDS}, got {names}")
    metafunc.parametrize("store_database", names, indirect=True)


@pytest.fixture
def store_database(request: pytest.FixtureRequest) -> str:
    """The job store's database: ``sqlite``, or the backend a ``store_backends`` run is for."""
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture
def store_url(store_database: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The job store URL (PostgreSQL: a fresh database on the session server)."""
    if store_database == "sqlite":
        return f"sqlite://{tmp_path}/state/jobs.db"
    return str(request.getfixturevalue("postgres_dsn"))


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[SqlJobStore]:
    """An open job store, closed after the test."""
    opened = await open_job_store(store_url)
    try:
        yield opened
    finally:
        await opened.close()
