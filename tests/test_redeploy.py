"""Publishing and rolling back a model version while faces keep flowing: no face lost, doubled or dead-lettered.

A real model server (emostream's TF-Serving-compatible one) watches a model base; a real Classifier runs in a
thread against a dedicated Redis db; a feeder thread keeps adding faces. Mid-stream `deploy publish` adds
version 2 and later `deploy rollback` retires it. Every face must get exactly one event, and the event's
model_version must follow the switch: 1 before, 2 after, 1 again after the rollback.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis
from emostream_classifier.main import Classifier
from emostream_classifier.settings import ClassifierSettings
from emostream_classifier.tf_serving import ServingClient
from emostream_modelserver.server import RunningServer, start_server
from emostream_trainer import deploy_command

from emostream import names, wire
from emostream.lifecycle import run_until_stopped
from tests.helpers.tiny_model import export_tiny_version, synthetic_faces

MODEL_NAME = "emotion"
LABELS = ("happy", "neutral", "fear")
CAMERA = "cam-redeploy"
FEED_EVERY_S = 0.02
PHASE_S = 1.5
SWITCH_TIMEOUT_S = 90.0


@pytest.fixture
def client(redis_client: redis.Redis) -> redis.Redis:
    """The shared fixture's client of the tests' own, flushed Redis db (tests/conftest.py)."""
    return redis_client


@pytest.fixture
def base(tmp_path: Path) -> Path:
    folder = tmp_path / MODEL_NAME
    export_tiny_version(folder, 1, LABELS)
    return folder


@pytest.fixture
def server(base: Path) -> Iterator[RunningServer]:
    running = start_server(base, MODEL_NAME, port=0, poll_seconds=0.2)
    try:
        assert running.wait_until_serving(timeout=60) == 1
        yield running
    finally:
        running.stop(grace=0)


class Problems(logging.Handler):
    """Collects WARNING and worse from emostream's loggers (classifier, streams, model server)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("emostream"):
            self.records.append(record)


@pytest.fixture
def problems() -> Iterator[Problems]:
    handler = Problems()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


class Background:
    """A loop in a daemon thread until stopped; keeps any exception for the test."""

    def __init__(self, name: str, body: object) -> None:
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self._body = body
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self._body(self.stop)  # type: ignore[operator]
        except BaseException as error:  # reported by finish()
            self.error = error

    def finish(self, timeout: float = 15.0) -> None:
        self.stop.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"{self.thread.name} did not stop"
        assert self.error is None, f"{self.thread.name} failed: {self.error!r}"


