"""The one TensorFlow Serving gRPC client: Predict, model status, readiness, and version labels."""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import grpc
import numpy as np
from tensorflow.core.framework import tensor_pb2
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from emostream import model_repository as repository
from emostream.errors import EmostreamError
from emostream.model_repository import INPUT_KEY, OUTPUT_KEY, SIGNATURE_NAME
from emostream.model_repository import INPUT_SHAPE as CROP_SHAPE
from emostream_serving.tensors import content_proto, to_array

MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class ServingError(EmostreamError, RuntimeError):
    """A TF Serving call failed; `code` is the gRPC status (None for a malformed response)."""

    def __init__(self, message: str, code: grpc.StatusCode | None = None, details: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.details = details


class ServingNotReady(ServingError):
    """No model version became AVAILABLE before the deadline."""


@dataclass(frozen=True)
class Prediction:
    """Class probabilities [N,K] float32 and the model version that produced them."""

    probabilities: np.ndarray
    model_version: int


def crops_tensor(crops: np.ndarray) -> tensor_pb2.TensorProto:
    """uint8 [N,48,48,1] crops as a TensorProto (raw bytes: the compact encoding TF Serving reads fastest)."""
    if crops.dtype != np.uint8:
        raise ValueError(f"crops must be uint8, got {crops.dtype}")
    if crops.ndim != 4 or crops.shape[1:] != CROP_SHAPE or crops.shape[0] < 1:
        raise ValueError(f"crops must have shape [N>=1,48,48,1], got {list(crops.shape)}")
    return content_proto(crops)


def _rpc_error(what: str, error: grpc.RpcError) -> ServingError:
    code: grpc.StatusCode | None = error.code() if isinstance(error, grpc.Call) else None
    details = (error.details() if isinstance(error, grpc.Call) else str(error)) or ""
    name = code.name if code is not None else "UNKNOWN"
    return ServingError(f"{what} failed: {name}: {details}", code, details)


class ServingClient:
    """A gRPC client for one model on TF Serving (or emostream's model server)."""

    def __init__(
        self,
        target: str,
        model_name: str,
        timeout_seconds: float = 10.0,
        *,
        signature_name: str = SIGNATURE_NAME,
        version_label: str = "",
        channel_options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        self.target = target
        self.model_name = model_name
        self.timeout_seconds = timeout_seconds
        self.signature_name = signature_name
        self.version_label = version_label
        options = [
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            *channel_options,
        ]
        self._channel = grpc.insecure_channel(target, options=options)
        self._predict = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)

    def predict(self, crops: np.ndarray) -> Prediction:
        """Probabilities for uint8 crops [N,48,48,1]; raises ServingError on any failure."""
        request = predict_pb2.PredictRequest()
        request.model_spec.name = self.model_name
        request.model_spec.signature_name = self.signature_name
        if self.version_label:  # else the newest loaded version, as TF Serving answers a spec without one
            request.model_spec.version_label = self.version_label
        request.inputs[INPUT_KEY].CopyFrom(crops_tensor(crops))
        try:
            response = self._predict.Predict(request, timeout=self.timeout_seconds)
        except grpc.RpcError as error:
            raise _rpc_error(f"Predict on {self.target} {self.describe()}", error) from error
        return self._prediction(response, len(crops))

    def describe(self) -> str:
        """ "model 'emotion'", with the label it asks for if any."""
        label = f" label '{self.version_label}'" if self.version_label else ""
        return f"model '{self.model_name}'{label}"

    def _prediction(self, response: predict_pb2.PredictResponse, batch: int) -> Prediction:
        if OUTPUT_KEY not in response.outputs:
            raise ServingError(f"Predict response has no '{OUTPUT_KEY}' output (got {sorted(response.outputs)})")
        try:
            probabilities = to_array(response.outputs[OUTPUT_KEY]).astype(np.float32, copy=False)
        except ValueError as error:
            raise ServingError(f"Predict response '{OUTPUT_KEY}' is malformed: {error}") from error
        if probabilities.ndim != 2 or probabilities.shape[0] != batch:
            raise ServingError(
                f"Predict returned '{OUTPUT_KEY}' of shape {list(probabilities.shape)} for {batch} crops"
            )
        return Prediction(probabilities, int(response.model_spec.version.value))

    def available_versions(self) -> list[int]:
        """Versions AVAILABLE now, from GetModelStatus (newest first); ServingError if the call fails."""
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = self.model_name
        try:
            response = self._models.GetModelStatus(request, timeout=self.timeout_seconds)
        except grpc.RpcError as error:
            raise _rpc_error(f"GetModelStatus on {self.target} model '{self.model_name}'", error) from error
        available = get_model_status_pb2.ModelVersionStatus.AVAILABLE
        return sorted((int(s.version) for s in response.model_version_status if s.state == available), reverse=True)

    def model_version(self) -> int:
        """The newest AVAILABLE version, from GetModelStatus; ServingError if none is."""
        versions = self.available_versions()
        if not versions:
            raise ServingError(f"model '{self.model_name}' on {self.target} has no AVAILABLE version")
        return versions[0]

    def wait_ready(self, timeout: float) -> None:
        """Poll GetModelStatus until a version is AVAILABLE; ServingNotReady after `timeout` seconds.

        Model status, not grpc health, because real TF Serving does not implement grpc.health.v1.
        """
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while True:
            try:
                self.model_version()
                return
            except ServingError as error:
                last = str(error)
            if time.monotonic() >= deadline:
                raise ServingNotReady(
                    f"model '{self.model_name}' on {self.target} not ready after {timeout:.1f}s: {last}"
                )
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))

    def close(self) -> None:
        """Close the channel; the client is unusable afterwards."""
        self._channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def read_labels(model_base: Path, version: int) -> tuple[str, ...]:
    """Labels of `version`, in output order, from <base>/<version>/assets/labels.txt.

    TF Serving has no API for assets, so the classifier reads them from the shared model
    base path. Cached per version: a version folder never changes once published.
    """
    return _read_labels(Path(model_base).resolve(), version)


@functools.lru_cache(maxsize=32)
def _read_labels(model_base: Path, version: int) -> tuple[str, ...]:
    return repository.read_labels(repository.version_folder(model_base, version))


def unknown_label(error: ServingError) -> bool:
    """The server knows no such version label: a configuration state, not a bad batch."""
    return error.code == grpc.StatusCode.INVALID_ARGUMENT and error.details.startswith(
        "Unrecognized servable version label"
    )
