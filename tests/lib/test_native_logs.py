"""Third-party native logs stay out of `up`'s output unless the log level asks for them."""

from __future__ import annotations

import subprocess
import sys

import pytest

from emostream.launcher import Children
from emostream.native_logs import chatter, third_party_log_env

# Lines TensorFlow 2.21, absl, MediaPipe and LiteRT print while the services start.
NATIVE = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1795862501.748101    9793 port.cc:153] oneDNN custom operations are on. You may see slightly",
    "I0000 00:00:1795862501.753083    9793 cudart_stub.cc:31] Could not find cuda drivers on your machine.",
    "E0000 00:00:1795862503.347690    9837 cuda_executor.cc:1309] failed call to cuInit: INTERNAL: CUDA error",
    "W0000 00:00:1795862503.1 9837 inference_feedback_manager.cc:114] Input tensor memory is not aligned",
    "To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild TensorFlow",
    "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
]
OWN = [
    "2026-11-28 10:50:47,123 classifier WARNING emostream.classifier: model server not answering; retrying",
    "emostream up: detector-1 ready (2.1s)",
    "Traceback (most recent call last):",
    '  File "x.py", line 1, in <module>',
    "emostream detect: cannot serve metrics on port 9100: [Errno 98] Address already in use",
]


def test_native_lines_are_chatter_and_our_own_are_not() -> None:
    assert [line for line in NATIVE if not chatter(line)] == []
    assert [line for line in OWN if chatter(line)] == []


def test_library_levels_follow_the_log_level() -> None:
    assert third_party_log_env("WARNING") == {"TF_CPP_MIN_LOG_LEVEL": "3", "GLOG_minloglevel": "3"}
    assert third_party_log_env("error") == {"TF_CPP_MIN_LOG_LEVEL": "3", "GLOG_minloglevel": "3"}
    assert third_party_log_env("INFO") == {"TF_CPP_MIN_LOG_LEVEL": "0", "GLOG_minloglevel": "0"}
    assert third_party_log_env("DEBUG") == {"TF_CPP_MIN_LOG_LEVEL": "0", "GLOG_minloglevel": "0"}


def stderr_of_a_child(level: str, capfd: pytest.CaptureFixture[str]) -> list[str]:
    """What a child that prints native chatter and its own lines leaves on our stderr at `level`."""
    lines = NATIVE + OWN
    code = f"import sys; sys.stderr.write({chr(10).join(lines)!r} + chr(10))"
    children = Children({"EMOSTREAM_LOG_LEVEL": level})
    process = children.start("talker", [sys.executable, "-c", code])
    assert process.wait(timeout=30) == 0
    children.stop()  # ends the relay once the pipe is drained
    return capfd.readouterr().err.splitlines()


def test_up_children_keep_their_own_lines_and_drop_native_chatter(capfd: pytest.CaptureFixture[str]) -> None:
    assert stderr_of_a_child("WARNING", capfd) == OWN


def test_up_children_show_everything_when_the_level_asks(capfd: pytest.CaptureFixture[str]) -> None:
    assert stderr_of_a_child("INFO", capfd) == NATIVE + OWN


def test_a_service_process_sets_the_library_levels_from_its_log_level() -> None:
    code = "import os, emostream.cli as cli; cli.main(['--help']); print(os.environ['GLOG_minloglevel'])"
    levels = {}
    for level in ("WARNING", "DEBUG"):
        env = {"EMOSTREAM_LOG_LEVEL": level, "PATH": "/usr/bin:/bin"}
        result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
        levels[level] = result.stdout.splitlines()[-1]
    assert levels == {"WARNING": "3", "DEBUG": "0"}
