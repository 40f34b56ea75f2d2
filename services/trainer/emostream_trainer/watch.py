"""The watch after a promotion: the served label's error rate and latency, from the classifiers' counters.

Counts start when the watch starts (deltas of emostream.model_stats' served-path hash), so
earlier traffic of another version does not dilute them. The first breach ends the watch with
its reason; reaching the end of the window quietly ends it with None.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from emostream.model_stats import percentile, read_served


@dataclass(frozen=True)
class WatchLimits:
    seconds: float = 300.0
    max_error_rate: float = 0.05
    max_p99_ms: float = 2000.0
    min_requests: int = 20
    """Fewer requests than this in the window decide nothing (one slow batch is no trend)."""
    every_s: float = 1.0


def breach(before: dict[str, float], now: dict[str, float], limits: WatchLimits) -> str | None:
    """Why the traffic since `before` crosses a limit, or None."""
    delta = {key: now.get(key, 0.0) - before.get(key, 0.0) for key in now}
    requests, errors = delta.get("requests", 0.0), delta.get("errors", 0.0)
    if requests < limits.min_requests:
        return None
    if errors / requests > limits.max_error_rate:
        return f"error rate {errors / requests:.1%} over {int(requests)} requests > {limits.max_error_rate:.1%}"
    p99 = percentile({k: v for k, v in delta.items() if k.startswith("le_")}, 99)
    if p99 is not None and p99 > limits.max_p99_ms:
        return f"p99 latency over {p99:g} ms across {int(requests)} requests > {limits.max_p99_ms:g} ms"
    return None


def watch(
    client: redis.Redis, label: str, limits: WatchLimits, progress: Callable[[str], None] = lambda _: None
) -> str | None:
    """Watch `label` for `limits.seconds`; the reason of the first breach, or None."""
    before = read_served(client, label)
    deadline = time.monotonic() + limits.seconds
    reported = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(min(limits.every_s, max(0.0, deadline - time.monotonic())))
        now = read_served(client, label)
        reason = breach(before, now, limits)
        if reason is not None:
            return reason
        if time.monotonic() - reported >= 30:
            requests = now.get("requests", 0.0) - before.get("requests", 0.0)
            errors = now.get("errors", 0.0) - before.get("errors", 0.0)
            progress(f"watching: {int(requests)} requests, {int(errors)} errors so far")
            reported = time.monotonic()
    return None
