"""A handler that fails in a way nobody planned still answers with a status and rich details.

A real grpc.aio server with the sidecar's interceptor; the failing handlers are test handlers
standing in for a servicer with a bug (no servicer of ours fails like this on purpose).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from sidecar.api._decode import DecodeErrorInterceptor

SECRET = "s3cr3t-connection-string"


async def _boom(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    raise RuntimeError(f"bug holding {SECRET}")


async def _boom_stream(
    request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]
) -> AsyncIterator[bytes]:
    yield b"first"
    raise KeyError(SECRET)


async def _fine(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    return request


def _handlers() -> grpc.GenericRpcHandler:
    same = {"request_deserializer": bytes, "response_serializer": bytes}
    return grpc.method_handlers_generic_handler(
        "test.Buggy",
        {
            "Boom": grpc.unary_unary_rpc_method_handler(_boom, **same),
            "BoomStream": grpc.unary_stream_rpc_method_handler(_boom_stream, **same),
            "Fine": grpc.unary_unary_rpc_method_handler(_fine, **same),
        },
    )


@pytest.fixture
async def channel() -> AsyncIterator[grpc.aio.Channel]:
    server = grpc.aio.server(interceptors=[DecodeErrorInterceptor()])
    server.add_generic_rpc_handlers((_handlers(),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as open_channel:
            yield open_channel
    finally:
        await server.stop(None)


def _reason(error: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(error)
    assert status is not None, f"no details on {error.code()}: {error.details()}"
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    return f"{info.domain}/{info.reason}"


async def test_a_bug_is_internal_with_details_and_no_internals(channel: grpc.aio.Channel) -> None:
    call = channel.unary_unary("/test.Buggy/Boom")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(b"x", timeout=10)
    assert caught.value.code() == grpc.StatusCode.INTERNAL  # was UNKNOWN, with the text below
    assert SECRET not in (caught.value.details() or "")
    assert _reason(caught.value) == "policy-sidecar/internal"
    # The server goes on answering.
    assert await channel.unary_unary("/test.Buggy/Fine")(b"ok", timeout=10) == b"ok"


async def test_a_bug_mid_stream_ends_the_stream_with_details(channel: grpc.aio.Channel) -> None:
    call = channel.unary_stream("/test.Buggy/BoomStream")(b"x", timeout=10)
    assert await call.read() == b"first"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call.read()
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert SECRET not in (caught.value.details() or "")
    assert _reason(caught.value) == "policy-sidecar/internal"
