"""Latency histograms the load generators fill and the harness merges.

A round trip is kept as a count in a logarithmic bucket (1% wide) instead of a list of
floats, so a process that measured a million round trips still reports a few hundred
numbers, and the histograms of several processes simply add up.
"""

from __future__ import annotations

import ipaddress
import math
import socket
import statistics

_STEP = math.log(1.01)


def bucket(seconds: float) -> int:
    """The bucket of a duration: bucket b holds [1.01**b, 1.01**(b+1)) microseconds."""
    us = seconds * 1e6
    return int(math.log(us) / _STEP) if us > 1.0 else 0


def bucket_value(b: int) -> float:
    """The middle of bucket ``b``, in seconds."""
    return math.exp((b + 0.5) * _STEP) / 1e6


def merge(histograms: list[dict]) -> dict[int, int]:
    total: dict[int, int] = {}
    for hist in histograms:
        for b, n in hist.items():
            total[int(b)] = total.get(int(b), 0) + n
    return total


def percentile(hist: dict[int, int], q: float) -> float | None:
    """The ``q``-th percentile (0-100) of a histogram, in seconds; None if it is empty."""
    count = sum(hist.values())
    if not count:
        return None
    rank = q / 100.0 * count
    seen = 0
    for b in sorted(hist):
        seen += hist[b]
        if seen >= rank:
            return bucket_value(b)
    return bucket_value(max(hist))


def median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def require_loopback(host: str) -> None:
    """The load generators only ever talk to this machine: refuse anything but a loopback address."""
    try:
        addr = ipaddress.ip_address(socket.getaddrinfo(host, None)[0][4][0])
    except (OSError, ValueError) as exc:
        raise SystemExit(f"cannot resolve {host!r}: {exc}") from exc
    if not addr.is_loopback:
        raise SystemExit(f"{host} is not a loopback address: this load generator is for 127.0.0.1/::1 only")
