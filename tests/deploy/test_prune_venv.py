"""deploy/docker/prune_venv.py: what the classifier and model server images leave out."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from tests.deploy.conftest import ROOT

SCRIPT = ROOT / "deploy" / "docker" / "prune_venv.py"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("prune_venv", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_classifier_drops_only_what_tensorflow_alone_needs() -> None:
    dropped = load().only_through(ROOT / "uv.lock", "emostream-classifier", "tensorflow")
    assert {"keras", "libclang", "h5py"} <= dropped
    # What the classifier uses itself, directly or through another package, stays.
    assert not dropped & {"tensorflow", "tensorflow-serving-api", "grpcio", "protobuf", "numpy", "redis", "emostream"}


def test_keep_protos_leaves_an_importable_package_of_pb2_modules(tmp_path: Path) -> None:
    site = tmp_path / "lib" / "python3.11" / "site-packages"
    package = site / "fakeflow"
    (package / "core" / "framework").mkdir(parents=True)
    (package / "python" / "ops").mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('the whole library would load')\n")
    (package / "core" / "framework" / "tensor_pb2.py").write_text(
        "from fakeflow.core.framework import types_pb2\nX = 1\n"
    )
    (package / "core" / "framework" / "types_pb2.py").write_text("Y = 2\n")
    (package / "python" / "ops" / "math.py").write_text("Z = 3\n")
    (package / "libbig.so").write_bytes(b"\0" * 1024)
    assert load().keep_protos(package) == 2
    assert not (package / "python").exists() and not (package / "libbig.so").exists()
    check = "import fakeflow.core.framework.tensor_pb2 as t; print(t.X)"
    done = subprocess.run([sys.executable, "-c", check], cwd=site, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "1"
