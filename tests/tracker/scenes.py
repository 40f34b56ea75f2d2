"""Classifier results for faces moving in known paths, as the tracker receives them on emostream:scored."""

from __future__ import annotations

import random

from emostream import names, wire
from emostream.wire import Box, EmotionEvent

LABELS = ("happy", "neutral", "fear")


def scores(label: str, confidence: float = 0.8) -> dict[str, float]:
    rest = (1 - confidence) / (len(LABELS) - 1)
    return {name: confidence if name == label else rest for name in LABELS}


def two_faces(frames: int, camera: str = "cam", change_at: int | None = None) -> list[list[EmotionEvent]]:
    """Per frame, two faces drifting towards each other without meeting; the left one is happy, then
    (from `change_at`) fear; the right one stays neutral. Face 0 is always the left one."""
    out = []
    for seq in range(frames):
        left_label = "fear" if change_at is not None and seq >= change_at else "happy"
        boxes = [(Box(50 + 2 * seq, 100, 120, 120), left_label), (Box(600 - 2 * seq, 110, 110, 110), "neutral")]
        out.append(
            [
                EmotionEvent(
                    camera=camera,
                    frame_seq=seq,
                    face_index=index,
                    ts_capture_ms=1_000_000 + 33 * seq,
                    ts_event_ms=0,
                    box=box,
                    label=label,
                    score=0.8,
                    scores=scores(label),
                    model="emotion",
                    model_version=1,
                    detector_score=0.9,
                    faces_in_frame=2,
                )
                for index, (box, label) in enumerate(boxes)
            ]
        )
    return out


def replica_order(frames: list[list[EmotionEvent]], seed: int = 3) -> list[EmotionEvent]:
    """The faces as two detector and two classifier replicas deliver them: each replica takes every
    other frame, one runs a few frames behind, and a frame's faces are split between classifier batches."""
    rng = random.Random(seed)
    fast = [face for frame in frames[0::2] for face in frame]
    slow = [face for frame in frames[1::2] for face in frame]
    out: list[EmotionEvent] = []
    lag = 4
    for index in range(max(len(fast), len(slow)) + lag):
        if index < len(fast):
            out.append(fast[index])
        if 0 <= index - lag < len(slow):
            out.append(slow[index - lag])
    # Classifier batches close at random points: swap some neighbours, splitting frames apart.
    for i in range(len(out) - 1):
        if rng.random() < 0.3:
            out[i], out[i + 1] = out[i + 1], out[i]
    return out


def publish(client: object, events: list[EmotionEvent]) -> None:
    pipe = client.pipeline(transaction=False)  # type: ignore[attr-defined]
    for event in events:
        pipe.xadd(names.SCORED, wire.encode_event(event))
    pipe.execute()
