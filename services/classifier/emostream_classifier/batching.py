"""Micro-batches: wait for a first item, then fill up to a size within a time budget."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def collect(read: Callable[[int, int], list[T]], batch_size: int, max_wait_ms: int, block_ms: int) -> list[T]:
    """Up to `batch_size` items: block up to `block_ms` for the first, then up to `max_wait_ms` for the rest.

    `read(count, block_ms)` returns at most `count` items, waiting at most `block_ms` when none is ready.
    """
    batch = read(batch_size, block_ms)
    if not batch:
        return batch
    deadline = time.monotonic() + max_wait_ms / 1000
    while len(batch) < batch_size:
        remaining_ms = int((deadline - time.monotonic()) * 1000)
        if remaining_ms <= 0:
            break
        batch += read(batch_size - len(batch), remaining_ms)
    return batch
