"""MediaPipe Tasks face detection and the square grey crops the model takes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import mediapipe as mp
import numpy as np
from mediapipe.tasks.python import BaseOptions
from mediapipe.tasks.python.vision import FaceDetector, FaceDetectorOptions, RunningMode

from emostream.wire import CROP_SIZE, Box


@dataclass(frozen=True)
class Detection:
    box: Box
    score: float
    crop: np.ndarray
    """CROP_SIZE x CROP_SIZE grey uint8."""


class FaceFinder:
    """Finds faces in BGR frames; one instance per thread (MediaPipe graphs are not shared)."""

    def __init__(self, model_path: Path, min_score: float, margin: float) -> None:
        options = FaceDetectorOptions(
            base_options=BaseOptions(model_asset_path=str(model_path)),
            running_mode=RunningMode.IMAGE,
            min_detection_confidence=min_score,
        )
        self._detector = FaceDetector.create_from_options(options)
        self.margin = margin

    def find(self, frame_bgr: np.ndarray) -> list[Detection]:
        rgb = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
        result = self._detector.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb))
        grey = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY)
        found: list[Detection] = []
        for detection in result.detections:
            bb = detection.bounding_box
            box = clip_box(Box(bb.origin_x, bb.origin_y, bb.width, bb.height), grey.shape[1], grey.shape[0])
            if box.w > 1 and box.h > 1:
                score = float(detection.categories[0].score) if detection.categories else 0.0
                found.append(Detection(box, score, square_crop(grey, box, self.margin)))
        return sorted(found, key=lambda d: (d.box.x, d.box.y))  # stable face_index left to right

    def close(self) -> None:
        self._detector.close()


def clip_box(box: Box, width: int, height: int) -> Box:
    x0, y0 = max(0, box.x), max(0, box.y)
    x1, y1 = min(width, box.x + box.w), min(height, box.y + box.h)
    return Box(x0, y0, max(0, x1 - x0), max(0, y1 - y0))


def square_crop(grey: np.ndarray, box: Box, margin: float) -> np.ndarray:
    """A square around the box centre, padded by edge pixels where it leaves the frame, resized to 48x48."""
    side = round(max(box.w, box.h) * (1.0 + margin))
    cx, cy = box.x + box.w / 2.0, box.y + box.h / 2.0
    x0, y0 = round(cx - side / 2.0), round(cy - side / 2.0)
    height, width = grey.shape
    pad = max(0, -x0, -y0, x0 + side - width, y0 + side - height)
    if pad:
        grey = cv2.copyMakeBorder(grey, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x0, y0 = x0 + pad, y0 + pad
    patch = grey[y0 : y0 + side, x0 : x0 + side]
    return cv2.resize(patch, (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_AREA)
