"""Arbitrary bytes as gRPC request messages, on every PolicyService method of a real sidecar.

Whatever a broken client sends, the answer is a status that says what is wrong — never UNKNOWN,
INTERNAL or a hang until the deadline — and the sidecar goes on deciding.
"""

from __future__ import annotations

import contextlib

import grpc
import pytest
from google.protobuf.message import DecodeError
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sidecar._proto import policy_pb2 as pb
from tests.support.fuzz import examples, nasty_text
from tests.support.sidecar import RunningSidecar

pytestmark = pytest.mark.asyncio(loop_scope="module")

SERVICE = "/freightliner.policy.v1.PolicyService/"
UNARY = ("Decide", "Replicate", "GetJob", "ListJobs", "ResolvePull", "Explain")
# Statuses that mean "the server failed" or "the server hung", not "your request is wrong".
NOT_AN_ANSWER = {
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.UNIMPLEMENTED,
}
# A valid DecideRequest, then flipped and truncated below: near-misses of real traffic.
_VALID = pb.DecideRequest(
    image=pb.Image(registry="ci", repository="team/app", tag="prod-1", digest="sha256:" + "c" * 64)
).SerializeToString()

_bodies = st.one_of(
    st.binary(max_size=200),
    st.builds(lambda n: _VALID[:n], st.integers(0, len(_VALID))),
    st.builds(
        lambda i, b: _VALID[:i] + bytes([b]) + _VALID[i + 1 :],
        st.integers(0, len(_VALID) - 1),
        st.integers(0, 255),
    ),
)


def _parses(body: bytes) -> bool:
    try:
        pb.DecideRequest.FromString(body)
    except DecodeError:
        return False
    return True


def _check(err: grpc.aio.AioRpcError) -> None:
    assert err.code() not in NOT_AN_ANSWER, (err.code(), err.details())
    if err.code() == grpc.StatusCode.INVALID_ARGUMENT:
        field = (err.details() or "").partition(":")[0]
        assert field, err.details()


async def _still_serving(running: RunningSidecar) -> None:
    answer = await running.stub.Decide(pb.DecideRequest.FromString(_VALID), timeout=30)
    assert answer.decision_id and not answer.degraded


@settings(max_examples=examples(40))
@given(method=st.sampled_from(UNARY), body=_bodies)
# Regressions: corrupt wire format and a string field that is not UTF-8 were UNKNOWN
# ("Unexpected DecodeError") instead of INVALID_ARGUMENT.
@example(method="Decide", body=b"\xff\xff\xff")
@example(method="ListJobs", body=b"\x0a\x02\xc3\x28")
async def test_unary_methods_answer_arbitrary_bytes_with_a_clear_status(
    sidecar: RunningSidecar, method: str, body: bytes
) -> None:
    call = sidecar.channel.unary_unary(SERVICE + method)
    try:
        await call(body, timeout=30)
    except grpc.aio.AioRpcError as err:
        _check(err)
    await _still_serving(sidecar)


@settings(max_examples=examples(15))
@given(bodies=st.lists(_bodies, min_size=1, max_size=5))
# Regression: a malformed message in the stream left DecideStream waiting until the deadline.
@example(bodies=[_VALID, b"\xff\xff\xff", _VALID])
async def test_decide_stream_ends_with_a_clear_status_on_arbitrary_bytes(
    sidecar: RunningSidecar, bodies: list[bytes]
) -> None:
    # Stop after the first message that does not parse: the server ends the call there, and a
    # write racing that end fails in the *client* (INTERNAL), hiding the server's status.
    sent = bodies[: next((i + 1 for i, b in enumerate(bodies) if not _parses(b)), len(bodies))]
    call = sidecar.channel.stream_stream(SERVICE + "DecideStream")(timeout=30)
    for body in sent:
        await call.write(body)
    with contextlib.suppress(grpc.aio.AioRpcError):
        await call.done_writing()
    answers = 0
    with contextlib.suppress(grpc.aio.AioRpcError):
        while await call.read() is not grpc.aio.EOF:
            answers += 1
    code = await call.code()
    assert code not in NOT_AN_ANSWER, (code, await call.details())
    if code == grpc.StatusCode.OK:
        assert answers == len(sent)
    else:
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, await call.details())
        assert (await call.details()).startswith("request: not a valid message")
    await _still_serving(sidecar)


@settings(max_examples=examples(15))
@given(body=_bodies)
async def test_watch_job_answers_arbitrary_bytes_with_a_clear_status(
    sidecar: RunningSidecar, body: bytes
) -> None:
    call = sidecar.channel.unary_stream(SERVICE + "WatchJob")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        _ = [job async for job in call(body, timeout=30)]
    _check(err.value)
    await _still_serving(sidecar)


@settings(max_examples=examples(20))
@given(
    image=st.builds(pb.Image, registry=st.one_of(nasty_text, st.just("ci")),
                    repository=nasty_text, tag=nasty_text, digest=nasty_text),
    region=nasty_text,
)  # fmt: skip
async def test_resolve_pull_answers_fuzzed_images_with_a_clear_status(
    sidecar: RunningSidecar, image: pb.Image, region: str
) -> None:
    request = pb.ResolvePullRequest(image=image, client_region=region)
    try:
        await sidecar.stub.ResolvePull(request, timeout=30)
    except grpc.aio.AioRpcError as err:
        _check(err)
        if err.code() == grpc.StatusCode.INVALID_ARGUMENT:
            assert (err.details() or "").startswith("image."), err.details()
    await _still_serving(sidecar)
