"""Face detection at every distance, and the square grey crops the model takes.

- near: MediaPipe Tasks with the short-range BlazeFace model on the whole frame; finds faces of about
  a fifth of the frame or more (a person at a webcam) for a few milliseconds.
- far: the same model run with LiteRT on tiles and around known faces (search.py), for faces down to
  DETECTOR_MIN_FACE_PX pixels (a tenth of a 720p frame and less).
- auto, the default: far plus the whole frame letterboxed, so one setting serves a webcam and a room.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import get_args

import cv2
import numpy as np

from emostream.wire import CROP_SIZE, Box
from emostream_detector.blazeface import FULL_RANGE, SHORT_RANGE, BlazeFace
from emostream_detector.model_file import FAR, NEAR, ModelFile
from emostream_detector.search import TiledSearch
from emostream_detector.settings import DetectorRange, DetectorSettings

RANGES: tuple[DetectorRange, ...] = get_args(DetectorRange)


@dataclass(frozen=True)
class Detection:
    box: Box
    score: float
    crop: np.ndarray
    """CROP_SIZE x CROP_SIZE grey uint8."""


class NearSearch:
    """The short-range model through MediaPipe Tasks, on the whole frame."""

    def __init__(self, model_path: Path, min_score: float) -> None:
        # Imported here: MediaPipe takes seconds to import, and only this range runs it.
        import mediapipe as mp
        from mediapipe.tasks.python import BaseOptions
        from mediapipe.tasks.python.vision import FaceDetector, FaceDetectorOptions, RunningMode

        options = FaceDetectorOptions(
            base_options=BaseOptions(model_asset_path=str(model_path)),
            running_mode=RunningMode.IMAGE,
            min_detection_confidence=min_score,
        )
        self._detector = FaceDetector.create_from_options(options)
        self._image = partial(mp.Image, image_format=mp.ImageFormat.SRGB)
        self.calls = 0

    def search(self, bgr: np.ndarray, grey: np.ndarray, camera: str) -> np.ndarray:
        """Rows of (x0, y0, x1, y1, score) in frame pixels."""
        self.calls += 1
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        result = self._detector.detect(self._image(data=rgb))
        rows = [
            (b.origin_x, b.origin_y, b.origin_x + b.width, b.origin_y + b.height, d.categories[0].score)
            for d in result.detections
            if d.categories
            for b in (d.bounding_box,)
        ]
        return np.asarray(rows, dtype=np.float32).reshape(-1, 5)

    def close(self) -> None:
        self._detector.close()


class FaceFinder:
    """Finds faces in BGR frames; one instance per thread (MediaPipe and LiteRT graphs are not shared)."""

    def __init__(
        self,
        near_model: Path,
        far_model: Path | None = None,
        *,
        detector_range: DetectorRange = "auto",
        min_score: float = 0.5,
        new_face_score: float = 0.6,
        margin: float = 0.25,
        min_face_px: int = 48,
        refresh_frames: int = 300,
        first_search_frames: int = 1,
    ) -> None:
        self._search: NearSearch | TiledSearch
        if detector_range == "near":
            self._search = NearSearch(near_model, min_score)
        else:
            short = BlazeFace(near_model, SHORT_RANGE)
            whole_frame = None
            if detector_range == "auto":
                whole_frame = BlazeFace(far_model, FULL_RANGE) if far_model else short
            self._search = TiledSearch(
                short,
                whole_frame=whole_frame,
                min_score=min_score,
                min_face_px=min_face_px,
                refresh_frames=refresh_frames,
                new_face_score=new_face_score,
                first_search_frames=first_search_frames,
            )
        self.margin = margin

    def find(self, frame_bgr: np.ndarray, camera: str = "") -> list[Detection]:
        """Faces in one frame of `camera`, left to right; far and auto remember each camera's last frame."""
        grey = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY)
        found: list[Detection] = []
        for x0, y0, x1, y1, score in self._search.search(frame_bgr, grey, camera).tolist():
            box = clip_box(Box(round(x0), round(y0), round(x1 - x0), round(y1 - y0)), grey.shape[1], grey.shape[0])
            if box.w > 1 and box.h > 1:
                found.append(Detection(box, float(score), square_crop(grey, box, self.margin)))
        return sorted(found, key=lambda d: (d.box.x, d.box.y))  # stable face_index left to right

    @property
    def model_calls(self) -> int:
        """Detector model calls so far: the cost measure that does not depend on the machine."""
        return self._search.calls

    def close(self) -> None:
        if isinstance(self._search, NearSearch):
            self._search.close()


def finder_from_settings(settings: DetectorSettings, models: Mapping[ModelFile, Path]) -> FaceFinder:
    """The FaceFinder the detector service runs with `settings`, on the fetched `models`."""
    return FaceFinder(
        models[NEAR],
        models[FAR] if settings.whole_frame_model == "full" else None,
        detector_range=settings.range,
        min_score=settings.min_score,
        margin=settings.margin,
        min_face_px=settings.min_face_px,
        refresh_frames=settings.refresh_frames,
        first_search_frames=settings.first_search_frames,
    )


def clip_box(box: Box, width: int, height: int) -> Box:
    x0, y0 = max(0, box.x), max(0, box.y)
    x1, y1 = min(width, box.x + box.w), min(height, box.y + box.h)
    return Box(x0, y0, max(0, x1 - x0), max(0, y1 - y0))


def square_crop(grey: np.ndarray, box: Box, margin: float) -> np.ndarray:
    """A square around the box centre, padded by edge pixels where it leaves the frame, resized to 48x48.

    Shrinking averages pixels (INTER_AREA); small faces are enlarged smoothly (INTER_CUBIC), not blockily.
    """
    side = round(max(box.w, box.h) * (1.0 + margin))
    cx, cy = box.x + box.w / 2.0, box.y + box.h / 2.0
    x0, y0 = round(cx - side / 2.0), round(cy - side / 2.0)
    height, width = grey.shape
    pad = max(0, -x0, -y0, x0 + side - width, y0 + side - height)
    if pad:
        grey = cv2.copyMakeBorder(grey, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x0, y0 = x0 + pad, y0 + pad
    patch = grey[y0 : y0 + side, x0 : x0 + side]
    interpolation = cv2.INTER_AREA if side >= CROP_SIZE else cv2.INTER_CUBIC
    return cv2.resize(patch, (CROP_SIZE, CROP_SIZE), interpolation=interpolation)
