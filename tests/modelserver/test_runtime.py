"""The LiteRT runtime: a version's compiled copy, served without TensorFlow's runtime, or refused by name."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from emostream_modelserver.precision import PrecisionError
from emostream_modelserver.runtime import Compute, choose
from emostream_modelserver.server import start_server
from emostream_modelserver.versions import LoadedVersion, ModelLoadError, load_version
from emostream_serving.tf_serving import ServingClient
from emostream_trainer.evaluate_command import saved_model_predictor
from emostream_trainer.litert_export import MAX_ABS_DIFFERENCE

from emostream.model_repository import LITERT_INT8_MODEL, LITERT_RECORD
from tests.helpers.tiny_model import export_tiny_version, synthetic_faces
from tests.helpers.waiting import wait_for
from tests.modelserver.conftest import MODEL_NAME, POLL_SECONDS, server_process

LITERT_FLOAT32 = Compute("litert", "float32")
LITERT_INT8 = Compute("litert", "int8")
TENSORFLOW_RUNTIME_MB = 400
"""TensorFlow's runtime alone holds ~650 MB once imported; a LiteRT server stays far below."""


def test_auto_runs_the_int8_copy_on_every_cpu_and_bfloat16_means_tensorflow() -> None:
    for native in (False, True):
        assert choose("auto", "auto", native_bfloat16=native) == Compute("litert", "int8")
        assert choose("litert", "auto", native_bfloat16=native) == Compute("litert", "int8")
        assert choose("auto", "float32", native_bfloat16=native) == Compute("litert", "float32")
    assert choose("auto", "bfloat16", native_bfloat16=True) == Compute("tensorflow", "bfloat16")
    assert choose("tensorflow", "auto", native_bfloat16=True) == Compute("tensorflow", "bfloat16")
    assert choose("tensorflow", "auto", native_bfloat16=False) == Compute("tensorflow", "float32")
    with pytest.raises(PrecisionError, match="needs runtime tensorflow"):
        choose("litert", "bfloat16", native_bfloat16=True)
    with pytest.raises(PrecisionError, match="int8 needs runtime litert"):
        choose("tensorflow", "int8", native_bfloat16=True)


def test_the_float32_copy_answers_as_the_saved_model_does(model_base: Path) -> None:
    faces = np.concatenate([synthetic_faces(i, 5, seed=70 + i) for i in range(3)])
    loaded = load_version(model_base, 1, LITERT_FLOAT32, threads=2)
    assert loaded.runtime == "litert"
    np.testing.assert_allclose(
        loaded.predict(faces)["probabilities"], saved_model_predictor(model_base / "1")(faces), atol=1e-5
    )


def test_the_int8_copy_labels_as_the_saved_model_and_each_face_alone(model_base: Path) -> None:
    """Activations are quantized per face, so a face's scores do not depend on the faces batched with it."""
    faces = np.concatenate([synthetic_faces(i, 5, seed=90 + i) for i in range(3)])
    loaded = load_version(model_base, 1, LITERT_INT8, threads=2)
    together = loaded.predict(faces)["probabilities"]
    expected = saved_model_predictor(model_base / "1")(faces)
    np.testing.assert_allclose(together, expected, atol=MAX_ABS_DIFFERENCE["int8"])
    np.testing.assert_array_equal(together.argmax(axis=1), expected.argmax(axis=1))
    alone = np.concatenate([loaded.predict(faces[i : i + 1])["probabilities"] for i in range(len(faces))])
    np.testing.assert_array_equal(alone, together)
    assert MAX_ABS_DIFFERENCE["int8"] > 0 and not np.array_equal(together, expected)  # it is another computation


def test_a_version_without_a_copy_is_refused_with_the_command_that_writes_it(model_base: Path) -> None:
    (model_base / "1" / LITERT_INT8_MODEL).unlink()
    with pytest.raises(ModelLoadError, match=r"has no LiteRT copy .*int8.*`emostream deploy compile 1` writes it"):
        load_version(model_base, 1, LITERT_INT8)
    assert load_version(model_base, 1, LITERT_FLOAT32).runtime == "litert"  # the other copy is still good
    (model_base / "1" / LITERT_RECORD).unlink()
    with pytest.raises(ModelLoadError, match=r"has no LiteRT copy .*`emostream deploy compile 1` writes it"):
        load_version(model_base, 1, LITERT_FLOAT32)


def test_a_copy_of_another_saved_model_is_never_served(model_base: Path, tmp_path: Path) -> None:
    other = export_tiny_version(tmp_path / "other", 1, ("a", "b"))
    shutil.copy(other / LITERT_INT8_MODEL, model_base / "1" / LITERT_INT8_MODEL)
    shutil.copy(other / LITERT_RECORD, model_base / "1" / LITERT_RECORD)
    with pytest.raises(ModelLoadError, match="compiled from another SavedModel"):
        load_version(model_base, 1, LITERT_INT8)
    (model_base / "1" / LITERT_RECORD).write_text("{not json")
    with pytest.raises(ModelLoadError, match="not a readable compile record"):
        load_version(model_base, 1, LITERT_INT8)


def test_a_corrupt_copy_is_refused_in_one_line(model_base: Path) -> None:
    record = json.loads((model_base / "1" / LITERT_RECORD).read_text())
    (model_base / "1" / LITERT_INT8_MODEL).write_bytes(b"not a flatbuffer" * 10)
    (model_base / "1" / LITERT_RECORD).write_text(json.dumps(record))
    with pytest.raises(ModelLoadError, match="not a usable LiteRT model") as refused:
        load_version(model_base, 1, LITERT_INT8)
    assert "\n" not in str(refused.value)


def test_a_server_keeps_serving_when_a_new_version_has_no_copy(
    model_base: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def litert(base: Path, version: int) -> LoadedVersion:
        return load_version(base, version, LITERT_INT8)

    running = start_server(model_base, MODEL_NAME, port=0, poll_seconds=POLL_SECONDS, loader=litert)
    try:
        running.wait_until_serving(timeout=30)
        with caplog.at_level(logging.ERROR):
            second = export_tiny_version(tmp_path / "staging", 2)
            (second / LITERT_RECORD).unlink()
            second.rename(model_base / "2")  # appears whole, as a publish does
            wait_for(lambda: "cannot load model version 2" in caplog.text, 10, "version 2 refused")
        assert "`emostream deploy compile 2` writes it" in caplog.text
        with ServingClient(f"127.0.0.1:{running.port}", MODEL_NAME) as client:
            assert client.predict(synthetic_faces(0, 2, seed=3)).model_version == 1
    finally:
        running.stop(grace=0)


def test_a_litert_server_process_never_loads_tensorflows_runtime(model_base: Path, tmp_path: Path) -> None:
    faces = np.concatenate([synthetic_faces(i, 4, seed=80 + i) for i in range(3)])
    with server_process(model_base, tmp_path / "server.log", "--runtime", "litert") as (client, pid):
        served = client.predict(faces).probabilities
        status = Path(f"/proc/{pid}/status").read_text()
        peak_mb = int(next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1]) / 1024
    expected = saved_model_predictor(model_base / "1")(faces)
    np.testing.assert_allclose(served, expected, atol=MAX_ABS_DIFFERENCE["int8"])
    np.testing.assert_array_equal(served.argmax(axis=1), expected.argmax(axis=1))
    assert peak_mb < TENSORFLOW_RUNTIME_MB, f"peak {peak_mb:.0f} MB: TensorFlow's runtime was loaded"
    assert "computing with litert in int8" in (tmp_path / "server.log").read_text()
