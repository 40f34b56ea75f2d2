"""Shadow traffic: the candidate compared with the served version on live batches, never on the served path.

A real model server serves version 1 as `stable` and a candidate as `canary` from a TF Serving model
config file; a real Classifier reads faces from Redis. The candidate is the tiny model with its
labels file reversed, so it disagrees in a known way: it calls happy faces fear and fear faces
happy, and agrees on neutral.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from emostream_classifier.classifier import Classifier
from emostream_classifier.settings import ClassifierSettings
from emostream_classifier.shadow import Shadow
from emostream_modelserver.server import RunningServer, start_server
from emostream_serving.tf_serving import ServingClient
from emostream_trainer.deploy_command import main as deploy_main

from emostream.model_stats import read_served, shadow_report
from emostream.names import shadow_key
from tests.classifier.faces import classifier_caught_up, expected_label, make_faces, put_faces, read_events
from tests.conftest import LABELS, MODEL_NAME
from tests.helpers.tiny_model import export_tiny_version
from tests.helpers.waiting import wait_for

pytestmark = pytest.mark.timeout(180)


def write_config(path: Path, base: Path, versions: list[int], labels: dict[str, int]) -> None:
    policy = " ".join(f"versions: {v}" for v in versions)
    label_lines = " ".join(f'version_labels {{ key: "{k}" value: {v} }}' for k, v in labels.items())
    path.write_text(
        f'model_config_list {{ config {{ name: "{MODEL_NAME}" base_path: "{base}" model_platform: "tensorflow" '
        f"model_version_policy {{ specific {{ {policy} }} }} {label_lines} }} }}\n"
    )


@pytest.fixture
def labelled_server(tmp_path: Path) -> Iterator[tuple[RunningServer, Path, Path]]:
    """stable -> 1 (the tiny model), canary -> 2 (the same network, labels reversed)."""
    base = tmp_path / MODEL_NAME
    export_tiny_version(base, 1, LABELS)
    export_tiny_version(base, 2, LABELS)
    (base / "2" / "assets" / "labels.txt").write_text("".join(f"{label}\n" for label in reversed(LABELS)))
    config = tmp_path / "models.config"
    write_config(config, base, [1, 2], {"stable": 1, "canary": 2})
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
        running.versions.wait_for_version(60, 1)
        running.versions.wait_for_version(60, 2)
        yield running, base, config
    finally:
        running.stop(grace=0)


def classifier_settings(redis_url: str, port: int, base: Path) -> ClassifierSettings:
    return ClassifierSettings(
        redis_url=redis_url,
        consumer="shadow-test",
        serving_target=f"127.0.0.1:{port}",
        model_name=MODEL_NAME,
        model_base=base,
        version_label="stable",
        batch_size=8,
        max_wait_ms=5,
        block_ms=100,
    )


def run_until_caught_up(classifier: Classifier, client: redis.Redis, timeout: float = 60) -> list[float]:
    """Step the classifier until every face is acknowledged; the duration of each step."""
    durations: list[float] = []
    deadline = time.monotonic() + timeout
    while not (client.exists("emostream:faces") and classifier_caught_up(client)):
        assert time.monotonic() < deadline, "classifier did not catch up"
        started = time.monotonic()
        classifier.step()
        durations.append(time.monotonic() - started)
    return durations


def test_shadow_agreement_and_confusion_come_from_live_batches(
    labelled_server: tuple[RunningServer, Path, Path],
    redis_url: str,
    redis_client: redis.Redis,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server, base, config = labelled_server
    settings = classifier_settings(redis_url, server.port, base)
    faces = make_faces(30, camera="door") + make_faces(30, camera="lobby", seed=12)
    put_faces(redis_client, faces)
    candidate = ServingClient(settings.serving_target, MODEL_NAME, version_label="canary")
    shadow = Shadow(redis_client, candidate, base, share=1.0, queue_batches=1000)
    with ServingClient(settings.serving_target, MODEL_NAME, version_label="stable") as serving:
        classifier = Classifier(settings, redis_client, serving, logging.getLogger("test"), threading.Event(), shadow)
        run_until_caught_up(classifier, redis_client)
        shadow.close(timeout=30)
    events = read_events(redis_client)
    assert len(events) == 60 and {e.model_version for e in events} == {1}  # the served path is version 1 only
    report = shadow_report(redis_client, shadow_key(1, 2))
    overall = report["overall"]
    assert overall["faces"] == 60 and overall["errors"] == 0 and overall["dropped"] == 0
    assert overall["agreement"] == pytest.approx(20 / 60, abs=1e-4)  # only neutral keeps its name
    assert overall["confusion"] == {"happy": {"fear": 20}, "neutral": {"neutral": 20}, "fear": {"happy": 20}}
    assert set(report["cameras"]) == {"door", "lobby"}
    assert sum(camera["faces"] for camera in report["cameras"].values()) == 60
    assert overall["served_mean_confidence"] == pytest.approx(overall["candidate_mean_confidence"], abs=1e-3)
    assert overall["candidate_latency_ms_p99"] is not None
    served = read_served(redis_client, "stable")
    assert served["faces"] == 60 and served.get("errors", 0) == 0 and served["version"] == 1
    # The operator's view: `emostream deploy shadow` reads the same counters for the configured labels.
    argv = ["--model-base", str(base), "--model-config", str(config), "--redis-url", redis_url, "shadow"]
    assert deploy_main([*argv, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["overall"]["faces"] == 60
    assert deploy_main(argv) == 0
    table = capsys.readouterr().out
    assert table.startswith("candidate 2 shadowing served 1\n")
    assert "overall" in table and "door" in table and "lobby" in table and "33.3%" in table


@pytest.fixture
def hanging_target() -> Iterator[str]:
    """A TCP port that accepts connections and never answers: a candidate that hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


def test_a_hanging_candidate_never_delays_the_served_path(
    labelled_server: tuple[RunningServer, Path, Path],
    redis_url: str,
    redis_client: redis.Redis,
    hanging_target: str,
) -> None:
    server, base, _ = labelled_server
    settings = classifier_settings(redis_url, server.port, base)
    hang_s = 3.0
    candidate = ServingClient(hanging_target, MODEL_NAME, timeout_seconds=hang_s, version_label="canary")
    shadow = Shadow(redis_client, candidate, base, share=1.0, queue_batches=1)
    with ServingClient(settings.serving_target, MODEL_NAME, version_label="stable") as serving:
        classifier = Classifier(settings, redis_client, serving, logging.getLogger("test"), threading.Event(), shadow)
        faces = make_faces(48, camera="door")
        put_faces(redis_client, faces)
        durations = run_until_caught_up(classifier, redis_client)
        shadow.close(timeout=3 * hang_s)
    events = read_events(redis_client)
    assert sorted(e.frame_seq for e in events) == list(range(48))
    assert all(e.label == expected_label(faces[e.frame_seq]) for e in events)
    # Every served step took well under one shadow request: the served path never waited for it.
    assert max(durations) < hang_s / 2, durations
    report = shadow_report(redis_client, shadow_key(1, "unknown"))["overall"]
    assert report["errors"] >= 1  # the candidate's deadline, counted
    assert report["dropped"] >= 1  # batches it had no room for, counted instead of waited for
    wait_for(lambda: redis_client.xlen("emostream:deadletters") == 0, 1, "no dead letters")
