"""Tracking in frame order: identities, dropped detections, smoothing, uncertainty, track entries."""

from __future__ import annotations

import itertools
from dataclasses import replace

from emostream_tracker.ordering import FrameOrder
from emostream_tracker.tracking import CameraTracker, TrackerConfig

from emostream.wire import Box
from tests.tracker.scenes import scores, two_faces


def tracker(config: TrackerConfig | None = None) -> CameraTracker:
    counter = itertools.count(1)
    return CameraTracker("cam", config or TrackerConfig(), lambda: f"cam-{next(counter)}")


def test_each_face_keeps_one_track_through_dropped_detections() -> None:
    t = tracker()
    ids: dict[int, set[str]] = {0: set(), 1: set()}
    for seq, frame in enumerate(two_faces(60)):
        if seq in (10, 11, 12, 30):  # the detector missed the left face for a few frames
            frame = frame[1:]
        events, _ = t.frame(seq, frame)
        for event in events:
            assert event.track is not None
            side = 0 if event.box.x < 300 else 1
            ids[side].add(event.track.track_id)
    assert [len(ids[0]), len(ids[1])] == [1, 1]
    assert ids[0] != ids[1]


def test_start_change_and_end_entries() -> None:
    t = tracker(TrackerConfig(window=5, max_missed_frames=3))
    entries = []
    for seq, frame in enumerate(two_faces(40, change_at=20)):
        _, new = t.frame(seq, frame)
        entries += new
    starts = [e for e in entries if e.kind == "start"]
    changes = [e for e in entries if e.kind == "change"]
    assert sorted(e.label for e in starts) == ["happy", "neutral"]
    assert [(c.previous_label, c.label) for c in changes] == [("happy", "fear")]
    # Change lands within the smoothing window after the true change, not at once.
    assert 20 < changes[0].frame_seq <= 25
    # The left face leaves; its track ends once more than max_missed_frames frames lack it.
    right_only = two_faces(60)[40:]
    ended = []
    for seq, frame in zip(range(40, 60), right_only, strict=True):
        _, new = t.frame(seq, [replace(frame[1], face_index=0)])
        ended += [e for e in new if e.kind == "end"]
    assert len(ended) == 1
    end = ended[0]
    assert end.track_id == starts[0].track_id if starts[0].label == "happy" else starts[1].track_id
    assert end.frame_seq == 39
    assert end.duration_ms == 39 * 33
    assert end.time_in_ms["happy"] + end.time_in_ms["fear"] == end.duration_ms
    assert end.time_in_ms["fear"] > 0
    assert end.fields()["type"] == "end"
    assert set(e.kind for e in t.end_all()) == {"end"}


def test_smoothed_label_ignores_single_frame_flicker_and_marks_uncertain() -> None:
    t = tracker(TrackerConfig(window=9, uncertain_below=0.6))
    flips = 0
    raw_previous = None
    for seq, frame in enumerate(two_faces(60)):
        face = frame[0]
        if seq % 4 == 3:  # every fourth frame the model says fear
            face = replace(face, label="fear", scores=scores("fear", 0.7))
        events, entries = t.frame(seq, [face])
        flips += sum(1 for e in entries if e.kind == "change")
        raw_previous = face.label if raw_previous is None else raw_previous
        assert events[0].track is not None
        assert events[0].track.label == "happy"
    assert flips == 0
    # Scores near a tie are uncertain.
    t2 = tracker(TrackerConfig(uncertain_below=0.6))
    event = replace(two_faces(1)[0][0], scores={"happy": 0.45, "neutral": 0.40, "fear": 0.15})
    events, _ = t2.frame(0, [event])
    assert events[0].track is not None and events[0].track.uncertain
    assert not t.frame(60, [two_faces(61)[60][0]])[0][0].track.uncertain  # type: ignore[union-attr]


def test_far_jump_and_size_change_start_a_new_track() -> None:
    t = tracker()
    first = two_faces(1)[0][0]
    a, _ = t.frame(0, [first])
    b, entries = t.frame(1, [replace(first, frame_seq=1, box=Box(900, 500, 120, 120))])
    assert a[0].track and b[0].track and a[0].track.track_id != b[0].track.track_id
    assert [e.kind for e in entries] == ["start"]


def test_frame_order_releases_in_sequence_and_waits_for_gaps() -> None:
    order: FrameOrder[str] = FrameOrder(reorder_ms=100)
    order.add(2, 2, 0, 1, "f2", now_ms=0)
    order.add(1, 1, 1, 2, "f1b", now_ms=0)
    assert order.release(now_ms=10) == []  # nothing before 100 ms: frame 0 might still come
    order.add(1, 1, 0, 2, "f1a", now_ms=20)
    released = order.release(now_ms=150)
    assert [(r.seq, r.items) for r in released] == [(1, ["f1a", "f1b"]), (2, ["f2"])]
    order.add(3, 3, 0, 1, "f3", now_ms=160)
    assert [r.seq for r in order.release(now_ms=161)] == [3]  # follows the last one: no wait
    order.add(5, 5, 0, 2, "f5a", now_ms=170)
    assert order.release(now_ms=200) == []  # incomplete and not yet waited
    released = order.release(now_ms=271)
    assert [(r.seq, r.complete) for r in released] == [(5, False)]
    assert order.is_late(4) and order.is_late(5) and not order.is_late(6)
    assert order.restarted(0, ts_capture_ms=10) and not order.restarted(4, ts_capture_ms=4)


def test_a_sources_first_frame_goes_out_at_once_and_the_frames_behind_it_follow() -> None:
    order: FrameOrder[str] = FrameOrder(reorder_ms=300)
    order.add(1, 1, 0, 1, "f1", now_ms=0)
    assert order.release(now_ms=1) == []  # frame 0 may still be in flight
    order.add(0, 0, 0, 1, "f0", now_ms=2)
    assert [r.seq for r in order.release(now_ms=3)] == [0, 1]  # nothing can precede frame 0: no wait
