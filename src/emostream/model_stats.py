"""Counters the classifiers keep in Redis about the model versions they call; `emostream deploy` reads them.

Served path, per version label (`emostream:serving:<label>`): requests, errors, faces and a latency
histogram, for the watch after a promotion. Shadow comparison, per served and candidate version
(`emostream:shadow:<served>:<candidate>`), overall and per camera: faces compared, agreement,
confusion between the two labels, summed confidences, both latencies, errors, dropped batches.
Only counts and sums: no crop, box or face identity is kept. Every replica adds to the same
hashes (HINCRBY), so the figures cover the whole classifier group. Keys expire a week after
their last update.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import redis

from emostream.names import SHADOW_RUNS, serving_key, shadow_key

BUCKETS_MS = (2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000)
"""Upper bounds of the latency histogram; a last bucket `inf` takes the rest."""
TTL_S = 7 * 24 * 3600
ALL = "all"
SEP = "|"  # camera ids may hold ':'; they never hold '|' in practice, and a stray one only splits a label


def bucket(latency_ms: float) -> str:
    """The histogram field of a latency."""
    index = bisect.bisect_left(BUCKETS_MS, latency_ms)
    return f"le_{BUCKETS_MS[index]}" if index < len(BUCKETS_MS) else "le_inf"


def percentile(histogram: Mapping[str, float], q: float) -> float | None:
    """Upper bound (ms) of the bucket holding the q-th percentile; None without samples."""
    counts: list[tuple[float, float]] = [(bound, histogram.get(f"le_{bound}", 0.0)) for bound in BUCKETS_MS]
    counts.append((float("inf"), histogram.get("le_inf", 0.0)))
    total = sum(n for _, n in counts)
    if total <= 0:
        return None
    running = 0.0
    for bound, n in counts:
        running += n
        if running >= q / 100 * total:
            return float(bound)
    return float("inf")


def record_served(
    client: redis.Redis, label: str, faces: int, latency_ms: float, version: int | None, failed: bool
) -> None:
    """One served-path request (a batch); `failed` when it got no answer."""
    key = serving_key(label)
    pipe = client.pipeline(transaction=False)
    pipe.hincrby(key, "requests", 1)
    if failed:
        pipe.hincrby(key, "errors", 1)
    else:
        pipe.hincrby(key, "faces", faces)
        pipe.hincrby(key, bucket(latency_ms), 1)
        if version is not None:
            pipe.hset(key, "version", version)
    pipe.expire(key, TTL_S)
    pipe.execute()


def read_served(client: redis.Redis, label: str) -> dict[str, float]:
    """The served-path counters of a label as numbers (fields absent are 0)."""
    raw = client.hgetall(serving_key(label))
    return {key.decode(): float(value) for key, value in raw.items()}


@dataclass
class ShadowBatch:
    """One batch seen by both versions, ready to add to the counters."""

    served_version: int
    candidate_version: int | str
    cameras: list[str]
    served_labels: list[str]
    candidate_labels: list[str] = field(default_factory=list)
    served_confidence: list[float] = field(default_factory=list)
    candidate_confidence: list[float] = field(default_factory=list)
    served_latency_ms: float = 0.0
    candidate_latency_ms: float = 0.0
    error: bool = False


def record_shadow(client: redis.Redis, batch: ShadowBatch) -> None:
    """Add one compared (or failed) batch to the counters, overall and per camera."""
    key = shadow_key(batch.served_version, batch.candidate_version)
    counts: dict[str, float] = {}

    def add(scopes: Iterable[str], metric: str, amount: float) -> None:
        for scope in scopes:
            counts[f"{scope}{SEP}{metric}"] = counts.get(f"{scope}{SEP}{metric}", 0.0) + amount

    cameras = sorted(set(batch.cameras))
    scopes = [ALL, *(f"camera{SEP}{camera}" for camera in cameras)]
    add(scopes, "batches", 1)
    if batch.error:
        add(scopes, "errors", 1)
    else:
        add(scopes, "served_" + bucket(batch.served_latency_ms), 1)
        add(scopes, "candidate_" + bucket(batch.candidate_latency_ms), 1)
        for i, camera in enumerate(batch.cameras):
            face_scopes = [ALL, f"camera{SEP}{camera}"]
            served, candidate = batch.served_labels[i], batch.candidate_labels[i]
            add(face_scopes, "faces", 1)
            add(face_scopes, "agree", int(served == candidate))
            add(face_scopes, f"confusion{SEP}{served}{SEP}{candidate}", 1)
            add(face_scopes, "served_confidence", batch.served_confidence[i])
            add(face_scopes, "candidate_confidence", batch.candidate_confidence[i])
    pipe = client.pipeline(transaction=False)
    for name, amount in counts.items():
        if name.endswith("_confidence"):  # sums of probabilities: a float field, even when the sum is whole
            pipe.hincrbyfloat(key, name, amount)
        else:
            pipe.hincrby(key, name, int(amount))
    pipe.expire(key, TTL_S)
    pipe.zadd(SHADOW_RUNS, {key: int(time.time() * 1000)})
    pipe.execute()


def record_dropped(client: redis.Redis, served_version: int, candidate_version: int | str, cameras: list[str]) -> None:
    """A sampled batch the shadow had no room for: counted, never waited for."""
    key = shadow_key(served_version, candidate_version)
    pipe = client.pipeline(transaction=False)
    for scope in [ALL, *(f"camera{SEP}{camera}" for camera in sorted(set(cameras)))]:
        pipe.hincrby(key, f"{scope}{SEP}dropped", 1)
    pipe.expire(key, TTL_S)
    pipe.execute()


def latest_shadow_keys(client: redis.Redis, limit: int = 10) -> list[str]:
    """Shadow comparisons, most recently updated first."""
    return [key.decode() for key in client.zrevrange(SHADOW_RUNS, 0, limit - 1)]


def shadow_report(client: redis.Redis, key: str) -> dict[str, Any]:
    """The comparison under `key`, overall and per camera: what `emostream deploy shadow` prints."""
    raw = {name.decode(): float(value) for name, value in client.hgetall(key).items()}
    scopes: dict[str, dict[str, float]] = {}
    for name, value in raw.items():
        parts = name.split(SEP)
        if parts[0] == ALL:
            scope, metric = ALL, SEP.join(parts[1:])
        elif parts[0] == "camera" and len(parts) >= 3:
            scope, metric = parts[1], SEP.join(parts[2:])
        else:
            continue
        scopes.setdefault(scope, {})[metric] = value
    _, served, candidate = key.rsplit(":", 2)
    return {
        "served_version": served,
        "candidate_version": candidate,
        "overall": _summary(scopes.get(ALL, {})),
        "cameras": {name: _summary(values) for name, values in sorted(scopes.items()) if name != ALL},
    }


def _summary(values: Mapping[str, float]) -> dict[str, Any]:
    faces = values.get("faces", 0.0)
    served_hist = {k.removeprefix("served_"): v for k, v in values.items() if k.startswith("served_le_")}
    candidate_hist = {k.removeprefix("candidate_"): v for k, v in values.items() if k.startswith("candidate_le_")}
    confusion: dict[str, dict[str, int]] = {}
    for name, count in values.items():
        if name.startswith(f"confusion{SEP}"):
            _, served, candidate = name.split(SEP, 2)
            confusion.setdefault(served, {})[candidate] = int(count)
    return {
        "batches": int(values.get("batches", 0)),
        "faces": int(faces),
        "agreement": round(values.get("agree", 0.0) / faces, 4) if faces else None,
        "served_mean_confidence": round(values.get("served_confidence", 0.0) / faces, 4) if faces else None,
        "candidate_mean_confidence": round(values.get("candidate_confidence", 0.0) / faces, 4) if faces else None,
        "served_latency_ms_p50": percentile(served_hist, 50),
        "served_latency_ms_p99": percentile(served_hist, 99),
        "candidate_latency_ms_p50": percentile(candidate_hist, 50),
        "candidate_latency_ms_p99": percentile(candidate_hist, 99),
        "errors": int(values.get("errors", 0)),
        "dropped": int(values.get("dropped", 0)),
        "confusion": confusion,
    }
