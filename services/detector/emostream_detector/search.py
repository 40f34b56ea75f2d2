"""Finding faces down to a tenth of the frame high within a per-frame budget, using what the video already showed.

A full search of a 1280x720 frame at every face scale takes about a hundred model calls, several
times the budget of one camera at 30 fps on one core. Video is coherent, so each frame searches:
- the whole frame, letterboxed (auto only), for faces too large for the biggest tiles, when anything
  in it changed;
- a window around every face of the camera's previous frame that the whole frame did not show and
  that moved; a face that did not move keeps its box for up to MAX_CARRY frames without a call;
- tiles over each region where the picture changed since the previous frame, away from known faces,
  at the face sizes the region can hold, largest first, until a face found there explains the change;
- a few tiles in turn, so that a face that sat still while unseen is still found within seconds.
A camera's first frame, and any frame whose size changes, starts the full search: the whole frame
and a share of every tile, the rest over the next `first_search_frames - 1` frames, so that cameras
starting together do not queue their frames behind one another's full searches.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field

import cv2
import numpy as np

from emostream_detector.blazeface import NMS_IOU, BlazeFace, iou, weighted_nms
from emostream_detector.tiling import Level, Tile, around, cover_region, face_levels, levels, whole

TRACK_SHARE = 0.4  # a known face fills this share of its window: room to move, and in the model's best range
MOTION_SCALE = 4  # motion is compared on frames shrunk this much (averaging hides JPEG noise)
MOTION_LEVEL = 14  # grey levels of change that count as motion
MOTION_MARGIN = 0.25  # a changed region is searched this share of a face size beyond its edges
EDGE_PX = 2  # a box this close to a window's edge inside the frame is cut by it
MAX_CARRY = 15  # a still face is searched again at least this often (frames), so a stale box cannot linger
SURE_SCORE = 0.8  # a new face scoring less is looked at again, centred, before it is believed
BODY_RATIO = 1.6  # a face this much larger makes a small "face" under its chin part of its body
MAX_CAMERAS = 1024  # per-camera memory is bounded: the least recently seen camera is forgotten


NO_FACES = np.zeros((0, 5), np.float32)
NO_CARRIED = np.zeros((0, 6), np.float32)  # rows of (x0, y0, x1, y1, score, age)


@dataclass
class CameraView:
    """What one camera's previous frame showed: its shrunk grey picture and the faces in it."""

    small: np.ndarray | None = None
    faces: np.ndarray = field(default_factory=lambda: np.zeros((0, 5), np.float32))
    ages: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    """Frames since each face was last seen by the model (0: in the last frame)."""
    refresh: float = 0.0
    """How many tiles this camera has searched in turn."""
    first_search: list[Tile] = field(default_factory=list)
    """Tiles of the full search started at the camera's first frame that are not searched yet."""


@dataclass(frozen=True)
class Region:
    """A changed part of the frame (x, y, w, h) and its tiles per face size, largest faces first."""

    box: tuple[int, int, int, int]
    levels: list[list[Tile]]


@dataclass(frozen=True)
class Plan:
    """What one frame searches after the whole-frame pass."""

    tracked: list[Tile]
    """Windows around known faces that moved, or were carried long enough."""
    carried: np.ndarray
    """Known faces that did not move: kept where they were, without a model call."""
    moved: list[Region]
    refreshed: list[Tile]


