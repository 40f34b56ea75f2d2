"""Logging, throughput counters, and a heartbeat in Redis that health checks read."""

from __future__ import annotations

import json
import logging
import time
from collections import Counter

import redis

from emostream import names


def setup_logging(level: str, service: str) -> logging.Logger:
    logging.basicConfig(level=level, format=f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s")
    return logging.getLogger(f"emostream.{service}")


class Meter:
    """Counts things and, every `every_s` seconds, logs their rates and refreshes the heartbeat."""

    def __init__(
        self,
        client: redis.Redis,
        service: str,
        consumer: str,
        log: logging.Logger,
        every_s: float = 10.0,
    ) -> None:
        self.client = client
        self.key = names.heartbeat(service, consumer)
        self.log = log
        self.every_s = every_s
        self.counts: Counter[str] = Counter()
        self.totals: Counter[str] = Counter()
        self._since = time.monotonic() - every_s  # the first tick writes the heartbeat at once

    def add(self, name: str, amount: int = 1) -> None:
        self.counts[name] += amount

    def tick(self, force: bool = False) -> None:
        elapsed = time.monotonic() - self._since
        if not force and elapsed < self.every_s:
            return
        self.totals.update(self.counts)
        rates = {name: round(n / max(elapsed, 1e-9), 2) for name, n in self.counts.items()}
        if self.counts:
            self.log.info("per second: %s", rates)
        beat = {"ts_ms": int(time.time() * 1000), "rates": rates, "totals": dict(self.totals)}
        try:
            self.client.set(self.key, json.dumps(beat), ex=max(30, int(self.every_s * 3)))
        except redis.RedisError as error:
            self.log.warning("heartbeat not written: %s", error)
        self.counts.clear()
        self._since = time.monotonic()


def healthy(client: redis.Redis, service: str, consumer: str) -> bool:
    """True while the consumer's heartbeat has not expired."""
    return bool(client.exists(names.heartbeat(service, consumer)))
