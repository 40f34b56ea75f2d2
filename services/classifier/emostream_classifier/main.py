"""`emostream classify`: a consumer-group replica turning face crops into emotion events."""

from __future__ import annotations

import logging
import threading
import time

import grpc
import numpy as np
import redis

from emostream import metrics, names
from emostream.connection import RedisUnavailable, connect
from emostream.lifecycle import run_until_stopped, stop_on_signals
from emostream.settings import load
from emostream.streams import Consumer, Entry, Message, Once, publish_once
from emostream.telemetry import Meter, setup_logging
from emostream.wire import EmotionEvent, Face, decode_face, encode_event
from emostream_classifier.batching import collect
from emostream_classifier.settings import ClassifierSettings
from emostream_classifier.tf_serving import ServingClient, ServingError, read_labels


def to_events(
    faces: list[Face], probabilities: np.ndarray, labels: tuple[str, ...], model: str, version: int
) -> list[EmotionEvent]:
    if probabilities.shape != (len(faces), len(labels)):
        raise ServingError(
            f"model returned shape {probabilities.shape}, expected {(len(faces), len(labels))} for labels {labels}"
        )
    now = int(time.time() * 1000)
    events = []
    for face, row in zip(faces, probabilities, strict=True):
        best = int(np.argmax(row))
        events.append(
            EmotionEvent(
                face.camera,
                face.frame_seq,
                face.face_index,
                face.ts_capture_ms,
                now,
                face.box,
                labels[best],
                float(row[best]),
                {label: float(p) for label, p in zip(labels, row, strict=True)},
                model,
                version,
                face.score,
                face.faces_in_frame,
            )
        )
    return events


class Classifier:
    """Reads a micro-batch, calls Predict once, publishes each face's event once, then acknowledges."""

    def __init__(
        self,
        settings: ClassifierSettings,
        client: redis.Redis,
        serving: ServingClient,
        log: logging.Logger,
        stop: threading.Event,
    ) -> None:
        self.settings = settings
        self.stop = stop
        self.client = client
        self.serving = serving
        self.log = log
        self.consumer: Consumer[Face] = Consumer(
            client,
            names.CLASSIFIER_GROUP,
            settings.consumer,
            decode_face,
            lambda: [names.FACES],
            claim_idle_ms=settings.claim_idle_ms,
        )
        self.meter = Meter(client, "classifier", settings.consumer, log)

    def classify(self, batch: list[Message[Face]]) -> list[EmotionEvent]:
        faces = [message.value for message in batch]
        metrics.CLASSIFIER_BATCH_FACES.observe(len(faces))
        with metrics.CLASSIFIER_PREDICT_SECONDS.time():
            prediction = self.serving.predict(np.stack([face.crop for face in faces])[..., None])
        labels = read_labels(self.settings.model_base, prediction.model_version)
        return to_events(faces, prediction.probabilities, labels, self.settings.model_name, prediction.model_version)

    def publish(self, batch: list[Message[Face]], events: list[EmotionEvent]) -> int:
        items = [
            Once(
                names.seen("face", f"{m.value.identity}:{m.value.ts_capture_ms}"),
                [Entry(names.SCORED, encode_event(event), self.settings.events_maxlen)],
                names.progress(event.camera),
                {"events": 1},
            )
            for m, event in zip(batch, events, strict=True)
        ]
        done = publish_once(self.client, items, self.settings.dedupe_ttl_s)
        self.consumer.ack(batch)
        for event, new in zip(events, done, strict=True):
            if new:
                metrics.CLASSIFIER_EVENTS.labels(event.camera).inc()
        published = sum(done)
        return published

    def step(self) -> None:
        s = self.settings
        batch = collect(self.consumer.read, s.batch_size, s.max_wait_ms, s.block_ms)
        events = self.classify_with_retry(batch) if batch else None
        if events is not None:
            self.meter.add("batches")
            self.meter.add("events", self.publish(batch, events))
        self.meter.tick()

    def classify_with_retry(self, batch: list[Message[Face]]) -> list[EmotionEvent] | None:
        """Hold the batch while serving is down: nothing is acknowledged before its event exists.

        None when the batch was set aside as invalid, or when the service is stopping (the batch then
        stays pending and is read again after a restart).
        """
        delay = 0.5
        while not self.stop.is_set():
            try:
                return self.classify(batch)
            except ServingError as error:
                if error.code == grpc.StatusCode.INVALID_ARGUMENT:
                    for message in batch:
                        self.consumer.dead_letter(message.stream, message.id, {}, f"model rejected batch: {error}")
                        self.client.hincrby(names.progress(message.value.camera), "faces_failed", 1)
                    return None
                self.log.warning("model server not answering (%s); retrying in %.1fs", error, delay)
                self.stop.wait(delay)
                delay = min(delay * 2, 10.0)
        return None


def main(argv: list[str]) -> int:
    settings = load(ClassifierSettings, argv, prog="emostream classify")
    log = setup_logging(settings.log_level, "classifier")
    try:
        client = connect(settings.redis_url)
    except RedisUnavailable as error:
        log.error("%s", error)
        return 1
    stop = stop_on_signals()
    with ServingClient(
        settings.serving_target, settings.model_name, timeout_seconds=settings.request_timeout_s
    ) as serving:
        classifier = Classifier(settings, client, serving, log, stop)
        try:
            backlog = metrics.StreamBacklog(client, lambda: [names.FACES], names.CLASSIFIER_GROUP)
            metrics.serve(settings.metrics_port, backlog)
        except OSError as error:
            log.error("cannot serve metrics on port %d: %s", settings.metrics_port, error)
            return 1
        log.info("classifying faces via %s model %r", settings.serving_target, settings.model_name)
        run_until_stopped(stop, classifier.step, log)
    log.info("stopped")
    return 0
