"""TensorFlow Serving's gRPC API (Predict, GetModelMetadata, GetModelStatus) plus grpc health."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent import futures
from pathlib import Path
from typing import Any, NoReturn

import grpc
import numpy as np
from emostream_serving.tensors import dtype_name, to_array, typed_proto
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from tensorflow.core.framework import tensor_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from emostream import metrics
from emostream.model_repository import INPUT_KEY, SIGNATURE_NAME
from emostream_modelserver.model_config import ConfigError, entries, read, single_model
from emostream_modelserver.registry import ModelRegistry, RequestError
from emostream_modelserver.versions import LoadedVersion, ModelRunError, VersionManager, load_version

log = logging.getLogger(__name__)

PREDICTION_SERVICE = "tensorflow.serving.PredictionService"
MODEL_SERVICE = "tensorflow.serving.ModelService"
SIGNATURE_DEF_FIELD = "signature_def"
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
MAX_BATCH = 1024
"""Most faces one Predict may carry (the classifier's largest batch); larger requests are refused unread."""
COMPUTE_CHUNK = 64
"""Faces run through the model at once: bounds the memory a request can take, whatever its size."""


def _abort(context: grpc.ServicerContext, error: RequestError) -> NoReturn:
    context.abort(error.code, error.message)
    raise AssertionError("context.abort returned")  # abort always raises; this satisfies NoReturn


def _spec(request: Any) -> model_pb2.ModelSpec:
    """The request's ModelSpec; INVALID_ARGUMENT "Missing ModelSpec" when absent, as in TF Serving."""
    if not request.HasField("model_spec"):
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")
    spec: model_pb2.ModelSpec = request.model_spec
    return spec


def _signature(loaded: LoadedVersion, name: str) -> meta_graph_pb2.SignatureDef:
    key = name or SIGNATURE_NAME
    if key not in loaded.signature_defs or key.startswith("__"):
        raise RequestError(grpc.StatusCode.FAILED_PRECONDITION, f'Serving signature key "{key}" not found.')
    if key != SIGNATURE_NAME:  # only serving_default is kept callable after loading
        message = f"signature '{key}' is not served; use {SIGNATURE_NAME}"
        raise RequestError(grpc.StatusCode.FAILED_PRECONDITION, message)
    return loaded.signature_defs[key]


def _check_tensor(
    key: str, proto: tensor_pb2.TensorProto, info: meta_graph_pb2.TensorInfo, max_batch: int = MAX_BATCH
) -> np.ndarray:
    """The request tensor as numpy, if its dtype and shape fit the signature's TensorInfo."""
    if proto.dtype != info.dtype:
        raise RequestError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"input '{key}' has dtype {dtype_name(proto.dtype)}, expected {dtype_name(info.dtype)}",
        )
    shape = [d.size for d in proto.tensor_shape.dim]
    expected = [d.size for d in info.tensor_shape.dim]
    fits = len(shape) == len(expected) and all(e < 0 or s == e for s, e in zip(shape, expected, strict=True))
    if not fits:
        wanted = "[" + ",".join("N" if e < 0 else str(e) for e in expected) + "]"
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, f"input '{key}' has shape {shape}, expected {wanted}")
    if shape and shape[0] > max_batch:  # refused before the tensor is decoded
        raise RequestError(
            grpc.StatusCode.INVALID_ARGUMENT, f"input '{key}' has {shape[0]} items; at most {max_batch} per request"
        )
    try:
        return to_array(proto)
    except (ValueError, TypeError) as error:
        raise RequestError(
            grpc.StatusCode.INVALID_ARGUMENT, f"input '{key}' content does not match its shape: {error}"
        ) from error


def predict_inputs(
    request: predict_pb2.PredictRequest, sig: meta_graph_pb2.SignatureDef, max_batch: int = MAX_BATCH
) -> dict[str, np.ndarray]:
    """Validated input arrays for `sig`, keyed like the signature."""
    given, expected = set(request.inputs), set(sig.inputs)
    if given != expected:
        raise RequestError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"inputs {sorted(given)} do not match the signature's inputs {sorted(expected)}",
        )
    return {key: _check_tensor(key, request.inputs[key], sig.inputs[key], max_batch) for key in expected}


def predict_in_chunks(loaded: LoadedVersion, image: np.ndarray, chunk: int = COMPUTE_CHUNK) -> dict[str, np.ndarray]:
    """The model's outputs for `image`, computed `chunk` items at a time so memory stays bounded.

    An empty batch is answered with empty outputs of the model's own shapes and types, as TF Serving
    answers it; the model itself runs on one blank item, since graphs rewritten for bfloat16 (and some
    kernels) fail on zero-sized tensors.
    """
    if not len(image):
        return {name: value[:0] for name, value in loaded.predict(np.zeros((1, *image.shape[1:]), image.dtype)).items()}
    if len(image) <= chunk:
        return loaded.predict(image)
    parts = [loaded.predict(image[start : start + chunk]) for start in range(0, len(image), chunk)]
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


