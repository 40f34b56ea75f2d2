"""Micro-batching, and the classifier against the project's model server serving the tiny model."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis
from emostream_classifier.batching import collect
from emostream_classifier.classifier import Classifier
from emostream_classifier.settings import ClassifierSettings
from emostream_modelserver.server import RunningServer, start_server
from emostream_serving.tf_serving import ServingClient

from emostream import names, wire
from tests.classifier.faces import (
    classifier_caught_up,
    classifier_pending,
    expected_label,
    make_faces,
    put_faces,
    read_events,
)
from tests.conftest import LABELS, MODEL_NAME
from tests.helpers.waiting import wait_for

pytestmark = pytest.mark.timeout(120)


# collect


class SlowReader:
    """Yields one item per `every_s`, waiting at most block_ms like a Redis read; records (count, block_ms, got)."""

    def __init__(self, every_s: float, total: int = 1000) -> None:
        self.every_s = every_s
        self.left = total
        self.requests: list[tuple[int, int, int]] = []

    def __call__(self, count: int, block_ms: int) -> list[int]:
        if self.left == 0 or block_ms / 1000 < self.every_s:
            time.sleep(min(block_ms / 1000, self.every_s))
            self.requests.append((count, block_ms, 0))
            return []
        time.sleep(self.every_s)
        self.left -= 1
        self.requests.append((count, block_ms, 1))
        return [self.left]


def test_collect_fills_up_to_batch_size_from_fast_reads() -> None:
    items = list(range(20))

    def read(count: int, block_ms: int) -> list[int]:
        taken = items[: min(count, 3)]
        del items[: len(taken)]
        return taken

    assert collect(read, batch_size=8, max_wait_ms=1000, block_ms=100) == list(range(8))
    assert collect(read, batch_size=8, max_wait_ms=1000, block_ms=100) == list(range(8, 16))
    assert collect(read, batch_size=8, max_wait_ms=50, block_ms=100) == [16, 17, 18, 19]  # ran dry: max_wait_ms


def test_collect_returns_nothing_at_once_when_the_first_read_is_empty() -> None:
    reader = SlowReader(every_s=1.0, total=0)
    started = time.monotonic()
    assert collect(reader, batch_size=8, max_wait_ms=1000, block_ms=30) == []
    assert reader.requests == [(8, 30, 0)]
    assert time.monotonic() - started < 0.5


def test_collect_stops_filling_after_max_wait_ms() -> None:
    reader = SlowReader(every_s=0.03)
    started = time.monotonic()
    batch = collect(reader, batch_size=100, max_wait_ms=150, block_ms=1000)
    elapsed = time.monotonic() - started
    assert 2 <= len(batch) < 100
    assert elapsed < 0.03 + 0.15 + 0.3, elapsed  # the first item, the budget, slack for a busy machine
    first, *rest = reader.requests
    assert first[:2] == (100, 1000)  # only the first read may block for block_ms
    assert all(block_ms <= 150 for _, block_ms, _ in rest)
    taken = first[2]
    for count, _, got in rest:  # never asks for more than still fits in the batch
        assert count == 100 - taken
        taken += got
    assert taken == len(batch)


def test_collect_with_zero_wait_is_a_single_read() -> None:
    reader = SlowReader(every_s=0.001)
    assert len(collect(reader, batch_size=10, max_wait_ms=0, block_ms=100)) == 1
    assert len(reader.requests) == 1


# Classifier with the real model server


class CountingServing(ServingClient):
    """The real gRPC client, counting the crops of every Predict call."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.batches: list[int] = []

    def predict(self, crops: np.ndarray):  # type: ignore[no-untyped-def]
        prediction = super().predict(crops)
        self.batches.append(len(crops))
        return prediction


def settings(redis_url: str, port: int, model_base: Path, **overrides: object) -> ClassifierSettings:
    values: dict[str, object] = {
        "redis_url": redis_url,
        "consumer": "c1",
        "serving_target": f"127.0.0.1:{port}",
        "model_base": model_base,
        "model_name": MODEL_NAME,
        "batch_size": 16,
        "max_wait_ms": 50,
        "block_ms": 20,
        "request_timeout_s": 5.0,
    }
    return ClassifierSettings(**{**values, **overrides})  # type: ignore[arg-type]


@pytest.fixture
def serving(model_server: RunningServer) -> Iterator[CountingServing]:
    with CountingServing(f"127.0.0.1:{model_server.port}", MODEL_NAME, timeout_seconds=5.0) as client:
        client.wait_ready(30)
        yield client


