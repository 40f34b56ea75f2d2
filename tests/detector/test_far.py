"""Far faces: the BlazeFace decoders, the tiles, the per-camera search, and DETECTOR_RANGE, on real models."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from emostream_detector.blazeface import FULL_RANGE, SHORT_RANGE, BlazeFace, Layout, decode, weighted_nms
from emostream_detector.detection import RANGES, FaceFinder, NearSearch
from emostream_detector.model_file import FAR, NEAR
from emostream_detector.search import explains, region_tiles
from emostream_detector.settings import DetectorSettings
from emostream_detector.tiling import cover, face_levels, levels, whole

from emostream.demo import astronaut_bgr
from emostream.settings import load
from emostream.wire import Box
from tests.lib.test_settings import one_error_line

pytestmark = pytest.mark.timeout(120)
FACE_IN_ASTRONAUT = 97  # side of the face box MediaPipe Tasks finds in the 512 px astronaut


@pytest.fixture(scope="module")
def astronaut_face(detector_models: dict[object, Path]) -> np.ndarray:
    """The astronaut's face box (x0, y0, x1, y1) found by MediaPipe Tasks: the reference the decoders must match."""
    image = astronaut_bgr()
    near = NearSearch(detector_models[NEAR], 0.5)
    [face] = near.search(image, cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), "")
    near.close()
    return face[:4]


