"""MediaPipe's BlazeFace models run with LiteRT and decoded as MediaPipe's own graphs decode them.

MediaPipe Tasks' FaceDetector applies the short-range anchors to any model it is given, so it cannot
decode the full-range model, and it letterboxes whole frames only. Running the .tflite files
directly lets the detector feed them any square patch. The parameters are those of
mediapipe/modules/face_detection/face_detection_{short,full}_range.pbtxt: fixed-size anchors
(offset 0.5) on the strides below, boxes and 6 keypoints as 16 values per anchor scaled by the
input side, sigmoid scores clipped at +-100, weighted non-maximum suppression at IoU 0.3.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from ai_edge_litert.interpreter import Interpreter

from emostream_detector.tiling import Tile

SCORE_CLIP = 100.0
NMS_IOU = 0.3


@dataclass(frozen=True)
class Layout:
    """Input side and anchors per cell of each stride, as MediaPipe's SsdAnchorsCalculator lays them out."""

    input_side: int
    anchors_per_stride: tuple[tuple[int, int], ...]

    def anchor_centres(self) -> np.ndarray:
        """Anchor centres (x, y), normalised, in the models' output order (stride, row, column, anchor)."""
        parts = []
        for stride, per_cell in self.anchors_per_stride:
            cells = self.input_side // stride
            ys, xs = np.mgrid[0:cells, 0:cells]
            centres = np.stack([(xs.ravel() + 0.5) / cells, (ys.ravel() + 0.5) / cells], axis=1)
            parts.append(np.repeat(centres, per_cell, axis=0))
        return np.concatenate(parts).astype(np.float32)


SHORT_RANGE = Layout(128, ((8, 2), (16, 6)))  # 4 layers: strides 8, 16, 16, 16; 896 anchors
FULL_RANGE = Layout(192, ((4, 1),))  # 1 layer: stride 4; 2,304 anchors


def decode(
    raw_boxes: np.ndarray, raw_scores: np.ndarray, anchors: np.ndarray, side: int, min_score: float
) -> np.ndarray:
    """Rows of (x0, y0, x1, y1, score) for anchors scoring at least `min_score`; boxes normalised to the input."""
    logits = np.clip(raw_scores.reshape(-1).astype(np.float64), -SCORE_CLIP, SCORE_CLIP)  # exp(100) needs float64
    scores = 1.0 / (1.0 + np.exp(-logits))
    keep = scores >= min_score
    raw, centres = raw_boxes.reshape(-1, raw_boxes.shape[-1])[keep], anchors[keep]
    cx = raw[:, 0] / side + centres[:, 0]
    cy = raw[:, 1] / side + centres[:, 1]
    half_w, half_h = raw[:, 2] / side / 2, raw[:, 3] / side / 2
    return np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h, scores[keep]], axis=1)


def iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Intersection over union of one (x0, y0, x1, y1) box with each row of `others`."""
    ix = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0, None)
    inter = ix * iy
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return np.asarray(inter / np.maximum(area + areas - inter, 1e-9))


def weighted_nms(rows: np.ndarray, threshold: float = NMS_IOU) -> np.ndarray:
    """MediaPipe's WEIGHTED suppression: each kept box is the score-weighted mean of the boxes it absorbs.

    `rows` are (x0, y0, x1, y1, score); the result keeps the best score of each group, best first.
    """
    remaining = rows[np.argsort(-rows[:, 4], kind="stable")]
    kept: list[np.ndarray] = []
    while len(remaining):
        overlap = iou(remaining[0, :4], remaining[:, :4]) > threshold
        group = remaining[overlap]
        weights = group[:, 4:5]
        kept.append(np.append((group[:, :4] * weights).sum(axis=0) / weights.sum(), remaining[0, 4]))
        remaining = remaining[~overlap]
    return np.asarray(kept, dtype=np.float32).reshape(-1, 5)


class BlazeFace:
    """One LiteRT interpreter of a BlazeFace model; not shared between threads."""

    def __init__(self, model_path: Path, layout: Layout, num_threads: int = 1) -> None:
        self._interpreter = Interpreter(model_path=str(model_path), num_threads=num_threads)
        self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]["index"]
        outputs = {int(d["shape"][-1]): d["index"] for d in self._interpreter.get_output_details()}
        self._boxes, self._scores = outputs[16], outputs[1]
        self.side = layout.input_side
        self._anchors = layout.anchor_centres()

    def detect(self, frame_bgr: np.ndarray, window: Tile, min_score: float) -> np.ndarray:
        """Faces in a square window of a BGR frame, as rows of (x0, y0, x1, y1, score) in frame pixels.

        Only the part of the window inside the frame is resized (the rest is black padding, as in
        MediaPipe's letterbox), so a whole-frame window costs no more than a small tile.
        """
        self._interpreter.set_tensor(self._input, model_input(frame_bgr, window, self.side)[np.newaxis])
        self._interpreter.invoke()
        raw_boxes = self._interpreter.get_tensor(self._boxes)
        raw_scores = self._interpreter.get_tensor(self._scores)
        rows = weighted_nms(decode(raw_boxes, raw_scores, self._anchors, self.side, min_score))
        rows[:, :4] = rows[:, :4] * window.side + (window.x, window.y, window.x, window.y)
        return rows


def model_input(frame_bgr: np.ndarray, window: Tile, side: int) -> np.ndarray:
    """The window resized to side x side, RGB in [-1, 1], black (-1) where the window leaves the frame."""
    height, width = frame_bgr.shape[:2]
    x0, y0 = max(0, window.x), max(0, window.y)
    x1, y1 = min(width, window.x + window.side), min(height, window.y + window.side)
    scale = side / window.side
    left, top = round((x0 - window.x) * scale), round((y0 - window.y) * scale)
    w, h = min(side - left, round((x1 - x0) * scale)), min(side - top, round((y1 - y0) * scale))
    canvas = np.zeros((side, side, 3), np.uint8)
    if w > 0 and h > 0:
        # Bilinear, as MediaPipe's ImageToTensorCalculator samples; area averaging costs several times more.
        part = frame_bgr[y0:y1, x0:x1]
        canvas[top : top + h, left : left + w] = cv2.resize(part, (w, h), interpolation=cv2.INTER_LINEAR)
    return canvas[:, :, ::-1].astype(np.float32) * (2.0 / 255.0) - 1.0