def output_names(request: predict_pb2.PredictRequest, sig: meta_graph_pb2.SignatureDef) -> list[str]:
    """The outputs to return, checked as TF Serving's PreProcessPrediction checks output_filter."""
    seen: list[str] = []
    for alias in request.output_filter:
        if alias not in sig.outputs:
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"output tensor alias not found in signature: {alias} "
                f"Outputs expected to be in the set {{{','.join(sorted(sig.outputs))}}}.",
            )
        if alias in seen:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, f"duplicate output tensor alias: {alias}")
        seen.append(alias)
    return seen or sorted(sig.outputs)


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """tensorflow.serving.PredictionService: Predict and GetModelMetadata."""

    def __init__(self, registry: ModelRegistry, max_batch: int = MAX_BATCH) -> None:
        self.registry = registry
        self.max_batch = max_batch

    def Predict(
        self, request: predict_pb2.PredictRequest, context: grpc.ServicerContext
    ) -> predict_pb2.PredictResponse:
        started, code = time.perf_counter(), "OK"
        try:
            response = self._predict(request)
            images = request.inputs[INPUT_KEY].tensor_shape.dim[0].size
            metrics.MODEL_FACES.labels(str(response.model_spec.version.value)).inc(images)
            return response
        except RequestError as error:
            code = error.code.name
            _abort(context, error)
        finally:
            metrics.MODEL_PREDICT_SECONDS.observe(time.perf_counter() - started)
            metrics.MODEL_REQUESTS.labels("Predict", code).inc()

    def _predict(self, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
        # Resolve the version once: a swap or label move mid-request cannot mix two versions.
        name, loaded = self.registry.resolve(_spec(request))
        sig = _signature(loaded, request.model_spec.signature_name)
        inputs = predict_inputs(request, sig, self.max_batch)
        wanted = output_names(request, sig)
        try:
            outputs = predict_in_chunks(loaded, inputs[INPUT_KEY])
        except ModelRunError as error:  # TF Serving answers with the session's own status code
            raise RequestError(error.code, f"model version {loaded.version} failed: {error.message}") from error
        response = predict_pb2.PredictResponse()
        _fill_spec(response.model_spec, name, loaded.version, request.model_spec.signature_name or SIGNATURE_NAME)
        for output in wanted:
            response.outputs[output].CopyFrom(typed_proto(outputs[output]))
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
        spec = _spec(request)
        fields = list(request.metadata_field)
        if not fields:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, "metadata_field must name at least one field")
        unsupported = [name for name in fields if name != SIGNATURE_DEF_FIELD]
        if unsupported:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, f"metadata field(s) {unsupported} are not supported")
        name, loaded = self.registry.resolve(spec)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        _fill_spec(response.model_spec, name, loaded.version, "")
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for key, sig in loaded.signature_defs.items():
            signature_map.signature_def[key].CopyFrom(sig)
        response.metadata[SIGNATURE_DEF_FIELD].Pack(signature_map)
        return response


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """tensorflow.serving.ModelService: GetModelStatus and HandleReloadConfigRequest."""

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry

    def GetModelStatus(
        self,
        request: get_model_status_pb2.GetModelStatusRequest,
        context: grpc.ServicerContext,
    ) -> get_model_status_pb2.GetModelStatusResponse:
        try:
            return self._status(_spec(request))
        except RequestError as error:
            _abort(context, error)

    def HandleReloadConfigRequest(
        self, request: model_management_pb2.ReloadConfigRequest, context: grpc.ServicerContext
    ) -> model_management_pb2.ReloadConfigResponse:
        """Replace the whole config, as TF Serving does; a refused one keeps the old config."""
        try:
            self.registry.apply(entries(request.config))
        except ConfigError as error:
            _abort(context, RequestError(error.code, error.message))
        return model_management_pb2.ReloadConfigResponse()

    def _status(self, spec: model_pb2.ModelSpec) -> get_model_status_pb2.GetModelStatusResponse:
        # Labels are ignored here, as in TF Serving's GetModelStatusImpl: a version number or all versions.
        manager = self.registry.models.get(spec.name)
        states = _states(manager) if manager is not None else {}
        if spec.HasField("version"):
            states = {v: s for v, s in states.items() if v == spec.version.value}
            if not states:
                raise RequestError(
                    grpc.StatusCode.NOT_FOUND, f"Could not find version {spec.version.value} of model {spec.name}"
                )
        if not states:
            raise RequestError(grpc.StatusCode.NOT_FOUND, f"Could not find any versions of model {spec.name}")
        response = get_model_status_pb2.GetModelStatusResponse()
        for version, state in sorted(states.items(), reverse=True):
            entry = response.model_version_status.add()
            entry.version = version
            entry.state = state
        return response


