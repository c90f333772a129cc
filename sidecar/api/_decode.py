"""A server interceptor that answers a request whose bytes are not a valid message with INVALID_ARGUMENT.

It also turns an exception no servicer expected (a bug) into ``INTERNAL`` with the same rich
details as every other error (ErrorInfo ``internal``) instead of grpc's ``UNKNOWN`` carrying the
exception's own text: the traceback goes to our log, never to the caller.

Without it grpc parses requests before any servicer code runs and turns a ``DecodeError`` (corrupt
wire format, a string field that is not UTF-8) into ``UNKNOWN: Unexpected DecodeError``: not the
clear ``INVALID_ARGUMENT`` naming the problem that DESIGN §6 promises for bad input.

It also enforces a per-method message size cap below the server's transport cap: one server
hosts both PolicyService (small messages) and PolicyAdmin (bundles), and grpc's receive limit is
per server, so a request over its method's cap is refused ``RESOURCE_EXHAUSTED`` before parsing.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf.message import DecodeError

from sidecar.api.status import abort
from sidecar.errors import InvalidArgument, ResourceExhausted, SidecarError
from sidecar.telemetry import get_logger

__all__ = ["DecodeErrorInterceptor"]

_log = get_logger(__name__)

_Context = grpc.aio.ServicerContext[Any, Any]
if TYPE_CHECKING:  # generic only in the type stubs; subscripting them at run time fails
    _Handler = grpc.RpcMethodHandler[Any, Any]
    _Interceptor = grpc.aio.ServerInterceptor[Any, Any]
else:
    _Handler = grpc.RpcMethodHandler
    _Interceptor = grpc.aio.ServerInterceptor


@dataclass(frozen=True, slots=True)
class _Malformed:
    """Stands in for a request that failed to parse, so the handler can abort with its status."""

    error: SidecarError


def _lenient(deserialize: Callable[[bytes], Any], max_bytes: int | None) -> Callable[[bytes], Any]:
    def parse(raw: bytes) -> Any:
        if max_bytes is not None and len(raw) > max_bytes:
            return _Malformed(
                ResourceExhausted(
                    f"request: message of {len(raw)} bytes is over the limit of {max_bytes} "
                    "(policy.limits.max_message_bytes)",
                    limit="policy.limits.max_message_bytes",
                )
            )
        try:
            return deserialize(raw)
        except DecodeError as exc:
            return _Malformed(InvalidArgument("request", f"not a valid message: {exc}"))

    return parse


class _MalformedInStream(Exception):
    """A malformed message in a request stream; raised where the stream is read, aborted above."""

    def __init__(self, malformed: _Malformed) -> None:
        super().__init__(malformed.error.message)
        self.malformed = malformed


async def _abort(context: _Context, malformed: _Malformed) -> None:
    await abort(context, malformed.error)


async def _unexpected(context: _Context, exc: Exception) -> None:
    _log.error("unexpected error in a gRPC handler", error_type=type(exc).__name__, exc_info=exc)
    await abort(context, SidecarError("internal error (logged by the sidecar)"))


async def _checked_stream(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    # No abort here: a servicer may read its requests in another task while answers are being
    # written, and aborting there races the write; the handler's own task aborts instead.
    async for request in requests:
        if isinstance(request, _Malformed):
            raise _MalformedInStream(request)
        yield request


async def _prepare(request: Any, context: _Context, streaming: bool) -> Any:
    if streaming:
        return _checked_stream(request)
    if isinstance(request, _Malformed):
        await _abort(context, request)
    return request


def _behaviour(behaviour: Callable[..., Any], streaming: bool) -> Callable[..., Any] | None:
    """Return ``behaviour`` checking its request(s) first; None for a synchronous one (left as is)."""
    if inspect.isasyncgenfunction(behaviour):

        async def generator(request: Any, context: _Context) -> AsyncIterator[Any]:
            try:
                async for answer in behaviour(await _prepare(request, context, streaming), context):
                    yield answer
            except _MalformedInStream as exc:
                await _abort(context, exc.malformed)
            except grpc.aio.AbortError:
                raise  # a deliberate status, already sent
            except Exception as exc:  # a bug still answers with a status and its details
                await _unexpected(context, exc)

        return generator
    if inspect.iscoroutinefunction(behaviour):
        # Also the server-streaming handlers that answer with context.write() (gRPC health).

        async def coroutine(request: Any, context: _Context) -> Any:
            try:
                return await behaviour(await _prepare(request, context, streaming), context)
            except _MalformedInStream as exc:
                await _abort(context, exc.malformed)
            except grpc.aio.AbortError:
                raise  # a deliberate status, already sent
            except Exception as exc:  # a bug still answers with a status and its details
                await _unexpected(context, exc)

        return coroutine
    return None


_FACTORIES = {
    (False, False): ("unary_unary", grpc.unary_unary_rpc_method_handler),
    (False, True): ("unary_stream", grpc.unary_stream_rpc_method_handler),
    (True, False): ("stream_unary", grpc.stream_unary_rpc_method_handler),
    (True, True): ("stream_stream", grpc.stream_stream_rpc_method_handler),
}


def _wrap(handler: _Handler, max_bytes: int | None) -> _Handler:
    attr, factory = _FACTORIES[(handler.request_streaming, handler.response_streaming)]
    wrapped = _behaviour(getattr(handler, attr), handler.request_streaming)
    if wrapped is None or handler.request_deserializer is None:
        return handler
    parse = _lenient(handler.request_deserializer, max_bytes)
    return factory(wrapped, parse, handler.response_serializer)


class DecodeErrorInterceptor(_Interceptor):
    """Makes every handler answer an unparsable request with INVALID_ARGUMENT instead of UNKNOWN.

    A request message over ``max_message_bytes`` is answered RESOURCE_EXHAUSTED, unparsed, except
    for the methods of the services in ``uncapped`` (left to the server's transport cap).
    """

    def __init__(
        self, max_message_bytes: int | None = None, uncapped: tuple[str, ...] = ()
    ) -> None:
        self._max = max_message_bytes
        self._uncapped = tuple(f"/{service}/" for service in uncapped)
        # method → (the registered handler, its wrapper). This interceptor is the innermost, so
        # the handler is the same object on every call: wrap it once, not once per RPC (issue
        # 18: two closures and a handler tuple per call, on the Decide hot path). Bounded by the
        # registered methods: an unknown one has no handler and is never stored.
        self._wrapped: dict[str, tuple[_Handler, _Handler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[_Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> _Handler:
        """Return the looked-up handler with a parse step that reports malformed requests."""
        handler = await continuation(handler_call_details)
        # None: no such method (grpc answers UNIMPLEMENTED); no deserializer: nothing to parse.
        if handler is None or handler.request_deserializer is None:
            return handler
        method = handler_call_details.method
        known = self._wrapped.get(method)
        if known is not None and known[0] is handler:
            return known[1]
        uncapped = method.startswith(self._uncapped)
        wrapped = _wrap(handler, None if uncapped else self._max)
        self._wrapped[method] = (handler, wrapped)
        return wrapped
