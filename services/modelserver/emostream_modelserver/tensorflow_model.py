"""Run a version's SavedModel with TensorFlow itself: the reference runtime, and bfloat16 where the CPU has it."""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import tensorflow as tf

from emostream.model_repository import INPUT_KEY, SIGNATURE_NAME
from emostream_modelserver.versions import ModelRunError


class TensorFlowModel:
    """serving_default of a loaded SavedModel; TensorFlow runs concurrent calls itself."""

    def __init__(self, folder: Path) -> None:
        self._module = tf.saved_model.load(str(folder))  # its variables live as long as this object
        self._signature = self._module.signatures[SIGNATURE_NAME]

    def __call__(self, image: np.ndarray) -> dict[str, np.ndarray]:
        try:
            outputs = self._signature(**{INPUT_KEY: tf.constant(image, dtype=tf.uint8)})
        except tf.errors.OpError as error:  # TF Serving answers with the session's own status code
            raise ModelRunError(_grpc_code(error), _op_message(error)) from None
        return {name: value.numpy() for name, value in outputs.items()}


def load(folder: Path) -> TensorFlowModel:
    return TensorFlowModel(folder)


def _op_message(error: tf.errors.OpError, limit: int = 300) -> str:
    """The line of TF's multi-line error that says what went wrong, without graph node listings."""
    noise = ("Graph execution error", "Detected at node", "[[", "Traceback", "File ")
    lines = [line.strip() for line in str(error.message).splitlines()]
    useful = [line for line in lines if line and not line.startswith(noise)]
    return (useful[-1] if useful else type(error).__name__)[:limit]


def _grpc_code(error: tf.errors.OpError) -> grpc.StatusCode:
    """TensorFlow's error codes are gRPC's, number for number."""
    by_number = {code.value[0]: code for code in grpc.StatusCode}
    return by_number.get(error.error_code, grpc.StatusCode.INTERNAL)
