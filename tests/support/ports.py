"""Loopback ports chosen at run time, for the real services the tests start.

A port is chosen below the kernel's ephemeral range. A port the kernel handed out for
``bind(0)`` lies inside that range, where every outgoing connection of every process (a registry
client, OPA, PostgreSQL's) also takes its local port: between choosing it and the service
binding it, such a connection took it often enough to fail a full run ("Address already in
use", seen in CI). Below the range only an explicit bind can take a port.
"""

from __future__ import annotations

import secrets
import socket
from pathlib import Path

__all__ = ["free_port", "free_ports"]

# Where ports are chosen: [_FLOOR, start of the ephemeral range).
_FLOOR = 20_000
_ATTEMPTS = 2_000


def free_port() -> int:
    """Return a loopback port that was free a moment ago."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """Return ``count`` distinct loopback ports that were free a moment ago."""
    low = _ephemeral_start()
    # All held open at once, so no port is handed out twice.
    sockets: list[socket.socket] = []
    try:
        if low - _FLOOR < 1_000:  # an unusual range: let the kernel choose
            for _ in range(count):
                sockets.append(_bound(0))
            return [int(s.getsockname()[1]) for s in sockets]
        for _ in range(_ATTEMPTS):
            if len(sockets) == count:
                break
            try:
                sockets.append(_bound(_FLOOR + secrets.randbelow(low - _FLOOR)))
            except OSError:  # taken (or held by our own earlier choice): try another
                continue
        if len(sockets) < count:
            raise RuntimeError(f"no {count} free loopback ports in [{_FLOOR}, {low})")
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _bound(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.close()
        raise
    return sock


def _ephemeral_start() -> int:
    """The first port of the kernel's ephemeral range (32768 when it cannot be read)."""
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text(encoding="utf-8")
        return int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768
