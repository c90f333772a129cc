"""Polls SQS queues of ECR events (EventBridge rule → queue) into the durable webhook inbox.

One :class:`SqsPoller` per configured source (``policy.replication.sqs``). Each round is a long
poll (``WaitTimeSeconds``) that hides the messages it returns for ``VisibilityTimeout``; every
message is parsed (sidecar/webhooks/ecr.py) and its event recorded in the inbox, and only then
is the message deleted. So a crash or stop between the two leaves the message in the queue: SQS
shows it again after the visibility timeout, and the inbox, keyed by the EventBridge event id,
answers "duplicate" — the message is deleted and nothing is processed twice. A message the
store could not record is not deleted either (it comes back).

A message that can never become an event (not JSON, over ``max_message_bytes``, not an ECR
event, fields missing or malformed, another account or region than the registry) is deleted by
default, or left for the queue's redrive policy with ``invalid_messages: keep``; either way
nothing is recorded. A well-formed ECR event the sidecar does not act on (a failed push, another
detail type) is deleted.

boto3 blocks, so every SQS call runs on the poller's own daemon thread (not the loop's default
executor, which a 20-second long poll per source would starve, and which the interpreter waits
for at exit: a stopped sidecar must not hang on a long poll nobody will read). Messages such an
orphaned long poll still receives are made visible again at once, not hidden for the visibility
timeout. A failed receive or delete (SQS unreachable, credentials refused) is counted and retried
with exponential backoff and jitter; the rest of the sidecar keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import queue
import random
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Literal, TypeVar

from prometheus_client import CollectorRegistry, Counter

from sidecar.config import RegistryConfig, SqsSource
from sidecar.errors import WebhookRejected
from sidecar.oci import aws_session
from sidecar.tasks import cancel_and_wait
from sidecar.telemetry import METRIC_PREFIX, get_logger
from sidecar.typing import EventInbox
from sidecar.webhooks.ecr import EcrIgnored, parse_ecr_message
from sidecar.webhooks.envelope import encode_stored

__all__ = ["SqsMetrics", "SqsOutcome", "SqsPoller"]

SqsOutcome = Literal["recorded", "duplicate", "ignored", "invalid", "failed"]

_log = get_logger("sidecar.webhooks.sqs")
_T = TypeVar("_T")
# https://sqs.<region>.amazonaws.com/<account>/<queue>: the region a queue URL names.
_QUEUE_REGION = re.compile(r"^https?://sqs[.-]([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/")
_CONNECT_TIMEOUT_S = 5.0
# A long poll answers after at most wait_time_s; more than that without an answer is a dead link.
_READ_MARGIN_S = 10.0


class SqsMetrics:
    """The SQS sources' counters, registered in a caller-owned Prometheus registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        """Register the SQS metric families in ``registry``."""
        self._messages = Counter(
            f"{METRIC_PREFIX}sqs_messages_received",
            "SQS messages received, by source and outcome (recorded in the inbox; duplicate: "
            "already recorded, deleted; ignored: an ECR event not acted on, deleted; invalid: "
            "not a usable ECR event; failed: not recorded, left for redelivery).",
            ["source", "outcome"],
            registry=registry,
        )
        self._errors = Counter(
            f"{METRIC_PREFIX}sqs_poll_errors",
            "Failed SQS calls, by source and operation (receive, delete); each is retried with "
            "backoff.",
            ["source", "operation"],
            registry=registry,
        )

    def message(self, source: str, outcome: SqsOutcome) -> None:
        """Count one received message."""
        self._messages.labels(source=source, outcome=outcome).inc()

    def poll_error(self, source: str, operation: str) -> None:
        """Count one failed SQS call."""
        self._errors.labels(source=source, operation=operation).inc()


_Call = tuple[Callable[[], Any], asyncio.AbstractEventLoop, asyncio.Future[Any]]


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.cancelled():
        return  # the poller stopped while the call ran: nobody reads the answer
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


