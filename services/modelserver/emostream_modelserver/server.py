"""TensorFlow Serving's gRPC API (Predict, GetModelMetadata, GetModelStatus) plus grpc health."""

from __future__ import annotations

import logging
import time
from concurrent import futures
from pathlib import Path
from typing import Any, NoReturn

import grpc
import numpy as np
import tensorflow as tf
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from emostream import metrics
from emostream_modelserver.versions import LoadedVersion, VersionManager

log = logging.getLogger(__name__)

PREDICTION_SERVICE = "tensorflow.serving.PredictionService"
MODEL_SERVICE = "tensorflow.serving.ModelService"
SIGNATURE_DEF_FIELD = "signature_def"
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class RequestError(Exception):
    """A request the server refuses: becomes a gRPC status with this code and message."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _abort(context: grpc.ServicerContext, error: RequestError) -> NoReturn:
    context.abort(error.code, error.message)
    raise AssertionError("context.abort returned")  # abort always raises; this satisfies NoReturn


def resolve_version(versions: VersionManager, model_name: str, spec: model_pb2.ModelSpec) -> LoadedVersion:
    """The served version if `spec` names this model and (if set) that version."""
    if spec.name != model_name:
        raise RequestError(
            grpc.StatusCode.NOT_FOUND, f"model '{spec.name}' not found; this server serves '{model_name}'"
        )
    if spec.version_label:
        raise RequestError(grpc.StatusCode.NOT_FOUND, f"version label '{spec.version_label}' is not supported")
    loaded = versions.current
    if loaded is None:
        raise RequestError(grpc.StatusCode.UNAVAILABLE, f"model '{model_name}' has no version loaded yet")
    if spec.HasField("version") and spec.version.value != loaded.version:
        raise RequestError(
            grpc.StatusCode.NOT_FOUND,
            f"version {spec.version.value} of model '{model_name}' is not loaded; serving version {loaded.version}",
        )
    return loaded


def _signature(loaded: LoadedVersion, name: str) -> meta_graph_pb2.SignatureDef:
    key = name or "serving_default"
    if key not in loaded.signature_defs or key.startswith("__"):
        raise RequestError(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"signature '{key}' not found in model version {loaded.version}",
        )
    if key != "serving_default":  # only serving_default is kept callable after loading
        raise RequestError(grpc.StatusCode.FAILED_PRECONDITION, f"signature '{key}' is not served; use serving_default")
    return loaded.signature_defs[key]


def _dtype_name(enum: int) -> str:
    try:
        return str(tf.dtypes.as_dtype(enum).name)
    except TypeError:
        return types_pb2.DataType.Name(enum) if enum in types_pb2.DataType.values() else str(enum)


def _check_tensor(key: str, proto: tensor_pb2.TensorProto, info: meta_graph_pb2.TensorInfo) -> np.ndarray:
    """The request tensor as numpy, if its dtype and shape fit the signature's TensorInfo."""
    if proto.dtype != info.dtype:
        raise RequestError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"input '{key}' has dtype {_dtype_name(proto.dtype)}, expected {_dtype_name(info.dtype)}",
        )
    shape = [d.size for d in proto.tensor_shape.dim]
    expected = [d.size for d in info.tensor_shape.dim]
    fits = len(shape) == len(expected) and all(e < 0 or s == e for s, e in zip(shape, expected, strict=True))
    if not fits:
        wanted = "[" + ",".join("N" if e < 0 else str(e) for e in expected) + "]"
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, f"input '{key}' has shape {shape}, expected {wanted}")
    if not shape or shape[0] < 1:
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, f"input '{key}' has an empty batch")
    try:
        array: np.ndarray = tf.make_ndarray(proto)
        return array
    except (ValueError, TypeError) as error:
        raise RequestError(
            grpc.StatusCode.INVALID_ARGUMENT, f"input '{key}' content does not match its shape: {error}"
        ) from error


