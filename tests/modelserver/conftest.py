"""Fixtures: a model base with a real tiny SavedModel, a model server on a free port, a client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from emostream_modelserver.server import RunningServer, start_server
from emostream_serving.tf_serving import ServingClient

from tests.helpers.tiny_model import export_tiny_version

MODEL_NAME = "emotion"
LABELS = ("happy", "neutral", "fear")
POLL_SECONDS = 0.2


@pytest.fixture
def model_base(tmp_path: Path) -> Path:
    """A TF Serving model base path holding version 1."""
    base = tmp_path / MODEL_NAME
    export_tiny_version(base, 1, LABELS)
    return base


@pytest.fixture
def server(model_base: Path) -> Iterator[RunningServer]:
    """The model server on a free port, serving `model_base` and polling it fast."""
    running = start_server(model_base, MODEL_NAME, port=0, poll_seconds=POLL_SECONDS)
    try:
        running.wait_until_serving(timeout=30)
        yield running
    finally:
        running.stop(grace=0)


@pytest.fixture
def client(server: RunningServer) -> Iterator[ServingClient]:
    """A ServingClient connected to `server`, ready."""
    with ServingClient(f"127.0.0.1:{server.port}", MODEL_NAME, timeout_seconds=10.0) as serving:
        serving.wait_ready(timeout=10)
        yield serving
