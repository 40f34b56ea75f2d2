"""Serving precision: float32, int8 weights (LiteRT's copy), or float32 SavedModels rewritten to bfloat16
at load where the CPU computes it natively.

The bfloat16 rewrite is TensorFlow's grappler pass `auto_mixed_precision_onednn_bfloat16`, the one TF Serving
turns on with `--mixed_precision=bfloat16`. The exported model stays float32, so one
artifact serves every CPU; on an AMX CPU the rewrite makes it several times faster.
"""

from __future__ import annotations

from typing import Literal

from emostream.errors import EmostreamError

Precision = Literal["auto", "float32", "bfloat16", "int8"]


class PrecisionError(EmostreamError, ValueError):
    """A precision the runtime or the CPU cannot compute in (bfloat16 without AVX512-BF16 or AMX, say)."""


def resolve(choice: Precision, native_bfloat16: bool) -> Literal["float32", "bfloat16"]:
    """TensorFlow's precision: `auto` is bfloat16 exactly where the CPU computes it natively."""
    if choice == "int8":
        raise PrecisionError("precision int8 needs runtime litert (TensorFlow runs the float32 SavedModel)")
    if choice == "bfloat16" and not native_bfloat16:
        raise PrecisionError(
            "precision bfloat16 needs a CPU with AVX512-BF16 or AMX (no avx512_bf16 or amx_bf16 in /proc/cpuinfo); "
            "use auto or float32"
        )
    if choice == "auto":
        return "bfloat16" if native_bfloat16 else "float32"
    return choice


def rewrite_to_bfloat16() -> None:
    """Have TensorFlow rewrite every graph it loads from here on to bfloat16; call before any model loads."""
    import tensorflow as tf

    tf.config.optimizer.set_experimental_options({"auto_mixed_precision_onednn_bfloat16": True})
