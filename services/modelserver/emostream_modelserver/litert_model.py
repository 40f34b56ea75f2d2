"""Run a version's LiteRT copy (assets.extra/model.tflite) with XNNPACK on the CPU, without TensorFlow."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import grpc
import numpy as np

from emostream import model_repository as repository
from emostream.model_repository import INPUT_KEY, LITERT_MODEL, LITERT_RECORD, OUTPUT_KEY, SIGNATURE_NAME
from emostream_modelserver.versions import ModelLoadError, ModelRunError

COMPILE_HINT = "`emostream deploy compile {version}` writes it"


class LiteRTModel:
    """One interpreter per version; requests take turns, and XNNPACK spreads each over `threads` cores."""

    def __init__(self, model: Path, threads: int) -> None:
        from ai_edge_litert.interpreter import Interpreter  # imported here: only this runtime needs it

        try:
            self._interpreter = Interpreter(model_path=str(model), num_threads=threads)
            signatures = self._interpreter.get_signature_list()
        except (RuntimeError, ValueError) as error:
            raise ModelLoadError(f"{model}: not a usable LiteRT model: {_first_line(error)}") from None
        found = signatures.get(SIGNATURE_NAME)
        if found is None or found["inputs"] != [INPUT_KEY] or OUTPUT_KEY not in found["outputs"]:
            wanted = f"{INPUT_KEY} -> {OUTPUT_KEY}"
            raise ModelLoadError(f"{model}: its '{SIGNATURE_NAME}' signature is {found}, not {wanted}")
        self._runner = self._interpreter.get_signature_runner(SIGNATURE_NAME)
        self._turn = threading.Lock()

    def __call__(self, image: np.ndarray) -> dict[str, np.ndarray]:
        with self._turn:  # an interpreter is not thread-safe; XNNPACK already uses every core it was given
            try:
                outputs = self._runner(**{INPUT_KEY: image})
            except (RuntimeError, ValueError) as error:
                raise ModelRunError(grpc.StatusCode.INTERNAL, _first_line(error)) from None
            return {name: np.array(value, copy=True) for name, value in outputs.items()}


def load(folder: Path, threads: int) -> LiteRTModel:
    """The version's LiteRT copy, if it was compiled from exactly this SavedModel; ModelLoadError otherwise."""
    model, record = folder / LITERT_MODEL, folder / LITERT_RECORD
    hint = COMPILE_HINT.format(version=folder.name)
    if not model.is_file() or not record.is_file():
        raise ModelLoadError(f"{folder} has no LiteRT copy ({LITERT_MODEL}); {hint}, or serve with runtime tensorflow")
    try:
        source = json.loads(record.read_text()).get("source_digest")
    except (OSError, ValueError, AttributeError) as error:
        raise ModelLoadError(f"{record}: not a readable compile record: {_first_line(error)}; {hint}") from None
    if source != repository.saved_model_digest(folder):
        raise ModelLoadError(f"{folder}: its LiteRT copy was compiled from another SavedModel; {hint}")
    return LiteRTModel(model, threads)


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
