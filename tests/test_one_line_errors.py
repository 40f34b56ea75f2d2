"""Every command answers a bad setting, source, address or argument with one line naming it, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(300)
# Lines TensorFlow and MediaPipe's C++ logging prints while loading, before our code runs.
LIBRARY_NOISE = ("WARNING: All log messages before absl", "I0000", "W0000", "E0000")


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        (["events"], {"EMOSTREAM_REDIS_URL": "garbage"}, "invalid setting --redis-url / EMOSTREAM_REDIS_URL: scheme"),
        (["capture"], {"CAPTURE_SOURCES": "notjson"}, "invalid setting --sources / CAPTURE_SOURCES: not valid JSON"),
        (["capture", "/nonexistent.mp4"], {}, "source '/nonexistent.mp4': no such file or folder"),
        (["up", "--detectors", "many"], {}, "invalid setting --detectors / UP_DETECTORS"),
        (["health", "nothing"], {}, "argument service: invalid choice"),
        (["train", "--epochs", "abc", "data"], {}, "argument --epochs: invalid int value: 'abc'"),
        (["evaluate"], {}, "the following arguments are required"),
        (["deploy", "frob"], {}, "argument command: invalid choice: 'frob'"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_one_line(argv: list[str], env: dict[str, str], expected: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "emostream.cli", *argv],
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env},
        capture_output=True,
        text=True,
        timeout=240,
    )
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith(LIBRARY_NOISE)]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert len(lines) == 1, result.stderr[-3000:]
    assert lines[0].startswith(f"emostream {argv[0]}"), lines[0]
    assert expected in lines[0]
    assert result.returncode == 2
