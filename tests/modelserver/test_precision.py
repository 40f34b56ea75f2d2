"""Serving precision: float32 models rewritten to bfloat16 where the CPU computes it natively."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from emostream_modelserver import precision
from emostream_modelserver.main import main
from emostream_trainer.evaluate_command import saved_model_predictor

from emostream.cpu import computes_bfloat16, cpu_flags
from tests.helpers.tiny_model import synthetic_faces
from tests.modelserver.conftest import server_process


def test_auto_is_bfloat16_exactly_where_the_cpu_computes_it() -> None:
    assert precision.resolve("auto", native_bfloat16=True) == "bfloat16"
    assert precision.resolve("auto", native_bfloat16=False) == "float32"
    assert precision.resolve("float32", native_bfloat16=True) == "float32"
    assert precision.resolve("bfloat16", native_bfloat16=True) == "bfloat16"
    with pytest.raises(precision.PrecisionError, match="AVX512-BF16 or AMX"):
        precision.resolve("bfloat16", native_bfloat16=False)
    with pytest.raises(precision.PrecisionError, match="int8 needs runtime litert"):
        precision.resolve("int8", native_bfloat16=True)


def test_cpu_flags_come_from_cpuinfo_and_name_bfloat16_support(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 amx_bf16\n\nprocessor\t: 1\nflags\t\t: fpu avx2\n")
    flags = cpu_flags(cpuinfo)
    assert {"fpu", "avx2", "amx_bf16"} <= flags and ":" not in flags
    assert computes_bfloat16(flags)
    assert not computes_bfloat16(frozenset({"avx2", "avx512f"}))
    assert cpu_flags(tmp_path / "absent") == frozenset()


def test_serve_model_refuses_bfloat16_on_a_cpu_without_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--precision", "bfloat16", "--port", "0"], native_bfloat16=False) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "precision bfloat16" in error


def test_tensorflow_in_auto_precision_answers_as_the_float32_model_does(model_base: Path, tmp_path: Path) -> None:
    """Its own process, since the rewrite is process-wide: bfloat16 on this CPU if it has it, else float32."""
    log = tmp_path / "server.log"
    faces = np.concatenate([synthetic_faces(i, 4, seed=60 + i) for i in range(3)])
    with server_process(model_base, log, "--runtime", "tensorflow", "--precision", "auto") as (client, _):
        served = client.predict(faces).probabilities
    expected = saved_model_predictor(model_base / "1")(faces)
    np.testing.assert_allclose(served, expected, atol=0.02)  # bfloat16 keeps ~3 significant digits
    np.testing.assert_array_equal(served.argmax(axis=1), expected.argmax(axis=1))
    assert f"computing with tensorflow in {'bfloat16' if computes_bfloat16() else 'float32'}" in log.read_text()
