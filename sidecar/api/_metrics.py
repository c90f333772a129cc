"""A server interceptor counting every RPC in the standard gRPC server metrics.

``grpc_server_started_total``, ``grpc_server_handled_total`` (by ``grpc_code``),
``grpc_server_handling_seconds`` and ``grpc_server_msg_received_total``/``msg_sent_total``, with
go-grpc-prometheus's names and labels (``grpc_type``, ``grpc_service``, ``grpc_method``), plus the
sidecar's own ``policy_sidecar_grpc_requests_total`` and ``policy_sidecar_requests_in_flight``.
Only registered methods are counted: a caller naming a method that does not exist (answered
UNIMPLEMENTED by gRPC) cannot mint label values.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc

from sidecar.telemetry import Metrics

__all__ = ["MetricsInterceptor"]

_Context = grpc.aio.ServicerContext[Any, Any]
if TYPE_CHECKING:  # generic only in the type stubs; subscripting them at run time fails
    _Handler = grpc.RpcMethodHandler[Any, Any]
    _Interceptor = grpc.aio.ServerInterceptor[Any, Any]
else:
    _Handler = grpc.RpcMethodHandler
    _Interceptor = grpc.aio.ServerInterceptor

_KINDS = {
    (False, False): ("unary", "unary_unary", grpc.unary_unary_rpc_method_handler),
    (False, True): ("server_stream", "unary_stream", grpc.unary_stream_rpc_method_handler),
    (True, False): ("client_stream", "stream_unary", grpc.stream_unary_rpc_method_handler),
    (True, True): ("bidi_stream", "stream_stream", grpc.stream_stream_rpc_method_handler),
}


class _Call:
    """One RPC's labels and clock; ``done`` records how it ended."""

    def __init__(self, metrics: Metrics, grpc_type: str, full_method: str) -> None:
        self.metrics, self.grpc_type = metrics, grpc_type
        self.service, _, self.method = full_method.lstrip("/").rpartition("/")
        self.started = time.perf_counter()
        metrics.grpc_started(grpc_type, self.service, self.method)

    def message(self, *, sent: bool) -> None:
        self.metrics.grpc_message(self.grpc_type, self.service, self.method, sent=sent)

    def done(self, context: _Context, exc: BaseException | None) -> None:
        seconds = time.perf_counter() - self.started
        code = _status(context, exc)
        self.metrics.grpc_handled(self.grpc_type, self.service, self.method, code, seconds)


def _status(context: _Context, exc: BaseException | None) -> str:
    """The status name the caller receives: what the handler set or aborted with, else by outcome."""
    # A stream closed under the handler (the caller went away) ends it with GeneratorExit.
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        return grpc.StatusCode.CANCELLED.name
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    if isinstance(code, int):  # some grpcio versions hand back the wire number
        return next((c.name for c in grpc.StatusCode if c.value[0] == code), "UNKNOWN")
    return grpc.StatusCode.OK.name if exc is None else grpc.StatusCode.UNKNOWN.name


async def _counted(requests: AsyncIterator[Any], call: _Call) -> AsyncIterator[Any]:
    async for request in requests:
        call.message(sent=False)
        yield request


def _wrap(handler: _Handler, full_method: str, metrics: Metrics) -> _Handler:
    kind = (handler.request_streaming, handler.response_streaming)
    grpc_type, attr, factory = _KINDS[kind]
    behaviour = getattr(handler, attr)

    def begin(request: Any) -> tuple[_Call, Any]:
        call = _Call(metrics, grpc_type, full_method)
        if handler.request_streaming:
            return call, _counted(request, call)
        call.message(sent=False)
        return call, request

    if inspect.isasyncgenfunction(behaviour):

        async def generator(request: Any, context: _Context) -> AsyncIterator[Any]:
            call, request = begin(request)
            failure: BaseException | None = None
            try:
                with metrics.track_in_flight():
                    async for answer in behaviour(request, context):
                        call.message(sent=True)
                        yield answer
            except BaseException as exc:
                failure = exc
                raise
            finally:
                call.done(context, failure)

        wrapped: Callable[..., Any] = generator
    elif inspect.iscoroutinefunction(behaviour):

        async def coroutine(request: Any, context: _Context) -> Any:
            call, request = begin(request)
            failure: BaseException | None = None
            try:
                with metrics.track_in_flight():
                    answer = await behaviour(request, context)
                if not handler.response_streaming:
                    call.message(sent=True)
                return answer
            except BaseException as exc:
                failure = exc
                raise
            finally:
                call.done(context, failure)

        wrapped = coroutine
    else:
        return handler  # a synchronous handler (none here): left as it is
    return factory(wrapped, handler.request_deserializer, handler.response_serializer)


class MetricsInterceptor(_Interceptor):
    """Counts every RPC of a registered method in the standard gRPC server metrics."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[_Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> _Handler:
        """Return the looked-up handler wrapped to count it; unknown methods pass uncounted."""
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        return _wrap(handler, handler_call_details.method, self._metrics)
