"""The classifier service: micro-batches of faces through TF Serving into events, each published once."""

from __future__ import annotations

import logging
import threading
import time

import grpc
import numpy as np
import redis
from emostream_serving.tf_serving import ServingClient, ServingError, read_labels, unknown_label

from emostream import metrics, names
from emostream.model_repository import ModelRepositoryError
from emostream.model_stats import record_served
from emostream.names import Progress
from emostream.streams import Consumer, Message, Once, Publisher, publish_once
from emostream.telemetry import Meter
from emostream.wire import EmotionEvent, Face, decode_face, encode_event
from emostream_classifier.batching import collect
from emostream_classifier.reuse import RecentScores, Scored
from emostream_classifier.settings import ClassifierSettings
from emostream_classifier.shadow import Shadow

# Status codes that mean "this request cannot be served as it is": the batch is split to find the faces at fault.
SPLIT_CODES = frozenset({grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED})
# Status codes of a server that is down or busy: the batch is held and retried, however long it takes.
DOWN_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
CONTRACT_ATTEMPTS = 3
"""Tries of a batch whose responses break the model contract before its faces are dead-lettered."""


class ContractError(ServingError):
    """The model answered, but not as the contract says (shape, labels, probabilities)."""


class Rejected(Exception):
    """The model server refused this batch as invalid; its faces are tried in smaller batches."""

    def __init__(self, error: ServingError) -> None:
        super().__init__(str(error))
        self.error = error


def valid_rows(probabilities: np.ndarray) -> np.ndarray:
    """Rows that are probabilities: finite, in [0, 1], summing to about 1."""
    finite = np.isfinite(probabilities).all(axis=1)
    safe = np.where(np.isfinite(probabilities), probabilities, -1.0)
    in_range = ((safe >= 0.0) & (safe <= 1.0)).all(axis=1)
    sums = np.abs(safe.sum(axis=1) - 1.0) <= 0.01
    ok: np.ndarray = finite & in_range & sums
    return ok


