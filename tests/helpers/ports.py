"""Loopback ports for the servers the tests and benches start (milters, Postfix, slapd,
PostgreSQL, nsd, unbound, HTTP and SMTP stand-ins).

A port from bind(port 0) comes from the kernel's ephemeral range (net.ipv4.ip_local_port_range),
the range every outgoing connection and UDP query also takes its local port from. Handed to a
server a moment later, such a port can be taken by any connect() in between: a CI-like run saw
unbound fail with "Address already in use". So pick below the ephemeral range, where only
explicit binds land, check that TCP and UDP can both bind it, and never hand out the same port
twice in one process (two ports are often picked before either server starts)."""

from __future__ import annotations

import random
import socket
from pathlib import Path

_SPAN = 12000
_given: set[int] = set()


def _range() -> tuple[int, int]:
    """Ports [low, high] below the ephemeral range (fixed 20000-32767 if it cannot be read)."""
    try:
        ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32768
    high = ephemeral_low - 1
    return max(1024, high - _SPAN), high


def _bindable(port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def free_port() -> int:
    """A loopback port nothing is bound to now (TCP and UDP), outside the ephemeral range."""
    low, high = _range()
    for _ in range(1000):
        port = random.randint(low, high)
        if port not in _given and _bindable(port):
            _given.add(port)
            return port
    raise RuntimeError(f"no free loopback port in {low}-{high} after 1000 tries")
