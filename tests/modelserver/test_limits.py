"""Bounded memory and TF Serving's status codes: huge requests refused unread, model errors reported as such."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from emostream_modelserver.server import MAX_BATCH, RunningServer, predict_in_chunks, start_server
from emostream_serving.tf_serving import ServingClient, ServingError

from tests.helpers.poison_model import REFUSED_VALUE, export_poison_version
from tests.modelserver.conftest import MODEL_NAME

pytestmark = pytest.mark.timeout(120)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_a_request_over_the_batch_bound_is_refused_before_it_is_decoded(
    client: ServingClient, server: RunningServer
) -> None:
    crops = np.random.default_rng(0).integers(0, 256, (5000, 48, 48, 1), dtype=np.uint8)  # 11.5 MB
    before = rss_mb()
    for _ in range(3):
        with pytest.raises(ServingError) as refused:
            client.predict(crops)
        assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert f"has 5000 items; at most {MAX_BATCH} per request" in str(refused.value)
    assert rss_mb() - before < 200, "a refused request must not grow the server"
    assert client.predict(crops[:MAX_BATCH]).probabilities.shape == (MAX_BATCH, 3)


def test_chunked_compute_gives_the_same_answers(server: RunningServer) -> None:
    loaded = server.versions.current
    assert loaded is not None
    crops = np.random.default_rng(1).integers(0, 256, (21, 48, 48, 1), dtype=np.uint8)
    whole = loaded.predict(crops)["probabilities"]
    chunked = predict_in_chunks(loaded, crops, chunk=4)["probabilities"]
    np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-6)


@pytest.fixture
def poison_server(tmp_path: Path) -> Iterator[RunningServer]:
    base = tmp_path / MODEL_NAME
    export_poison_version(base, 1)
    running = start_server(base, MODEL_NAME, port=0, poll_seconds=0.5)
    try:
        running.wait_until_serving(timeout=60)
        yield running
    finally:
        running.stop(grace=0)


def test_a_model_refusing_its_input_is_invalid_argument_not_internal(poison_server: RunningServer) -> None:
    crops = np.full((3, 48, 48, 1), 100, np.uint8)
    crops[1] = REFUSED_VALUE
    with ServingClient(f"127.0.0.1:{poison_server.port}", MODEL_NAME) as client:
        with pytest.raises(ServingError) as refused:
            client.predict(crops)
        assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert "a crop the model refuses" in str(refused.value)
        assert client.predict(crops[[0, 2]]).probabilities.shape == (2, 3)
