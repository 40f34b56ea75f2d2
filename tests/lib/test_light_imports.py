"""Processes that only speak TensorFlow's protos load them without TensorFlow's runtime."""

from __future__ import annotations

import json
import subprocess
import sys

CODE = """
import json
import sys
import numpy as np
from emostream.light_imports import tensorflow_protos_only
assert tensorflow_protos_only()
assert not tensorflow_protos_only()  # once is enough
from emostream_serving.tensors import to_array
from emostream_serving.tf_serving import crops_tensor
import mediapipe  # offered TensorFlow for its doc decorators: it must not load the runtime either
crops = np.arange(2 * 48 * 48, dtype=np.uint8).reshape(2, 48, 48, 1)
print(np.array_equal(to_array(crops_tensor(crops)), crops))
print(json.dumps(sorted({m.split(".")[1] for m in sys.modules if m.startswith("tensorflow.")})))
"""


def test_the_classifier_protos_round_trip_without_the_tensorflow_runtime() -> None:
    result = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    same, packages = result.stdout.splitlines()[-2:]
    assert same == "True"
    assert "core" in json.loads(packages)  # the protos
    assert "python" not in json.loads(packages)  # the runtime
