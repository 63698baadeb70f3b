"""A token bucket per client for the public endpoints (docs/decisions/0111-verify-rate-limit.md).

Each client (its address) has a bucket of ``burst`` tokens refilled at ``rate`` per second; a
request takes one or is refused with the seconds until the next token (``Retry-After``). The
buckets live in the API process: with N uvicorn workers each holds its own, so the configured
rate is divided by N. Idle buckets are forgotten once full again; at most ``max_clients`` are kept.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict


class TokenBucket:
    def __init__(self, rate: float, burst: int, *, max_clients: int = 100_000, clock=time.monotonic) -> None:
        self.rate, self.burst = rate, burst
        self._max = max_clients
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # client -> (tokens, at)

    def take(self, client: str) -> float:
        """0 if the request may go ahead, else the seconds to wait (> 0)."""
        now = self._clock()
        tokens, at = self._buckets.pop(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        if tokens >= 1.0:
            self._buckets[client] = (tokens - 1.0, now)
            wait = 0.0
        else:
            self._buckets[client] = (tokens, now)
            wait = (1.0 - tokens) / self.rate
        while len(self._buckets) > self._max:
            self._buckets.popitem(last=False)
        return wait


def retry_after(wait_s: float) -> str:
    """The Retry-After header value (whole seconds, at least 1)."""
    return str(max(1, math.ceil(wait_s)))