def predict_inputs(request: predict_pb2.PredictRequest, sig: meta_graph_pb2.SignatureDef) -> dict[str, np.ndarray]:
    """Validated input arrays for `sig`, keyed like the signature."""
    given, expected = set(request.inputs), set(sig.inputs)
    if given != expected:
        raise RequestError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"inputs {sorted(given)} do not match the signature's inputs {sorted(expected)}",
        )
    return {key: _check_tensor(key, request.inputs[key], sig.inputs[key]) for key in expected}


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """tensorflow.serving.PredictionService: Predict and GetModelMetadata."""

    def __init__(self, versions: VersionManager, model_name: str) -> None:
        self.versions = versions
        self.model_name = model_name

    def Predict(
        self, request: predict_pb2.PredictRequest, context: grpc.ServicerContext
    ) -> predict_pb2.PredictResponse:
        started, code = time.perf_counter(), "OK"
        try:
            response = self._predict(request)
            images = request.inputs["image"].tensor_shape.dim[0].size
            metrics.MODEL_FACES.labels(str(response.model_spec.version.value)).inc(images)
            return response
        except RequestError as error:
            code = error.code.name
            _abort(context, error)
        finally:
            metrics.MODEL_PREDICT_SECONDS.observe(time.perf_counter() - started)
            metrics.MODEL_REQUESTS.labels("Predict", code).inc()

    def _predict(self, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
        # Read the served version once: a swap mid-request cannot mix two versions.
        loaded = resolve_version(self.versions, self.model_name, request.model_spec)
        sig = _signature(loaded, request.model_spec.signature_name)
        inputs = predict_inputs(request, sig)
        unknown = [name for name in request.output_filter if name not in sig.outputs]
        if unknown:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, f"output_filter names unknown outputs {unknown}")
        try:
            outputs = loaded.predict(inputs["image"])
        except tf.errors.OpError as error:
            raise RequestError(
                grpc.StatusCode.INTERNAL, f"model version {loaded.version} failed: {error.message}"
            ) from error
        wanted = set(request.output_filter) or set(outputs)
        response = predict_pb2.PredictResponse()
        _fill_spec(response.model_spec, self.model_name, loaded.version, "serving_default")
        for name in sorted(wanted):
            response.outputs[name].CopyFrom(tf.make_tensor_proto(outputs[name]))
        return response

    def GetModelMetadata(
        self,
        request: get_model_metadata_pb2.GetModelMetadataRequest,
        context: grpc.ServicerContext,
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        try:
            return self._metadata(request)
        except RequestError as error:
            _abort(context, error)

    def _metadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest) -> Any:
        fields = list(request.metadata_field)
        if not fields:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, "metadata_field must name at least one field")
        unsupported = [name for name in fields if name != SIGNATURE_DEF_FIELD]
        if unsupported:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, f"metadata field(s) {unsupported} are not supported")
        loaded = resolve_version(self.versions, self.model_name, request.model_spec)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        _fill_spec(response.model_spec, self.model_name, loaded.version, "")
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for name, sig in loaded.signature_defs.items():
            signature_map.signature_def[name].CopyFrom(sig)
        response.metadata[SIGNATURE_DEF_FIELD].Pack(signature_map)
        return response


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """tensorflow.serving.ModelService: GetModelStatus (HandleReloadConfigRequest is unimplemented)."""

    def __init__(self, versions: VersionManager, model_name: str) -> None:
        self.versions = versions
        self.model_name = model_name

    def GetModelStatus(
        self,
        request: get_model_status_pb2.GetModelStatusRequest,
        context: grpc.ServicerContext,
    ) -> get_model_status_pb2.GetModelStatusResponse:
        try:
            return self._status(request.model_spec)
        except RequestError as error:
            _abort(context, error)

    def _status(self, spec: model_pb2.ModelSpec) -> get_model_status_pb2.GetModelStatusResponse:
        if spec.name != self.model_name:
            raise RequestError(
                grpc.StatusCode.NOT_FOUND, f"model '{spec.name}' not found; this server serves '{self.model_name}'"
            )
        states = self._states()
        if spec.HasField("version"):
            states = {v: s for v, s in states.items() if v == spec.version.value}
        if not states:
            wanted = f"version {spec.version.value} of " if spec.HasField("version") else "any version of "
            raise RequestError(grpc.StatusCode.NOT_FOUND, f"no status for {wanted}model '{self.model_name}'")
        response = get_model_status_pb2.GetModelStatusResponse()
        for version, state in sorted(states.items()):
            entry = response.model_version_status.add()
            entry.version = version
            entry.state = state
        return response

    def _states(self) -> dict[int, int]:
        state = get_model_status_pb2.ModelVersionStatus
        states: dict[int, int] = {}
        loading, current = self.versions.loading, self.versions.current
        if loading is not None:
            states[loading] = state.LOADING
        if current is not None:
            states[current.version] = state.AVAILABLE
        return states


def _fill_spec(spec: model_pb2.ModelSpec, name: str, version: int, signature_name: str) -> None:
    spec.name = name
    spec.version.value = version
    if signature_name:
        spec.signature_name = signature_name


class RunningServer:
    """A started model server: its bound port, readiness wait and shutdown."""

    def __init__(
        self, server: grpc.Server, versions: VersionManager, health_servicer: health.HealthServicer, port: int
    ) -> None:
        self._server = server
        self._health = health_servicer
        self.versions = versions
        self.port = port

    def wait_until_serving(self, timeout: float) -> int:
        """Block until a version is served and return it; TimeoutError otherwise."""
        return self.versions.wait_for_version(timeout).version

    def stop(self, grace: float | None = None) -> None:
        """Refuse new requests, let in-flight ones finish for `grace` seconds, stop polling."""
        self._health.enter_graceful_shutdown()
        self._server.stop(grace).wait()
        self.versions.stop()


def _set_health(servicer: health.HealthServicer, serving: bool) -> None:
    status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    for service in ("", PREDICTION_SERVICE, MODEL_SERVICE):
        servicer.set(service, status)


def _on_change(servicer: health.HealthServicer, model_name: str, loaded: LoadedVersion | None) -> None:
    _set_health(servicer, loaded is not None)
    metrics.MODEL_VERSION.labels(model_name).set(loaded.version if loaded else 0)


def start_server(
    model_base: Path,
    model_name: str,
    port: int,
    host: str = "127.0.0.1",
    poll_seconds: float = 1.0,
    max_workers: int = 8,
) -> RunningServer:
    """Bind `host:port` (0 picks a free port) and serve `model_base` as `model_name`.

    Returns at once; the first version loads in the background and health reports
    NOT_SERVING until it is in place.
    """
    health_servicer = health.HealthServicer()
    _set_health(health_servicer, serving=False)
    versions = VersionManager(
        model_base, poll_seconds, on_change=lambda loaded: _on_change(health_servicer, model_name, loaded)
    )
    options = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers, thread_name_prefix="modelserver"), options=options)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionServicer(versions, model_name), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(versions, model_name), server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError as error:  # grpc raises on a busy or invalid address in recent versions
        raise OSError(f"cannot bind the model server to {host}:{port}: {error}") from error
    if bound == 0:  # older grpc versions report failure this way
        raise OSError(f"cannot bind the model server to {host}:{port}")
    server.start()
    versions.start()
    log.info("model server for '%s' listening on %s:%d, watching %s", model_name, host, bound, model_base)
    return RunningServer(server, versions, health_servicer, bound)
