"""Face entries built from tests.helpers.tiny_model.synthetic_faces, so the tiny model's answer is known."""

from __future__ import annotations

import redis

from emostream import names, wire
from emostream.wire import Box, Face
from tests.conftest import LABELS
from tests.helpers.tiny_model import synthetic_faces


def make_faces(count: int, camera: str = "cam", seed: int = 11) -> list[Face]:
    """`count` faces, one per frame, labelled LABELS[frame_seq % 3] by the tiny model."""
    per_label = [synthetic_faces(label, count, seed) for label in range(len(LABELS))]
    return [
        Face(
            camera=camera,
            frame_seq=seq,
            ts_capture_ms=1_000 + seq,
            face_index=0,
            faces_in_frame=1,
            box=Box(seq % 500, 10, 48, 48),
            score=0.9,
            crop=per_label[seq % len(LABELS)][seq, :, :, 0],
            ts_detect_ms=1_000 + seq,
            frame_width=640,
            frame_height=480,
        )
        for seq in range(count)
    ]


def expected_label(face: Face) -> str:
    return LABELS[face.frame_seq % len(LABELS)]


def put_faces(client: redis.Redis, faces: list[Face]) -> None:
    pipe = client.pipeline(transaction=False)
    for face in faces:
        pipe.xadd(names.FACES, wire.encode_face(face))
    pipe.execute()


def read_events(client: redis.Redis) -> list[wire.EmotionEvent]:
    return [wire.decode_event(fields) for _, fields in client.xrange(names.SCORED)]


def classifier_pending(client: redis.Redis) -> int:
    if not client.exists(names.FACES) or not client.xinfo_groups(names.FACES):
        return 0
    return int(client.xpending(names.FACES, names.CLASSIFIER_GROUP)["pending"])


def classifier_caught_up(client: redis.Redis) -> bool:
    """Every face delivered to the classifier group and acknowledged."""
    groups = {g["name"].decode(): g for g in client.xinfo_groups(names.FACES)} if client.exists(names.FACES) else {}
    group = groups.get(names.CLASSIFIER_GROUP)
    return bool(group) and group["pending"] == 0 and group["lag"] == 0
