"""Which runtime computes a version, and in which precision.

LiteRT (XNNPACK) runs one of the version's compiled copies without TensorFlow's runtime: a fraction
of its memory and start-up. Its int8 copy (int8 weights, activations quantized per face) is the
default everywhere: on a 2-core AVX512-BF16 EPYC it took a quarter of the float32 copy's time per face,
and half of TensorFlow's bfloat16 rewrite's (bench/model_latency.py). TensorFlow runs the SavedModel
itself and is the one that can rewrite it to bfloat16 (AVX512-BF16, AMX).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

from emostream_modelserver.precision import Precision, PrecisionError, resolve

Runtime = Literal["auto", "litert", "tensorflow"]


@dataclass(frozen=True)
class Compute:
    """The resolved choice: the runtime every version loads with, and its precision."""

    runtime: Literal["litert", "tensorflow"]
    precision: Literal["float32", "bfloat16", "int8"]


SAVED_MODEL = Compute("tensorflow", "float32")
"""The SavedModel as TensorFlow runs it: what in-process callers (tools, tests) load unless told."""


def choose(runtime: Runtime, precision: Precision, native_bfloat16: bool) -> Compute:
    """LiteRT's int8 copy unless asked otherwise; bfloat16 means TensorFlow, and TensorFlow's `auto`
    precision is bfloat16 where the CPU computes it natively."""
    if runtime == "tensorflow" or (runtime == "auto" and precision == "bfloat16"):
        return Compute("tensorflow", resolve(precision, native_bfloat16))
    if precision == "bfloat16":
        raise PrecisionError("precision bfloat16 needs runtime tensorflow (LiteRT computes in float32 or int8)")
    return Compute("litert", "float32" if precision == "float32" else "int8")


def usable_cores() -> int:
    """CPUs this process may run on (its affinity, as a container's cpuset limits it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
