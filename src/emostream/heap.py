"""Keep freed memory in the process heap, so frame-sized buffers do not fault in fresh pages each time.

Every frame allocates buffers of hundreds of kilobytes (a decoded 640x360 frame is 675 KB). glibc
serves blocks that large with mmap, or trims them off the heap top when freed, unless its dynamic
threshold has risen above them; whether it has depends on what the process allocated before (it
differed with one import in the detector). A fresh mapping costs one page fault per 4 KB page:
about 300 faults and 1 ms of CPU per decoded frame. Fixed thresholds make it the same every run:
blocks up to MMAP_THRESHOLD come from the heap, and up to TRIM_THRESHOLD of free heap stays mapped
for the next frame.
"""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
"""mallopt parameters, from glibc's malloc.h."""

MMAP_THRESHOLD = 32 * 1024 * 1024
"""glibc's own upper bound for its dynamic threshold on 64-bit: a 4K BGR frame (24 MB) stays in the heap."""
TRIM_THRESHOLD = 64 * 1024 * 1024


def keep_freed_memory() -> bool:
    """Set the thresholds for this process; False where the C library has no mallopt (musl, macOS)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
