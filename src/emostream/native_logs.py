"""Third-party native logs (TensorFlow, absl, MediaPipe, LiteRT): as quiet as the log level asks.

TensorFlow 2.21 and MediaPipe log through absl before anyone calls absl::InitializeLog, and such
lines go to stderr whatever TF_CPP_MIN_LOG_LEVEL says; so besides setting the levels that these
libraries do read, `emostream up` drops their lines from its children's stderr below INFO.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import IO

# absl/glog: "I0000 00:00:1795862501.748101    9793 port.cc:153] ...", then absl's pre-init notice,
# then LiteRT's own logger ("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.")
NATIVE_LINE = re.compile(
    r"^(?:[IWE]\d{4} \d\d:\d\d:[\d.]+\s+\d+ [\w.\-/]+:\d+\] "
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|To enable the following instructions: "  # the second line of TensorFlow's CPU feature notice
    r"|(?:INFO|WARNING|VERBOSE): )"
)
VERBOSE_LEVELS = frozenset({"DEBUG", "INFO"})


def verbose(level: str) -> bool:
    """True when `level` asks for third-party logs too."""
    return level.upper() in VERBOSE_LEVELS


def third_party_log_env(level: str) -> dict[str, str]:
    """Environment that sets TensorFlow's and MediaPipe's own log levels to match `level`."""
    threshold = "0" if verbose(level) else "3"  # 3: only fatal; their warnings and errors at start-up are noise
    return {"TF_CPP_MIN_LOG_LEVEL": threshold, "GLOG_minloglevel": threshold}


def chatter(line: str) -> bool:
    """True for a native library's log line (never for emostream's own, which start with a date)."""
    return NATIVE_LINE.match(line) is not None


def relay(source: IO[bytes], write: Callable[[bytes], object], keep: Callable[[str], bool]) -> threading.Thread:
    """Copy `source` line by line to `write` in a daemon thread, dropping lines `keep` refuses, until EOF."""

    def run() -> None:
        with source:
            for line in iter(source.readline, b""):
                if keep(line.decode(errors="replace")):
                    write(line)

    thread = threading.Thread(target=run, name="stderr-relay", daemon=True)
    thread.start()
    return thread
