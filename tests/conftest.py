"""Shared fixtures: a dedicated Redis db, a real tiny SavedModel, the model server, the face detector model.

Heavy imports (TensorFlow, MediaPipe) happen inside the fixtures, so tests that need none of them stay fast.
Subfolders (tests/capture, tests/modelserver) have their own conftest files; theirs win where names clash.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis

from emostream.settings import DEFAULT_REDIS_URL

if TYPE_CHECKING:
    from emostream_modelserver.server import RunningServer

TEST_DB = 14  # these tests own this db: flushed before and after every test (tests/capture uses 15)
MODEL_NAME = "emotion"
LABELS = ("happy", "neutral", "fear")  # tests.helpers.tiny_model's default labels


def db_url(db: int) -> str:
    """EMOSTREAM_REDIS_URL (or the default) pointed at db `db`."""
    parts = urlsplit(os.environ.get("EMOSTREAM_REDIS_URL", DEFAULT_REDIS_URL))
    return urlunsplit(parts._replace(path=f"/{db}"))


@pytest.fixture
def redis_url() -> Iterator[str]:
    """The URL of the tests' own Redis db, empty at the start and flushed at the end."""
    url = db_url(TEST_DB)
    connection = redis.Redis.from_url(url)
    connection.flushdb()
    try:
        yield url
    finally:
        connection.flushdb()
        connection.close()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A client of the tests' db (raw bytes replies)."""
    client = redis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def tiny_model_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TF Serving model base holding version 1 of the tiny test model (trained once per session).

    Read-only for tests: one that changes versions must make its own base.
    """
    from tests.helpers.tiny_model import export_tiny_version

    base = tmp_path_factory.mktemp("models") / MODEL_NAME
    export_tiny_version(base, 1, LABELS)
    return base


@pytest.fixture
def model_server(tiny_model_base: Path) -> Iterator[RunningServer]:
    """The project's model server on a free port, serving the tiny model, ready."""
    from emostream_modelserver.server import start_server

    running = start_server(tiny_model_base, MODEL_NAME, port=0, poll_seconds=0.5)
    try:
        running.wait_until_serving(timeout=60)
        yield running
    finally:
        running.stop(grace=0)


@pytest.fixture(scope="session")
def detector_models() -> dict[object, Path]:
    """MediaPipe's face detector models by ModelFile, fetched and checked (cached after the first run)."""
    from emostream_detector.model_file import default_dir, fetch

    return dict(fetch(Path(os.environ.get("DETECTOR_MODEL_DIR", default_dir()))))


@pytest.fixture(scope="session")
def detector_model_path(detector_models: dict[object, Path]) -> Path:
    """MediaPipe's short-range face model; its folder holds the full-range one too."""
    from emostream_detector.model_file import NEAR

    return detector_models[NEAR]
