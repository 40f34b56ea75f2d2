"""Fixtures: a model base with a real tiny SavedModel, a model server on a free port, a client."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from emostream_modelserver.server import RunningServer, start_server
from emostream_serving.tf_serving import ServingClient

from tests.helpers.tiny_model import export_tiny_version
from tests.helpers.waiting import free_port

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


@contextmanager
def server_process(model_base: Path, log: Path, *flags: str) -> Iterator[tuple[ServingClient, int]]:
    """`emostream serve-model` in its own process (stderr to `log`), ready: a client and its pid."""
    port = free_port()
    command = [sys.executable, "-m", "emostream.cli", "serve-model", "--model-base", str(model_base)]
    with log.open("w") as sink:
        server = subprocess.Popen([*command, "--port", str(port), *flags], stderr=sink)
    try:
        with ServingClient(f"127.0.0.1:{port}", MODEL_NAME, timeout_seconds=30.0) as client:
            client.wait_ready(timeout=120)
            yield client, server.pid
    finally:
        server.terminate()
        server.wait(30)
