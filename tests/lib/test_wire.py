"""The wire forms: protobuf frames and faces, flat-text events, clear errors for bad entries, fresh generated code."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import redis

from emostream import wire
from emostream.v1 import messages_pb2 as pb
from emostream.wire import Box, EmotionEvent, Face, Frame, WireError

ROOT = Path(__file__).resolve().parents[2]
EVENT_FIELDS = {
    "faces_in_frame",
    "camera",
    "frame_seq",
    "face_index",
    "ts_capture_ms",
    "ts_event_ms",
    "x",
    "y",
    "w",
    "h",
    "label",
    "score",
    "scores",
    "model",
    "model_version",
    "detector_score",
}


def a_face(crop: np.ndarray | None = None) -> Face:
    if crop is None:
        crop = np.arange(48 * 48, dtype=np.uint32).reshape(48, 48).astype(np.uint8)
    return Face(
        camera="cam-1",
        frame_seq=12,
        ts_capture_ms=1_700_000_000_123,
        face_index=1,
        faces_in_frame=2,
        box=Box(10, 20, 30, 40),
        score=0.75,
        crop=crop,
        ts_detect_ms=1_700_000_000_200,
        frame_width=640,
        frame_height=480,
    )


def an_event() -> EmotionEvent:
    return EmotionEvent(
        camera="cam-1",
        frame_seq=12,
        face_index=1,
        ts_capture_ms=1_700_000_000_123,
        ts_event_ms=1_700_000_000_456,
        box=Box(10, 20, 30, 40),
        label="happy",
        score=0.8125,
        scores={"happy": 0.8125, "neutral": 0.125, "fear": 0.0625},
        model="emotion",
        model_version=3,
        detector_score=0.5,
    )


def test_frame_round_trip() -> None:
    frame = Frame(
        camera="cam-1",
        seq=7,
        ts_capture_ms=1_700_000_000_123,
        jpeg=b"\xff\xd8jpeg bytes\xff\xd9",
        width=640,
        height=480,
    )
    fields = wire.encode_frame(frame)
    assert set(fields) == {wire.PAYLOAD_FIELD}
    assert wire.decode_frame(fields) == frame


def test_face_round_trip() -> None:
    face = a_face()
    back = wire.decode_face(wire.encode_face(face))
    assert (back.camera, back.frame_seq, back.ts_capture_ms, back.face_index, back.faces_in_frame) == (
        "cam-1",
        12,
        1_700_000_000_123,
        1,
        2,
    )
    assert back.box == face.box
    assert back.score == pytest.approx(0.75)
    assert back.ts_detect_ms == face.ts_detect_ms
    assert back.identity == face.identity == "cam-1:12:1"
    assert back.crop.dtype == np.uint8 and back.crop.shape == (48, 48)
    np.testing.assert_array_equal(back.crop, face.crop)


def test_face_crop_from_a_non_contiguous_view_round_trips() -> None:
    big = np.arange(96 * 96, dtype=np.uint32).reshape(96, 96).astype(np.uint8)
    view = big[::2, ::2]
    assert not view.flags.c_contiguous
    back = wire.decode_face(wire.encode_face(a_face(view)))
    np.testing.assert_array_equal(back.crop, view)


def test_event_fields_are_plain_text_and_round_trip(redis_client: redis.Redis) -> None:
    event = an_event()
    fields = wire.encode_event(event)
    assert set(fields) == EVENT_FIELDS
    assert all(isinstance(value, str) for value in fields.values())
    assert fields["camera"] == "cam-1"
    assert fields["frame_seq"] == "12"
    assert fields["face_index"] == "1"
    assert fields["ts_capture_ms"] == "1700000000123"
    assert fields["ts_event_ms"] == "1700000000456"
    assert (fields["x"], fields["y"], fields["w"], fields["h"]) == ("10", "20", "30", "40")
    assert fields["label"] == "happy"
    assert float(fields["score"]) == pytest.approx(0.8125, abs=1e-4)
    assert json.loads(fields["scores"]) == pytest.approx({"happy": 0.8125, "neutral": 0.125, "fear": 0.0625}, abs=1e-4)
    assert fields["model"] == "emotion"
    assert fields["model_version"] == "3"
    # Through Redis the fields come back as bytes; decode_event takes them as they are.
    entry_id = redis_client.xadd("emostream:test:events", fields)
    [(_, stored)] = redis_client.xrange("emostream:test:events", entry_id, entry_id)
    assert wire.decode_event(stored) == event
    assert wire.decode_event(fields) == event


def test_tracked_event_fields_round_trip() -> None:
    event = dataclasses.replace(
        an_event(), faces_in_frame=2, track=wire.TrackInfo(track_id="cam-1-7", label="fear", score=0.51, uncertain=True)
    )
    fields = wire.encode_event(event)
    assert set(fields) == EVENT_FIELDS | {"track_id", "smoothed_label", "smoothed_score", "uncertain"}
    assert (fields["track_id"], fields["smoothed_label"], fields["uncertain"]) == ("cam-1-7", "fear", "1")
    assert fields["faces_in_frame"] == "2"
    assert wire.decode_event(fields) == event


def test_the_proto_emotion_event_documents_exactly_the_fields_of_a_tracked_event() -> None:
    """EmotionEvent in messages.proto is the documented shape of an event entry; the box is flattened."""
    documented = {field.name for field in pb.EmotionEvent.DESCRIPTOR.fields} - {"box"}
    documented |= {field.name for field in pb.Box.DESCRIPTOR.fields}
    event = dataclasses.replace(
        an_event(), track=wire.TrackInfo(track_id="cam-1-7", label="fear", score=0.51, uncertain=True)
    )
    assert set(wire.encode_event(event)) == documented


def test_event_scores_are_rounded_to_four_places() -> None:
    event = an_event()
    event = EmotionEvent(**{**event.__dict__, "score": 1 / 3, "scores": {"happy": 1 / 3, "fear": 2 / 3}})
    fields = wire.encode_event(event)
    assert fields["score"] == "0.3333"
    assert json.loads(fields["scores"]) == {"happy": 0.3333, "fear": 0.6667}


def test_entry_without_payload_names_the_field() -> None:
    with pytest.raises(WireError, match="no 'pb' field"):
        wire.decode_frame({b"camera": b"cam-1"})
    with pytest.raises(WireError, match="face entry has no 'pb' field"):
        wire.decode_face({})


def test_garbage_payload_is_a_wire_error() -> None:
    with pytest.raises(WireError, match="not a valid Frame protobuf"):
        wire.decode_frame({wire.PAYLOAD_FIELD: b"\x00garbage bytes"})
    with pytest.raises(WireError, match="not a valid Face protobuf"):
        wire.decode_face({wire.PAYLOAD_FIELD: b"\xff\xff\xff"})


def test_frame_without_camera_or_image_is_rejected() -> None:
    with pytest.raises(WireError, match="camera id ''"):
        wire.decode_frame(wire.encode_frame(Frame(camera="", seq=1, ts_capture_ms=2, jpeg=b"jpeg", width=1, height=1)))
    with pytest.raises(WireError, match="no image bytes"):
        wire.decode_frame(wire.encode_frame(Frame(camera="cam", seq=1, ts_capture_ms=2, jpeg=b"", width=1, height=1)))


BAD_CAMERAS = ["", "a\nb", "x" * 65, "caf\u00e9", "a b", "cam:1", "../etc"]


@pytest.mark.parametrize("camera", BAD_CAMERAS)
def test_camera_ids_outside_the_pattern_are_rejected_everywhere(camera: str) -> None:
    with pytest.raises(WireError, match="must match") as frame_error:
        wire.decode_frame(
            wire.encode_frame(Frame(camera=camera, seq=1, ts_capture_ms=2, jpeg=b"jpeg", width=8, height=8))
        )
    assert frame_error.value.kind == "bad_camera"
    with pytest.raises(WireError, match="must match"):
        wire.decode_face(wire.encode_face(dataclasses.replace(a_face(), camera=camera)))
    with pytest.raises(WireError, match="must match"):
        wire.decode_event(wire.encode_event(dataclasses.replace(an_event(), camera=camera)))
    assert "\n" not in str(frame_error.value)  # a newline in a name cannot forge a log line


def test_camera_ids_inside_the_pattern_pass() -> None:
    for camera in ["cam", "door.1", "Lobby_2-west", "x" * 64]:
        assert (
            wire.decode_frame(
                wire.encode_frame(Frame(camera=camera, seq=1, ts_capture_ms=2, jpeg=b"jpeg", width=8, height=8))
            ).camera
            == camera
        )


@pytest.mark.parametrize(
    "box",
    [
        Box(-1, 20, 30, 40),
        Box(10, -5, 30, 40),
        Box(10, 20, 0, 40),
        Box(10, 20, 30, -4),
        Box(620, 20, 30, 40),
        Box(10, 450, 30, 40),
    ],
)
def test_face_boxes_must_lie_inside_the_frame(box: Box) -> None:
    with pytest.raises(WireError, match="not inside its 640x480 frame") as error:
        wire.decode_face(wire.encode_face(dataclasses.replace(a_face(), box=box)))
    assert error.value.kind == "bad_box"


@pytest.mark.parametrize("score", [float("nan"), float("inf"), -0.5, 1.5])
def test_scores_must_be_finite_and_in_range(score: float) -> None:
    with pytest.raises(WireError, match="detector score"):
        wire.decode_face(wire.encode_face(dataclasses.replace(a_face(), score=score)))
    fields = wire.encode_event(an_event())
    with pytest.raises(WireError, match="score"):
        wire.decode_event({**fields, "score": str(score)})
    with pytest.raises(WireError, match="fear"):
        wire.decode_event({**fields, "scores": json.dumps({"happy": 0.5, "fear": score})})


def test_faces_and_frames_have_sane_sizes_and_indexes() -> None:
    with pytest.raises(WireError, match="face 2 of 2"):
        wire.decode_face(wire.encode_face(dataclasses.replace(a_face(), face_index=2)))
    with pytest.raises(WireError, match="0x480"):
        wire.decode_face(wire.encode_face(dataclasses.replace(a_face(), frame_width=0)))
    with pytest.raises(WireError, match="20000x8"):
        wire.decode_frame(
            wire.encode_frame(Frame(camera="cam", seq=1, ts_capture_ms=2, jpeg=b"jpeg", width=20_000, height=8))
        )
    with pytest.raises(WireError, match="image bytes") as error:
        wire.decode_frame(
            wire.encode_frame(
                Frame(camera="cam", seq=1, ts_capture_ms=2, jpeg=bytes(wire.MAX_JPEG_BYTES + 1), width=8, height=8)
            )
        )
    assert error.value.kind == "too_big"


@pytest.mark.parametrize("size", [0, 47 * 48, 48 * 48 * 3])
def test_wrong_crop_size_names_the_sizes(size: int) -> None:
    payload = pb.Face(camera="cam", crop=bytes(size), faces_in_frame=1).SerializeToString()
    with pytest.raises(WireError, match=rf"crop has {size} bytes, expected 2304"):
        wire.decode_face({wire.PAYLOAD_FIELD: payload})


def test_malformed_events_name_the_problem() -> None:
    fields = wire.encode_event(an_event())
    missing = {k: v for k, v in fields.items() if k != "label"}
    with pytest.raises(WireError, match="label"):
        wire.decode_event(missing)
    with pytest.raises(WireError, match="malformed"):
        wire.decode_event({**fields, "frame_seq": "twelve"})
    with pytest.raises(WireError, match="malformed"):
        wire.decode_event({**fields, "scores": "not json"})


def test_wire_error_is_a_value_error() -> None:
    assert issubclass(WireError, ValueError)


def test_generated_protobuf_code_is_up_to_date(tmp_path: Path) -> None:
    """src/emostream/v1 is what scripts/gen_protos.sh makes from protos/ (never edited by hand)."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-Iprotos",
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            "protos/emostream/v1/messages.proto",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=60,
    )
    for name in ("messages_pb2.py", "messages_pb2.pyi"):
        fresh = (tmp_path / "emostream" / "v1" / name).read_text()
        committed = (ROOT / "src" / "emostream" / "v1" / name).read_text()
        assert fresh == committed, f"src/emostream/v1/{name} is stale: run scripts/gen_protos.sh"
