"""Which runtime computes a version, and in which precision.

LiteRT (XNNPACK) runs the version's compiled copy without TensorFlow's runtime: a fraction of its
memory and start-up, and less CPU per face on AVX2 and AVX-512 CPUs. TensorFlow runs the
SavedModel itself and is the one that can rewrite it to bfloat16, which is faster where the CPU
computes bfloat16 natively (AVX512-BF16, AMX).
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
    precision: Literal["float32", "bfloat16"]


def choose(runtime: Runtime, precision: Precision, native_bfloat16: bool) -> Compute:
    """`auto` is TensorFlow in bfloat16 where the CPU computes it natively, else LiteRT in float32."""
    resolved = resolve(precision, native_bfloat16)
    if runtime == "auto":
        return Compute("tensorflow" if resolved == "bfloat16" else "litert", resolved)
    if runtime == "litert" and resolved == "bfloat16":
        if precision == "bfloat16":
            raise PrecisionError("precision bfloat16 needs runtime tensorflow (LiteRT computes in float32)")
        return Compute("litert", "float32")
    return Compute(runtime, resolved)


def usable_cores() -> int:
    """CPUs this process may run on (its affinity, as a container's cpuset limits it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
