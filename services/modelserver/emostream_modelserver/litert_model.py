"""Run a version's LiteRT copy (assets.extra/model[.int8].tflite) with XNNPACK on the CPU, without TensorFlow."""

from __future__ import annotations

import threading
from pathlib import Path

import grpc
import numpy as np

from emostream import model_repository as repository
from emostream.model_repository import INPUT_KEY, LITERT_MODELS, OUTPUT_KEY, SIGNATURE_NAME, LitertPrecision
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


def load(folder: Path, threads: int, precision: LitertPrecision) -> LiteRTModel:
    """The version's LiteRT copy in `precision`, if compiled from exactly this SavedModel; ModelLoadError otherwise."""
    problem = repository.litert_problem(folder, precision)
    if problem is not None:
        hint = COMPILE_HINT.format(version=folder.name)
        raise ModelLoadError(f"{problem}; {hint}, or serve with runtime tensorflow")
    return LiteRTModel(folder / LITERT_MODELS[precision], threads)


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
