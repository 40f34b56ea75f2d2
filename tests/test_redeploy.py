"""Publish, promote and roll back while faces keep flowing: no request fails, no face is lost or doubled.

A real model server (emostream's TF-Serving-compatible one) serves from a TF Serving model config file
it re-reads; a real Classifier asks for the label `stable` and shadows `canary`, in a thread against a
dedicated Redis db; a feeder thread keeps adding faces. `emostream deploy` runs in-process against the
live server: `publish` adds version 2 as the candidate (events stay on 1), `promote` passes the gate
and moves `stable` to 2, `rollback` moves it back. A second test promotes a version that fails on real
faces and watches the automatic rollback.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import redis
from emostream_classifier.classifier import Classifier, make_shadow
from emostream_classifier.settings import ClassifierSettings
from emostream_modelserver.server import RunningServer, start_server
from emostream_serving.tf_serving import ServingClient
from emostream_trainer import deploy_command
from emostream_trainer.export import save_serving_function
from emostream_trainer.serving_config import Roles, read_roles, write_roles

from emostream import model_repository as repository
from emostream import names, wire
from emostream.lifecycle import run_until_stopped
from emostream.model_stats import read_served, shadow_report
from emostream.names import shadow_key
from tests.helpers.tiny_model import export_tiny_version, synthetic_faces
from tests.helpers.waiting import wait_for

pytestmark = pytest.mark.slow  # trains or serves real models for minutes

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
def config(base: Path) -> Path:
    path = base.parent / "models.config"
    write_roles(path, MODEL_NAME, Roles(str(base), [1], {"stable": 1}))
    return path


@pytest.fixture
def server(base: Path, config: Path) -> Iterator[RunningServer]:
    running = start_server(
        base,
        MODEL_NAME,
        port=0,
        poll_seconds=0.2,
        model_config_file=config,
        config_poll_seconds=0.2,
        allow_labels_for_unavailable=True,
    )
    try:
        assert running.wait_until_serving(timeout=60) == 1
        yield running
    finally:
        running.stop(grace=0)


@pytest.fixture
def gate_data(tmp_path: Path) -> list[str]:
    """Validation and detector-crop folders of faces the tiny model knows."""
    folders = []
    for name, seed in (("validation", 31), ("crops", 32)):
        for index, label in enumerate(LABELS):
            (tmp_path / name / label).mkdir(parents=True)
            for i, face in enumerate(synthetic_faces(index, 6, seed=seed)):
                cv2.imwrite(str(tmp_path / name / label / f"{i}.png"), face[..., 0])
        folders.append(str(tmp_path / name))
    return ["--validation", folders[0], "--crops", folders[1]]


def deploy(base: Path, config: Path, server: RunningServer, redis_url: str, *args: str) -> int:
    common = ["--model-base", str(base), "--model-config", str(config), "--redis-url", redis_url]
    return deploy_command.main([*common, "--serving-target", f"127.0.0.1:{server.port}", *args])


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
                camera=CAMERA,
                frame_seq=seq,
                ts_capture_ms=int(time.time() * 1000),
                face_index=0,
                faces_in_frame=1,
                box=wire.Box(10, 10, 48, 48),
                score=0.9,
                crop=np.ascontiguousarray(crop),
                ts_detect_ms=int(time.time() * 1000),
                frame_width=640,
                frame_height=480,
            )
            self.client.xadd(names.FACES, wire.encode_face(face), maxlen=100_000)
            self.fed[seq] = kind
            seq += 1
            stop.wait(FEED_EVERY_S)

    def count(self) -> int:
        return len(self.fed)


def events(client: redis.Redis) -> list[wire.EmotionEvent]:
    return [wire.decode_event(fields) for _, fields in client.xrange(names.SCORED)]


def now_ms() -> float:
    return time.time() * 1000


def stable_version(server: RunningServer) -> int:
    return server.registry.labels[MODEL_NAME]["stable"]


def classifier_settings(redis_url: str, target: str, base: Path) -> ClassifierSettings:
    return ClassifierSettings(
        redis_url=redis_url,
        consumer="redeploy-test",
        serving_target=target,
        model_name=MODEL_NAME,
        model_base=base,
        version_label="stable",
        shadow_share=0.5,
        batch_size=8,
        max_wait_ms=10,
        block_ms=100,
    )


def test_events_keep_flowing_across_publish_promote_and_rollback(
    client: redis.Redis,
    redis_url: str,
    base: Path,
    config: Path,
    server: RunningServer,
    problems: Problems,
    gate_data: list[str],
    tmp_path: Path,
) -> None:
    target = f"127.0.0.1:{server.port}"
    settings = classifier_settings(redis_url, target, base)
    log = logging.getLogger("emostream.classifier.redeploy-test")
    feeder = Feeder(client)
    elsewhere = export_tiny_version(tmp_path / "trained-elsewhere", 1, LABELS)
    with ServingClient(target, MODEL_NAME, timeout_seconds=30.0, version_label="stable") as serving:
        serving.wait_ready(timeout=30)
        classifier_stop = threading.Event()
        classifier = Classifier(settings, client, serving, log, classifier_stop, make_shadow(settings, client))
        classifying = Background("classifier", lambda stop: run_until_stopped(stop, classifier.step, log))
        feeding = Background("feeder", feeder)
        try:
            # Phase 1: version 1 serves; publishing version 2 makes it the candidate, served by nobody.
            wait_for(lambda: client.xlen(names.SCORED) >= 10, 60, "the first events")
            assert deploy(base, config, server, redis_url, "publish", str(elsewhere)) == 0
            assert server.registry.labels[MODEL_NAME] == {"stable": 1, "canary": 2}
            compared = lambda: shadow_report(client, shadow_key(1, 2))["overall"]["faces"] > 0  # noqa: E731
            wait_for(compared, 30, "the candidate compared on live batches")
            time.sleep(PHASE_S)
            promoted_ms = now_ms()
            assert deploy(base, config, server, redis_url, "promote", *gate_data, "--watch-s", "0") == 0
            switched_ms = wait_for(lambda: stable_version(server) == 2, SWITCH_TIMEOUT_S, "stable -> 2")
            # Phase 2: version 2 serves.
            fed_at_switch = feeder.count()
            wait_for(lambda: feeder.count() >= fed_at_switch + 20, 60, "faces fed after the switch")
            time.sleep(PHASE_S)
            rolled_back_ms = now_ms()
            assert deploy(base, config, server, redis_url, "rollback") == 0
            back_ms = wait_for(lambda: stable_version(server) == 1, SWITCH_TIMEOUT_S, "stable -> 1 again")
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
            if classifier.shadow is not None:
                classifier.shadow.close()

    seen = events(client)
    # Every fed face has exactly one event, with the right label; nothing was dead-lettered or left pending.
    keys = [(e.camera, e.frame_seq, e.face_index) for e in seen]
    assert len(keys) == len(set(keys)) == total
    assert set(keys) == {(CAMERA, seq, 0) for seq in feeder.fed}
    assert all(e.label == LABELS[feeder.fed[e.frame_seq]] for e in seen)
    assert client.xlen(names.DEAD_LETTERS) == 0
    assert client.xpending(names.FACES, names.CLASSIFIER_GROUP)["pending"] == 0
    assert read_served(client, "stable").get("errors", 0) == 0  # no served request failed

    # In stream order the versions go 1..1, 2..2, 1..1: one switch each way, no flapping.
    versions = [e.model_version for e in seen]
    runs = [v for i, v in enumerate(versions) if i == 0 or versions[i - 1] != v]
    assert runs == [1, 2, 1], runs
    before = [e for e in seen if e.ts_event_ms < promoted_ms]
    during = [e for e in seen if switched_ms < e.ts_capture_ms and e.ts_event_ms < rolled_back_ms]
    after = [e for e in seen if e.ts_capture_ms > back_ms]
    assert len(before) >= 10 and {e.model_version for e in before} == {1}
    assert len(during) >= 10 and {e.model_version for e in during} == {2}
    assert len(after) >= 10 and {e.model_version for e in after} == {1}
    # While 2 was the candidate, the classifier compared it on live batches: the same model, so they agree.
    shadowed = shadow_report(client, shadow_key(1, 2))["overall"]
    assert shadowed["faces"] > 0 and shadowed["agreement"] == 1.0 and shadowed["errors"] == 0
    roles = read_roles(config, MODEL_NAME)
    assert roles is not None and (roles.labels, roles.loaded) == ({"stable": 1}, [1])  # 2 retired, on disk
    assert (base / "2" / "saved_model.pb").is_file()
    # The classifier, the streams and the model server logged nothing worse than INFO.
    assert [f"{r.name}: {r.getMessage()}" for r in problems.records] == []


def export_failing_version(base: Path, version: int) -> Path:
    """Version 1 behind an assertion that passes the server's warm-up (zeros) and fails on bright faces."""
    import tensorflow as tf

    member = tf.saved_model.load(str(base / "1"))

    @tf.function(input_signature=[tf.TensorSpec([None, 48, 48, 1], tf.uint8, name="image")])
    def serve(image: tf.Tensor) -> dict[str, tf.Tensor]:
        check = tf.debugging.assert_less(tf.reduce_max(image), tf.constant(200, tf.uint8), message="injected")
        with tf.control_dependencies([check]):
            probabilities = member.signatures["serving_default"](image=image)["probabilities"]
        return {"probabilities": tf.identity(probabilities)}

    return repository.publish(
        base,
        lambda target: save_serving_function(serve.get_concrete_function(), target),
        labels=LABELS,
        card={"labels": list(LABELS), "source": "injected failure"},
        version=version,
    )