def _states(manager: VersionManager) -> dict[int, int]:
    state = get_model_status_pb2.ModelVersionStatus
    states = {version: state.END for version in manager.ended}
    states.update({version: state.AVAILABLE for version in manager.available})
    loading = manager.loading
    if loading is not None:
        states[loading] = state.LOADING
    return states


def _fill_spec(spec: model_pb2.ModelSpec, name: str, version: int, signature_name: str) -> None:
    spec.name = name
    spec.version.value = version
    if signature_name:
        spec.signature_name = signature_name


class RunningServer:
    """A started model server: its bound port, readiness wait and shutdown."""

    def __init__(
        self,
        server: grpc.Server,
        registry: ModelRegistry,
        health_servicer: health.HealthServicer,
        port: int,
        model_name: str,
    ) -> None:
        self._server = server
        self._health = health_servicer
        self.registry = registry
        self.model_name = model_name
        self.port = port

    @property
    def versions(self) -> VersionManager:
        """The version manager of the main model (`model_name`)."""
        return self.registry.models[self.model_name]

    def wait_until_serving(self, timeout: float) -> int:
        """Block until a version of the main model is served and return it; TimeoutError otherwise."""
        return self.versions.wait_for_version(timeout).version

    def stop(self, grace: float | None = None) -> None:
        """Refuse new requests, let in-flight ones finish for `grace` seconds, stop polling."""
        self._health.enter_graceful_shutdown()
        self._server.stop(grace).wait()
        self.registry.stop()


def _set_health(servicer: health.HealthServicer, serving: bool) -> None:
    status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    for service in ("", PREDICTION_SERVICE, MODEL_SERVICE):
        servicer.set(service, status)


def _on_change(servicer: health.HealthServicer, model_name: str, registry: ModelRegistry) -> None:
    """Health, and the served version as a metric: the `stable` label's, else the newest loaded."""
    _set_health(servicer, registry.serving())
    manager = registry.models.get(model_name)
    newest = manager.current.version if manager is not None and manager.current is not None else 0
    metrics.MODEL_VERSION.labels(model_name).set(registry.labels.get(model_name, {}).get("stable", newest))


def start_server(
    model_base: Path,
    model_name: str,
    port: int,
    host: str = "127.0.0.1",
    poll_seconds: float = 1.0,
    max_workers: int = 8,
    *,
    model_config_file: Path | None = None,
    config_poll_seconds: float = 0.0,
    allow_labels_for_unavailable: bool = False,
    base_override: Path | None = None,
    max_batch: int = MAX_BATCH,
    loader: Callable[[Path, int], LoadedVersion] = load_version,
) -> RunningServer:
    """Bind `host:port` (0 picks a free port) and serve `model_base` as `model_name`, or the models
    of a TF Serving model config file (`model_name` then names the one `versions` reports on).
    `loader` loads one version folder (tests pass a wrapper around `load_version`).

    Returns at once; versions load in the background and health reports NOT_SERVING until every
    model has one. ConfigError if the config file is unusable, as TF Serving fails to start then.
    """
    health_servicer = health.HealthServicer()
    _set_health(health_servicer, serving=False)
    registry = ModelRegistry(
        poll_seconds,
        loader=loader,
        allow_labels_for_unavailable=allow_labels_for_unavailable,
        base_overrides={model_name: base_override} if base_override is not None else None,
        on_change=lambda: _on_change(health_servicer, model_name, registry),
    )
    if model_config_file is None:
        registry.apply(single_model(model_name, model_base))
    else:
        registry.apply(entries(read(model_config_file)))
        if model_name not in registry.models:
            registry.stop()
            raise ConfigError(grpc.StatusCode.NOT_FOUND, f"{model_config_file} does not list model '{model_name}'")
        registry.watch(model_config_file, config_poll_seconds)
    options = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers, thread_name_prefix="modelserver"), options=options)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionServicer(registry, max_batch), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(registry), server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError as error:  # grpc raises on a busy or invalid address in recent versions
        registry.stop()
        raise OSError(f"cannot bind the model server to {host}:{port}: {error}") from error
    if bound == 0:  # older grpc versions report failure this way
        registry.stop()
        raise OSError(f"cannot bind the model server to {host}:{port}")
    server.start()
    source = model_config_file or model_base
    log.info("model server listening on %s:%d, serving %s from %s", host, bound, sorted(registry.models), source)
    return RunningServer(server, registry, health_servicer, bound, model_name)