def to_events(
    faces: list[Face], probabilities: np.ndarray, labels: tuple[str, ...], model: str, version: int
) -> list[EmotionEvent]:
    if probabilities.shape != (len(faces), len(labels)):
        raise ContractError(
            f"model returned shape {list(probabilities.shape)}, expected {[len(faces), len(labels)]} for labels "
            f"{list(labels)}"
        )
    now = int(time.time() * 1000)
    events = []
    for face, row in zip(faces, probabilities, strict=True):
        best = int(np.argmax(row))
        events.append(
            EmotionEvent(
                camera=face.camera,
                frame_seq=face.frame_seq,
                face_index=face.face_index,
                ts_capture_ms=face.ts_capture_ms,
                ts_event_ms=now,
                box=face.box,
                label=labels[best],
                score=float(row[best]),
                scores={label: float(p) for label, p in zip(labels, row, strict=True)},
                model=model,
                model_version=version,
                detector_score=face.score,
                faces_in_frame=face.faces_in_frame,
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
        shadow: Shadow | None = None,
    ) -> None:
        self.settings = settings
        self.shadow = shadow
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
        self.scored: Publisher[EmotionEvent] = Publisher(names.SCORED, encode_event, settings.events_maxlen)
        self.recent = RecentScores(settings.reuse_ms, settings.reuse_max_difference)
        self.meter = Meter(client, "classifier", settings.consumer, log)

    def classify(self, batch: list[Message[Face]]) -> list[EmotionEvent | str]:
        """An event per face, or the reason a face's scores are unusable.

        A face whose crop has not changed since a recent classification, or since an earlier face of
        this batch, reuses those scores; the rest go to one Predict call.
        """
        faces = [message.value for message in batch]
        asked: list[Face] = []
        sources: list[Scored | int] = []  # per face: a recent classification, or its place among `asked`
        for face in faces:
            scored = self.recent.find(face)
            if scored is not None:
                sources.append(scored)
                continue
            same = next((i for i, earlier in enumerate(asked) if self.recent.same_face(earlier, face)), None)
            if same is None:
                asked.append(face)
            sources.append(len(asked) - 1 if same is None else same)
        answer = self.predict(asked) if asked else None
        metrics.CLASSIFIER_REUSED_FACES.inc(len(faces) - len(asked))
        results: list[EmotionEvent | str] = []
        for face, source in zip(faces, sources, strict=True):
            if isinstance(source, Scored):
                results.append(self.event(face, source.probabilities, source.version))
                continue
            assert answer is not None
            probabilities, ok, version = answer
            if ok[source]:
                results.append(self.event(face, probabilities[source], version))
            else:
                results.append(f"model version {version} returned scores that are not probabilities")
        return results

    def predict(self, faces: list[Face]) -> tuple[np.ndarray, np.ndarray, int]:
        """One Predict for `faces`: their probabilities, which rows are usable, and the version that answered."""
        crops = np.stack([face.crop for face in faces])[..., None]
        metrics.CLASSIFIER_BATCH_FACES.observe(len(faces))
        started = time.monotonic()
        try:
            with metrics.CLASSIFIER_PREDICT_SECONDS.time():
                prediction = self.serving.predict(crops)
        except ServingError:
            self.record(len(faces), started, None)
            raise
        self.record(len(faces), started, prediction.model_version)
        if prediction.model_version < 1:
            raise ContractError(f"Predict response names model version {prediction.model_version}")
        labels = self.labels(prediction.model_version)
        probabilities = np.asarray(prediction.probabilities)
        if probabilities.shape != (len(faces), len(labels)):
            raise ContractError(
                f"model returned shape {list(probabilities.shape)}, expected {[len(faces), len(labels)]} for labels "
                f"{list(labels)}"
            )
        ok = valid_rows(probabilities)
        if self.shadow is not None:  # returns at once: the candidate is asked off this path
            served = [labels[int(i)] for i in np.where(ok[:, None], probabilities, 0.0).argmax(axis=1)]
            cameras = [face.camera for face in faces]
            self.shadow.offer(crops, cameras, prediction, served, (time.monotonic() - started) * 1e3)
        for face, row, good in zip(faces, probabilities, ok, strict=True):
            if good:
                self.recent.remember(face, row, prediction.model_version)
        return probabilities, ok, prediction.model_version

    def event(self, face: Face, probabilities: np.ndarray, version: int) -> EmotionEvent:
        """`face`'s event with these scores, which model `version` gave it or a recent copy of it."""
        return to_events([face], probabilities[None], self.labels(version), self.settings.model_name, version)[0]

    def labels(self, version: int) -> tuple[str, ...]:
        """The labels of `version`'s outputs; ContractError if it ships none."""
        try:
            return read_labels(self.settings.model_base, version)
        except ModelRepositoryError as error:  # missing or empty labels.txt for the version that answered
            raise ContractError(str(error)) from error

    def record(self, faces: int, started: float, version: int | None) -> None:
        """Served-path counters per version label, which the watch after a promotion reads."""
        elapsed_ms = (time.monotonic() - started) * 1000
        try:
            record_served(self.client, self.settings.version_label, faces, elapsed_ms, version, version is None)
        except redis.RedisError as error:
            self.log.debug("serving counters not written: %s", error)

    def publish(self, batch: list[Message[Face]], events: list[EmotionEvent]) -> int:
        if not batch:
            return 0
        items = [
            Once(
                marker=names.seen("face", f"{m.value.identity}:{m.value.ts_capture_ms}"),
                entries=[self.scored.entry(event)],
                counters_key=names.progress(event.camera),
                counters={Progress.EVENTS: 1},
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
        if batch:
            self.handle(batch)
        self.meter.tick()

    def handle(self, batch: list[Message[Face]]) -> None:
        """Publish an event for every face the model scores; dead-letter each face it cannot.

        A batch the server rejects as invalid is halved until the faces at fault stand alone, so
        one bad face never costs its neighbours their events.
        """
        try:
            results = self.classify_with_retry(batch)
        except Rejected as rejected:
            if len(batch) == 1:
                self.reject(batch, f"model rejected the face: {rejected.error}", "model_rejected")
                return
            half = len(batch) // 2
            self.handle(batch[:half])
            self.handle(batch[half:])
            return
        except ContractError as error:
            self.reject(batch, f"model response breaks the contract: {error}", "contract")
            return
        if results is None:  # stopping: the batch stays pending and is read again after a restart
            return
        good = [(m, r) for m, r in zip(batch, results, strict=True) if isinstance(r, EmotionEvent)]
        for message, result in zip(batch, results, strict=True):
            if isinstance(result, str):
                self.reject([message], result, "bad_scores")
        self.meter.add("batches")
        self.meter.add("events", self.publish([m for m, _ in good], [e for _, e in good]))

    def reject(self, messages: list[Message[Face]], reason: str, kind: str) -> None:
        for message in messages:
            self.consumer.dead_letter(message.stream, message.id, {}, reason, kind)
            self.client.hincrby(names.progress(message.value.camera), Progress.FACES_FAILED, 1)
        self.meter.add("dead_letters", len(messages))

    def classify_with_retry(self, batch: list[Message[Face]]) -> list[EmotionEvent | str] | None:
        """Hold the batch while serving is down: nothing is acknowledged before its event exists.

        Raises Rejected when the server refuses the batch as invalid, and ContractError when its
        answers break the contract CONTRACT_ATTEMPTS times in a row. None when the service is stopping.
        """
        delay = 0.5
        broken = 0
        while not self.stop.is_set():
            try:
                return self.classify(batch)
            except ContractError as error:
                broken += 1
                if broken >= CONTRACT_ATTEMPTS:
                    raise
                self.log.error("model response breaks the contract (%s); retrying in %.1fs", error, delay)
            except ServingError as error:
                if error.code in SPLIT_CODES and not unknown_label(error):
                    raise Rejected(error) from error
                if error.code is None:  # a malformed response: the contract, not the network
                    broken += 1
                    if broken >= CONTRACT_ATTEMPTS:
                        raise ContractError(str(error)) from error
                    self.log.error("model response breaks the contract (%s); retrying in %.1fs", error, delay)
                elif error.code in DOWN_CODES or unknown_label(error):  # down, or its labels are being moved
                    self.log.warning("model server not answering (%s); retrying in %.1fs", error, delay)
                else:
                    self.log.error("model server refused the request (%s); retrying in %.1fs", error, delay)
            self.stop.wait(delay)
            delay = min(delay * 2, 10.0)
        return None


def make_shadow(settings: ClassifierSettings, client: redis.Redis) -> Shadow | None:
    """The shadow of the candidate label, on its own channel, unless its share is 0."""
    if settings.shadow_share <= 0:
        return None
    candidate = ServingClient(
        settings.shadow_target or settings.serving_target,
        settings.model_name,
        timeout_seconds=settings.request_timeout_s,
        version_label=settings.shadow_label,
    )
    return Shadow(client, candidate, settings.model_base, settings.shadow_share, queue_batches=settings.shadow_queue)
