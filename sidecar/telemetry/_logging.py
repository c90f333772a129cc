"""Structured logs: one JSON object per line with timestamp, level, logger, event and trace ids.

Why this uses ``structlog.configure`` (process-wide) instead of loggers built from explicit
processors: modules create their logger at import time (``_log = get_logger(__name__)``), long
before ``main`` has read the config that decides level and format. structlog's lazy proxies resolve
the configuration on every call (``cache_logger_on_first_use=False``), so configuring once in
``main`` — or again in a test — takes effect for every existing logger. ``configure_logging`` always
replaces the whole setup, so calling it twice is the same as calling it once with the last values.
Standard-library records (e.g. from grpc or aiohttp) are routed through the same renderer by a
single handler on the root logger, replaced (never duplicated) on every call.
"""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Mapping, MutableMapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol, TextIO, cast

import structlog
from opentelemetry import trace
from structlog.contextvars import bound_contextvars, merge_contextvars
from structlog.typing import FilteringBoundLogger, Processor

from sidecar.errors import ConfigError

__all__ = [
    "LOG_FORMATS",
    "LOG_LEVELS",
    "LogStream",
    "LoggingSnapshot",
    "add_trace_context",
    "configure_logging",
    "decision_log_context",
    "get_logger",
    "snapshot_logging",
]

# Read-only: module-level state must not be mutable.
LOG_LEVELS: Mapping[str, int] = MappingProxyType(
    {
        "debug": logging.DEBUG,
        "info": logging.INFO,
        "warning": logging.WARNING,
        "warn": logging.WARNING,
        "error": logging.ERROR,
        "critical": logging.CRITICAL,
    }
)
LOG_FORMATS: tuple[str, ...] = ("json", "console", "text")


class LogStream(Protocol):
    """Where rendered log lines go: anything with text ``write`` and ``flush``."""

    def write(self, s: str, /) -> int:
        """Write rendered text."""
        ...

    def flush(self) -> None:
        """Flush buffered text."""
        ...


class _CurrentStderr(io.TextIOBase):
    """Writes to whatever ``sys.stderr`` is at write time.

    Binding the stream object once would keep writing to a stream someone replaced and closed
    (pytest's capture does this between tests), turning every later log call into an error.
    """

    def write(self, s: str) -> int:
        return sys.stderr.write(s)

    def flush(self) -> None:
        sys.stderr.flush()


class _NamedWriteLogger(structlog.WriteLogger):
    """A WriteLogger with a ``name``, so add_logger_name works the same as for stdlib loggers."""

    def __init__(self, file: TextIO, name: str) -> None:
        super().__init__(file)
        self.name = name


class _NamedWriteLoggerFactory:
    """Builds a _NamedWriteLogger from ``get_logger(name)``'s positional argument."""

    def __init__(self, file: TextIO) -> None:
        self._file = file

    def __call__(self, *args: Any) -> _NamedWriteLogger:
        return _NamedWriteLogger(self._file, str(args[0]) if args else "")


class _BridgeHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the one root handler configure_logging owns, so a second call replaces it."""


def add_trace_context(
    _logger: object, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Processor: add ``trace_id``/``span_id`` of the current OpenTelemetry span, if any."""
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        # setdefault: an explicit trace_id given by the caller (e.g. after the span ended) wins.
        event_dict.setdefault("trace_id", format(ctx.trace_id, "032x"))
        event_dict.setdefault("span_id", format(ctx.span_id, "016x"))
    return event_dict


def _shared_processors() -> list[Processor]:
    return [
        merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        add_trace_context,
    ]


def _renderer(fmt: str) -> list[Processor]:
    if fmt == "json":
        return [
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(default=str),
        ]
    return [structlog.dev.ConsoleRenderer(colors=False)]


