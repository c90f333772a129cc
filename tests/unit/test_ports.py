"""The tests' port chooser: ports below the ephemeral range, where no outgoing connection of
another process can take them between the choice and the bind."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.support.ports import free_ports


def test_ports_are_distinct_bindable_and_below_the_ephemeral_range() -> None:
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = free_ports(20)
    assert len(set(ports)) == 20
    assert all(port < low for port in ports)
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", port))
