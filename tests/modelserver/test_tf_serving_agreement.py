"""The project's model server answers as TF Serving does: the table in docs/ARCHITECTURE.md ("TF Serving agreement").

Each expectation is TF Serving's documented or coded behaviour (sources named in that section):
Predict outputs in `float_val`, an empty batch answered, "Missing ModelSpec", duplicate and unknown
output filters, version labels from a model config file and their errors, labels only on loaded
versions, label moves with no failed request, GetModelStatus messages, config validation.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from emostream_modelserver.model_config import ConfigError
from emostream_modelserver.server import RunningServer, start_server
from google.protobuf import text_format
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from tests.helpers.tiny_model import export_tiny_version, synthetic_faces
from tests.helpers.waiting import wait_for
from tests.modelserver.conftest import LABELS, MODEL_NAME, POLL_SECONDS

SWITCH_TIMEOUT = 30.0


def config_text(base: Path, versions: list[int], labels: dict[str, int], name: str = MODEL_NAME) -> str:
    policy = " ".join(f"versions: {v}" for v in versions)
    label_lines = "".join(f'    version_labels {{ key: "{k}" value: {v} }}\n' for k, v in labels.items())
    return (
        "model_config_list {\n  config {\n"
        f'    name: "{name}"\n    base_path: "{base}"\n    model_platform: "tensorflow"\n'
        f"    model_version_policy {{ specific {{ {policy} }} }}\n{label_lines}  }}\n}}\n"
    )


def request_for(crops: np.ndarray, label: str = "", version: int | None = None) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL_NAME
    if label:
        request.model_spec.version_label = label
    if version is not None:
        request.model_spec.version.value = version
    request.inputs["image"].CopyFrom(tf.make_tensor_proto(crops))
    return request


def rpc_error(call: object, request: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=10)  # type: ignore[operator]
    return caught.value


@pytest.fixture
def two_versions(tmp_path: Path) -> Path:
    base = tmp_path / MODEL_NAME
    export_tiny_version(base, 1, LABELS)
    export_tiny_version(base, 2, LABELS)
    return base


@pytest.fixture
def labelled(two_versions: Path, tmp_path: Path) -> Iterator[tuple[RunningServer, Path]]:
    """Versions 1 and 2 served from a config file with stable -> 1 and canary -> 2, re-read every 0.2 s."""
    config = tmp_path / "models.config"
    config.write_text(config_text(two_versions, [1, 2], {"stable": 1, "canary": 2}))
    running = start_server(
        two_versions,
        MODEL_NAME,
        port=0,
        poll_seconds=POLL_SECONDS,
        model_config_file=config,
        config_poll_seconds=0.2,
        allow_labels_for_unavailable=True,
    )
    try:
        running.versions.wait_for_version(SWITCH_TIMEOUT, 1)
        running.versions.wait_for_version(SWITCH_TIMEOUT, 2)
        yield running, config
    finally:
        running.stop(grace=0)


@pytest.fixture
def stubs(server: RunningServer) -> Iterator[tuple[prediction_service_pb2_grpc.PredictionServiceStub, object]]:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield (
            prediction_service_pb2_grpc.PredictionServiceStub(channel),
            model_service_pb2_grpc.ModelServiceStub(channel),
        )


def test_predict_fills_float_val_as_tf_serving_does(stubs: tuple) -> None:  # type: ignore[type-arg]
    predict, _ = stubs
    crops = synthetic_faces(0, 3, seed=1)
    response = predict.Predict(request_for(crops), timeout=10)
    output = response.outputs["probabilities"]
    assert output.dtype == tf.float32.as_datatype_enum
    assert [d.size for d in output.tensor_shape.dim] == [3, len(LABELS)]
    assert output.tensor_content == b""
    values = np.asarray(output.float_val, np.float32).reshape(3, len(LABELS))
    np.testing.assert_allclose(values.sum(axis=1), 1.0, atol=1e-5)
    assert response.model_spec.name == MODEL_NAME
    assert response.model_spec.version.value == 1
    assert response.model_spec.signature_name == "serving_default"


def test_an_empty_batch_gets_an_empty_answer(stubs: tuple) -> None:  # type: ignore[type-arg]
    predict, _ = stubs
    response = predict.Predict(request_for(np.zeros((0, 48, 48, 1), np.uint8)), timeout=10)
    output = response.outputs["probabilities"]
    assert [d.size for d in output.tensor_shape.dim] == [0, len(LABELS)]
    assert list(output.float_val) == []


def test_a_missing_model_spec_is_invalid_argument_for_every_call(stubs: tuple) -> None:  # type: ignore[type-arg]
    predict, models = stubs
    bare_predict = predict_pb2.PredictRequest()
    bare_predict.inputs["image"].CopyFrom(tf.make_tensor_proto(synthetic_faces(0, 1, seed=1)))
    bare_metadata = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    for call, request in (
        (predict.Predict, bare_predict),
        (predict.GetModelMetadata, bare_metadata),
        (models.GetModelStatus, get_model_status_pb2.GetModelStatusRequest()),
    ):
        error = rpc_error(call, request)
        assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")


def test_output_filters_duplicate_and_unknown(stubs: tuple) -> None:  # type: ignore[type-arg]
    predict, _ = stubs
    request = request_for(synthetic_faces(0, 1, seed=1))
    request.output_filter.extend(["probabilities", "probabilities"])
    error = rpc_error(predict.Predict, request)
    assert (error.code(), error.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "duplicate output tensor alias: probabilities",
    )
    request = request_for(synthetic_faces(0, 1, seed=1))
    request.output_filter.append("logits")
    error = rpc_error(predict.Predict, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("output tensor alias not found in signature: logits")


def test_a_label_on_a_server_without_labels_is_unrecognized(stubs: tuple) -> None:  # type: ignore[type-arg]
    predict, _ = stubs
    error = rpc_error(predict.Predict, request_for(synthetic_faces(0, 1, seed=1), label="stable"))
    assert (error.code(), error.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Unrecognized servable version label: stable",
    )


def test_model_status_messages(stubs: tuple) -> None:  # type: ignore[type-arg]
    _, models = stubs
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = MODEL_NAME
    request.model_spec.version.value = 7
    error = rpc_error(models.GetModelStatus, request)
    assert (error.code(), error.details()) == (grpc.StatusCode.NOT_FOUND, "Could not find version 7 of model emotion")
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "nope"
    error = rpc_error(models.GetModelStatus, request)
    assert (error.code(), error.details()) == (grpc.StatusCode.NOT_FOUND, "Could not find any versions of model nope")


def test_labels_resolve_to_their_versions_and_unknown_labels_are_refused(
    labelled: tuple[RunningServer, Path],
) -> None:
    server, _ = labelled
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        predict = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        crops = synthetic_faces(1, 2, seed=3)
        assert predict.Predict(request_for(crops, label="stable"), timeout=10).model_spec.version.value == 1
        assert predict.Predict(request_for(crops, label="canary"), timeout=10).model_spec.version.value == 2
        assert predict.Predict(request_for(crops), timeout=10).model_spec.version.value == 2  # Latest
        error = rpc_error(predict.Predict, request_for(crops, label="beta"))
        assert (error.code(), error.details()) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "Unrecognized servable version label: beta",
        )
        # GetModelStatus ignores labels and lists every version, as TF Serving's GetModelStatusImpl does.
        status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
            get_model_status_pb2.GetModelStatusRequest(model_spec={"name": MODEL_NAME, "version_label": "stable"}),
            timeout=10,
        )
        assert sorted(s.version for s in status.model_version_status) == [1, 2]


def test_without_the_flag_labels_fail_at_startup_as_in_tf_serving(two_versions: Path, tmp_path: Path) -> None:
    config = tmp_path / "models.config"
    config.write_text(config_text(two_versions, [1], {"stable": 1}))
    with pytest.raises(ConfigError) as caught:
        start_server(two_versions, MODEL_NAME, port=0, model_config_file=config)
    assert caught.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert caught.value.message == (
        "Request to assign label to version 1 of model emotion, which is not currently available for inference"
    )


def test_a_config_that_loads_and_labels_a_version_at_once_is_refused_and_the_old_one_kept(
    labelled: tuple[RunningServer, Path],
) -> None:
    server, config = labelled
    base = server.versions.base
    export_tiny_version(base, 3, LABELS)
    config.write_text(config_text(base, [1, 2, 3], {"stable": 3, "canary": 2}))  # stable moves to an unloaded 3
    time.sleep(1.0)  # five polls of the config file
    assert server.registry.labels[MODEL_NAME] == {"stable": 1, "canary": 2}
    assert 3 not in server.versions.available  # refused before any version change, as in TF Serving
    config.write_text(config_text(base, [1, 2, 3], {"stable": 1, "canary": 2}))  # first load 3 ...
    server.versions.wait_for_version(SWITCH_TIMEOUT, 3)
    config.write_text(config_text(base, [1, 2, 3], {"stable": 3, "canary": 2}))  # ... then label it
    wait_for(lambda: server.registry.labels[MODEL_NAME]["stable"] == 3, SWITCH_TIMEOUT, "stable -> 3")


def test_moving_a_label_fails_no_request(labelled: tuple[RunningServer, Path]) -> None:
    server, config = labelled
    seen: list[int] = []
    failures: list[str] = []
    stop = threading.Event()

    def ask() -> None:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            predict = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            crops = synthetic_faces(2, 4, seed=5)
            while not stop.is_set():
                try:
                    seen.append(
                        predict.Predict(request_for(crops, label="stable"), timeout=10).model_spec.version.value
                    )
                except grpc.RpcError as error:
                    failures.append(f"{error.code()}: {error.details()}")

    worker = threading.Thread(target=ask)
    worker.start()
    try:
        wait_for(lambda: len(seen) > 5, SWITCH_TIMEOUT, "first answers")
        config.write_text(config_text(server.versions.base, [1, 2], {"stable": 2}))  # promote 2
        wait_for(lambda: seen[-1] == 2, SWITCH_TIMEOUT, "answers from version 2")
        config.write_text(config_text(server.versions.base, [1, 2], {"stable": 1}))  # roll back
        wait_for(lambda: seen[-1] == 1, SWITCH_TIMEOUT, "answers from version 1 again")
        config.write_text(config_text(server.versions.base, [1], {"stable": 1}))  # retire 2
        wait_for(lambda: 2 not in server.versions.available, SWITCH_TIMEOUT, "version 2 unloaded")
        time.sleep(0.3)
    finally:
        stop.set()
        worker.join(30)
    assert failures == []
    assert 1 in seen and 2 in seen


def test_reload_config_over_grpc_applies_and_refuses_like_the_file(labelled: tuple[RunningServer, Path]) -> None:
    server, _ = labelled
    server.registry.stop()  # only the RPC changes the config in this test: stop the file poller first
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        models = model_service_pb2_grpc.ModelServiceStub(channel)
        request = model_management_pb2.ReloadConfigRequest()
        text_format.Parse(config_text(server.versions.base, [1, 2], {"stable": 2, "canary": 7}), request.config)
        error = rpc_error(models.HandleReloadConfigRequest, request)
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert server.registry.labels[MODEL_NAME] == {"stable": 1, "canary": 2}
        request.config.Clear()
        text_format.Parse(config_text(server.versions.base, [1, 2], {"stable": 2}), request.config)
        models.HandleReloadConfigRequest(request, timeout=10)
        assert server.registry.labels[MODEL_NAME] == {"stable": 2}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'model_config_list { config { name: "emotion" base_path: "models/emotion" model_platform: "tensorflow" } }',
            "Expected model emotion to have an absolute path or URI; got base_path()=models/emotion",
        ),
        (
            'model_config_list { config { name: "emotion" base_path: "/m" model_platform: "tensorflow" } '
            'config { name: "emotion" base_path: "/m" model_platform: "tensorflow" } }',
            "Illegal to list model emotion multiple times in config list",
        ),
        (
            'model_config_list { config { name: "emotion" base_path: "/m" model_platform: "onnx" } }',
            "Model emotion requests unsupported platform onnx",
        ),
        ("model_config_list { config { name: ", "does not parse"),
    ],
    ids=["relative-base-path", "duplicate-model", "unknown-platform", "unparsable"],
)
def test_bad_config_files_are_refused_at_start_in_one_line(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "models.config"
    config.write_text(text)
    with pytest.raises(ConfigError) as caught:
        start_server(tmp_path, MODEL_NAME, port=0, model_config_file=config)
    assert message in caught.value.message
    assert "\n" not in caught.value.message
