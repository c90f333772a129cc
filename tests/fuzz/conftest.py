"""The fuzz suite's hypothesis profile (``ci``, or ``HYPOTHESIS_PROFILE=storm``) and its sidecar."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from hypothesis import settings

from sidecar.config import AdminToken, AuthSettings, load_config
from tests.support.admin import admin_config
from tests.support.fuzz import CASES_CONFIG, FUZZ_TOKEN, active_profile, register_profiles
from tests.support.sidecar import RunningSidecar, isolated_config, running_sidecar

register_profiles()
settings.load_profile(active_profile())


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sidecar(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningSidecar]:
    """One real sidecar per module: the cases inventory, a managed OPA, SQLite jobs."""
    config = isolated_config(load_config(CASES_CONFIG), tmp_path_factory.mktemp("fuzz-sidecar"))
    async with running_sidecar(config) as running:
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def authed_sidecar(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[RunningSidecar]:
    """The same sidecar with policy.auth: the bearer FUZZ_TOKEN is the platform's replicator."""
    config = admin_config(
        tmp_path_factory.mktemp("fuzz-authed"),
        bindings={"token:fuzz": {"roles": ["replicator"]}},
        tokens={"viewer": "viewer-secret"},
        base=CASES_CONFIG,
    )
    digest = hashlib.sha256(FUZZ_TOKEN.encode()).hexdigest()
    auth = AuthSettings(tokens=(AdminToken("fuzz", digest),))
    config = dataclasses.replace(config, policy=dataclasses.replace(config.policy, auth=auth))
    async with running_sidecar(config) as running:
        yield running