def run_until(classifier: Classifier, condition: object, what: str, timeout: float = 30.0) -> None:
    def step_and_check() -> bool:
        classifier.step()
        return bool(condition())  # type: ignore[operator]

    wait_for(step_and_check, timeout, what, interval=0)


def test_classifier_publishes_one_event_per_face_in_batches(
    redis_url: str,
    redis_client: redis.Redis,
    model_server: RunningServer,
    tiny_model_base: Path,
    serving: CountingServing,
) -> None:
    faces = make_faces(40)
    put_faces(redis_client, faces)
    # every face to the model
    classifier = classifier_for(redis_url, redis_client, model_server, tiny_model_base, serving, reuse_ms=0)
    run_until(classifier, lambda: redis_client.xlen(names.SCORED) >= 40, "40 events")
    assert classifier_caught_up(redis_client)

    events = read_events(redis_client)
    assert len(events) == 40
    by_face = {(e.camera, e.frame_seq, e.face_index): e for e in events}
    assert len(by_face) == 40
    for face in faces:
        event = by_face[(face.camera, face.frame_seq, face.face_index)]
        assert event.label == expected_label(face), (face.frame_seq, event.scores)
        assert (event.model, event.model_version) == (MODEL_NAME, 1)
        assert set(event.scores) == set(LABELS)
        assert sum(event.scores.values()) == pytest.approx(1.0, abs=2e-3)
        assert event.score == pytest.approx(max(event.scores.values()), abs=1e-4)
        assert event.score > 0.5
        assert (event.box, event.ts_capture_ms) == (face.box, face.ts_capture_ms)
        assert event.detector_score == pytest.approx(0.9, abs=1e-3)
        assert event.ts_event_ms >= event.ts_capture_ms
    progress = {k.decode(): int(v) for k, v in redis_client.hgetall(names.progress("cam")).items()}
    assert progress == {"events": 40}
    # All 40 were waiting: batches of at most 16, so three or four Predict calls (not forty).
    assert sum(serving.batches) == 40
    assert max(serving.batches) <= 16
    assert len(serving.batches) <= 4, serving.batches

    # Replayed faces (same identity and capture time) are acknowledged without a second event.
    put_faces(redis_client, faces[:10])
    run_until(
        classifier,
        lambda: classifier_caught_up(redis_client) and redis_client.xlen(names.FACES) == 50,
        "the replay handled",
    )
    assert redis_client.xlen(names.SCORED) == 40
    assert sum(serving.batches) == 50  # classified again, published once


def test_malformed_face_is_dead_lettered_and_the_rest_classified(
    redis_url: str,
    redis_client: redis.Redis,
    model_server: RunningServer,
    tiny_model_base: Path,
    serving: CountingServing,
) -> None:
    faces = make_faces(3)
    put_faces(redis_client, faces[:1])
    redis_client.xadd(names.FACES, {wire.PAYLOAD_FIELD: b"\x00garbage"})
    put_faces(redis_client, faces[1:])
    classifier = classifier_for(redis_url, redis_client, model_server, tiny_model_base, serving)
    run_until(classifier, lambda: redis_client.xlen(names.SCORED) >= 3, "3 events")
    assert classifier_caught_up(redis_client)
    assert [e.label for e in read_events(redis_client)] == [expected_label(f) for f in faces]
    [(_, record)] = redis_client.xrange(names.DEAD_LETTERS)
    assert b"not a valid Face protobuf" in record[b"reason"]


def test_batch_is_held_while_the_model_server_is_down(
    redis_url: str,
    redis_client: redis.Redis,
    tiny_model_base: Path,
) -> None:
    server = start_server(tiny_model_base, MODEL_NAME, port=0, poll_seconds=0.5)
    port = server.port
    server.wait_until_serving(30)
    server.stop(grace=0)
    faces = make_faces(6)
    put_faces(redis_client, faces)
    stop = threading.Event()
    failures: list[BaseException] = []
    with ServingClient(f"127.0.0.1:{port}", MODEL_NAME, timeout_seconds=2.0) as client:
        classifier = Classifier(
            settings(redis_url, port, tiny_model_base), redis_client, client, logging.getLogger("test.classifier"), stop
        )

        def work() -> None:
            try:
                while not stop.is_set():
                    classifier.step()
            except BaseException as error:  # reported by the test
                failures.append(error)

        worker = threading.Thread(target=work, daemon=True)
        worker.start()
        try:
            wait_for(lambda: classifier_pending(redis_client) == 6, 10, "the batch read")
            time.sleep(0.7)  # a retry or two against the stopped server
            assert redis_client.xlen(names.SCORED) == 0
            assert classifier_pending(redis_client) == 6  # held, not acknowledged, not dead-lettered
            assert redis_client.xlen(names.DEAD_LETTERS) == 0
            back = start_server(tiny_model_base, MODEL_NAME, port=port, poll_seconds=0.5)
            try:
                back.wait_until_serving(30)
                wait_for(lambda: redis_client.xlen(names.SCORED) == 6, 40, "events once the server is back")
                wait_for(lambda: classifier_pending(redis_client) == 0, 5, "the batch acknowledged")
            finally:
                stop.set()
                worker.join(10)
                back.stop(grace=0)
        finally:
            stop.set()
    assert not failures, failures
    assert [e.label for e in read_events(redis_client)] == [expected_label(f) for f in faces]


