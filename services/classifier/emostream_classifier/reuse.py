"""Scores of faces classified a moment ago, reused for the same face while its crop has not changed.

A camera sees the same face in frame after frame; running the model on each copy spends most of
the CPU on answers already known. Like DeepStream's secondary-classifier re-inference interval,
a face is looked at again only when its crop changes (mean absolute difference above a few grey
levels) or its last real classification is older than `max_age_ms` of capture time, so a new
expression is seen within that window at the latest. Crops are held in memory only, for that
window, and at most `per_camera` faces for each of `max_cameras` cameras.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass

import numpy as np

from emostream.wire import Box, Face


@dataclass(frozen=True)
class Scored:
    """One real classification: what the model saw and said, and which version said it."""

    camera: str
    box: Box
    crop: np.ndarray
    probabilities: np.ndarray
    version: int
    ts_capture_ms: int


def overlap(a: Box, b: Box) -> float:
    """Intersection over union of two boxes."""
    width = min(a.x + a.w, b.x + b.w) - max(a.x, b.x)
    height = min(a.y + a.h, b.y + b.h) - max(a.y, b.y)
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    return inter / (a.w * a.h + b.w * b.h - inter)


def crop_difference(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two grey crops, in grey levels."""
    return float(np.mean(np.abs(a.astype(np.int16) - b.astype(np.int16))))


class RecentScores:
    """Per camera, the faces classified within the last `max_age_ms` of capture time."""

    def __init__(
        self,
        max_age_ms: int,
        max_difference: float,
        min_overlap: float = 0.6,
        per_camera: int = 64,
        max_cameras: int = 1024,
    ) -> None:
        self.max_age_ms = max_age_ms
        self.max_difference = max_difference
        self.min_overlap = min_overlap
        self.per_camera = per_camera
        self.max_cameras = max_cameras
        self._cameras: OrderedDict[str, deque[Scored]] = OrderedDict()

    def same_face(self, seen: Face | Scored, face: Face) -> bool:
        """Whether `face` is `seen` again: within the age limit, in about the same place, its crop unchanged."""
        return (
            self.max_age_ms > 0
            and face.camera == seen.camera
            and abs(face.ts_capture_ms - seen.ts_capture_ms) <= self.max_age_ms
            and overlap(face.box, seen.box) >= self.min_overlap
            and crop_difference(face.crop, seen.crop) <= self.max_difference
        )

    def find(self, face: Face) -> Scored | None:
        """The recent classification of this very face, if its crop has barely changed since."""
        recent = self._cameras.get(face.camera)
        if not recent or self.max_age_ms <= 0:
            return None
        return next((scored for scored in reversed(recent) if self.same_face(scored, face)), None)  # newest first

    def remember(self, face: Face, probabilities: np.ndarray, version: int) -> None:
        """Keep a real classification of `face`; older ones of its camera leave as the window moves."""
        if self.max_age_ms <= 0:
            return
        recent = self._cameras.get(face.camera)
        if recent is None:
            recent = self._cameras[face.camera] = deque(maxlen=self.per_camera)
            while len(self._cameras) > self.max_cameras:
                self._cameras.popitem(last=False)  # the camera seen least recently
        self._cameras.move_to_end(face.camera)
        recent.append(
            Scored(face.camera, face.box, face.crop.copy(), probabilities.copy(), version, face.ts_capture_ms)
        )
        while recent and face.ts_capture_ms - recent[0].ts_capture_ms > self.max_age_ms:
            recent.popleft()

    def __len__(self) -> int:
        return sum(len(recent) for recent in self._cameras.values())
