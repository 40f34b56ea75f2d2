"""What this CPU computes natively, read from /proc/cpuinfo (Linux; elsewhere nothing is assumed)."""

from __future__ import annotations

from pathlib import Path

BFLOAT16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    return frozenset(flag for line in text.splitlines() if line.startswith("flags") for flag in line.split()[2:])


def computes_bfloat16(flags: frozenset[str] | None = None) -> bool:
    """AVX512-BF16 or AMX: bfloat16 is native, so it is faster than float32; elsewhere it is emulated and slower."""
    present = cpu_flags() if flags is None else flags
    return any(flag in present for flag in BFLOAT16_FLAGS)
