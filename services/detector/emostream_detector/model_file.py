"""Obtain MediaPipe's short-range face detector model, check its sha256, and cache it.

The official URL comes first; where it cannot be reached, the same model is
taken out of the mediapipe==0.10.14 wheel on PyPI (newer wheels ship none).
The file is never committed: it is third-party and fetched at setup.
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
from pathlib import Path

FILE_NAME = "face_detection_short_range.tflite"
OFFICIAL_URL = (
    "https://storage.googleapis.com/mediapipe-models/face_detector/"
    "blaze_face_short_range/float16/latest/blaze_face_short_range.tflite"
)
PYPI_SIMPLE = "https://pypi.org/simple/mediapipe/"
WHEEL_VERSION = "0.10.14"
WHEEL_MEMBER = "mediapipe/modules/face_detection/face_detection_short_range.tflite"
KNOWN_SHA256 = {
    "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8",  # mediapipe 0.10.14 wheel
    "b4578f35940bf5a1a655214a1cce5cab13eba73c1297cd78e1a04c2380b0152f",  # official Tasks model
}


class ModelFetchError(RuntimeError):
    """Neither source gave a file with a known checksum."""


def default_path() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "emostream" / FILE_NAME


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _get(url: str, timeout_s: float, accept: str | None = None) -> bytes:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        data: bytes = response.read()
    return data


def _from_official(timeout_s: float) -> bytes:
    return _get(OFFICIAL_URL, timeout_s)


def _from_wheel(timeout_s: float) -> bytes:
    index = json.loads(_get(PYPI_SIMPLE, timeout_s, accept="application/vnd.pypi.simple.v1+json"))
    wheels = [
        f
        for f in index["files"]
        if f["filename"].startswith(f"mediapipe-{WHEEL_VERSION}-") and f["filename"].endswith(".whl")
    ]
    if not wheels:
        raise ModelFetchError(f"PyPI lists no mediapipe {WHEEL_VERSION} wheel")
    wheel = min(wheels, key=lambda f: int(f.get("size") or 1 << 40))  # any platform holds the same model
    data = _get(wheel["url"], timeout_s * 10)
    if sha256(data) != wheel["hashes"]["sha256"]:
        raise ModelFetchError(f"{wheel['filename']}: download does not match PyPI's sha256")
    with tempfile.TemporaryFile() as handle:
        handle.write(data)
        with zipfile.ZipFile(handle) as archive:
            return archive.read(WHEEL_MEMBER)


def fetch(dest: Path, timeout_s: float = 15.0) -> Path:
    """Return `dest`, downloading and verifying the model first unless a verified copy is there."""
    if dest.is_file() and sha256(dest.read_bytes()) in KNOWN_SHA256:
        return dest
    failures: list[str] = []
    for name, source in (("official URL", _from_official), (f"mediapipe {WHEEL_VERSION} wheel", _from_wheel)):
        try:
            data = source(timeout_s)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, ModelFetchError) as error:
            failures.append(f"{name}: {error}")
            continue
        if sha256(data) not in KNOWN_SHA256:
            failures.append(f"{name}: unexpected sha256 {sha256(data)}")
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_suffix(".partial")
        partial.write_bytes(data)
        partial.replace(dest)
        return dest
    raise ModelFetchError("could not obtain the face detector model: " + "; ".join(failures))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="emostream fetch-detector-model", description=__doc__)
    parser.add_argument("--dest", type=Path, default=default_path(), help="where to cache the model")
    args = parser.parse_args(argv)
    try:
        path = fetch(args.dest)
    except ModelFetchError as error:
        print(f"emostream fetch-detector-model: {error}", file=sys.stderr)
        return 1
    print(path)
    return 0
