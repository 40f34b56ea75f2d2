"""The detector service: frames from every camera's stream into face crops, each frame's faces published once."""

from __future__ import annotations

import logging
import time

import redis

from emostream import metrics, names
from emostream.names import Progress
from emostream.streams import (
    DEAD_LETTERS_MAXLEN,
    Consumer,
    Message,
    Once,
    Publisher,
    dead_letter_record,
    publish_once,
)
from emostream.telemetry import Meter
from emostream.wire import Face, Frame, WireError, check_camera, decode_frame, encode_face
from emostream_detector.detection import FaceFinder
from emostream_detector.frame_image import decode_image
from emostream_detector.settings import DetectorSettings

FRAMES_PREFIX = names.frames("")
MAX_FACES_BACKLOG = 256


def max_faces_backlog(stream_maxlen: int) -> int:
    """Faces that may wait for the classifiers: well inside the stream bound, and a few seconds of work."""
    return min(MAX_FACES_BACKLOG, stream_maxlen // 2)


def faces_backlog(client: redis.Redis) -> int:
    """Faces the classifier group has not finished (unread plus pending); all of them before it exists."""
    try:
        groups = client.xinfo_groups(names.FACES)
    except redis.ResponseError:  # no face stream yet
        return 0
    for group in groups:
        if group["name"] in (names.CLASSIFIER_GROUP, names.CLASSIFIER_GROUP.encode()):
            lag = group.get("lag")
            if lag is None:  # Redis cannot tell after trims: the stream's length bounds it
                return int(client.xlen(names.FACES))
            return int(lag) + int(group["pending"])
    return int(client.xlen(names.FACES))


def registry_camera(member: bytes) -> str:
    """The camera id of one `emostream:cameras` member; WireError when it is not a valid id."""
    try:
        text = member.decode()
    except UnicodeDecodeError as error:
        raise WireError(f"camera registry entry {member[:40]!r} is not UTF-8", "bad_camera") from error
    return check_camera(text, "camera registry entry")


def frame_streams(client: redis.Redis, log: logging.Logger | None = None) -> list[str]:
    """The frame stream of every valid registered camera; invalid entries are moved to the dead letters."""
    streams = []
    for member in client.smembers(names.CAMERAS):
        try:
            streams.append(names.frames(registry_camera(member)))
        except WireError as error:
            remove_camera(client, member, str(error), error.kind, log)
    return streams


# Removal and dead letter in one step: a replica killed between the two would lose the entry unrecorded.
_REMOVE_CAMERA = """
if redis.call('SREM', KEYS[1], ARGV[1]) == 0 then return 0 end
local args = {'XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*'}
for i = 4, #ARGV do args[#args + 1] = ARGV[i] end
redis.call(unpack(args))
redis.call('HINCRBY', KEYS[3], ARGV[3], 1)
return 1
"""


def remove_camera(client: redis.Redis, member: bytes, reason: str, kind: str, log: logging.Logger | None) -> None:
    """Take a bad entry out of the camera registry and dead-letter it; only the replica that removed it records it."""
    record = dead_letter_record(names.CAMERAS, ascii(member[:80]), names.DETECTOR_GROUP, reason, kind)
    args: list[str | bytes | int] = [member, DEAD_LETTERS_MAXLEN, kind]
    for key, value in record.items():
        args += [key, value]
    keys = [names.CAMERAS, names.DEAD_LETTERS, names.DEAD_LETTER_COUNTS]
    if client.register_script(_REMOVE_CAMERA)(keys=keys, args=args) and log:
        log.error("removed camera registry entry %r: %s", member[:40], reason)


class Detector:
    """Handles one frame at a time: detect, publish its faces and counters once, acknowledge."""

    def __init__(self, settings: DetectorSettings, client: redis.Redis, finder: FaceFinder, log: logging.Logger):
        self.settings = settings
        self.client = client
        self.finder = finder
        self.log = log
        self.consumer: Consumer[Frame] = Consumer(
            client,
            names.DETECTOR_GROUP,
            settings.consumer,
            decode_frame,
            lambda: frame_streams(client, log),
            claim_idle_ms=settings.claim_idle_ms,
            on_bad_stream=self.bad_stream,
        )
        self.faces_out: Publisher[Face] = Publisher(names.FACES, encode_face, settings.stream_maxlen)
        self.meter = Meter(client, "detector", settings.consumer, log)

    def bad_stream(self, stream: str, reason: str) -> None:
        """A registered camera whose frames key is not a stream: out of the registry, into the dead letters."""
        camera = stream.removeprefix(FRAMES_PREFIX).encode()
        remove_camera(self.client, camera, f"{stream} is not a stream: {reason}", "bad_stream", self.log)

    def faces(self, frame: Frame) -> list[Face]:
        image = decode_image(frame)
        height, width = image.shape[:2]
        detections = self.finder.find(image, frame.camera)
        now = int(time.time() * 1000)
        return [
            Face(
                camera=frame.camera,
                frame_seq=frame.seq,
                ts_capture_ms=frame.ts_capture_ms,
                face_index=index,
                faces_in_frame=len(detections),
                box=d.box,
                score=d.score,
                crop=d.crop,
                ts_detect_ms=now,
                frame_width=width,
                frame_height=height,
            )
            for index, d in enumerate(detections)
        ]

    def reject(self, message: Message[Frame], camera: str, reason: str, kind: str) -> None:
        self.consumer.dead_letter(message.stream, message.id, {b"camera": camera.encode()}, reason, kind)
        self.client.hincrby(names.progress(camera), Progress.FRAMES_FAILED, 1)  # so `up --once` still ends
        self.meter.add("dead_letters")

    def handle(self, message: Message[Frame]) -> None:
        frame = message.value
        if message.stream != names.frames(frame.camera):  # one camera may not write another's frames
            camera = message.stream.removeprefix(FRAMES_PREFIX)
            reason = f"frame claims camera {frame.camera!r} but came from {message.stream}"
            self.reject(message, camera, reason, "camera_mismatch")
            return
        started = time.perf_counter()
        try:
            faces = self.faces(frame)
        except WireError as error:
            self.reject(message, frame.camera, str(error), error.kind)
            return
        except Exception as error:  # any frame MediaPipe or OpenCV chokes on is set aside, not fatal
            lines = str(error).strip().splitlines()
            reason = f"detection failed: {type(error).__name__}: {lines[-1] if lines else ''}"
            self.reject(message, frame.camera, reason, "detection_failed")
            return
        once = Once(
            marker=names.seen("frame", f"{frame.camera}:{frame.seq}:{frame.ts_capture_ms}"),
            entries=[self.faces_out.entry(face) for face in faces],
            counters_key=names.progress(frame.camera),
            counters={Progress.FRAMES_DETECTED: 1, Progress.FACES_DETECTED: len(faces)},
        )
        publish_once(self.client, [once], self.settings.dedupe_ttl_s)
        self.consumer.ack([message])
        self.meter.add("frames")
        self.meter.add("faces", len(faces))
        metrics.DETECTOR_SECONDS.observe(time.perf_counter() - started)
        metrics.DETECTOR_FRAMES.labels(frame.camera).inc()
        metrics.DETECTOR_FACES.labels(frame.camera).inc(len(faces))

    def step(self) -> None:
        if self.classifiers_behind():
            self.meter.add("held")
            time.sleep(self.settings.block_ms / 1000)  # frames wait in their streams, where capture sheds them
        else:
            for message in self.consumer.read(self.settings.frames_per_read, self.settings.block_ms):
                self.handle(message)
        self.meter.tick()

    def classifiers_behind(self) -> bool:
        """True while the classifiers have `faces_backlog` faces unread or unacknowledged.

        Faces are never trimmed unread from their bounded stream: the detectors wait instead, the
        frames back up, and capture drops (and counts) new frames where they enter.
        """
        return faces_backlog(self.client) >= max_faces_backlog(self.settings.stream_maxlen)
