"""emostream.model_stats against a real Redis: shadow counters add up across batches and cameras."""

from __future__ import annotations

import pytest
import redis

from emostream.model_stats import (
    ShadowBatch,
    bucket,
    percentile,
    record_dropped,
    record_shadow,
    shadow_report,
)
from emostream.names import shadow_key


def batch(cameras: list[str], served: list[str], candidate: list[str], confidence: float) -> ShadowBatch:
    return ShadowBatch(
        2,
        1,
        cameras,
        served,
        candidate,
        [confidence] * len(cameras),
        [confidence / 2] * len(cameras),
        served_latency_ms=30.0,
        candidate_latency_ms=700.0,
    )


def test_shadow_counters_sum_over_batches_per_camera_and_overall(redis_client: redis.Redis) -> None:
    record_shadow(redis_client, batch(["door", "lobby"], ["happy", "fear"], ["happy", "neutral"], 0.75))
    # A whole-number confidence sum after a fractional one must still add (a float field stays float).
    record_shadow(redis_client, batch(["door:1"], ["fear"], ["fear"], 1.0))
    record_dropped(redis_client, 2, 1, ["door"])
    report = shadow_report(redis_client, shadow_key(2, 1))
    overall = report["overall"]
    assert (overall["faces"], overall["batches"], overall["dropped"], overall["errors"]) == (3, 2, 1, 0)
    assert overall["agreement"] == pytest.approx(2 / 3, abs=1e-4)
    assert overall["served_mean_confidence"] == pytest.approx((0.75 * 2 + 1.0) / 3, abs=1e-4)
    assert overall["candidate_mean_confidence"] == pytest.approx((0.375 * 2 + 0.5) / 3, abs=1e-4)
    assert overall["confusion"] == {"happy": {"happy": 1}, "fear": {"neutral": 1, "fear": 1}}
    assert (overall["served_latency_ms_p99"], overall["candidate_latency_ms_p99"]) == (50.0, 1000.0)
    assert set(report["cameras"]) == {"door", "lobby", "door:1"}  # a ':' in a camera id stays in its name
    assert report["cameras"]["door"]["dropped"] == 1 and report["cameras"]["lobby"]["faces"] == 1


def test_latency_buckets_and_percentiles() -> None:
    assert (bucket(0.5), bucket(2.0), bucket(2.1), bucket(99_999)) == ("le_2", "le_2", "le_5", "le_inf")
    histogram = {"le_10": 98.0, "le_1000": 2.0}
    assert (percentile(histogram, 50), percentile(histogram, 99)) == (10.0, 1000.0)
    assert percentile({}, 99) is None