def astronaut_in(canvas_w: int, canvas_h: int, face_side: int, at: tuple[int, int]) -> tuple[np.ndarray, float]:
    """A plain canvas with the astronaut scaled so her face is `face_side` px, its top-left at `at`; and the scale."""
    scale = face_side / FACE_IN_ASTRONAUT
    image = cv2.resize(astronaut_bgr(), None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    canvas = np.full((canvas_h, canvas_w, 3), 200, np.uint8)
    x, y = at
    canvas[y : y + image.shape[0], x : x + image.shape[1]] = image[: canvas_h - y, : canvas_w - x]
    return canvas, scale


def near_box(found: Box, expected: np.ndarray, tolerance: float) -> bool:
    x0, y0, x1, y1 = expected
    return (
        abs(found.x - x0) <= tolerance
        and abs(found.y - y0) <= tolerance
        and abs(found.x + found.w - x1) <= tolerance
        and abs(found.y + found.h - y1) <= tolerance
    )


# Anchors, decoding and suppression on small cases


def test_anchor_layouts_match_mediapipes_calculator() -> None:
    short = SHORT_RANGE.anchor_centres()
    assert short.shape == (896, 2)
    np.testing.assert_allclose(short[:2], [[1 / 32, 1 / 32]] * 2)  # stride 8: 16x16 cells, 2 anchors each
    np.testing.assert_allclose(short[2], [3 / 32, 1 / 32])
    np.testing.assert_allclose(short[512:518], [[1 / 16, 1 / 16]] * 6)  # stride 16: 8x8 cells, 6 anchors each
    np.testing.assert_allclose(short[-1], [15 / 16, 15 / 16])
    full = FULL_RANGE.anchor_centres()
    assert full.shape == (2304, 2)
    expected = [[0.5 / 48, 0.5 / 48], [1.5 / 48, 0.5 / 48], [0.5 / 48, 1.5 / 48], [47.5 / 48] * 2]
    np.testing.assert_allclose(full[[0, 1, 48, 2303]], expected)


def test_decode_offsets_boxes_from_their_anchor_and_keeps_confident_ones() -> None:
    anchors = np.array([[0.25, 0.25], [0.75, 0.5]], np.float32)
    raw = np.zeros((1, 2, 16), np.float32)
    raw[0, 0, :4] = [19.2, 0.0, 38.4, 19.2]  # centre +0.1 in x; 0.2 wide and 0.1 high at a 192 px input
    raw[0, 1, :4] = [0.0, 0.0, 96.0, 96.0]
    scores = np.array([[[3.0], [-3.0]]], np.float32)  # sigmoid 0.95 and 0.05
    rows = decode(raw, scores, anchors, 192, min_score=0.5)
    np.testing.assert_allclose(rows, [[0.25, 0.2, 0.45, 0.3, 1 / (1 + np.exp(-3.0))]], rtol=1e-5)
    assert decode(raw, np.full((1, 2, 1), 1e6, np.float32), anchors, 192, 0.5)[:, 4].max() <= 1.0  # clipped, no NaN


def test_weighted_nms_averages_overlapping_boxes_by_score_and_keeps_apart_ones() -> None:
    rows = np.array(
        [
            [0.0, 0.0, 10.0, 10.0, 0.6],
            [2.0, 0.0, 12.0, 10.0, 0.9],  # IoU 0.67 with the first: one face
            [50.0, 50.0, 60.0, 60.0, 0.7],  # a face of its own
        ],
        np.float32,
    )
    kept = weighted_nms(rows)
    np.testing.assert_allclose(kept[0], [1.2, 0.0, 11.2, 10.0, 0.9], rtol=1e-5)  # best score first, mean box
    np.testing.assert_allclose(kept[1], rows[2])
    assert len(weighted_nms(np.zeros((0, 5), np.float32))) == 0


# The full-range model


def test_full_range_decoder_finds_the_astronaut_scaled_into_a_larger_canvas(
    detector_models: dict[object, Path], astronaut_face: np.ndarray
) -> None:
    model = BlazeFace(detector_models[FAR], FULL_RANGE)
    canvas = np.full((1024, 1024, 3), 200, np.uint8)
    canvas[100:612, 150:662] = astronaut_bgr()  # the face is 97 px: 18 px at the model's 192 px input
    [row] = model.detect(canvas, whole(1024, 1024), 0.5)
    expected = astronaut_face + np.array([150, 100, 150, 100])
    found = Box(round(row[0]), round(row[1]), round(row[2] - row[0]), round(row[3] - row[1]))
    assert near_box(found, expected, tolerance=12), (found, expected)
    assert row[4] > 0.6


@pytest.mark.parametrize(("file", "layout"), [(NEAR, SHORT_RANGE), (FAR, FULL_RANGE)], ids=["short", "full"])
def test_blazeface_finds_nothing_in_an_empty_frame(
    detector_models: dict[object, Path], file: object, layout: Layout
) -> None:
    model = BlazeFace(detector_models[file], layout)
    for value in (0, 90, 255):
        assert len(model.detect(np.full((720, 1280, 3), value, np.uint8), whole(1280, 720), 0.5)) == 0


# Tiles


@pytest.mark.parametrize(("width", "height", "min_face"), [(1280, 720, 48), (640, 480, 48), (1920, 1080, 60)])
def test_every_face_lies_whole_in_a_tile_where_it_is_large_enough(width: int, height: int, min_face: int) -> None:
    """The property the levels promise, checked on a grid of face sizes and places."""
    tiles = levels(width, height, min_face)
    reach = 0.27 * max(width, height)
    for side in (min_face, int(min_face * 1.3), int(min_face * 2.2), int(reach) - 1):
        for x, y in itertools.product(range(0, width - side, 37), range(0, height - side, 41)):
            inside = [
                t for t in tiles if t.x <= x and t.y <= y and x + side <= t.x + t.side and y + side <= t.y + t.side
            ]
            assert any(side >= 0.26 * t.side for t in inside), (side, x, y)


def test_cover_spans_the_frame_with_the_overlap_asked_for() -> None:
    tiles = cover(1280, 720, 300, 80)
    xs, ys = sorted({t.x for t in tiles}), sorted({t.y for t in tiles})
    assert xs[0] == 0 and xs[-1] + 300 == 1280 and ys[0] == 0 and ys[-1] + 300 == 720
    assert all(b - a <= 300 - 80 for a, b in itertools.pairwise(xs))
    assert all(b - a <= 300 - 80 for a, b in itertools.pairwise(ys))
    assert [level.face for level in face_levels(1280, 720, 48)] == [48, 72, 108, 162, 243]


# The search through FaceFinder


@pytest.fixture(scope="module")
def far_canvas() -> tuple[np.ndarray, np.ndarray]:
    """The astronaut with a 60 px face in a 1280x720 frame, and the face's box there."""
    canvas, scale = astronaut_in(1280, 720, 60, (700, 380))
    return canvas, scale


def test_far_and_auto_find_a_60px_face_in_a_720p_frame_and_near_does_not(
    detector_models: dict[object, Path], far_canvas: tuple[np.ndarray, float], astronaut_face: np.ndarray
) -> None:
    canvas, scale = far_canvas
    expected = astronaut_face * scale + (700, 380, 700, 380)
    for detector_range in RANGES:
        finder = FaceFinder(detector_models[NEAR], detector_range=detector_range)
        found = [d for d in finder.find(canvas, "lobby") if near_box(d.box, expected, tolerance=8)]
        assert len(found) == (0 if detector_range == "near" else 1), (detector_range, finder.find(canvas, "x"))
        if found:
            assert found[0].crop.shape == (48, 48) and found[0].crop.std() > 10
        finder.close()


def test_a_still_face_is_carried_without_model_calls_and_a_moved_one_is_found_again(
    detector_models: dict[object, Path], far_canvas: tuple[np.ndarray, float]
) -> None:
    canvas, _ = far_canvas
    finder = FaceFinder(detector_models[NEAR], detector_range="far", refresh_frames=0)
    first = [d.box for d in finder.find(canvas, "lobby")]
    calls = finder.model_calls
    assert calls > 50  # a camera's first frame searches every tile
    again = [d.box for d in finder.find(canvas, "lobby")]
    assert again == first and finder.model_calls == calls  # nothing moved: no model call

    moved = np.roll(canvas, (12, -20), axis=(0, 1))
    boxes = [d.box for d in finder.find(moved, "lobby")]
    assert finder.model_calls - calls < calls / 4  # the face's window and the changed region, not every tile
    assert len(boxes) == len(first)
    assert all(abs(b.x - (a.x - 20)) <= 6 and abs(b.y - (a.y + 12)) <= 6 for a, b in zip(first, boxes, strict=True))

    # Another camera has its own memory: its first frame is a full search again.
    calls = finder.model_calls
    finder.find(canvas, "door")
    assert finder.model_calls - calls > 50


def test_a_new_cameras_full_search_is_spread_over_its_first_frames(
    detector_models: dict[object, Path], far_canvas: tuple[np.ndarray, float]
) -> None:
    """So that cameras starting together do not queue behind one another's full searches."""
    canvas, _ = far_canvas
    at_once = FaceFinder(detector_models[NEAR], detector_range="far", refresh_frames=0)
    at_once.find(canvas, "lobby")
    full_search = at_once.model_calls
    spread = FaceFinder(detector_models[NEAR], detector_range="far", refresh_frames=0, first_search_frames=8)
    calls, found = [], []
    for _ in range(8):
        before = spread.model_calls
        found.append(len(spread.find(canvas, "lobby")))
        calls.append(spread.model_calls - before)
    assert max(calls) <= math.ceil(full_search / 8) + 2  # a share of the tiles (and a look at a doubtful face)
    assert sum(calls) >= full_search  # every tile, in the end
    assert found[-1] == 1 and found[0] == 0  # the still 60 px face lies in a later share of the tiles
    before = spread.model_calls
    assert len(spread.find(canvas, "lobby")) == 1 and spread.model_calls == before  # then carried, as ever


def test_a_face_that_appears_is_found_in_the_frame_it_appears(
    detector_models: dict[object, Path], far_canvas: tuple[np.ndarray, float]
) -> None:
    canvas, _ = far_canvas
    finder = FaceFinder(detector_models[NEAR], detector_range="auto", refresh_frames=0)
    empty = np.full_like(canvas, 200)
    assert finder.find(empty, "door") == []
    assert len(finder.find(canvas, "door")) >= 1  # found through the region that changed
    assert finder.find(empty, "door") == []  # and forgotten when it leaves


def test_auto_makes_no_model_call_on_a_frame_where_nothing_changed(
    detector_models: dict[object, Path], far_canvas: tuple[np.ndarray, float]
) -> None:
    canvas, _ = far_canvas
    finder = FaceFinder(detector_models[NEAR], detector_range="auto", refresh_frames=0)
    first = [d.box for d in finder.find(canvas, "desk")]
    calls = finder.model_calls
    assert [d.box for d in finder.find(canvas.copy(), "desk")] == first
    assert finder.model_calls == calls  # not even the whole-frame pass: the frame shows what the last one did
    finder.find(np.roll(canvas, 8, axis=1), "desk")
    assert finder.model_calls > calls


def test_a_changed_region_stops_at_the_largest_face_size_that_explains_it(
    detector_models: dict[object, Path], astronaut_face: np.ndarray
) -> None:
    x0, y0, x1, y1 = astronaut_face.round().astype(int)
    pad = (x1 - x0) // 4
    face = cv2.resize(astronaut_bgr()[y0 - pad : y1 + pad, x0 - pad : x1 + pad], None, fx=1.6, fy=1.6)
    empty = np.full((480, 640, 3), 200, np.uint8)
    canvas = empty.copy()
    canvas[100 : 100 + face.shape[0], 200 : 200 + face.shape[1]] = face  # only the face and its margin change
    finder = FaceFinder(detector_models[NEAR], detector_range="far", refresh_frames=0)
    finder.find(empty, "hall")
    calls = finder.model_calls
    every_size = sum(len(tiles) for tiles in region_tiles((200, 100, *face.shape[1::-1]), face_levels(640, 480, 48)))
    faces = finder.find(canvas, "hall")
    assert len(faces) == 1 and faces[0].box.w > 120
    assert finder.model_calls - calls < every_size / 2  # the smaller face sizes were not searched


def test_region_tiles_come_largest_face_first_and_a_face_explains_a_change_inside_its_window() -> None:
    scales = face_levels(1280, 720, 48)
    sides = [tiles[0].side for tiles in region_tiles((100, 100, 300, 300), scales)]
    assert sides == sorted(sides, reverse=True) and len(sides) > 1
    face = np.array([200, 200, 300, 300, 0.9], np.float32)  # window 250 px around it: 125..375
    assert explains(face, (150, 150, 200, 200)) and not explains(face, (100, 150, 200, 200))


def test_the_grid_is_searched_once_every_refresh_frames_at_any_frame_size(detector_models: dict[object, Path]) -> None:
    for width, height in ((640, 480), (1280, 720)):
        empty = np.full((height, width, 3), 200, np.uint8)
        finder = FaceFinder(detector_models[NEAR], detector_range="far", refresh_frames=30)
        finder.find(empty, "hall")  # first frame: every tile
        calls = finder.model_calls
        for _ in range(30):
            finder.find(empty, "hall")
        assert finder.model_calls - calls == len(levels(width, height, 48))


# DETECTOR_RANGE


@pytest.mark.parametrize("value", RANGES)
def test_detector_range_setting_accepts_each_range(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("DETECTOR_RANGE", value)
    assert load(DetectorSettings, [], prog="emostream detect").range == value
    monkeypatch.delenv("DETECTOR_RANGE")
    assert load(DetectorSettings, ["--range", value], prog="emostream detect").range == value


def test_detector_range_defaults_to_auto_and_a_bad_value_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert load(DetectorSettings, [], prog="emostream detect").range == "auto"
    monkeypatch.setenv("DETECTOR_RANGE", "medium")
    with pytest.raises(SystemExit) as exited:
        load(DetectorSettings, [], prog="emostream detect")
    assert exited.value.code == 2
    line = one_error_line(capsys)
    assert "--range / DETECTOR_RANGE" in line and "'medium'" in line
