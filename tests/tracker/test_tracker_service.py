"""The tracker stage on a real Redis: out-of-order faces from several replicas, entries, replays."""

from __future__ import annotations

import logging
import time
from collections import defaultdict

import redis
from emostream_tracker.settings import TrackerSettings
from emostream_tracker.tracker import Tracker

from emostream import names, wire
from tests.tracker.scenes import publish, replica_order, two_faces


def make_tracker(redis_url: str, **overrides: object) -> Tracker:
    settings = TrackerSettings(redis_url=redis_url, consumer="tracker-1", **overrides)  # type: ignore[arg-type]
    return Tracker(settings, redis.Redis.from_url(redis_url), logging.getLogger("test"))


def tracked(client: redis.Redis) -> list[wire.EmotionEvent]:
    return [wire.decode_event(fields) for _, fields in client.xrange(names.EVENTS)]


def track_entries(client: redis.Redis) -> list[dict[str, str]]:
    return [{k.decode(): v.decode() for k, v in f.items()} for _, f in client.xrange(names.TRACKS)]


def run(tracker: Tracker, until: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not until():  # type: ignore[operator]
        assert time.monotonic() < deadline, "tracker did not finish in time"
        tracker.step()


def test_out_of_order_faces_from_replicas_get_the_tracks_of_in_order_processing(
    redis_client: redis.Redis, redis_url: str
) -> None:
    frames = two_faces(80, change_at=40)
    shuffled = replica_order(frames)
    seqs = [event.frame_seq for event in shuffled]
    assert seqs != sorted(seqs)  # the scene really is out of order
    tracker = make_tracker(redis_url, reorder_ms=2000, window=5)
    for start in range(0, len(shuffled), 6):  # arriving a few at a time while the tracker runs
        publish(redis_client, shuffled[start : start + 6])
        tracker.step()
    run(tracker, lambda: redis_client.xlen(names.EVENTS) == 160)
    events = tracked(redis_client)
    # Published in frame order per camera, every face exactly once.
    assert [e.frame_seq for e in events] == sorted(e.frame_seq for e in events)
    assert sorted((e.frame_seq, e.face_index) for e in events) == [(s, i) for s in range(80) for i in (0, 1)]
    by_face: dict[int, set[str]] = defaultdict(set)
    for event in events:
        assert event.track is not None
        by_face[event.face_index].add(event.track.track_id)
    assert len(by_face[0]) == 1 and len(by_face[1]) == 1 and by_face[0] != by_face[1]
    entries = track_entries(redis_client)
    assert [e["type"] for e in entries] == ["start", "start", "change"]
    assert (entries[2]["previous_label"], entries[2]["label"]) == ("happy", "fear")
    assert entries[2]["track_id"] in by_face[0]
    # Nothing was late, nothing is left pending.
    assert redis_client.xpending(names.SCORED, names.TRACKER_GROUP)["pending"] == 0
    assert redis_client.hget(names.progress("cam"), "tracked") == b"160"


def test_tracks_end_when_the_faces_are_gone_not_when_the_pipeline_stalls(
    redis_client: redis.Redis, redis_url: str
) -> None:
    tracker = make_tracker(redis_url, reorder_ms=0, idle_end_ms=300, max_missed_frames=5)
    redis_client.hset(names.progress("cam"), "frames_detected", 10)
    publish(redis_client, [face for frame in two_faces(10) for face in frame])
    run(tracker, lambda: redis_client.xlen(names.EVENTS) == 20)
    # A stalled detector detects nothing: the faces may still be there, the tracks stay open.
    deadline = time.monotonic() + 0.8
    while time.monotonic() < deadline:
        tracker.step()
    assert [e["type"] for e in track_entries(redis_client)] == ["start", "start"]
    # The detector went through more frames than a track may miss, none with a face: they left.
    redis_client.hincrby(names.progress("cam"), "frames_detected", 6)
    run(tracker, lambda: len(track_entries(redis_client)) >= 4, timeout=5)
    entries = track_entries(redis_client)
    assert [e["type"] for e in entries] == ["start", "start", "end", "end"]
    ends = entries[2:]
    assert {e["camera"] for e in ends} == {"cam"}
    assert all(int(e["duration_ms"]) == 9 * 33 and e["frame_seq"] == "9" for e in ends)
    assert {e["label"] for e in ends} == {"happy", "neutral"}
    time_in = [wire_json(e["time_in_ms"]) for e in ends]
    assert sorted(t.get("happy", 0) + t.get("neutral", 0) for t in time_in) == [297, 297]


def wire_json(text: str) -> dict[str, int]:
    import json

    return {k: int(v) for k, v in json.loads(text).items()}


def test_late_face_gets_the_nearest_track_and_replays_publish_nothing(
    redis_client: redis.Redis, redis_url: str
) -> None:
    frames = two_faces(12)
    late = frames[5][1]
    early = [face for frame in frames for face in frame if face is not late]
    tracker = make_tracker(redis_url, reorder_ms=50)
    publish(redis_client, early)
    run(tracker, lambda: redis_client.xlen(names.EVENTS) == 23)
    publish(redis_client, [late, *frames[11]])  # one late face, and a replay of frame 11
    run(tracker, lambda: redis_client.xlen(names.EVENTS) == 24)
    for _ in range(5):
        tracker.step()
    events = tracked(redis_client)
    assert len(events) == 24
    right = {e.track.track_id for e in events if e.face_index == 1 and e.track}
    assert len(right) == 1
    assert redis_client.xpending(names.SCORED, names.TRACKER_GROUP)["pending"] == 0


def test_a_bad_entry_is_dead_lettered_and_tracking_goes_on(redis_client: redis.Redis, redis_url: str) -> None:
    tracker = make_tracker(redis_url, reorder_ms=0)
    redis_client.xadd(names.SCORED, {"camera": "cam", "frame_seq": "x"})
    publish(redis_client, two_faces(1)[0])
    run(tracker, lambda: redis_client.xlen(names.EVENTS) == 2)
    letters = redis_client.xrange(names.DEAD_LETTERS)
    assert len(letters) == 1 and b"malformed" in letters[0][1][b"reason"]
