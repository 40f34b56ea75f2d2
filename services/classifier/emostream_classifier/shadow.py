"""Shadow traffic: a share of live batches also goes to the candidate version, off the served path.

The served path only calls `offer`, which samples, copies a reference into a bounded queue and
returns: it never waits on the candidate, and a full queue drops the batch (counted) rather than
block. A worker thread sends the queued batches to the candidate (by version label, `canary`,
on its own gRPC channel) and adds the comparison to Redis (emostream.model_stats). Its failures
are counted and logged, never raised. While the server knows no such label (no candidate), the
shadow sleeps and asks again every `idle_recheck_s`.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import redis
from emostream_serving.tf_serving import Prediction, ServingClient, ServingError, read_labels, unknown_label

from emostream.model_stats import ShadowBatch, record_dropped, record_shadow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Offered:
    crops: np.ndarray
    cameras: list[str]
    served: Prediction
    served_labels: list[str]
    served_latency_ms: float


class Shadow:
    """Compares the candidate with the served version on a sampled share of live batches."""

    def __init__(
        self,
        client: redis.Redis,
        serving: ServingClient,
        labels_base: Path,
        share: float,
        *,
        queue_batches: int = 4,
        idle_recheck_s: float = 2.0,
        seed: int | None = None,
    ) -> None:
        self.client = client
        self.serving = serving
        self.labels_base = labels_base
        self.share = share
        self.idle_recheck_s = idle_recheck_s
        self._queue: queue.Queue[_Offered | None] = queue.Queue(maxsize=queue_batches)
        self._random = random.Random(seed)
        self._idle_until = 0.0
        self._candidate: int | str = "unknown"
        self._thread = threading.Thread(target=self._run, name="shadow", daemon=True)
        self._thread.start()

    def offer(self, crops: np.ndarray, cameras: list[str], served: Prediction, labels: list[str], ms: float) -> None:
        """Maybe queue this served batch for the candidate; returns at once whatever happens."""
        if self.share <= 0 or time.monotonic() < self._idle_until or self._random.random() >= self.share:
            return
        try:
            self._queue.put_nowait(_Offered(crops, cameras, served, labels, ms))
        except queue.Full:
            try:
                record_dropped(self.client, served.model_version, self._candidate, cameras)
            except redis.RedisError as error:
                log.debug("shadow drop not counted: %s", error)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the worker after what it holds; the served path never waits for it."""
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout)
        self._thread.join(timeout)
        self.serving.close()

    def _run(self) -> None:
        while True:
            offered = self._queue.get()
            if offered is None:
                return
            try:
                self._compare(offered)
            except Exception:  # the shadow must never die of one batch; nothing here touches the served path
                log.exception("shadow comparison failed")

    def _compare(self, offered: _Offered) -> None:
        started = time.monotonic()
        batch = ShadowBatch(
            offered.served.model_version,
            self._candidate,
            offered.cameras,
            offered.served_labels,
            served_latency_ms=offered.served_latency_ms,
        )
        try:
            candidate = self.serving.predict(offered.crops)
        except ServingError as error:
            if unknown_label(error):  # no candidate now: not an error, just nothing to compare with
                self._idle_until = time.monotonic() + self.idle_recheck_s
                return
            log.warning("shadow request failed: %s", error)
            batch.error = True
            record_shadow(self.client, batch)
            return
        self._candidate = candidate.model_version
        labels = read_labels(self.labels_base, candidate.model_version)
        best = candidate.probabilities.argmax(axis=1)
        served_best = offered.served.probabilities.argmax(axis=1)
        batch.candidate_version = candidate.model_version
        batch.candidate_labels = [labels[i] for i in best]
        batch.candidate_confidence = [float(p[i]) for p, i in zip(candidate.probabilities, best, strict=True)]
        batch.served_confidence = [float(p[i]) for p, i in zip(offered.served.probabilities, served_best, strict=True)]
        batch.candidate_latency_ms = (time.monotonic() - started) * 1000
        record_shadow(self.client, batch)