class Feeder:
    """Adds one face every FEED_EVERY_S to names.FACES; remembers what it fed and its class."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.pool = [synthetic_faces(k, 16, seed=2) for k in range(len(LABELS))]  # crops the model gets right
        self.fed: dict[int, int] = {}  # frame_seq -> class index

    def __call__(self, stop: threading.Event) -> None:
        seq = 0
        while not stop.is_set():
            kind = seq % len(LABELS)
            crop = self.pool[kind][(seq // len(LABELS)) % 16, ..., 0]
            face = wire.Face(
                CAMERA,
                seq,
                int(time.time() * 1000),
                0,
                1,
                wire.Box(10, 10, 48, 48),
                0.9,
                np.ascontiguousarray(crop),
                int(time.time() * 1000),
            )
            self.client.xadd(names.FACES, wire.encode_face(face), maxlen=100_000)
            self.fed[seq] = kind
            seq += 1
            stop.wait(FEED_EVERY_S)

    def count(self) -> int:
        return len(self.fed)


def events(client: redis.Redis) -> list[wire.EmotionEvent]:
    return [wire.decode_event(fields) for _, fields in client.xrange(names.SCORED)]


def wait_for(condition: object, timeout: float, what: str) -> float:
    """Poll until condition() is true; return the time (ms since epoch) it was seen true."""
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f}s waiting for {what}"
        time.sleep(0.05)
    return time.time() * 1000


def now_ms() -> float:
    return time.time() * 1000


def test_events_keep_flowing_across_publish_and_rollback(
    client: redis.Redis,
    redis_url: str,
    base: Path,
    server: RunningServer,
    problems: Problems,
) -> None:
    target = f"127.0.0.1:{server.port}"
    settings = ClassifierSettings(
        redis_url=redis_url,
        consumer="redeploy-test",
        serving_target=target,
        model_name=MODEL_NAME,
        model_base=base,
        batch_size=8,
        max_wait_ms=10,
        block_ms=100,
    )
    log = logging.getLogger("emostream.classifier.redeploy-test")
    feeder = Feeder(client)
    with ServingClient(target, MODEL_NAME, timeout_seconds=30.0) as serving:
        serving.wait_ready(timeout=30)
        classifier_stop = threading.Event()
        classifier = Classifier(settings, client, serving, log, classifier_stop)
        classifying = Background("classifier", lambda stop: run_until_stopped(stop, classifier.step, log))
        feeding = Background("feeder", feeder)
        try:
            # Phase 1: version 1 serves.
            wait_for(lambda: client.xlen(names.SCORED) >= 10, 60, "the first events")
            time.sleep(PHASE_S)
            published_ms = now_ms()
            assert deploy_command.publish(base / "1", base) == base / "2"
            switched_ms = wait_for(lambda: server.versions.current.version == 2, SWITCH_TIMEOUT_S, "version 2")
            # Phase 2: version 2 serves.
            fed_at_switch = feeder.count()
            wait_for(lambda: feeder.count() >= fed_at_switch + 20, 60, "faces fed after the switch")
            time.sleep(PHASE_S)
            rolled_back_ms = now_ms()
            assert deploy_command.rollback(base) == 1
            back_ms = wait_for(lambda: server.versions.current.version == 1, SWITCH_TIMEOUT_S, "version 1 again")
            # Phase 3: version 1 again.
            fed_at_back = feeder.count()
            wait_for(lambda: feeder.count() >= fed_at_back + 20, 60, "faces fed after the rollback")
            time.sleep(PHASE_S)
        finally:
            feeding.finish()
        total = feeder.count()
        try:
            wait_for(lambda: client.xlen(names.SCORED) >= total, 60, f"events for all {total} faces")
            time.sleep(0.3)  # any duplicate would show up now
        finally:
            classifying.stop.set()
            classifier_stop.set()
            classifying.finish()

    seen = events(client)
    # Every fed face has exactly one event, with the right label; nothing was dead-lettered or left pending.
    keys = [(e.camera, e.frame_seq, e.face_index) for e in seen]
    assert len(keys) == len(set(keys)) == total
    assert set(keys) == {(CAMERA, seq, 0) for seq in feeder.fed}
    assert all(e.label == LABELS[feeder.fed[e.frame_seq]] for e in seen)
    assert all(e.model == MODEL_NAME for e in seen)
    assert client.xlen(names.DEAD_LETTERS) == 0
    assert client.xpending(names.FACES, names.CLASSIFIER_GROUP)["pending"] == 0

    # In stream order the versions go 1..1, 2..2, 1..1: one switch each way, no flapping.
    versions = [e.model_version for e in seen]
    runs = [v for i, v in enumerate(versions) if i == 0 or versions[i - 1] != v]
    assert runs == [1, 2, 1], runs
    # And they follow the deploy steps in time.
    before = [e for e in seen if e.ts_event_ms < published_ms]
    during = [e for e in seen if switched_ms < e.ts_capture_ms and e.ts_event_ms < rolled_back_ms]
    after = [e for e in seen if e.ts_capture_ms > back_ms]
    assert len(before) >= 10 and {e.model_version for e in before} == {1}
    assert len(during) >= 10 and {e.model_version for e in during} == {2}
    assert len(after) >= 10 and {e.model_version for e in after} == {1}

    # Version 2 went to .retired, which the server never serves from.
    assert deploy_command.listing(base) == [
        {"version": 1, "serving": True, "validation_accuracy": None, "labels": list(LABELS), "code_revision": None},
    ]
    assert (base / deploy_command.RETIRED / "2" / "saved_model.pb").is_file()
    # The classifier, the streams and the model server logged nothing worse than INFO.
    assert [f"{r.name}: {r.getMessage()}" for r in problems.records] == []