def test_a_failing_promotion_is_rolled_back_automatically(
    client: redis.Redis,
    redis_url: str,
    base: Path,
    config: Path,
    server: RunningServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    target = f"127.0.0.1:{server.port}"
    settings = classifier_settings(redis_url, target, base)
    log = logging.getLogger("emostream.classifier.redeploy-test")
    export_failing_version(base, 2)
    feeder = Feeder(client)
    with ServingClient(target, MODEL_NAME, timeout_seconds=30.0, version_label="stable") as serving:
        serving.wait_ready(timeout=30)
        classifier = Classifier(settings, client, serving, log, threading.Event())
        classifying = Background("classifier", lambda stop: run_until_stopped(stop, classifier.step, log))
        feeding = Background("feeder", feeder)
        try:
            wait_for(lambda: client.xlen(names.SCORED) >= 10, 60, "the first events")
            assert deploy_command.add_candidate(deploy_command.Place(base, config, MODEL_NAME, target), 2)
            watch = ["--watch-s", "60", "--min-requests", "3", "--max-error-rate", "0.2"]
            code = deploy(base, config, server, redis_url, "promote", "--force", *watch)
            assert code == 3
            assert stable_version(server) == 1
            rolled_back_ms = now_ms()
            fed = feeder.count()
            wait_for(lambda: feeder.count() >= fed + 20, 60, "faces fed after the rollback")
        finally:
            feeding.finish()
            classifying.finish()
    err = capsys.readouterr().err
    assert "rolled back automatically: version 2 error rate" in err and "serving version 1 again" in err
    assert client.xlen(names.DEAD_LETTERS) > 0  # the faces version 2 rejected, set aside with the reason
    after = [e for e in events(client) if e.ts_capture_ms > rolled_back_ms]
    assert len(after) >= 10 and {e.model_version for e in after} == {1}
