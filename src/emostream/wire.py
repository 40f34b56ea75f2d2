"""Typed messages inside the services, and their protobuf and Redis-field forms at the edges."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

import numpy as np

from emostream.errors import EmostreamError
from emostream.v1 import messages_pb2 as pb

CROP_SIZE = 48
PAYLOAD_FIELD = b"pb"
CAMERA_ID_PATTERN = r"[A-Za-z0-9_.-]{1,64}"
"""What a camera id may be, everywhere: it becomes part of Redis keys and of log lines."""
CAMERA_ID = re.compile(f"^{CAMERA_ID_PATTERN}$")
MAX_FRAME_SIDE = 16_384
"""Largest frame width or height accepted (capture's --max-width bound)."""
MAX_JPEG_BYTES = 8 * 1024 * 1024
MAX_FACES_PER_FRAME = 256


class WireError(EmostreamError, ValueError):
    """A stream entry that cannot be decoded or breaks the contract; the message says which field.

    `kind` is a short stable name for the reason, used to count dead letters by reason.
    """

    def __init__(self, message: str, kind: str = "malformed") -> None:
        super().__init__(message)
        self.kind = kind


def check_camera(camera: str, what: str = "entry") -> str:
    """`camera` if it is a valid camera id; else WireError (shown with repr, so newlines stay visible)."""
    if not CAMERA_ID.match(camera):
        shown = repr(camera[:40]) + ("..." if len(camera) > 40 else "")
        raise WireError(
            f"{what} has camera id {shown} ({len(camera)} chars): it must match {CAMERA_ID_PATTERN}", "bad_camera"
        )
    return camera


def _finite(value: float, low: float, high: float, what: str) -> float:
    if not (math.isfinite(value) and low <= value <= high):
        raise WireError(f"{what} is {value!r}, outside [{low:g}, {high:g}]", "bad_value")
    return value


@dataclass(frozen=True)
class Box:
    x: int
    y: int
    w: int
    h: int


@dataclass(frozen=True, kw_only=True)
class Frame:
    camera: str
    seq: int
    ts_capture_ms: int
    jpeg: bytes
    width: int
    height: int


@dataclass(frozen=True, kw_only=True)
class Face:
    camera: str
    frame_seq: int
    ts_capture_ms: int
    face_index: int
    faces_in_frame: int
    box: Box
    score: float
    crop: np.ndarray
    """48x48 grey uint8."""
    ts_detect_ms: int
    frame_width: int
    frame_height: int

    @property
    def identity(self) -> str:
        return f"{self.camera}:{self.frame_seq}:{self.face_index}"


@dataclass(frozen=True, kw_only=True)
class EmotionEvent:
    camera: str
    frame_seq: int
    face_index: int
    ts_capture_ms: int
    ts_event_ms: int
    box: Box
    label: str
    score: float
    scores: dict[str, float]
    model: str
    model_version: int
    detector_score: float
    faces_in_frame: int = 0
    """How many faces the detector found in this frame: the tracker knows when a frame is complete."""
    track: TrackInfo | None = None
    """Set by the tracker; None on the classifier's raw output."""


@dataclass(frozen=True, kw_only=True)
class TrackInfo:
    """What the tracker adds to an event: which track, and the label smoothed over its recent frames."""

    track_id: str
    label: str
    score: float
    uncertain: bool


def _parse(message_type: type, fields: dict[bytes, bytes], what: str):  # type: ignore[no-untyped-def]
    payload = fields.get(PAYLOAD_FIELD)
    if payload is None:
        raise WireError(f"{what} entry has no '{PAYLOAD_FIELD.decode()}' field", "no_payload")
    message = message_type()
    try:
        message.ParseFromString(payload)
    except Exception as error:  # protobuf raises DecodeError or RuntimeError by backend
        raise WireError(
            f"{what} entry is not a valid {message_type.__name__} protobuf: {error}", "bad_protobuf"
        ) from error
    return message


def encode_frame(frame: Frame) -> dict[bytes, bytes]:
    message = pb.Frame(
        camera=frame.camera,
        seq=frame.seq,
        ts_capture_ms=frame.ts_capture_ms,
        jpeg=frame.jpeg,
        width=frame.width,
        height=frame.height,
    )
    return {PAYLOAD_FIELD: message.SerializeToString()}


def _check_size(width: int, height: int, what: str) -> None:
    if not (1 <= width <= MAX_FRAME_SIDE and 1 <= height <= MAX_FRAME_SIDE):
        raise WireError(f"{what} claims a frame of {width}x{height} pixels (1 to {MAX_FRAME_SIDE} a side)", "bad_size")


def decode_frame(fields: dict[bytes, bytes]) -> Frame:
    m = _parse(pb.Frame, fields, "frame")
    check_camera(m.camera, "frame")
    if not m.jpeg:
        raise WireError(f"frame {m.camera}/{m.seq} has no image bytes", "no_image")
    if len(m.jpeg) > MAX_JPEG_BYTES:
        raise WireError(f"frame {m.camera}/{m.seq} has {len(m.jpeg)} image bytes (at most {MAX_JPEG_BYTES})", "too_big")
    _check_size(m.width, m.height, f"frame {m.camera}/{m.seq}")
    return Frame(camera=m.camera, seq=m.seq, ts_capture_ms=m.ts_capture_ms, jpeg=m.jpeg, width=m.width, height=m.height)


def encode_face(face: Face) -> dict[bytes, bytes]:
    box = pb.Box(x=face.box.x, y=face.box.y, w=face.box.w, h=face.box.h)
    message = pb.Face(
        camera=face.camera,
        frame_seq=face.frame_seq,
        ts_capture_ms=face.ts_capture_ms,
        face_index=face.face_index,
        faces_in_frame=face.faces_in_frame,
        box=box,
        score=face.score,
        crop=np.ascontiguousarray(face.crop, dtype=np.uint8).tobytes(),
        ts_detect_ms=face.ts_detect_ms,
        frame_width=face.frame_width,
        frame_height=face.frame_height,
    )
    return {PAYLOAD_FIELD: message.SerializeToString()}


def check_box(box: Box, width: int, height: int, what: str) -> Box:
    """`box` if it has a size and lies inside a `width` x `height` frame; else WireError."""
    inside = box.x >= 0 and box.y >= 0 and box.w >= 1 and box.h >= 1
    if not (inside and box.x + box.w <= width and box.y + box.h <= height):
        raise WireError(
            f"{what} box (x={box.x}, y={box.y}, w={box.w}, h={box.h}) is not inside its {width}x{height} frame",
            "bad_box",
        )
    return box


def decode_face(fields: dict[bytes, bytes]) -> Face:
    m = _parse(pb.Face, fields, "face")
    check_camera(m.camera, "face")
    what = f"face {m.camera}/{m.frame_seq}/{m.face_index}"
    if len(m.crop) != CROP_SIZE * CROP_SIZE:
        raise WireError(
            f"{what} crop has {len(m.crop)} bytes, expected {CROP_SIZE * CROP_SIZE} (48x48 grey)", "bad_crop"
        )
    if not (m.face_index < m.faces_in_frame <= MAX_FACES_PER_FRAME):
        raise WireError(f"{what} is face {m.face_index} of {m.faces_in_frame} in its frame", "bad_value")
    _check_size(m.frame_width, m.frame_height, what)
    box = check_box(Box(m.box.x, m.box.y, m.box.w, m.box.h), m.frame_width, m.frame_height, what)
    _finite(m.score, 0.0, 1.0, f"{what} detector score")
    crop = np.frombuffer(m.crop, dtype=np.uint8).reshape(CROP_SIZE, CROP_SIZE)
    return Face(
        camera=m.camera,
        frame_seq=m.frame_seq,
        ts_capture_ms=m.ts_capture_ms,
        face_index=m.face_index,
        faces_in_frame=m.faces_in_frame,
        box=box,
        score=m.score,
        crop=crop,
        ts_detect_ms=m.ts_detect_ms,
        frame_width=m.frame_width,
        frame_height=m.frame_height,
    )


def encode_event(event: EmotionEvent) -> dict[str, str]:
    """Flat text fields, readable with plain redis-cli."""
    return {
        "camera": event.camera,
        "frame_seq": str(event.frame_seq),
        "face_index": str(event.face_index),
        "ts_capture_ms": str(event.ts_capture_ms),
        "ts_event_ms": str(event.ts_event_ms),
        "x": str(event.box.x),
        "y": str(event.box.y),
        "w": str(event.box.w),
        "h": str(event.box.h),
        "label": event.label,
        "score": f"{event.score:.4f}",
        "scores": json.dumps({k: round(v, 4) for k, v in event.scores.items()}),
        "model": event.model,
        "model_version": str(event.model_version),
        "detector_score": f"{event.detector_score:.4f}",
        "faces_in_frame": str(event.faces_in_frame),
        **(
            {
                "track_id": event.track.track_id,
                "smoothed_label": event.track.label,
                "smoothed_score": f"{event.track.score:.4f}",
                "uncertain": "1" if event.track.uncertain else "0",
            }
            if event.track
            else {}
        ),
    }


def decode_event(fields: dict[bytes, bytes] | dict[str, str]) -> EmotionEvent:
    text = {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in fields.items()
    }
    try:
        event = EmotionEvent(
            camera=text["camera"],
            frame_seq=int(text["frame_seq"]),
            face_index=int(text["face_index"]),
            ts_capture_ms=int(text["ts_capture_ms"]),
            ts_event_ms=int(text["ts_event_ms"]),
            box=Box(int(text["x"]), int(text["y"]), int(text["w"]), int(text["h"])),
            label=text["label"],
            score=float(text["score"]),
            scores={k: float(v) for k, v in json.loads(text["scores"]).items()},
            model=text["model"],
            model_version=int(text["model_version"]),
            detector_score=float(text.get("detector_score", "0")),
            faces_in_frame=int(text.get("faces_in_frame", "0")),
            track=(
                TrackInfo(
                    track_id=text["track_id"],
                    label=text["smoothed_label"],
                    score=float(text["smoothed_score"]),
                    uncertain=text["uncertain"] == "1",
                )
                if "track_id" in text
                else None
            ),
        )
    except (KeyError, ValueError, TypeError, AttributeError) as error:
        raise WireError(f"event entry is malformed: {error!r}") from error
    check_camera(event.camera, "event")
    for name, value in [("score", event.score), ("detector_score", event.detector_score), *event.scores.items()]:
        _finite(value, 0.0, 1.0, f"event {event.camera}/{event.frame_seq} {name}")
    b = event.box
    if min(b.x, b.y) < 0 or min(b.w, b.h) < 1:
        raise WireError(f"event {event.camera}/{event.frame_seq} has box {b}", "bad_box")
    return event
