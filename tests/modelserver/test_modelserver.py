"""The model server over real gRPC with real SavedModels, through the classifier's own client."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Self

import grpc
import numpy as np
import pytest
import tensorflow as tf
from emostream_modelserver.main import main
from emostream_modelserver.server import RunningServer, start_server
from emostream_serving.tf_serving import (
    ServingClient,
    ServingError,
    ServingNotReady,
    read_labels,
)
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from emostream.model_repository import ModelRepositoryError
from tests.helpers.tiny_model import export_tiny_version, synthetic_faces
from tests.helpers.waiting import free_port, wait_for
from tests.modelserver.conftest import LABELS, MODEL_NAME, POLL_SECONDS

SWITCH_TIMEOUT = 20.0  # generous: the test machine is small and busy


@pytest.fixture
def channel(server: RunningServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as opened:
        yield opened


def mixed_crops() -> tuple[np.ndarray, np.ndarray]:
    crops = np.concatenate([synthetic_faces(i, 4, seed=40 + i, num_classes=len(LABELS)) for i in range(len(LABELS))])
    return crops, np.repeat(np.arange(len(LABELS)), 4)


def predict_request(image: np.ndarray, name: str = MODEL_NAME, key: str = "image") -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.inputs[key].CopyFrom(tf.make_tensor_proto(image))
    return request


class PredictLoop:
    """Sends Predict requests back to back in a thread, recording versions and failures."""

    def __init__(self, port: int) -> None:
        self.client = ServingClient(f"127.0.0.1:{port}", MODEL_NAME, timeout_seconds=10.0)
        self.crops, self.expected = mixed_crops()
        self.versions: list[int] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                prediction = self.client.predict(self.crops)
                if not np.array_equal(prediction.probabilities.argmax(axis=1), self.expected):
                    self.failures.append(f"wrong classes from version {prediction.model_version}")
                self.versions.append(prediction.model_version)
            except ServingError as error:
                self.failures.append(str(error))

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.client.close()

    def latest(self) -> int | None:
        return self.versions[-1] if self.versions else None


def test_predict_returns_probabilities_for_each_crop_and_labels_read_back(
    client: ServingClient, model_base: Path
) -> None:
    crops, expected = mixed_crops()
    prediction = client.predict(crops)
    assert prediction.probabilities.dtype == np.float32
    assert prediction.probabilities.shape == (len(crops), len(LABELS))
    np.testing.assert_allclose(prediction.probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert prediction.model_version == 1
    labels = read_labels(model_base, prediction.model_version)
    assert labels == LABELS
    assert [labels[i] for i in prediction.probabilities.argmax(axis=1)] == [LABELS[i] for i in expected]


def test_read_labels_names_the_missing_file(model_base: Path) -> None:
    with pytest.raises(ModelRepositoryError, match=r"version 9.*labels\.txt"):
        read_labels(model_base, 9)


def test_model_metadata_reports_the_serving_signature(channel: grpc.Channel) -> None:
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = MODEL_NAME
    response = prediction_service_pb2_grpc.PredictionServiceStub(channel).GetModelMetadata(request, timeout=10)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signatures)
    serving = signatures.signature_def["serving_default"]
    assert response.model_spec.name == MODEL_NAME and response.model_spec.version.value == 1
    assert list(serving.inputs) == ["image"]
    assert serving.inputs["image"].dtype == types_pb2.DT_UINT8
    assert [d.size for d in serving.inputs["image"].tensor_shape.dim] == [-1, 48, 48, 1]
    assert serving.outputs["probabilities"].dtype == types_pb2.DT_FLOAT


def test_model_status_reports_the_served_version_available(client: ServingClient, channel: grpc.Channel) -> None:
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = MODEL_NAME
    response = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, timeout=10)
    [status] = response.model_version_status
    assert (status.version, status.state) == (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE)
    assert status.status.error_code == 0
    assert client.model_version() == 1


def test_health_is_not_serving_until_a_version_loads(tmp_path: Path) -> None:
    base = tmp_path / MODEL_NAME
    running = start_server(base, MODEL_NAME, port=0, poll_seconds=POLL_SECONDS)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)

            def status() -> int:
                return int(health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status)

            assert status() == health_pb2.HealthCheckResponse.NOT_SERVING
            with ServingClient(f"127.0.0.1:{running.port}", MODEL_NAME) as client, pytest.raises(ServingNotReady):
                client.wait_ready(timeout=0.5)
            export_tiny_version(base, 1, LABELS)
            wait_for(lambda: status() == health_pb2.HealthCheckResponse.SERVING, SWITCH_TIMEOUT, "SERVING")
            service = health_pb2.HealthCheckRequest(service="tensorflow.serving.PredictionService")
            assert health.Check(service, timeout=10).status == health_pb2.HealthCheckResponse.SERVING
    finally:
        running.stop(grace=0)


@pytest.mark.parametrize(
    ("request_factory", "code", "message"),
    [
        (
            lambda: predict_request(np.zeros((2, 48, 48, 1), np.float32)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "dtype float32, expected uint8",
        ),
        (
            lambda: predict_request(np.zeros((2, 32, 32, 1), np.uint8)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "shape [2, 32, 32, 1], expected [N,48,48,1]",
        ),
        (
            lambda: predict_request(np.zeros((48, 48, 1), np.uint8)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "shape [48, 48, 1]",
        ),
        (
            lambda: predict_request(np.zeros((1, 48, 48, 1), np.uint8), key="pixels"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "inputs ['pixels']",
        ),
        (
            lambda: predict_request(np.zeros((1, 48, 48, 1), np.uint8), name="faces"),
            grpc.StatusCode.NOT_FOUND,
            "Servable not found for request: Latest(faces)",
        ),
    ],
    ids=["wrong-dtype", "wrong-shape", "missing-batch-dim", "wrong-input-key", "unknown-model"],
)
def test_bad_predict_requests_get_a_status_naming_the_problem(
    channel: grpc.Channel,
    request_factory: Callable[[], predict_pb2.PredictRequest],
    code: grpc.StatusCode,
    message: str,
) -> None:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    with pytest.raises(grpc.RpcError) as caught:
        stub.Predict(request_factory(), timeout=10)
    assert caught.value.code() == code
    assert message in caught.value.details()


def test_unloaded_version_and_unknown_signature_are_refused(channel: grpc.Channel) -> None:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_request(np.zeros((1, 48, 48, 1), np.uint8))
    request.model_spec.version.value = 7
    with pytest.raises(grpc.RpcError) as caught:
        stub.Predict(request, timeout=10)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert caught.value.details() == "Servable not found for request: Specific(emotion, 7)"
    request = predict_request(np.zeros((1, 48, 48, 1), np.uint8))
    request.model_spec.signature_name = "classify"
    with pytest.raises(grpc.RpcError) as caught:
        stub.Predict(request, timeout=10)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert caught.value.details() == 'Serving signature key "classify" not found.'


def test_client_raises_serving_error_with_status(server: RunningServer) -> None:
    with ServingClient(f"127.0.0.1:{server.port}", "faces") as client:
        with pytest.raises(ServingError) as caught:
            client.predict(synthetic_faces(0, 1, seed=0))
        assert caught.value.code == grpc.StatusCode.NOT_FOUND
        assert "faces" in str(caught.value)
        with pytest.raises(ValueError, match="uint8"):
            client.predict(np.zeros((1, 48, 48, 1), np.float32))


def test_new_version_is_served_without_failing_a_request(server: RunningServer, model_base: Path) -> None:
    with PredictLoop(server.port) as loop:
        wait_for(lambda: len(loop.versions) >= 3, SWITCH_TIMEOUT, "first predictions")
        export_tiny_version(model_base, 2, LABELS)
        at_export = len(loop.versions)
        wait_for(lambda: loop.latest() == 2, SWITCH_TIMEOUT, "version 2 to be served")
        seen = len(loop.versions)
        wait_for(lambda: len(loop.versions) >= seen + 3, SWITCH_TIMEOUT, "predictions after the switch")
    assert loop.failures == []
    first_new = loop.versions.index(2)
    assert first_new > at_export  # version 1 kept answering while version 2 loaded
    assert set(loop.versions[:first_new]) == {1} and set(loop.versions[first_new:]) == {2}


def test_removing_the_newest_version_rolls_back(model_base: Path) -> None:
    export_tiny_version(model_base, 2, LABELS)
    running = start_server(model_base, MODEL_NAME, port=0, poll_seconds=POLL_SECONDS)
    try:
        assert running.wait_until_serving(timeout=30) == 2
        with PredictLoop(running.port) as loop:
            wait_for(lambda: loop.latest() == 2, SWITCH_TIMEOUT, "version 2 predictions")
            shutil.rmtree(model_base / "2")
            wait_for(lambda: loop.latest() == 1, SWITCH_TIMEOUT, "rollback to version 1")
        assert loop.failures == []
        assert loop.versions[-1] == 1
    finally:
        running.stop(grace=0)


def test_half_written_and_staging_folders_are_ignored(
    server: RunningServer, client: ServingClient, model_base: Path
) -> None:
    (model_base / "3" / "variables").mkdir(parents=True)  # an export still copying: no saved_model.pb yet
    shutil.copytree(model_base / "1", model_base / ".4-staging")  # complete, but hidden until renamed
    time.sleep(10 * POLL_SECONDS)
    assert client.model_version() == 1
    assert client.predict(synthetic_faces(0, 1, seed=5)).model_version == 1
    (model_base / ".4-staging").rename(model_base / "4")
    wait_for(lambda: client.model_version() == 4, SWITCH_TIMEOUT, "version 4 once renamed")


def test_a_version_that_fails_to_load_keeps_the_old_one_serving_and_is_retried(
    server: RunningServer,
    client: ServingClient,
    model_base: Path,
) -> None:
    broken = model_base / "2"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
    time.sleep(10 * POLL_SECONDS)
    assert client.predict(synthetic_faces(1, 2, seed=6)).model_version == 1
    shutil.rmtree(broken)
    export_tiny_version(model_base, 2, LABELS)  # the fixed export replaces the broken folder
    wait_for(lambda: client.model_version() == 2, SWITCH_TIMEOUT, "the repaired version 2")


@pytest.mark.parametrize(
    ("argv", "env", "named"),
    [
        (["--port", "http"], {}, "--port"),
        (["--port", "70000"], {}, "--port"),
        ([], {"MODELSERVER_PORT": "x"}, "MODELSERVER_PORT"),
        ([], {"MODELSERVER_POLL_SECONDS": "0"}, "MODELSERVER_POLL_SECONDS"),
        (["--poll-seconds", "soon"], {"MODELSERVER_POLL_SECONDS": "1"}, "--poll-seconds"),
        (["--model-name", ""], {}, "--model-name"),
        (["--bogus"], {}, "--bogus"),
    ],
)
def test_serve_model_rejects_a_bad_setting_in_one_line(
    argv: list[str],
    env: dict[str, str],
    named: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and named in error


def test_serve_model_serves_then_stops_cleanly_on_sigterm(
    model_base: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()
    monkeypatch.setenv("MODELSERVER_PORT", "1")  # the flag must win over this
    monkeypatch.setenv("MODELSERVER_MODEL_BASE", str(model_base))
    served: list[int] = []
    errors: list[ServingError] = []

    def use_then_terminate() -> None:
        try:
            with ServingClient(f"127.0.0.1:{port}", MODEL_NAME) as client:
                client.wait_ready(timeout=30)
                served.append(client.predict(synthetic_faces(2, 1, seed=3)).model_version)
        except ServingError as error:  # reported below; SIGTERM must come regardless
            errors.append(error)
        finally:
            os.kill(os.getpid(), signal.SIGTERM)  # main() runs in this (main) thread and handles it

    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    # Should main() fail early, a late SIGTERM from the worker must not kill pytest.
    signal.signal(signal.SIGTERM, lambda *_: None)
    caplog.set_level(logging.INFO)
    worker = threading.Thread(target=use_then_terminate)
    try:
        worker.start()
        # float32: the bfloat16 rewrite is process-wide, so it is tested in a server process of its own
        assert main(["--port", str(port), "--poll-seconds", "0.2", "--precision", "float32"]) == 0
    finally:
        worker.join(timeout=60)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    assert errors == [] and served == [1]
    assert "serving model version 1" in caplog.text
