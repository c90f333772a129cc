"""Fuzzed registry notifications: 400 naming the problem (never 500), and the inbox keeps draining.

``parse_envelope``/``resolve_registry`` are fuzzed directly; then the real endpoint of a real
sidecar (webhooks on, managed OPA, SQLite inbox) gets arbitrary bodies and envelopes with fuzzed
events. Every recorded event must be processed or dropped — none may stay pending forever — and a
real push afterwards still becomes replication jobs.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sidecar.config import load_config
from sidecar.config._registries import RegistryConfig
from sidecar.config._replication import WebhookSettings
from sidecar.errors import WebhookRejected
from sidecar.model.decision import RegistryFacts
from sidecar.webhooks import ENVELOPE_MEDIA_TYPE
from sidecar.webhooks.envelope import RegistryEvent, parse_envelope, resolve_registry
from tests.support.fuzz import CASES_CONFIG, examples, json_values, nasty_text, urlish
from tests.support.sidecar import RunningSidecar, isolated_config, running_sidecar
from tests.support.webhooks import wait_for

# Only the endpoint tests are async; they share the module's sidecar and event loop.
in_module_loop = pytest.mark.asyncio(loop_scope="module")

SECRET = "fuzz-secret"
HOST = "127.0.0.1:1"  # every registry of the cases inventory is configured at this endpoint
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DIGEST = "sha256:" + "d" * 64

_field = st.one_of(nasty_text, json_values)
_targets = st.fixed_dictionaries(
    {},
    optional={
        "mediaType": st.one_of(st.just(MANIFEST), _field),
        "repository": st.one_of(st.just("team/app"), _field),
        "tag": st.one_of(st.just("dev-1"), _field),
        "digest": st.one_of(st.just(DIGEST), _field),
        "url": st.one_of(urlish, _field),
    },
)
_events = st.fixed_dictionaries(
    {},
    optional={
        "id": st.one_of(st.uuids().map(str), _field),
        "action": st.one_of(st.sampled_from(["push", "pull", "delete", "mount"]), _field),
        "target": st.one_of(_targets, _field),
        "request": st.one_of(st.fixed_dictionaries({"host": st.one_of(urlish, _field)}), _field),
        "source": st.one_of(st.fixed_dictionaries({"addr": st.one_of(urlish, _field)}), _field),
    },
)
_bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.lists(_events, max_size=4).map(lambda e: json.dumps({"events": e}).encode()),
    st.just(b"[" * 5000 + b"]" * 5000),
)
# What an HTTP client can put in a header (no control characters), Bearer-shaped or not.
_header_text = st.one_of(
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40).map(
        "Bearer ".__add__
    ),
)
_REGISTRIES = (
    RegistryConfig(name="eu", facts=RegistryFacts("eu", "eu-west-1", "prod"), endpoint=f"http://{HOST}"),
)  # fmt: skip


def _rejected_clearly(exc: WebhookRejected) -> None:
    assert exc.status == 400 and exc.message, exc


@settings(max_examples=examples(300))
@given(body=_bodies)
def test_parse_envelope_returns_events_or_rejects_with_400(body: bytes) -> None:
    try:
        events = parse_envelope(body)
    except WebhookRejected as exc:
        _rejected_clearly(exc)
    else:
        assert all(isinstance(e, RegistryEvent) and e.id and e.repository for e in events)


@settings(max_examples=examples(200))
@given(host=st.one_of(urlish, nasty_text), url=st.one_of(urlish, nasty_text), addr=nasty_text)
# Regression: a target.url urllib cannot split ("[x") raised ValueError (HTTP 500).
@example(host=HOST, url="http://[x/v2/team/app/manifests/latest", addr="")
def test_resolve_registry_finds_the_registry_or_rejects_with_400(
    host: str, url: str, addr: str
) -> None:
    event = RegistryEvent("e", "push", "team/app", url=url, request_host=host, source_addr=addr)
    try:
        assert resolve_registry(event, _REGISTRIES) is _REGISTRIES[0]
    except WebhookRejected as exc:
        _rejected_clearly(exc)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sidecar(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningSidecar]:
    """A real sidecar with its webhook endpoint on a free loopback port."""
    config = isolated_config(load_config(CASES_CONFIG), tmp_path_factory.mktemp("fuzz-webhooks"))
    replication = dataclasses.replace(
        config.policy.replication, webhook=WebhookSettings("127.0.0.1:0", SECRET)
    )
    config = dataclasses.replace(
        config, policy=dataclasses.replace(config.policy, replication=replication)
    )
    async with running_sidecar(config) as running:
        yield running


async def _post(running: RunningSidecar, body: bytes, auth: str | None) -> tuple[int, Any]:
    assert running.sidecar.webhooks is not None
    headers = {"Content-Type": ENVELOPE_MEDIA_TYPE}
    if auth is not None:
        headers["Authorization"] = auth
    async with (
        aiohttp.ClientSession() as http,
        http.post(running.sidecar.webhooks.url, data=body, headers=headers) as answer,
    ):
        return answer.status, await answer.json(content_type=None)


def _push(event_id: str, tag: str, *, host: str = HOST, url: str = "") -> bytes:
    target = {"mediaType": MANIFEST, "repository": "team/app", "tag": tag, "digest": DIGEST}
    if url:
        target["url"] = url
    event = {"id": event_id, "action": "push", "target": target, "request": {"host": host}}
    return json.dumps({"events": [event]}).encode()


async def _pending(running: RunningSidecar) -> list[tuple[str, bytes]]:
    assert running.sidecar.parts is not None
    return await running.sidecar.parts.store.pending_events()


@in_module_loop
@settings(max_examples=examples(40))
@given(body=_bodies, auth=st.one_of(st.just(f"Bearer {SECRET}"), st.none(), _header_text))
# Regression: an unknown host plus a target.url urllib cannot split was a 500, not a 400.
@example(body=_push("x", "dev-1", host="elsewhere", url="http://[x/v2/a"), auth=f"Bearer {SECRET}")
async def test_endpoint_answers_400_or_401_naming_the_problem_never_500(
    sidecar: RunningSidecar, body: bytes, auth: str | None
) -> None:
    status, answer = await _post(sidecar, body, auth)
    assert status in (200, 400, 401), (status, answer)
    if status != 200:
        assert isinstance(answer, dict) and answer.get("error"), answer
    ok, _ = await _post(sidecar, _push(f"alive-{uuid.uuid4()}", "dev-1"), f"Bearer {SECRET}")
    assert ok == 200


@in_module_loop
@settings(max_examples=examples(25))
@given(events=st.lists(_events, min_size=1, max_size=4))
# Regression: a push whose tag or repository the policy refuses was retried forever.
@example(events=[{"id": "bad-tag", "action": "push", "request": {"host": HOST},
                  "target": {"mediaType": MANIFEST, "repository": "team/app", "tag": "bad tag!",
                             "digest": DIGEST}}])  # fmt: skip
async def test_every_recorded_event_is_processed_or_dropped(
    sidecar: RunningSidecar, events: list[dict[str, Any]]
) -> None:
    for event in events:
        # A digest-less push waits for its (here unreachable) source registry: legitimately pending.
        target = event.get("target")
        if isinstance(target, dict) and not target.get("digest"):
            target["digest"] = DIGEST
    status, answer = await _post(
        sidecar, json.dumps({"events": events}).encode(), f"Bearer {SECRET}"
    )
    assert status in (200, 400), (status, answer)

    async def drained() -> bool:
        return not await _pending(sidecar)

    await wait_for(drained, timeout_s=30)


@in_module_loop
async def test_a_real_push_still_becomes_jobs_after_the_fuzz(sidecar: RunningSidecar) -> None:
    status, _ = await _post(sidecar, _push("after-fuzz", "dev-after-fuzz"), f"Bearer {SECRET}")
    assert status == 200
    assert sidecar.sidecar.parts is not None
    store = sidecar.sidecar.parts.store

    async def jobs_made() -> bool:
        return any(j.destination.endswith(":dev-after-fuzz") for j in await store.list_jobs())

    await wait_for(jobs_made, timeout_s=30)
