"""Which recent classification an unchanged face may reuse, and how little is kept."""

from __future__ import annotations

import dataclasses

import numpy as np
from emostream_classifier.reuse import RecentScores, crop_difference, overlap

from emostream.wire import Box, Face

SCORES = np.array([0.7, 0.2, 0.1], np.float32)


HERE = Box(100, 100, 60, 60)


def face(ts_ms: int, box: Box = HERE, camera: str = "cam", shade: int = 120) -> Face:
    crop = np.full((48, 48), shade, np.uint8)
    crop[10:20, 10:38] = 40  # something face-like to differ in
    return Face(
        camera=camera,
        frame_seq=ts_ms,
        ts_capture_ms=ts_ms,
        face_index=0,
        faces_in_frame=1,
        box=box,
        score=0.9,
        crop=crop,
        ts_detect_ms=ts_ms,
        frame_width=640,
        frame_height=480,
    )


def test_the_same_face_a_moment_later_reuses_the_scores_and_version() -> None:
    recent = RecentScores(max_age_ms=500, max_difference=3.0)
    recent.remember(face(0), SCORES, version=2)
    found = recent.find(face(33, Box(102, 101, 60, 60)))  # the detector's box moves a little
    assert found is not None and found.version == 2
    np.testing.assert_array_equal(found.probabilities, SCORES)


def test_a_changed_crop_a_moved_box_an_old_look_or_another_camera_is_not_reused() -> None:
    recent = RecentScores(max_age_ms=500, max_difference=3.0)
    recent.remember(face(0), SCORES, version=1)
    assert recent.find(face(33, shade=126)) is None  # 6 grey levels brighter
    assert recent.find(face(33, Box(140, 100, 60, 60))) is None  # another place: IoU 0.2
    assert recent.find(face(501)) is None
    assert recent.find(face(33, camera="other")) is None
    assert recent.find(face(33, shade=122)) is not None  # sensor noise is not a change


def test_reuse_off_keeps_nothing() -> None:
    recent = RecentScores(max_age_ms=0, max_difference=3.0)
    recent.remember(face(0), SCORES, version=1)
    assert recent.find(face(0)) is None and len(recent) == 0


def test_what_is_kept_is_bounded_by_age_faces_and_cameras() -> None:
    recent = RecentScores(max_age_ms=100, max_difference=3.0, per_camera=4, max_cameras=2)
    for ts in range(0, 1000, 10):
        recent.remember(face(ts), SCORES, version=1)
    assert len(recent) == 4  # per camera, at most 4 faces, none older than 100 ms
    recent.remember(face(0, camera="b"), SCORES, version=1)
    recent.remember(face(0, camera="c"), SCORES, version=1)
    assert recent.find(face(995)) is None  # the least recently seen camera left
    assert len(recent) == 2


def test_a_kept_crop_is_a_copy_the_caller_cannot_change() -> None:
    recent = RecentScores(max_age_ms=500, max_difference=3.0)
    seen = face(0)
    recent.remember(seen, SCORES, version=1)
    seen.crop[:] = 0
    assert recent.find(dataclasses.replace(face(10))) is not None


def test_overlap_and_difference() -> None:
    assert overlap(Box(0, 0, 10, 10), Box(0, 0, 10, 10)) == 1.0
    assert overlap(Box(0, 0, 10, 10), Box(10, 0, 10, 10)) == 0.0
    assert overlap(Box(0, 0, 10, 10), Box(5, 0, 10, 10)) == 50 / 150
    assert crop_difference(np.zeros((2, 2), np.uint8), np.full((2, 2), 255, np.uint8)) == 255.0


def test_a_face_is_the_same_face_only_on_its_own_camera() -> None:
    recent = RecentScores(max_age_ms=500, max_difference=3.0)
    assert recent.same_face(face(0), face(33))
    assert not recent.same_face(face(0), face(33, camera="other"))
    assert not recent.same_face(face(0), face(33, shade=130))
