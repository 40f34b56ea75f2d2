"""Numbered version folders under a TF Serving model base path; no TensorFlow, so `emostream deploy` starts fast."""

from __future__ import annotations

from pathlib import Path

LABELS_FILE = "labels.txt"
MODEL_CARD = "model_card.json"
RETIRED = ".retired"
"""Versions moved out of the base by hand (or by earlier deploy tools) live in `<base>/.retired/`,
which servers never read; their numbers stay taken."""


def numbered_versions(base: Path) -> list[int]:
    """Version folders under a TF Serving model base path, oldest first."""
    if not base.is_dir():
        return []
    return sorted(int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit())


def next_version(base: Path) -> int:
    """One past every version ever published here, retired ones included: servers never see a number twice."""
    return max([0, *numbered_versions(base), *numbered_versions(base / RETIRED)]) + 1