class _Worker:
    """One daemon thread running blocking calls in order; nothing waits for it at exit."""

    def __init__(self, name: str) -> None:
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._calls.get()) is not None:
            call, loop, future = item
            try:
                ok, value = True, call()
            except Exception as exc:
                ok, value = False, exc
            # The loop may be closed by now (the sidecar stopped): then the answer is dropped.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, future, ok, value)

    async def run(self, call: Callable[[], _T]) -> _T:
        """Run ``call`` on the thread and return its result (or raise its exception)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_T] = loop.create_future()
        self._calls.put((call, loop, future))
        return await future

    def close(self) -> None:
        """Let the thread end after the call it is running (a long poll ends by itself)."""
        self._calls.put(None)


def _region(source: SqsSource, registry: RegistryConfig) -> str:
    """The queue's region: configured, else the registry's, else the one its URL names."""
    found = _QUEUE_REGION.match(source.queue_url)
    return source.region or registry.region or (found.group(1) if found else "")


def _client(source: SqsSource, registry: RegistryConfig) -> Any:
    """An SQS client with the source's credentials (blocking: runs on the poller's thread)."""
    import botocore.config  # noqa: PLC0415 - boto3 is slow to import; only SQS sources need it

    auth = registry.auth
    if source.auth is not None:
        auth = replace(
            auth,
            profile=source.auth.profile,
            credentials_file=source.auth.credentials_file,
            role_arn=source.auth.role_arn,
        )
    region = _region(source, registry)
    session = aws_session(replace(registry, auth=auth, region=region))
    return session.client(
        "sqs",
        region_name=region or None,
        endpoint_url=source.endpoint_url,
        config=botocore.config.Config(
            connect_timeout=_CONNECT_TIMEOUT_S,
            read_timeout=source.wait_time_s + _READ_MARGIN_S,
            # One quick retry of a transient error; longer outages are the poller's backoff.
            retries={"max_attempts": 2, "mode": "standard"},
        ),
    )


class SqsPoller:
    """Long-polls one queue into the inbox; ``wake`` is called after new events were recorded."""

    def __init__(
        self,
        source: SqsSource,
        registry: RegistryConfig,
        inbox: EventInbox,
        *,
        wake: Callable[[], None],
        metrics: SqsMetrics,
    ) -> None:
        """Poll ``source`` for events of ``registry`` (the inventory registry it names)."""
        self._source = source
        self._registry = registry
        self._inbox = inbox
        self._wake = wake
        self._metrics = metrics
        self._rng = random.Random()  # noqa: S311 - backoff jitter, not a secret
        self._worker: _Worker | None = None
        self._client: Any = None
        self._task: asyncio.Task[None] | None = None
        # Set by stop(), read on the worker thread by a receive still in flight.
        self._stopping = threading.Event()

    @property
    def name(self) -> str:
        """The source's name (metrics label and log field)."""
        return self._source.name

    async def start(self) -> None:
        """Start polling in the background (the first receive is in flight when this returns)."""
        self._stopping.clear()
        self._worker = _Worker(f"sqs-{self.name}")
        self._task = asyncio.create_task(self.run(), name=f"sqs-poller-{self.name}")
        _log.info(
            "SQS source polling",
            source=self.name,
            queue_url=self._source.queue_url,
            registry=self._registry.name,
        )

    async def stop(self) -> None:
        """Stop polling; a message received but not yet deleted comes back after its timeout."""
        self._stopping.set()
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        if self._worker is not None:
            # A long poll in flight ends by itself within wait_time_s; nothing waits for it.
            self._worker.close()
            self._worker = None

    async def run(self) -> None:
        """Poll until cancelled; failed rounds back off (``retry_base_s`` doubled, jittered)."""
        failures = 0
        while True:
            try:
                await self.poll_once()
            except Exception as exc:  # SQS or credentials down: keep trying, never give up
                failures += 1
                delay = self._backoff(failures)
                _log.warning(
                    "SQS poll failed; retrying",
                    source=self.name,
                    failures=failures,
                    retry_in_s=round(delay, 3),
                    problem=f"{type(exc).__name__}: {exc}",
                )
                self._client = None  # built again: the credentials or the endpoint may be fixed
                await asyncio.sleep(delay)
            else:
                failures = 0

    def _backoff(self, failures: int) -> float:
        doubled = self._source.retry_base_s * 2.0 ** min(failures - 1, 30)
        ceiling = min(self._source.retry_max_s, doubled)
        # Equal jitter: never less than half the step, so a hot loop is impossible.
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    async def _call(self, operation: str, call: Callable[[], _T]) -> _T:
        """Run ``call`` on the poller's thread; a failure is counted under ``operation``."""
        if self._worker is None:
            raise RuntimeError("SQS poller is not started")
        try:
            return await self._worker.run(call)
        except Exception:
            self._metrics.poll_error(self.name, operation)
            raise

    def _sqs(self) -> Any:
        if self._client is None:
            self._client = _client(self._source, self._registry)
        return self._client

    def _receive(self) -> list[Mapping[str, Any]]:
        client = self._sqs()
        answer = client.receive_message(
            QueueUrl=self._source.queue_url,
            MaxNumberOfMessages=self._source.max_messages,
            WaitTimeSeconds=self._source.wait_time_s,
            VisibilityTimeout=self._source.visibility_timeout_s,
        )
        messages = list(answer.get("Messages") or [])
        if messages and self._stopping.is_set():
            # A long poll that outlived stop(): nobody records these, so hand them back now
            # instead of hiding them for the whole visibility timeout (best effort).
            with contextlib.suppress(Exception):
                client.change_message_visibility_batch(
                    QueueUrl=self._source.queue_url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                        for i, m in enumerate(messages)
                    ],
                )
            return []
        return messages

    def _delete(self, handles: Sequence[tuple[str, str]]) -> list[Mapping[str, Any]]:
        answer = self._sqs().delete_message_batch(
            QueueUrl=self._source.queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": h} for i, (_, h) in enumerate(handles)],
        )
        return list(answer.get("Failed") or [])

    async def poll_once(self) -> int:
        """Receive one batch, record its events, delete what is settled; return new events."""
        messages = await self._call("receive", self._receive)
        settled: list[tuple[str, str]] = []
        fresh = 0
        for message in messages:
            outcome = await self._handle(message)
            self._metrics.message(self.name, outcome)
            fresh += outcome == "recorded"
            if self._settles(outcome):
                settled.append((str(message.get("MessageId", "")), str(message["ReceiptHandle"])))
        if fresh:
            self._wake()
        if settled:
            failed = await self._call("delete", functools.partial(self._delete, settled))
            for entry in failed:
                # Comes back after the visibility timeout; the inbox then calls it a duplicate.
                self._metrics.poll_error(self.name, "delete")
                message_id = settled[int(entry.get("Id", 0))][0]
                _log.warning(
                    "SQS message not deleted; it will be redelivered",
                    source=self.name,
                    message_id=message_id,
                    problem=str(entry.get("Message") or entry.get("Code") or ""),
                )
        return fresh

    def _settles(self, outcome: SqsOutcome) -> bool:
        """Whether a message with ``outcome`` is deleted from the queue now."""
        if outcome == "failed":
            return False  # not recorded: SQS must deliver it again
        if outcome == "invalid":
            return self._source.invalid_messages == "delete"
        return True

    async def _handle(self, message: Mapping[str, Any]) -> SqsOutcome:
        message_id = str(message.get("MessageId", ""))
        body = str(message.get("Body") or "").encode("utf-8", "surrogatepass")
        try:
            event = parse_ecr_message(
                body,
                self._registry,
                origin=f"sqs:{self.name}",
                max_bytes=self._source.max_message_bytes,
            )
        except WebhookRejected as exc:
            _log.warning(
                "SQS message refused: not a usable ECR event",
                source=self.name,
                message_id=message_id,
                status=exc.status,
                problem=exc.message,
                kept=self._source.invalid_messages == "keep",
            )
            return "invalid"
        if isinstance(event, EcrIgnored):
            _log.info(
                "ECR event ignored",
                source=self.name,
                event_id=event.event_id,
                reason=event.reason,
            )
            return "ignored"
        try:
            fresh = await self._inbox.record_event(
                event.id, encode_stored(self._registry.name, event)
            )
        except Exception as exc:
            _log.error(
                "ECR event not recorded; the message will be redelivered",
                source=self.name,
                event_id=event.id,
                problem=f"{type(exc).__name__}: {exc}",
            )
            return "failed"
        _log.info(
            "ECR event recorded" if fresh else "ECR event already recorded (duplicate delivery)",
            source=self.name,
            event_id=event.id,
            action=event.action,
            image=f"{self._registry.name}/{event.repository}:{event.tag or '-'}@{event.digest}",
        )
        return "recorded" if fresh else "duplicate"
