"""Compile a version's serving function for LiteRT, checked against the SavedModel it came from.

Two copies live in the version's assets.extra folder, which TF Serving ignores, so one version
folder serves both TF Serving and the local model server's LiteRT runtime: one in float32, and one
with int8 weights whose activations XNNPACK quantizes per face at run time (TensorFlow Lite's
dynamic-range quantization). The int8 copy needs no calibration data, ran four times faster on an
AVX-512 CPU (bench/model_latency.py), and labels 99.65% of FER-2013 validation faces as the
SavedModel does (bench/litert_agreement.py).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from emostream import model_repository as repository
from emostream.errors import EmostreamError
from emostream.model_repository import (
    INPUT_KEY,
    INPUT_SHAPE,
    LITERT_MODELS,
    LITERT_RECORD,
    OUTPUT_KEY,
    SIGNATURE_NAME,
    LitertPrecision,
)

log = logging.getLogger(__name__)

MAX_ABS_DIFFERENCE: dict[LitertPrecision, float] = {"float32": 1e-4, "int8": 0.02}
"""Largest probability each copy may differ by on the probe batch: float32 kernels differ in ~1e-7; the
int8 copies of the shipped versions by at most 0.005 there (0.022 over FER-2013 validation)."""


class CompileError(EmostreamError, RuntimeError):
    """A SavedModel cannot be compiled for LiteRT, or its copy answers differently."""


def probe_batch() -> np.ndarray:
    """Blank, saturated and noise crops: what both runtimes must agree on."""
    noise = np.random.default_rng(0).integers(0, 256, (6, *INPUT_SHAPE), dtype=np.uint8)
    return np.concatenate([np.zeros((1, *INPUT_SHAPE), np.uint8), np.full((1, *INPUT_SHAPE), 255, np.uint8), noise])


def convert(folder: Path, precision: LitertPrecision) -> bytes:
    """serving_default as a LiteRT flatbuffer (built-in ops only, so any LiteRT runtime runs it)."""
    try:
        converter = tf.lite.TFLiteConverter.from_saved_model(str(folder), signature_keys=[SIGNATURE_NAME])
        if precision == "int8":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]  # no representative data: dynamic range
        model: bytes = converter.convert()
    except Exception as error:  # the converter raises many types, all meaning "this graph does not convert"
        lines = str(error).strip().splitlines()
        reason = lines[0] if lines else type(error).__name__
        raise CompileError(f"{folder}: cannot compile for LiteRT: {reason}") from None
    return model


def difference(expected: np.ndarray, model: bytes) -> float:
    """Largest absolute difference between the SavedModel's probabilities and the copy's on `probe_batch`."""
    runner = Interpreter(model_content=model).get_signature_runner(SIGNATURE_NAME)  # the runtime that serves it
    got = runner(**{INPUT_KEY: probe_batch()})[OUTPUT_KEY]
    return float(np.max(np.abs(got - expected)))


def compile_version(folder: Path) -> dict[LitertPrecision, float]:
    """Write the version's LiteRT copies and their record; returns each copy's largest difference.

    CompileError if either copy does not convert or differs by more than MAX_ABS_DIFFERENCE allows.
    """
    signature = tf.saved_model.load(str(folder)).signatures[SIGNATURE_NAME]
    expected = signature(**{INPUT_KEY: tf.constant(probe_batch())})[OUTPUT_KEY].numpy()
    models: dict[LitertPrecision, bytes] = {}
    found: dict[LitertPrecision, float] = {}
    for precision, limit in MAX_ABS_DIFFERENCE.items():
        models[precision] = convert(folder, precision)
        found[precision] = difference(expected, models[precision])
        if not found[precision] <= limit:
            raise CompileError(
                f"{folder}: the {precision} LiteRT copy differs by {found[precision]:.2g} (at most {limit:g})"
            )
    record = {
        "source_digest": repository.saved_model_digest(folder),
        "max_abs_difference": found["float32"],
        "int8_max_abs_difference": found["int8"],
        "tensorflow": tf.__version__,
    }
    for precision, model in models.items():
        _write_atomically(folder / LITERT_MODELS[precision], model)
    # The record goes last: it vouches for the models, so a half-written copy is never taken.
    _write_atomically(folder / LITERT_RECORD, (json.dumps(record, indent=2) + "\n").encode())
    return found


def compiling(write: Callable[[Path], None]) -> Callable[[Path], None]:
    """A `write` for `repository.publish` that also compiles the LiteRT copy into the staged version.

    A SavedModel LiteRT cannot run is still published (TF Serving serves it); the line says so.
    """

    def write_and_compile(staging: Path) -> None:
        write(staging)
        try:
            compile_version(staging)
        except CompileError as error:
            log.warning("%s; the local model server serves this version only with runtime tensorflow", error)

    return write_and_compile


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as sink:
            sink.write(data)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
