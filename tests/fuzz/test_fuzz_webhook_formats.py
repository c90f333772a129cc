"""Fuzzed Harbor, Docker Hub, Quay and GitHub webhooks: events or a 400/401, never a 500.

The parsers are fuzzed directly (structured payloads with fuzzed fields, and arbitrary bytes);
then the real endpoints of a real sidecar get the same bodies, correctly authenticated, and
every event they record must be processed or dropped — none stays pending — while a genuine
Harbor push afterwards is still recorded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.config import load_config
from sidecar.config._replication import WebhookSettings
from sidecar.errors import WebhookRejected
from sidecar.webhooks import ACTIONS, RegistryEvent
from sidecar.webhooks._github import parse_github
from sidecar.webhooks._harbor import parse_harbor
from sidecar.webhooks._hub import parse_hub, parse_quay
from tests.support.fuzz import CASES_CONFIG, examples, json_values, nasty_text, urlish
from tests.support.sidecar import RunningSidecar, isolated_config, running_sidecar
from tests.support.webhooks import wait_for

in_module_loop = pytest.mark.asyncio(loop_scope="module")

SECRET = "fuzz-formats-secret"
HOST = "127.0.0.1:1"  # every registry of the cases inventory is configured at this endpoint
DIGEST = "sha256:" + "e" * 64

_field = st.one_of(nasty_text, json_values)
_digest = st.one_of(st.just(DIGEST), _field)
_tag = st.one_of(st.just("dev-1"), st.just(DIGEST), _field)
_harbor_resource = st.fixed_dictionaries(
    {},
    optional={
        "digest": _digest,
        "tag": _tag,
        "resource_url": st.one_of(st.just(f"{HOST}/team/app:dev-1"), urlish, _field),
        "scan_overview": _field,
    },
)
_harbor = st.fixed_dictionaries(
    {},
    optional={
        "type": st.one_of(
            st.sampled_from(["PUSH_ARTIFACT", "DELETE_ARTIFACT", "SCANNING_COMPLETED",
                             "PULL_ARTIFACT", "QUOTA_EXCEED"]),
            _field,
        ),
        "occur_at": st.one_of(st.integers(-(2**70), 2**70), st.floats(), _field),
        "event_data": st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    "resources": st.one_of(st.lists(_harbor_resource, max_size=3), _field),
                    "repository": st.one_of(
                        st.fixed_dictionaries(
                            {}, optional={"repo_full_name": st.one_of(st.just("team/app"), _field),
                                          "name": _field, "namespace": _field}
                        ),
                        _field,
                    ),
                },
            ),
            _field,
        ),
    },
)  # fmt: skip
_hub = st.fixed_dictionaries(
    {},
    optional={
        "push_data": st.one_of(
            st.fixed_dictionaries({}, optional={"tag": _tag, "pushed_at": _field}), _field
        ),
        "repository": st.one_of(
            st.fixed_dictionaries({}, optional={"repo_name": _field, "name": _field}), _field
        ),
    },
)
_quay = st.fixed_dictionaries(
    {},
    optional={
        "repository": st.one_of(st.just("team/app"), _field),
        "docker_url": st.one_of(st.just(f"{HOST}/team/app"), urlish, _field),
        "updated_tags": st.one_of(st.lists(_tag, max_size=3), _field),
    },
)
_version = st.fixed_dictionaries(
    {},
    optional={
        "version": _digest,
        "container_metadata": st.one_of(
            st.fixed_dictionaries(
                {}, optional={"tag": st.fixed_dictionaries({}, optional={"name": _tag,
                                                                        "digest": _digest})}
            ),
            _field,
        ),
        "package_url": st.one_of(st.just(f"{HOST}/team/app:dev-1"), urlish, _field),
    },
)  # fmt: skip
_github = st.fixed_dictionaries(
    {},
    optional={
        "action": st.one_of(st.just("published"), _field),
        "package": st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    "package_type": st.one_of(st.just("CONTAINER"), _field),
                    "namespace": _field,
                    "name": _field,
                    "package_version": st.one_of(_version, _field),
                },
            ),
            _field,
        ),
    },
)


def _bodies(structured: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=300),
        json_values.map(lambda v: json.dumps(v).encode()),
        structured.map(lambda d: json.dumps(d).encode()),
    )


_PARSERS = {
    "harbor": (_bodies(_harbor), parse_harbor),
    "hub": (_bodies(_hub), parse_hub),
    "quay": (_bodies(_quay), parse_quay),
    "github": (_bodies(_github), lambda b: parse_github(b, event="package", delivery="d")),
}


def _well_formed(events: tuple[RegistryEvent, ...]) -> None:
    for event in events:
        assert isinstance(event, RegistryEvent)
        assert event.id and event.repository and event.action in ACTIONS
        assert event.tag or event.digest
        assert all(isinstance(v, str) for v in event.normalised().values())


@pytest.mark.parametrize("source", sorted(_PARSERS))
@settings(max_examples=examples(80))
@given(data=st.data())
def test_parsers_return_events_or_reject_with_400(source: str, data: st.DataObject) -> None:
    bodies, parse = _PARSERS[source]
    body = data.draw(bodies)
    try:
        events = parse(body)
    except WebhookRejected as exc:
        assert exc.status == 400 and exc.message, exc
    else:
        _well_formed(events)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sidecar(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningSidecar]:
    """A real sidecar with its webhook endpoints on a free loopback port."""
    config = isolated_config(load_config(CASES_CONFIG), tmp_path_factory.mktemp("fuzz-formats"))
    webhook = WebhookSettings("127.0.0.1:0", SECRET, propagate_deletes="on")
    replication = dataclasses.replace(config.policy.replication, webhook=webhook)
    config = dataclasses.replace(
        config, policy=dataclasses.replace(config.policy, replication=replication)
    )
    async with running_sidecar(config) as running:
        yield running


async def _post(running: RunningSidecar, source: str, body: bytes) -> tuple[int, Any]:
    assert running.sidecar.webhooks is not None
    headers = {"Content-Type": "application/json", "Authorization": SECRET,
               "X-GitHub-Event": "package", "X-GitHub-Delivery": str(uuid.uuid4()),
               "X-Hub-Signature-256": "sha256="
               + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()}  # fmt: skip
    url = f"{running.sidecar.webhooks.url}/{source}"
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, data=body, headers=headers, params={"token": SECRET}) as answer,
    ):
        return answer.status, await answer.json(content_type=None)


@in_module_loop
@pytest.mark.parametrize("source", sorted(_PARSERS))
@settings(max_examples=examples(10))
@given(data=st.data())
async def test_endpoints_answer_events_or_400_and_recorded_events_drain(
    sidecar: RunningSidecar, source: str, data: st.DataObject
) -> None:
    body = data.draw(_PARSERS[source][0])
    status, answer = await _post(sidecar, source, body)
    assert status in (200, 400), (status, answer)
    if status != 200:
        assert isinstance(answer, dict) and answer.get("error"), answer
    assert sidecar.sidecar.parts is not None
    store = sidecar.sidecar.parts.store

    async def drained() -> bool:
        return not await store.pending_events()

    await wait_for(drained, timeout_s=30)


@in_module_loop
async def test_a_genuine_harbor_push_is_recorded_after_the_fuzz(sidecar: RunningSidecar) -> None:
    event = {
        "type": "PUSH_ARTIFACT",
        "occur_at": 1_700_000_000,
        "event_data": {
            "resources": [{"digest": DIGEST, "tag": f"dev-{uuid.uuid4().hex[:8]}",
                           "resource_url": f"{HOST}/team/app"}],
            "repository": {"repo_full_name": "team/app"},
        },
    }  # fmt: skip
    status, answer = await _post(sidecar, "harbor", json.dumps(event).encode())
    assert (status, answer) == (200, {"recorded": 1})