def _parse(level: str, fmt: str) -> tuple[int, str]:
    try:
        numeric = LOG_LEVELS[level.lower()]
    except KeyError:
        raise ConfigError("log_level", f"{level!r} is not one of {sorted(LOG_LEVELS)}") from None
    if fmt.lower() not in LOG_FORMATS:
        raise ConfigError("log_format", f"{fmt!r} is not one of {list(LOG_FORMATS)}")
    return numeric, fmt.lower()


def _configure_structlog(numeric: int, fmt: str, out: TextIO) -> None:
    structlog.configure(
        processors=[*_shared_processors(), *_renderer(fmt)],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        context_class=dict,
        logger_factory=_NamedWriteLoggerFactory(out),
        cache_logger_on_first_use=False,
    )


# Cloud SDKs log whole request and response bodies at DEBUG (botocore's "Response body:" holds
# a GetSecretValue's SecretString, a KMS Decrypt's plaintext key): those lines are never kept,
# whatever the level, so a debug log cannot leak a registry's credentials or a data key.
_WIRE_LOGGERS = ("botocore", "boto3", "s3transfer", "urllib3", "google", "grpc")


class _NoWireBodies(logging.Filter):
    """Drops the DEBUG lines of the SDK loggers that echo what they send and receive."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep a record unless it is SDK debug output."""
        return record.levelno > logging.DEBUG or not record.name.startswith(_WIRE_LOGGERS)


def configure_logging(
    level: str = "info", fmt: str = "json", stream: LogStream | None = None
) -> None:
    """Send every log line (structlog and stdlib) to ``stream`` (default: the current stderr)."""
    numeric, fmt = _parse(level, fmt)
    # structlog and logging annotate TextIO but only ever call write() and flush().
    out = cast(TextIO, stream if stream is not None else _CurrentStderr())
    _configure_structlog(numeric, fmt, out)
    handler = _BridgeHandler(out)
    handler.addFilter(_NoWireBodies())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                *_renderer(fmt),
            ],
            foreign_pre_chain=_shared_processors(),
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _BridgeHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)


def get_logger(name: str) -> FilteringBoundLogger:
    """Return a logger whose lines carry ``logger=name``; follows later configure_logging calls."""
    if not structlog.is_configured():
        # Never fall back to structlog's default (coloured text on stdout): stdout carries the CLI's
        # JSON answers. JSON on stderr at info is the safe default until main configures logging;
        # the stdlib root logger is left alone, importing a module must not install handlers.
        _configure_structlog(logging.INFO, "json", cast(TextIO, _CurrentStderr()))
    return cast(FilteringBoundLogger, structlog.get_logger(name))


def decision_log_context(decision_id: str, **fields: Any) -> AbstractContextManager[object]:
    """Return a context manager adding ``decision_id`` (and ``fields``) to every line inside it."""
    return bound_contextvars(decision_id=decision_id, **fields)


@dataclass(frozen=True, slots=True)
class LoggingSnapshot:
    """The logging setup at one moment, so a test can change it and put it back."""

    structlog_config: dict[str, Any] | None
    bridge_handlers: tuple[logging.Handler, ...]
    root_level: int

    def restore(self) -> None:
        """Reinstate the captured setup, undoing any configure_logging call made since."""
        if self.structlog_config is None:
            structlog.reset_defaults()
        else:
            structlog.configure(**self.structlog_config)
        root = logging.getLogger()
        for handler in [h for h in root.handlers if isinstance(h, _BridgeHandler)]:
            root.removeHandler(handler)
        for saved in self.bridge_handlers:
            root.addHandler(saved)
        root.setLevel(self.root_level)


def snapshot_logging() -> LoggingSnapshot:
    """Capture the current logging setup (see LoggingSnapshot.restore)."""
    root = logging.getLogger()
    return LoggingSnapshot(
        structlog_config=structlog.get_config() if structlog.is_configured() else None,
        bridge_handlers=tuple(h for h in root.handlers if isinstance(h, _BridgeHandler)),
        root_level=root.level,
    )