class TiledSearch:
    """The short-range model over tiles and known faces, keeping a small memory per camera."""

    def __init__(
        self,
        model: BlazeFace,
        *,
        whole_frame: BlazeFace | None,
        min_score: float,
        min_face_px: int,
        refresh_frames: int,
        new_face_score: float,
        first_search_frames: int = 1,
    ):
        self._model = model
        self._whole_model = whole_frame
        self.min_score = min_score
        self.min_face_px = min_face_px
        self.refresh_frames = refresh_frames
        self.first_search_frames = max(1, first_search_frames)
        self.new_face_score = max(min_score, new_face_score)
        self._views: OrderedDict[str, CameraView] = OrderedDict()
        self._tiles: dict[tuple[int, int], list[Tile]] = {}
        self._levels: dict[tuple[int, int], list[Level]] = {}
        self.calls = 0
        """Model calls so far: the cost measure that does not depend on the machine."""

    def search(self, bgr: np.ndarray, grey: np.ndarray, camera: str) -> np.ndarray:
        """Rows of (x0, y0, x1, y1, score) in frame pixels; remembers them for the camera's next frame.

        Two thresholds, as trackers such as ByteTrack use: a face the camera showed in its previous
        frame is kept from `min_score`; a new one needs `new_face_score`, since the many windows of a
        search give the model many chances to see a face in a shirt or a shadow.
        """
        height, width = grey.shape
        view = self._view(camera)
        mask = self._motion(grey, view)
        found = []
        if self._whole_model and (mask is None or mask.any()):  # an unchanged frame shows what the last one did
            found.append(self._search(bgr, whole(width, height), self._whole_model))
        seen = np.concatenate(found) if found else NO_FACES
        plan = self.plan(width, height, view, seen, mask)
        found += [self._search(bgr, window) for window in plan.tracked]
        found += [rows for region in plan.moved for rows in self._search_region(bgr, region)]
        found += [self._search(bgr, window) for window in plan.refreshed]
        fresh = weighted_nms(np.concatenate(found)) if found else NO_FACES
        fresh = fresh[[overlaps(row, view.faces) or self._confirmed(bgr, row) for row in fresh]]
        fresh = fresh[[not below_a_larger_face(row, fresh) for row in fresh]]
        carried = plan.carried[[not overlaps(face, fresh) for face in plan.carried]]
        view.faces = np.concatenate([fresh, carried[:, :5]])
        view.ages = np.concatenate([np.zeros(len(fresh), np.int64), carried[:, 5].astype(np.int64) + 1])
        return view.faces

    def _motion(self, grey: np.ndarray, view: CameraView) -> np.ndarray | None:
        """Where the frame changed since the camera's previous one, at 1/MOTION_SCALE (None: no previous frame)."""
        height, width = grey.shape
        shrunk = (max(1, width // MOTION_SCALE), max(1, height // MOTION_SCALE))
        small = cv2.resize(grey, shrunk, interpolation=cv2.INTER_AREA)
        before, view.small = view.small, small
        if before is None or before.shape != small.shape:
            return None
        return (cv2.absdiff(small, before) > MOTION_LEVEL).astype(np.uint8)

    def plan(self, width: int, height: int, view: CameraView, seen: np.ndarray, mask: np.ndarray | None) -> Plan:
        """Known faces that the whole-frame pass (`seen`) lacks: carried when still, else a window each;
        tiles over changed regions away from all of them; the next tiles in turn. A camera's first frame,
        or a new frame size (no `mask`), starts the full search of every tile."""
        size = (width, height)
        if size not in self._tiles:
            self._levels[size] = face_levels(width, height, self.min_face_px)
            self._tiles[size] = levels(width, height, self.min_face_px)
        tiles = self._tiles[size]
        if mask is None:
            view.first_search = list(tiles)
            return Plan([], NO_CARRIED, [], self._first_search_share(view, len(tiles)))
        unseen = [i for i, face in enumerate(view.faces) if not overlaps(face, seen)]
        still = [i for i in unseen if view.ages[i] < MAX_CARRY and not moved_in(mask, view.faces[i])]
        carried = np.column_stack([view.faces[still], view.ages[still]]) if still else NO_CARRIED
        tracked = [around(view.faces[i], TRACK_SHARE) for i in unseen if i not in still]
        known = [*tracked, *(around(face, TRACK_SHARE) for face in (*seen, *view.faces[still]))]
        moved = [Region(region, region_tiles(region, self._levels[size])) for region in changed(mask, known)]
        return Plan(tracked, carried, moved, self._first_search_share(view, len(tiles)) + self._next(tiles, view))

    def _search_region(self, bgr: np.ndarray, region: Region) -> list[np.ndarray]:
        """A changed region's tiles, largest face size first, until a sure face explains the change.

        A face that appeared or moved changes the picture around itself; once one is found whose
        window holds the whole region, smaller faces there would be inside it.
        """
        found: list[np.ndarray] = []
        for tiles in region.levels:
            level = [self._search(bgr, tile) for tile in tiles]
            found += level
            if any(explains(row, region.box) for rows in level for row in rows if row[4] >= SURE_SCORE):
                break
        return found

    def _first_search_share(self, view: CameraView, tiles: int) -> list[Tile]:
        """This frame's share of the camera's full search, until it is done."""
        share = math.ceil(tiles / self.first_search_frames)
        found, view.first_search = view.first_search[:share], view.first_search[share:]
        return found

    def _next(self, tiles: list[Tile], view: CameraView) -> list[Tile]:
        """The next tiles in turn, so that the whole grid is searched once every `refresh_frames` frames.

        A sweep takes the same time at any frame size: a 640x480 grid costs a third of a 1280x720 one.
        """
        if not self.refresh_frames:
            return []
        start, view.refresh = int(view.refresh), view.refresh + len(tiles) / self.refresh_frames
        return [tiles[i % len(tiles)] for i in range(start, int(view.refresh))]

    def _confirmed(self, bgr: np.ndarray, face: np.ndarray) -> bool:
        """A new face scores `new_face_score`; a doubtful one (under SURE_SCORE) again in a window centred on it."""
        if face[4] < self.new_face_score:
            return False
        if face[4] >= SURE_SCORE:
            return True
        again = self._search(bgr, around(face, TRACK_SHARE))
        return bool(np.any((again[:, 4] >= self.new_face_score) & (iou(face[:4], again[:, :4]) > NMS_IOU)))

    def _search(self, bgr: np.ndarray, window: Tile, model: BlazeFace | None = None) -> np.ndarray:
        self.calls += 1
        rows = (model or self._model).detect(bgr, window, self.min_score)
        return rows[~cut_by_edge(rows, window, bgr.shape[1], bgr.shape[0])]

    def _view(self, camera: str) -> CameraView:
        view = self._views.pop(camera, None) or CameraView()
        self._views[camera] = view
        while len(self._views) > MAX_CAMERAS:
            self._views.popitem(last=False)
        return view


def below_a_larger_face(face: np.ndarray, faces: np.ndarray) -> bool:
    """Whether a face sits on the neck or chest of a face at least BODY_RATIO times its size.

    Small windows show the model collars, neck rings and shirt prints at face scale; a real face is
    not found just under the chin of a much larger one.
    """
    side = max(face[2] - face[0], face[3] - face[1])
    cx, cy = (face[0] + face[2]) / 2, (face[1] + face[3]) / 2
    for other in faces:
        w, h = other[2] - other[0], other[3] - other[1]
        larger = max(w, h) >= BODY_RATIO * side
        if larger and other[0] - w / 2 <= cx <= other[2] + w / 2 and other[3] <= cy <= other[3] + 1.5 * h:
            return True
    return False


def overlaps(face: np.ndarray, known: np.ndarray) -> bool:
    """Whether a face is one of `known` (IoU over MediaPipe's suppression threshold)."""
    return bool(np.any(iou(face[:4], known[:, :4]) > NMS_IOU))


def moved_in(mask: np.ndarray, face: np.ndarray) -> bool:
    """Whether the motion mask shows change inside a face's box."""
    x0, y0, x1, y1 = (np.asarray(face[:4]) / MOTION_SCALE).round().astype(int)
    return bool(mask[max(0, y0) : max(0, y1) + 1, max(0, x0) : max(0, x1) + 1].any())


def changed(mask: np.ndarray, known: list[Tile]) -> list[tuple[int, int, int, int]]:
    """Regions (x, y, w, h, in frame pixels) of the motion mask outside known faces' windows."""
    mask = mask.copy()
    for window in known:  # change inside a known face's window is that face moving: its window looks there
        x0, y0 = max(0, window.x // MOTION_SCALE), max(0, window.y // MOTION_SCALE)
        mask[y0 : (window.y + window.side) // MOTION_SCALE, x0 : (window.x + window.side) // MOTION_SCALE] = 0
    if not mask.any():
        return []
    mask = cv2.dilate(mask, np.ones((3, 3), np.uint8))  # join the pieces of one moving thing
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    return [
        (int(x) * MOTION_SCALE, int(y) * MOTION_SCALE, int(w) * MOTION_SCALE, int(h) * MOTION_SCALE)
        for x, y, w, h, _ in stats[1:count]
    ]


def region_tiles(region: tuple[int, int, int, int], scales: list[Level]) -> list[list[Tile]]:
    """Tiles over a changed region per face size it can hold, largest first, widened so a face at its edge is whole."""
    x, y, w, h = region
    found: list[list[Tile]] = []
    for level in scales:
        if level.face > max(w, h) * (1 + 2 * MOTION_MARGIN):
            break
        grow = round(level.face * MOTION_MARGIN)
        found.append(cover_region(x - grow, y - grow, w + 2 * grow, h + 2 * grow, level))
    return found[::-1]


def explains(face: np.ndarray, region: tuple[int, int, int, int]) -> bool:
    """Whether a changed region lies inside the window a face is tracked in (the change is that face)."""
    window = around(face, TRACK_SHARE)
    x, y, w, h = region
    return window.x <= x and window.y <= y and x + w <= window.x + window.side and y + h <= window.y + window.side


def cut_by_edge(rows: np.ndarray, window: Tile, width: int, height: int) -> np.ndarray:
    """Which boxes touch an edge of the window that lies inside the frame.

    Such a box is part of a face, and the face lies whole in a neighbouring tile (tiles overlap by more
    than the faces their level is for) or in its own window (known faces). A grid tile keeps cut faces
    larger than its overlap: no neighbour of its level holds them whole. The whole-frame window has no
    inner edge.
    """
    x0, y0 = window.x + EDGE_PX, window.y + EDGE_PX
    x1, y1 = window.x + window.side - EDGE_PX, window.y + window.side - EDGE_PX
    touches = (
        ((rows[:, 0] < x0) & (window.x > 0))
        | ((rows[:, 1] < y0) & (window.y > 0))
        | ((rows[:, 2] > x1) & (window.x + window.side < width))
        | ((rows[:, 3] > y1) & (window.y + window.side < height))
    )
    if window.overlap:
        touches &= np.maximum(rows[:, 2] - rows[:, 0], rows[:, 3] - rows[:, 1]) < window.overlap
    return np.asarray(touches)
