"""Stop cleanly on SIGTERM and SIGINT: loops poll an event instead of dying mid-message."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType

import redis


def stop_on_signals() -> threading.Event:
    """An event set by the first SIGTERM or SIGINT (main thread only)."""
    stop = threading.Event()

    def handle(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    return stop


def run_until_stopped(stop: threading.Event, step: Callable[[], None], log: logging.Logger) -> None:
    """Call `step` until `stop` is set; ride out Redis outages with capped backoff instead of exiting."""
    delay = 0.5
    while not stop.is_set():
        try:
            step()
            delay = 0.5
        except (redis.ConnectionError, redis.TimeoutError) as error:
            log.warning("Redis unavailable (%s); retrying in %.1fs", error, delay)
            stop.wait(delay)
            delay = min(delay * 2, 10.0)
