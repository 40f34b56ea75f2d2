"""Square windows of a frame: the tiles that cover it at each face scale, and windows around known faces."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

FACE_FRACTION = 0.27  # BlazeFace short range finds a face reliably from about this share of its input side
BAND = 1.5  # each tile level covers faces from f to BAND * f; the next level starts where it ends


@dataclass(frozen=True)
class Tile:
    """A square window of the frame; it may reach past the frame's edges (the model sees black there)."""

    x: int
    y: int
    side: int
    overlap: int = 0
    """How far neighbouring tiles of the same level overlap (0: no neighbours)."""


def starts(length: int, side: int, overlap: int) -> list[int]:
    """Evenly spread window starts along one axis, neighbours overlapping by at least `overlap`."""
    if side >= length:
        return [0]
    count = math.ceil((length - overlap) / (side - overlap))
    step = (length - side) / (count - 1)
    return [round(i * step) for i in range(count)]


def cover(width: int, height: int, side: int, overlap: int) -> list[Tile]:
    """Tiles of `side` pixels covering a width x height frame, overlapping by at least `overlap`."""
    return [Tile(x, y, side, overlap) for y in starts(height, side, overlap) for x in starts(width, side, overlap)]


def whole(width: int, height: int) -> Tile:
    """One tile holding the whole frame, letterboxed at the bottom or right."""
    return Tile(0, 0, max(width, height))


@dataclass(frozen=True)
class Level:
    """Tiles for faces of `face` to BAND * `face` pixels: `side` wide, overlapping by the largest such face."""

    face: int
    side: int
    overlap: int


def face_levels(width: int, height: int, min_face: int) -> list[Level]:
    """Levels for every face size from `min_face` up to those a whole-frame pass shows large enough."""
    reach = FACE_FRACTION * max(width, height)
    found: list[Level] = []
    face = float(min_face)
    while face < reach:
        found.append(Level(round(face), round(face / FACE_FRACTION), round(face * BAND)))
        face *= BAND
    return found


def levels(width: int, height: int, min_face: int) -> list[Tile]:
    """Every tile of every level: each face from `min_face` up lies whole in one, at a size the model finds."""
    return [
        tile
        for level in face_levels(width, height, min_face)
        for tile in cover(width, height, level.side, level.overlap)
    ]


def cover_region(x: int, y: int, w: int, h: int, level: Level) -> list[Tile]:
    """A level's tiles over one region of the frame, centred on it when one tile is enough."""
    xs = [x - (level.side - w) // 2] if w <= level.side else [x + s for s in starts(w, level.side, level.overlap)]
    ys = [y - (level.side - h) // 2] if h <= level.side else [y + s for s in starts(h, level.side, level.overlap)]
    return [Tile(tx, ty, level.side, level.overlap) for ty in ys for tx in xs]


def around(box: np.ndarray, share: float) -> Tile:
    """A square window centred on an (x0, y0, x1, y1) box, in which the box's longer side is `share` of it."""
    side = max(box[2] - box[0], box[3] - box[1]) / share
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return Tile(round(cx - side / 2), round(cy - side / 2), max(1, round(side)))
