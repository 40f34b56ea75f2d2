"""A model that refuses some faces or answers outside the contract: good faces still get events, bad ones
are dead-lettered with the reason, and the classifier never stops."""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis
from emostream_classifier.classifier import Classifier
from emostream_classifier.settings import ClassifierSettings
from emostream_modelserver.server import RunningServer, start_server
from emostream_serving.tf_serving import ServingClient

from emostream import names
from tests.classifier.faces import classifier_caught_up, make_faces, put_faces, read_events
from tests.conftest import MODEL_NAME
from tests.helpers.poison_model import NAN_VALUE, REFUSED_VALUE, export_poison_version
from tests.helpers.waiting import wait_for

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def poison_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("poison") / MODEL_NAME
    export_poison_version(base, 1)
    return base


@pytest.fixture
def poison_server(poison_base: Path) -> Iterator[RunningServer]:
    running = start_server(poison_base, MODEL_NAME, port=0, poll_seconds=0.5)
    try:
        running.wait_until_serving(timeout=60)
        yield running
    finally:
        running.stop(grace=0)


def classifier(redis_url: str, client: redis.Redis, serving: ServingClient, model_base: Path) -> Classifier:
    settings = ClassifierSettings(
        redis_url=redis_url,
        consumer="c1",
        serving_target=serving.target,
        model_base=model_base,
        model_name=MODEL_NAME,
        batch_size=16,
        max_wait_ms=50,
        block_ms=20,
    )
    return Classifier(settings, client, serving, logging.getLogger("test.classifier"), threading.Event())


def dead_letters(client: redis.Redis) -> list[dict[str, str]]:
    return [{k.decode(): v.decode() for k, v in f.items()} for _, f in client.xrange(names.DEAD_LETTERS)]


def test_a_rejected_batch_is_split_so_only_the_faces_at_fault_are_dead_lettered(
    redis_url: str, redis_client: redis.Redis, poison_server: RunningServer, poison_base: Path
) -> None:
    faces = make_faces(16)
    faces[3] = dataclasses.replace(faces[3], crop=np.full((48, 48), REFUSED_VALUE, np.uint8))
    faces[11] = dataclasses.replace(faces[11], crop=np.full((48, 48), NAN_VALUE, np.uint8))
    put_faces(redis_client, faces)
    with ServingClient(f"127.0.0.1:{poison_server.port}", MODEL_NAME, timeout_seconds=10) as serving:
        worker = classifier(redis_url, redis_client, serving, poison_base)
        wait_for(lambda: worker.step() or redis_client.xlen(names.SCORED) >= 14, 60, "14 events", interval=0)
        for _ in range(3):
            worker.step()
    assert classifier_caught_up(redis_client)
    assert sorted(e.frame_seq for e in read_events(redis_client)) == [s for s in range(16) if s not in (3, 11)]
    letters = {letter["kind"]: letter for letter in dead_letters(redis_client)}
    assert set(letters) == {"model_rejected", "bad_scores"}
    assert "a crop the model refuses" in letters["model_rejected"]["reason"]
    assert "not probabilities" in letters["bad_scores"]["reason"]
    progress = {k.decode(): int(v) for k, v in redis_client.hgetall(names.progress("cam")).items()}
    assert progress == {"events": 14, "faces_failed": 2}


def test_responses_breaking_the_contract_are_errors_with_a_reason_not_an_outage(
    redis_url: str,
    redis_client: redis.Redis,
    model_server: RunningServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The classifier reads labels from its own copy of the model base; here it has none for version 1.
    put_faces(redis_client, make_faces(4))
    with ServingClient(f"127.0.0.1:{model_server.port}", MODEL_NAME, timeout_seconds=10) as serving:
        worker = classifier(redis_url, redis_client, serving, tmp_path / "empty")
        with caplog.at_level(logging.WARNING):
            wait_for(lambda: worker.step() or classifier_caught_up(redis_client), 30, "the batch set aside", interval=0)
    assert redis_client.xlen(names.SCORED) == 0
    letters = dead_letters(redis_client)
    assert len(letters) == 4 and {letter["kind"] for letter in letters} == {"contract"}
    assert "breaks the contract: no labels for model version 1" in letters[0]["reason"]
    assert "breaks the contract" in caplog.text and "not answering" not in caplog.text
