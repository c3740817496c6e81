"""Per-client token bucket for the endpoints that cost work (job submission, uploads).

In-process: each API process limits on its own, which is what a single `biaslab serve` (or a few
behind a load balancer, each with its share) needs; it costs no Redis round trip and keeps working
while Redis is down.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float


class TokenBuckets:
    """`rate_per_s` tokens per second up to `burst`, one bucket per client key (LRU-capped)."""

    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate, self.burst, self.max_clients, self.clock = rate_per_s, burst, max_clients, clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Take one token for `key`: 0.0 if allowed, else the seconds until a token is available."""
        now = self.clock()
        with self._lock:
            bucket = self._buckets.pop(key, None) or _Bucket(float(self.burst), now)
            bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
            self._buckets[key] = bucket  # most recently used last
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)  # a forgotten client starts with a full bucket: lenient
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / self.rate


def client_key(peer: str | None, forwarded_for: str | None, trusted_proxies: list[str]) -> str | None:
    """Who to charge: the peer, or, behind trusted proxies, the nearest address in X-Forwarded-For that
    is not itself a trusted proxy.

    None means "do not limit": a trusted proxy (the mounted UI, on loopback) that names no client.
    X-Forwarded-For is read from the right, because each proxy appends the address it saw: the UI
    appends the browser's (or the Space's proxy's) address, a trusted front proxy appended the one
    before. Entries left of the first untrusted one are the client's own claims and could be forged
    to dodge the limit.
    """
    if peer is None or not is_trusted(peer, trusted_proxies):
        return peer or "unknown"
    hops = [h.strip() for h in (forwarded_for or "").split(",") if h.strip()]
    if not hops:
        return None
    for hop in reversed(hops):
        if not is_trusted(hop, trusted_proxies):
            return hop
    return hops[0]  # every hop is a proxy we trust: charge the first, the one that started the chain


def is_trusted(peer: str, trusted_proxies: list[str]) -> bool:
    """`peer` equals an entry, or lies in one written as a network ("10.0.0.0/8")."""
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return peer in trusted_proxies  # not an IP (e.g. a test client's name): exact match only
    for entry in trusted_proxies:
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


def retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
