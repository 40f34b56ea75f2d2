"""The serving side's batch limit, read from the file TF Serving reads it from, so it is set in one place."""

from __future__ import annotations

import re
from pathlib import Path

from emostream.errors import EmostreamError

# BatchingParameters text proto (deploy/tfserving/batching.config): `max_batch_size { value: 64 }`.
_MAX_BATCH = re.compile(r"^\s*max_batch_size\s*:?\s*\{\s*value\s*:\s*(\d+)\s*\}", re.MULTILINE)


class BatchingConfigError(EmostreamError, ValueError):
    """The batching parameters file cannot be read or names no max_batch_size."""


def max_batch_size(path: Path) -> int:
    """TF Serving's `max_batch_size` in a batching parameters file (--batching_parameters_file)."""
    try:
        text = path.read_text()
    except OSError as error:
        raise BatchingConfigError(f"cannot read the batching parameters file {path}: {error.strerror}") from None
    text = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    found = _MAX_BATCH.findall(text)
    if len(found) != 1:
        raise BatchingConfigError(f"{path} sets max_batch_size {len(found)} times, expected once")
    return int(found[0])


def batch_size_problem(batch_size: int, batching_config: Path | None) -> str | None:
    """Why `batch_size` cannot be used against this serving side, or None when it can.

    TF Serving rejects a request with more examples than max_batch_size (INVALID_ARGUMENT), and the
    classifier would set the whole batch aside as invalid.
    """
    if batching_config is None:
        return None
    try:
        limit = max_batch_size(batching_config)
    except BatchingConfigError as error:
        return str(error)
    if batch_size > limit:
        return (
            f"CLASSIFIER_BATCH_SIZE {batch_size} exceeds max_batch_size {limit} in {batching_config}, "
            "which TF Serving enforces: lower it or raise max_batch_size there"
        )
    return None