def classifier_for(
    redis_url: str,
    redis_client: redis.Redis,
    model_server: RunningServer,
    model_base: Path,
    serving: CountingServing,
    **overrides: object,
) -> Classifier:
    """A classifier of the tiny model's faces through the counting client, with `overrides` to its settings."""
    return Classifier(
        settings(redis_url, model_server.port, model_base, **overrides),
        redis_client,
        serving,
        logging.getLogger("test.classifier"),
        threading.Event(),
    )


def still_face(frames: int, every_ms: int, camera: str = "still") -> list[wire.Face]:
    """One face that does not move or change, in `frames` frames `every_ms` apart."""
    face = make_faces(1, camera)[0]

    def at(seq: int) -> int:
        return 1_000 + seq * every_ms

    return [
        dataclasses.replace(
            face, frame_seq=seq, ts_capture_ms=1_000 + seq * every_ms, ts_detect_ms=1_000 + seq * every_ms
        )
        for seq in range(frames)
    ]


def test_an_unchanged_face_reuses_its_scores_until_they_are_reuse_ms_old(
    redis_url: str,
    redis_client: redis.Redis,
    model_server: RunningServer,
    tiny_model_base: Path,
    serving: CountingServing,
) -> None:
    faces = still_face(30, every_ms=33)  # a second of a 30 fps camera
    classifier = classifier_for(
        redis_url, redis_client, model_server, tiny_model_base, serving, reuse_ms=300, batch_size=1
    )
    put_faces(redis_client, faces)
    run_until(classifier, lambda: redis_client.xlen(names.SCORED) >= 30, "30 events")
    events = sorted(read_events(redis_client), key=lambda e: e.frame_seq)
    assert [e.frame_seq for e in events] == list(range(30))  # still an event for every face
    assert {e.label for e in events} == {expected_label(faces[0])}
    assert {e.score for e in events} == {events[0].score}
    # Looked at again once its last look is over 300 ms old: frames 0, 10 and 20 (of 33 ms each).
    assert serving.batches == [1, 1, 1]


def test_a_changed_face_is_classified_again_at_once(
    redis_url: str,
    redis_client: redis.Redis,
    model_server: RunningServer,
    tiny_model_base: Path,
    serving: CountingServing,
) -> None:
    still = still_face(2, every_ms=33)
    other = make_faces(2, "still")[1].crop  # another face (another label) in the same place
    changed = dataclasses.replace(still[1], crop=other)
    classifier = classifier_for(redis_url, redis_client, model_server, tiny_model_base, serving, batch_size=1)
    put_faces(redis_client, [still[0], changed])
    run_until(classifier, lambda: redis_client.xlen(names.SCORED) >= 2, "2 events")
    labels = [e.label for e in sorted(read_events(redis_client), key=lambda e: e.frame_seq)]
    assert labels == [expected_label(make_faces(2)[0]), expected_label(make_faces(2)[1])]
    assert serving.batches == [1, 1]


def test_copies_of_one_face_in_one_batch_go_to_the_model_once(
    redis_url: str,
    redis_client: redis.Redis,
    model_server: RunningServer,
    tiny_model_base: Path,
    serving: CountingServing,
) -> None:
    """A backlog (frames arriving faster than they are classified) holds the same face many times."""
    faces = still_face(8, every_ms=33) + still_face(8, every_ms=33, camera="another")
    put_faces(redis_client, faces)
    classifier = classifier_for(redis_url, redis_client, model_server, tiny_model_base, serving, batch_size=16)
    run_until(classifier, lambda: redis_client.xlen(names.SCORED) >= 16, "16 events")
    events = read_events(redis_client)
    assert sorted((e.camera, e.frame_seq) for e in events) == sorted((f.camera, f.frame_seq) for f in faces)
    assert {e.label for e in events} == {expected_label(faces[0])}
    assert serving.batches == [2]  # one look per camera
