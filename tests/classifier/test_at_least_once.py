"""At-least-once for real: `emostream classify` SIGKILLed mid-stream and restarted loses and doubles nothing."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis
from emostream_modelserver.server import RunningServer, start_server
from emostream_modelserver.versions import LoadedVersion, load_version

from emostream import names
from tests.classifier.faces import classifier_caught_up, classifier_pending, expected_label, make_faces, put_faces
from tests.conftest import MODEL_NAME
from tests.helpers.waiting import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]
FACES = 300
PREDICT_DELAY_S = 0.03  # a slow model, so that the classifier can be caught inside a batch


class SlowModel:
    """A version loader for the in-process model server whose versions answer slowly; tells whether one is busy."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.started = 0.0
        self.lock = threading.Lock()

    def load(self, base: Path, version: int) -> LoadedVersion:
        loaded = load_version(base, version)
        run = loaded.run

        def slow(image: np.ndarray) -> dict[str, np.ndarray]:
            with self.lock:
                self.in_flight += 1
                self.started = time.monotonic()
            try:
                time.sleep(PREDICT_DELAY_S)
                return run(image)
            finally:
                with self.lock:
                    self.in_flight -= 1

        return dataclasses.replace(loaded, run=slow)

    def busy(self) -> bool:
        """A Predict is in flight with most of its delay still ahead, so its batch is surely unacknowledged."""
        with self.lock:
            return self.in_flight > 0 and time.monotonic() - self.started < PREDICT_DELAY_S / 2


@pytest.fixture
def slow_model() -> SlowModel:
    return SlowModel()


@pytest.fixture
def slow_model_server(slow_model: SlowModel, tiny_model_base: Path) -> Iterator[RunningServer]:
    running = start_server(tiny_model_base, MODEL_NAME, port=0, poll_seconds=0.5, loader=slow_model.load)
    try:
        running.wait_until_serving(timeout=60)
        yield running
    finally:
        running.stop(grace=0)


class Classify:
    """`python -m emostream.cli classify` as a child process, its output in a log file."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "emostream.cli", "classify"], env=env, stdout=out, stderr=subprocess.STDOUT
            )

    def alive(self) -> bool:
        if self.process.poll() is not None:
            pytest.fail(f"classify exited with {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
        return True

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)


@pytest.fixture
def children() -> Iterator[list[Classify]]:
    started: list[Classify] = []
    yield started
    for child in started:
        child.stop()


def test_sigkill_mid_stream_then_restart_gives_exactly_one_event_per_face(
    redis_url: str,
    redis_client: redis.Redis,
    slow_model: SlowModel,
    slow_model_server: RunningServer,
    tiny_model_base: Path,
    tmp_path: Path,
    children: list[Classify],
) -> None:
    env = {
        **os.environ,
        "EMOSTREAM_REDIS_URL": redis_url,
        "EMOSTREAM_CONSUMER": "c1",
        "EMOSTREAM_LOG_LEVEL": "INFO",
        "CLASSIFIER_SERVING_TARGET": f"127.0.0.1:{slow_model_server.port}",
        "CLASSIFIER_MODEL_BASE": str(tiny_model_base),
        "CLASSIFIER_MODEL_NAME": MODEL_NAME,
        "CLASSIFIER_BATCH_SIZE": "8",
        "CLASSIFIER_BLOCK_MS": "100",
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    faces = make_faces(FACES)
    put_faces(redis_client, faces)
    log = tmp_path / "classify.log"

    first = Classify(env, log)
    children.append(first)
    # Kill it while a Predict is in flight: it then holds a read, unacknowledged batch.
    wait_for(
        lambda: first.alive() and redis_client.xlen(names.SCORED) >= 40 and slow_model.busy(),
        90,
        "the first events and a batch in flight",
        interval=0.002,
    )
    first.process.send_signal(signal.SIGKILL)
    first.process.wait(10)
    done_before_kill = redis_client.xlen(names.SCORED)
    held_at_kill = classifier_pending(redis_client)
    assert 40 <= done_before_kill < FACES, "killed too late to test anything"
    assert held_at_kill > 0, "the killed classifier held no unacknowledged faces"

    second = Classify(env, log)
    children.append(second)
    wait_for(
        lambda: second.alive() and classifier_caught_up(redis_client), 120, "every face acknowledged", interval=0.1
    )
    second.process.send_signal(signal.SIGTERM)
    assert second.process.wait(20) == 0  # a clean stop on SIGTERM

    events = [fields for _, fields in redis_client.xrange(names.SCORED)]
    per_face = Counter((f[b"camera"].decode(), int(f[b"frame_seq"]), int(f[b"face_index"])) for f in events)
    assert set(per_face) == {(face.camera, face.frame_seq, face.face_index) for face in faces}
    assert [key for key, count in per_face.items() if count != 1] == []
    assert len(events) == FACES
    labels = {int(f[b"frame_seq"]): f[b"label"].decode() for f in events}
    assert all(labels[face.frame_seq] == expected_label(face) for face in faces)
    assert redis_client.xpending(names.FACES, names.CLASSIFIER_GROUP)["pending"] == 0
    progress = {k.decode(): int(v) for k, v in redis_client.hgetall(names.progress("cam")).items()}
    assert progress == {"events": FACES}
