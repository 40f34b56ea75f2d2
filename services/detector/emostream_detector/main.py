"""`emostream detect`: a consumer-group replica turning frames into face crops."""

from __future__ import annotations

import logging
import threading
import time

import cv2
import numpy as np
import redis

from emostream import metrics, names
from emostream.connection import RedisUnavailable, connect
from emostream.lifecycle import run_until_stopped, stop_on_signals
from emostream.settings import load
from emostream.streams import Consumer, Entry, Message, Once, publish_once
from emostream.telemetry import Meter, setup_logging
from emostream.wire import Face, Frame, WireError, decode_frame, encode_face
from emostream_detector.detection import FaceFinder
from emostream_detector.model_file import FAR, NEAR, ModelFetchError, fetch
from emostream_detector.settings import DetectorSettings


def frame_streams(client: redis.Redis) -> list[str]:
    return [names.frames(camera.decode()) for camera in client.smembers(names.CAMERAS)]


def decode_image(frame: Frame) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(frame.jpeg, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise WireError(f"frame {frame.camera}/{frame.seq}: image bytes are not a decodable JPEG")
    return image


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
            lambda: frame_streams(client),
            claim_idle_ms=settings.claim_idle_ms,
        )
        self.meter = Meter(client, "detector", settings.consumer, log)

    def faces(self, frame: Frame) -> list[Face]:
        detections = self.finder.find(decode_image(frame), frame.camera)
        now = int(time.time() * 1000)
        return [
            Face(frame.camera, frame.seq, frame.ts_capture_ms, index, len(detections), d.box, d.score, d.crop, now)
            for index, d in enumerate(detections)
        ]

    def handle(self, message: Message[Frame]) -> None:
        frame = message.value
        started = time.perf_counter()
        try:
            faces = self.faces(frame)
        except (WireError, cv2.error) as error:
            self.consumer.dead_letter(message.stream, message.id, {b"camera": frame.camera.encode()}, str(error))
            self.client.hincrby(names.progress(frame.camera), "frames_failed", 1)  # so `up --once` still ends
            return
        once = Once(
            names.seen("frame", f"{frame.camera}:{frame.seq}:{frame.ts_capture_ms}"),
            [Entry(names.FACES, encode_face(face), self.settings.stream_maxlen) for face in faces],
            names.progress(frame.camera),
            {"frames_detected": 1, "faces_detected": len(faces)},
        )
        publish_once(self.client, [once], self.settings.dedupe_ttl_s)
        self.consumer.ack([message])
        self.meter.add("frames")
        self.meter.add("faces", len(faces))
        metrics.DETECTOR_SECONDS.observe(time.perf_counter() - started)
        metrics.DETECTOR_FRAMES.labels(frame.camera).inc()
        metrics.DETECTOR_FACES.labels(frame.camera).inc(len(faces))

    def step(self) -> None:
        for message in self.consumer.read(self.settings.frames_per_read, self.settings.block_ms):
            self.handle(message)
        self.meter.tick()


def main(argv: list[str]) -> int:
    settings = load(DetectorSettings, argv, prog="emostream detect")
    log = setup_logging(settings.log_level, "detector")
    try:
        client = connect(settings.redis_url)
        models = fetch(settings.model_dir)
    except (RedisUnavailable, ModelFetchError) as error:
        log.error("%s", error)
        return 1
    stop: threading.Event = stop_on_signals()
    finder = FaceFinder(
        models[NEAR],
        models[FAR] if settings.whole_frame_model == "full" else None,
        detector_range=settings.range,
        min_score=settings.min_score,
        margin=settings.margin,
        min_face_px=settings.min_face_px,
        refresh_tiles=settings.refresh_tiles,
    )
    detector = Detector(settings, client, finder, log)
    try:
        backlog = metrics.StreamBacklog(client, lambda: frame_streams(client), names.DETECTOR_GROUP)
        metrics.serve(settings.metrics_port, backlog)
    except OSError as error:
        log.error("cannot serve metrics on port %d: %s", settings.metrics_port, error)
        return 1
    log.info(
        "detecting faces (range %s, faces from %d px) as consumer %r of group %r",
        settings.range,
        settings.min_face_px if settings.range != "near" else 0,
        settings.consumer,
        names.DETECTOR_GROUP,
    )
    run_until_stopped(stop, detector.step, log)
    finder.close()
    log.info("stopped")
    return 0
