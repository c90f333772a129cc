"""Fuzzed gRPC requests against a real sidecar (managed OPA, real bundle): a clear status, never a crash.

Every request starts from a valid one and has some fields replaced by arbitrary values (unicode,
control characters, huge labels, bad digests, empty strings, extreme integers). The answer must be
either a decision that keeps the DESIGN §3.2 contract or ``INVALID_ARGUMENT`` naming one of the
fields that were replaced; and after every example a valid Decide still works.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf.json_format import MessageToDict
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sidecar._proto import policy_pb2 as pb
from sidecar.config import Limits, load_config
from tests.support.fuzz import (
    CASES_CONFIG,
    FUZZ_TOKEN,
    contract_violations,
    examples,
    nasty_text,
    near_rfc3339,
)
from tests.support.sidecar import RunningSidecar

pytestmark = pytest.mark.asyncio(loop_scope="module")

DIGEST = "sha256:" + "c" * 64
INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
# The sidecar's receive cap (policy.limits.max_message_bytes): a bigger request is refused
# RESOURCE_EXHAUSTED before it is parsed; anything smaller gets a decision or INVALID_ARGUMENT.
_MAX_MESSAGE = Limits().max_message_bytes


@dataclass(frozen=True)
class Fuzzed:
    """A DecideRequest plus the names of the fields that hold fuzzed (possibly invalid) values."""

    request: pb.DecideRequest
    replaced: frozenset[str]


_labels = st.one_of(
    st.dictionaries(nasty_text, nasty_text, max_size=8),
    st.builds(lambda n: {f"k{i}": "v" for i in range(n)}, st.sampled_from([257, 3000])),
    st.builds(lambda n: {"big": "x" * n}, st.sampled_from([4097, 100_000, 1_000_000, 5_000_000])),
    st.builds(lambda n: {"k" * n: "v"}, st.sampled_from([257, 10_000])),
)
_digests = st.one_of(
    nasty_text,
    st.builds(lambda h: "sha256:" + h, st.text("0123456789abcdefABCDEFg", max_size=70)),
    st.sampled_from(["sha256:", "sha512:" + "a" * 64, "md5:" + "a" * 32, DIGEST + "\n"]),
)
_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "image.registry": st.one_of(nasty_text, st.sampled_from(["", "prod-eu", "CI", "ci\n"])),
    "image.repository": st.one_of(nasty_text, st.sampled_from(["", "team/app\n", "../x", "A/b"])),
    "image.tag": st.one_of(nasty_text, st.sampled_from(["", "prod-1\n", "-x", "t" * 129])),
    "image.digest": _digests,
    "image.labels": _labels,
    "image.annotations": _labels,
    "image.created_at": st.one_of(nasty_text, near_rfc3339),
    "image.size_bytes": INT64,
    "image.platforms": st.lists(nasty_text, max_size=5),
    # Inventory names (a valid request whose decision may remove) or anything else.
    "image.present_at": st.lists(
        st.one_of(nasty_text, st.sampled_from(["prod-us", "acme-prod", "ci", "prod-eu", "x"])),
        max_size=5,
    ),
    "event": st.one_of(nasty_text, st.sampled_from(["push", "PUSH", "manual", "deny"])),
    "caller": st.tuples(nasty_text, nasty_text, st.lists(nasty_text, max_size=3)),
    "now": st.one_of(nasty_text, near_rfc3339),
    "registry_health": st.dictionaries(
        st.one_of(nasty_text, st.sampled_from(["prod-eu", "dev-us"])), st.booleans(), max_size=4
    ),
    "access": st.dictionaries(nasty_text, INT64, max_size=4),
    "tenant_usage": st.tuples(nasty_text, INT64, INT64),
}


def _valid() -> pb.DecideRequest:
    image = pb.Image(registry="ci", repository="team/app", tag="prod-1.0", digest=DIGEST)
    return pb.DecideRequest(image=image, caller=pb.Caller(subject="fuzz"), request_id="fuzz")


def _apply(msg: pb.DecideRequest, name: str, value: Any) -> None:
    if name.startswith("image."):
        attr = name.removeprefix("image.")
        field = getattr(msg.image, attr)
        if isinstance(value, dict):
            field.clear()
            field.update(value)
        elif isinstance(value, list):
            field.extend(value)
        else:
            setattr(msg.image, attr, value)
    elif name == "caller":
        msg.caller.CopyFrom(pb.Caller(subject=value[0], tenant=value[1], roles=value[2]))
    elif name in ("registry_health", "access"):
        getattr(msg, name).update(value)
    elif name == "tenant_usage":
        msg.tenant_usage.CopyFrom(pb.TenantUsage(id=value[0], storage_used_bytes=value[1],
                                                 storage_limit_bytes=value[2]))  # fmt: skip
    else:
        setattr(msg, name, value)


@st.composite
def fuzzed_requests(draw: st.DrawFn) -> Fuzzed:
    """A valid request with one to four fields replaced by fuzzed values."""
    names = draw(st.lists(st.sampled_from(sorted(_FIELDS)), min_size=1, max_size=4, unique=True))
    msg = _valid()
    for name in names:
        _apply(msg, name, draw(_FIELDS[name]))
    return Fuzzed(msg, frozenset(names))


def _inventory() -> tuple[str, ...]:
    return tuple(r.name for r in load_config(CASES_CONFIG).registries)


def _decision_ok(decision: pb.Decision, request: pb.DecideRequest) -> None:
    as_json = MessageToDict(
        decision, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    image = request.image
    assert contract_violations(as_json, _inventory(), image.registry, image.present_at) == []


def _names_a_replaced_field(detail: str, fuzzed: Fuzzed) -> bool:
    field = detail.partition(":")[0]
    return any(field == r or field.startswith(f"{r}.") for r in fuzzed.replaced)


def _check_refusal(err: grpc.aio.AioRpcError, fuzzed: Fuzzed) -> None:
    detail = err.details() or ""
    if err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
        assert fuzzed.request.ByteSize() > _MAX_MESSAGE, detail
        return
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (err.code(), detail)
    assert _names_a_replaced_field(detail, fuzzed), (detail, sorted(fuzzed.replaced))


async def _still_serving(running: RunningSidecar) -> None:
    answer = await running.stub.Decide(_valid(), timeout=30)
    assert answer.decision_id and not answer.degraded


def _with_labels(labels: dict[str, str]) -> Fuzzed:
    msg = _valid()
    msg.image.labels.update(labels)
    return Fuzzed(msg, frozenset({"image.labels"}))


@settings(max_examples=examples(40))
@given(fuzzed=fuzzed_requests())
# Over gRPC's 4 MiB message limit: the transport's RESOURCE_EXHAUSTED, and the server goes on.
@example(fuzzed=_with_labels({"big": "x" * 5_000_000}))
async def test_decide_answers_a_decision_or_invalid_argument_naming_the_field(
    sidecar: RunningSidecar, fuzzed: Fuzzed
) -> None:
    try:
        answer = await sidecar.stub.Decide(fuzzed.request, timeout=30)
    except grpc.aio.AioRpcError as err:
        _check_refusal(err, fuzzed)
    else:
        _decision_ok(answer.decision, fuzzed.request)
    await _still_serving(sidecar)


@settings(max_examples=examples(10))
@given(batch=st.lists(fuzzed_requests(), min_size=1, max_size=6))
async def test_decide_stream_answers_every_request_in_band(
    sidecar: RunningSidecar, batch: list[Fuzzed]
) -> None:
    small = [f for f in batch if f.request.ByteSize() <= _MAX_MESSAGE]
    for index, fuzzed in enumerate(small):
        fuzzed.request.request_id = f"r{index}"

    async def requests() -> AsyncIterator[pb.DecideRequest]:
        for fuzzed in small:
            yield fuzzed.request

    answers = {a.request_id: a async for a in sidecar.stub.DecideStream(requests(), timeout=60)}
    assert set(answers) == {f"r{i}" for i in range(len(small))}
    for index, fuzzed in enumerate(small):
        answer = answers[f"r{index}"]
        if answer.HasField("error"):
            assert answer.error.code == "invalid_argument", answer.error
            assert _names_a_replaced_field(answer.error.field, fuzzed), answer.error
        else:
            _decision_ok(answer.decision, fuzzed.request)
    await _still_serving(sidecar)


def _without_digest(**image: str) -> Fuzzed:
    msg = _valid()
    msg.image.digest = ""
    for name, value in image.items():
        setattr(msg.image, name, value)
    return Fuzzed(msg, frozenset(f"image.{name}" for name in image))


@settings(max_examples=examples(25))
@given(fuzzed=fuzzed_requests(), dry_run=st.booleans(), drop_digest=st.booleans())
# Regression: a tag was resolved in the registry before validation, so an unknown registry was
# NOT_FOUND (and a malformed repository or tag went into a registry URL).
@example(fuzzed=_without_digest(registry=""), dry_run=False, drop_digest=True)
@example(fuzzed=_without_digest(repository="../x"), dry_run=True, drop_digest=True)
async def test_replicate_answers_jobs_or_a_clear_status(
    sidecar: RunningSidecar, fuzzed: Fuzzed, dry_run: bool, drop_digest: bool
) -> None:
    if drop_digest and "image.digest" not in fuzzed.replaced:
        # Without a digest the tag is resolved in the source registry (closed port here).
        fuzzed.request.image.digest = ""
    request = pb.ReplicateRequest(request=fuzzed.request, dry_run=dry_run)
    try:
        answer = await sidecar.stub.Replicate(request, timeout=30)
    except grpc.aio.AioRpcError as err:
        if err.code() == grpc.StatusCode.UNAVAILABLE and not fuzzed.request.image.digest:
            # The tag could not be resolved: the source registry is down, and the status says so.
            assert fuzzed.request.image.registry in (err.details() or ""), err.details()
        else:
            _check_refusal(err, fuzzed)
    else:
        _decision_ok(answer.decision.decision, fuzzed.request)
        assert len(answer.job_ids) == len(answer.decision.decision.routes)
    await _still_serving(sidecar)


@settings(max_examples=examples(30))
@given(state=st.one_of(nasty_text, st.sampled_from(["queued", "QUEUED", "parked "])),
       limit=st.integers(min_value=-(2**31), max_value=2**31 - 1), job_id=nasty_text)  # fmt: skip
@example(state="running", limit=10_001, job_id="")
async def test_job_queries_answer_or_refuse_naming_the_field(
    sidecar: RunningSidecar, state: str, limit: int, job_id: str
) -> None:
    try:
        listed = await sidecar.stub.ListJobs(pb.ListJobsRequest(state=state, limit=limit))
    except grpc.aio.AioRpcError as err:
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
        assert (err.details() or "").startswith(("state:", "limit:")), err.details()
    else:
        assert len(listed.jobs) <= (limit or 100)
        assert all(job.state == state for job in listed.jobs) or not state
    with pytest.raises(grpc.aio.AioRpcError) as lookup:
        await sidecar.stub.GetJob(pb.GetJobRequest(job_id=job_id), timeout=30)
    want = grpc.StatusCode.NOT_FOUND if job_id else grpc.StatusCode.INVALID_ARGUMENT
    assert lookup.value.code() == want, lookup.value.details()
    await _still_serving(sidecar)


# What a client may put in an ``authorization`` header: printable ASCII (gRPC metadata).
_header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80)
_tokens = st.one_of(
    st.just(FUZZ_TOKEN),
    st.just(f" {FUZZ_TOKEN} "),
    st.just(FUZZ_TOKEN + "x"),
    _header_text,
)


@settings(max_examples=examples(40))
@given(
    fuzzed=fuzzed_requests(),
    presented=_tokens,
    scheme=st.sampled_from(["Bearer", "bearer", "BEARER", "Basic", ""]),
)
@example(fuzzed=Fuzzed(_valid(), frozenset({"caller"})), presented=FUZZ_TOKEN, scheme="Bearer")
async def test_an_authenticated_sidecar_answers_fuzzed_requests_and_credentials(
    authed_sidecar: RunningSidecar, fuzzed: Fuzzed, presented: str, scheme: str
) -> None:
    """policy.auth: a bad credential is UNAUTHENTICATED, a widening caller PERMISSION_DENIED."""
    if "caller" not in fuzzed.replaced:
        fuzzed.request.caller.subject = ""  # derived from the token
    metadata = (("authorization", f"{scheme} {presented}"),)
    valid = scheme.lower() == "bearer" and presented.strip() == FUZZ_TOKEN
    try:
        answer = await authed_sidecar.stub.Decide(fuzzed.request, metadata=metadata, timeout=30)
    except grpc.aio.AioRpcError as err:
        detail = err.details() or ""
        if err.code() == grpc.StatusCode.UNAUTHENTICATED:
            assert not valid, detail
        elif err.code() == grpc.StatusCode.PERMISSION_DENIED:
            assert valid and "caller" in fuzzed.replaced, detail
            assert detail.startswith("caller."), detail
        else:
            _check_refusal(err, fuzzed)
    else:
        assert valid
        _decision_ok(answer.decision, fuzzed.request)
    still = await authed_sidecar.stub.Decide(
        pb.DecideRequest(image=_valid().image),
        metadata=(("authorization", f"Bearer {FUZZ_TOKEN}"),),
    )
    assert still.decision_id and not still.degraded
