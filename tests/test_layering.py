"""Layers point one way: import-linter's contracts in pyproject.toml hold, and `up` loads no service."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("capture", "detector", "classifier", "modelserver", "tracker", "viewer", "trainer", "serving")
HEAVY = {"tensorflow", "tensorflow_serving", "mediapipe", "cv2", *(f"emostream_{s}" for s in SERVICES)}


def test_the_import_contracts_are_kept() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout
    assert "the shared library imports no service" in result.stdout


def test_the_launcher_and_the_command_load_no_service_and_no_tensorflow() -> None:
    code = "import sys, emostream.cli, emostream.launcher; print(' '.join(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    loaded = {name.split(".")[0] for name in result.stdout.split()}
    assert "emostream" in loaded
    assert loaded & HEAVY == set()
