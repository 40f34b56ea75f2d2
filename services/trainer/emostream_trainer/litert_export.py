"""Compile a version's serving function for LiteRT, checked against the SavedModel it came from.

The copy lives in the version's assets.extra folder, which TF Serving ignores, so one version
folder serves both TF Serving and the local model server's LiteRT runtime.
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
from emostream.model_repository import INPUT_KEY, INPUT_SHAPE, LITERT_MODEL, LITERT_RECORD, OUTPUT_KEY, SIGNATURE_NAME

log = logging.getLogger(__name__)

MAX_ABS_DIFFERENCE = 1e-4
"""Largest probability the LiteRT copy may differ by on the probe batch (float32 kernels differ in ~1e-7)."""


class CompileError(EmostreamError, RuntimeError):
    """A SavedModel cannot be compiled for LiteRT, or its copy answers differently."""


def probe_batch() -> np.ndarray:
    """Blank, saturated and noise crops: what both runtimes must agree on."""
    noise = np.random.default_rng(0).integers(0, 256, (6, *INPUT_SHAPE), dtype=np.uint8)
    return np.concatenate([np.zeros((1, *INPUT_SHAPE), np.uint8), np.full((1, *INPUT_SHAPE), 255, np.uint8), noise])


def convert(folder: Path) -> bytes:
    """serving_default as a float32 LiteRT flatbuffer (built-in ops only, so any LiteRT runtime runs it)."""
    try:
        converter = tf.lite.TFLiteConverter.from_saved_model(str(folder), signature_keys=[SIGNATURE_NAME])
        model: bytes = converter.convert()
    except Exception as error:  # the converter raises many types, all meaning "this graph does not convert"
        lines = str(error).strip().splitlines()
        reason = lines[0] if lines else type(error).__name__
        raise CompileError(f"{folder}: cannot compile for LiteRT: {reason}") from None
    return model


def difference(folder: Path, model: bytes) -> float:
    """Largest absolute difference between the SavedModel's and the copy's probabilities on `probe_batch`."""
    batch = probe_batch()
    expected = tf.saved_model.load(str(folder)).signatures[SIGNATURE_NAME](**{INPUT_KEY: tf.constant(batch)})
    runner = Interpreter(model_content=model).get_signature_runner(SIGNATURE_NAME)  # the runtime that serves it
    got = runner(**{INPUT_KEY: batch})[OUTPUT_KEY]
    return float(np.max(np.abs(got - expected[OUTPUT_KEY].numpy())))


def compile_version(folder: Path) -> float:
    """Write the version's LiteRT copy and its record; returns the largest difference found. CompileError if off."""
    model = convert(folder)
    found = difference(folder, model)
    if not found <= MAX_ABS_DIFFERENCE:
        raise CompileError(f"{folder}: the LiteRT copy differs by {found:.2g} (at most {MAX_ABS_DIFFERENCE:g})")
    digest = repository.saved_model_digest(folder)
    record = {"source_digest": digest, "max_abs_difference": found, "tensorflow": tf.__version__}
    _write_atomically(folder / LITERT_MODEL, model)
    # The record goes last: it vouches for the model, so a half-written copy is never taken.
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
