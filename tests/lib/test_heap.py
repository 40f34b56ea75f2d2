"""Frame-sized buffers are served from memory the process already has, not from fresh pages."""

from __future__ import annotations

import subprocess
import sys

# A library may fix glibc's threshold at its default (MediaPipe's import did, in the detector), which
# stops glibc from raising it: every 1 MB buffer is then a fresh mapping, 256 page faults when filled.
CODE = """
import ctypes, resource, sys
import numpy as np
from emostream.heap import M_MMAP_THRESHOLD, keep_freed_memory
ctypes.CDLL(None).mallopt(M_MMAP_THRESHOLD, 128 * 1024)
if sys.argv[1] == "keep":
    assert keep_freed_memory()
np.ones(1 << 20, np.uint8)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(100):
    np.ones(1 << 20, np.uint8)
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 100)
"""


def faults_per_buffer(mode: str) -> float:
    result = subprocess.run([sys.executable, "-c", CODE, mode], capture_output=True, text=True, check=True)
    return float(result.stdout)


def test_freed_buffers_are_reused_without_page_faults() -> None:
    assert faults_per_buffer("default") > 100  # the condition this guards against, reproduced
    assert faults_per_buffer("keep") < 5
