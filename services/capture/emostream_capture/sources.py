"""Frame sources: webcams, video files, network streams and image folders, each parsed from one string.

A spec is `[camera_id=]spec` where spec is a webcam index (`0`, `webcam:0`), a video file, an
rtsp://, http:// or https:// URL (MJPEG over HTTP included, read by OpenCV's FFmpeg backend), or a
folder or glob of images. Every source yields `(seq, frame_bgr)` with seq the frame's index in the source.
"""

from __future__ import annotations

import glob
import logging
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol
from urllib.parse import urlsplit

import cv2
import numpy as np

from emostream.errors import EmostreamError

log = logging.getLogger("emostream.capture.sources")

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp"})
URL_SCHEMES = frozenset({"rtsp", "rtsps", "http", "https"})
CAMERA_ID = re.compile(r"^[A-Za-z0-9_.-]+$")
_NOT_ID_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")
_WEBCAM = re.compile(r"^(?:webcam:)?(\d+)$", re.IGNORECASE)
_GLOB_CHARS = frozenset("*?[")
RECONNECT_START_S = 0.5

FramePair = tuple[int, np.ndarray]


class SourceError(EmostreamError, ValueError):
    """A source spec that cannot be used; the message names the spec."""


class Capture(Protocol):
    """The part of cv2.VideoCapture the readers use (so tests can stand in for a camera)."""

    def isOpened(self) -> bool: ...
    def read(self) -> tuple[bool, np.ndarray | None]: ...
    def release(self) -> None: ...


@dataclass(frozen=True)
class WebcamSource:
    """A local camera by index; live: never paced, reconnects when it drops."""

    camera: str
    index: int
    kind: Literal["webcam"] = "webcam"


@dataclass(frozen=True)
class FileSource:
    """A video file; finite, paced at its own frame rate (CAP_PROP_FPS) unless realtime is off."""

    camera: str
    path: Path
    kind: Literal["file"] = "file"


@dataclass(frozen=True)
class UrlSource:
    """An RTSP or HTTP(S) stream (MJPEG included); live: never paced, reconnects when it drops."""

    camera: str
    url: str
    kind: Literal["url"] = "url"


@dataclass(frozen=True)
class ImagesSource:
    """Image files sorted by name from a folder or glob; finite, paced at `fps` unless realtime is off."""

    camera: str
    spec: str
    paths: tuple[Path, ...]
    fps: float
    kind: Literal["images"] = "images"


Source = WebcamSource | FileSource | UrlSource | ImagesSource


def is_live(source: Source) -> bool:
    """Live sources (webcams, URLs) have no end and no native pace."""
    return source.kind in ("webcam", "url")


def sanitize_camera_id(text: str) -> str:
    """`text` reduced to the characters a camera id may hold ([A-Za-z0-9_.-])."""
    cleaned = _NOT_ID_CHARS.sub("_", text).strip("_")
    return cleaned or "camera"


def parse_source(text: str, images_fps: float = 10.0) -> Source:
    """Parse one `[camera_id=]spec`; raise SourceError naming the spec when it cannot be used."""
    camera, spec = _split_camera(text)
    webcam = _WEBCAM.match(spec)
    if webcam:
        index = int(webcam.group(1))
        return WebcamSource(camera or f"webcam{index}", index)
    if urlsplit(spec).scheme.lower() in URL_SCHEMES:
        host = urlsplit(spec).hostname
        if not host:
            raise SourceError(f"source {text!r}: URL has no host")
        return UrlSource(camera or sanitize_camera_id(host), spec)
    if any(char in spec for char in _GLOB_CHARS):
        return _glob_source(text, camera, spec, images_fps)
    path = Path(spec).expanduser()
    if path.is_dir():
        paths = _images_in(sorted(str(child) for child in path.iterdir()))
        if not paths:
            raise SourceError(f"source {text!r}: folder has no images (jpg, png, bmp)")
        return ImagesSource(camera or sanitize_camera_id(path.resolve().name), spec, paths, images_fps)
    if path.is_file():
        if path.suffix.lower() in IMAGE_SUFFIXES:  # one picture: an image source of one frame
            return ImagesSource(camera or sanitize_camera_id(path.stem), spec, (path,), images_fps)
        _check_video(text, path)
        return FileSource(camera or sanitize_camera_id(path.stem), path)
    raise SourceError(f"source {text!r}: no such file or folder: {spec}")


def parse_sources(texts: Sequence[str], images_fps: float = 10.0) -> list[Source]:
    """Parse every spec; raise SourceError when two sources would share a camera id."""
    sources = [parse_source(text, images_fps) for text in texts]
    seen: dict[str, str] = {}
    for text, source in zip(texts, sources, strict=True):
        if source.camera in seen:
            raise SourceError(
                f"sources {seen[source.camera]!r} and {text!r} both have camera id {source.camera!r}; "
                "name one with camera_id=spec"
            )
        seen[source.camera] = text
    return sources


def _split_camera(text: str) -> tuple[str | None, str]:
    """`camera=spec` -> (camera, spec); a whole existing path or a URL query keeps its '='."""
    text = text.strip()
    if not text:
        raise SourceError("source '': empty spec")
    head, sep, tail = text.partition("=")
    if not sep or Path(text).exists() or any(char in head for char in "/:\\"):
        return None, text
    if not CAMERA_ID.match(head):
        raise SourceError(f"source {text!r}: camera id {head!r} may only hold letters, digits, '_', '.', '-'")
    if not tail:
        raise SourceError(f"source {text!r}: nothing after '{head}='")
    return head, tail


def _check_video(text: str, path: Path) -> None:
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise SourceError(f"source {text!r}: cannot be opened as a video: {path}")
    finally:
        capture.release()


def _images_in(candidates: Sequence[str]) -> tuple[Path, ...]:
    paths = [Path(name) for name in candidates]
    return tuple(path for path in paths if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file())


def _glob_source(text: str, camera: str | None, spec: str, images_fps: float) -> ImagesSource:
    pattern = str(Path(spec).expanduser())
    paths = _images_in(sorted(glob.glob(pattern, recursive=True)))
    if not paths:
        raise SourceError(f"source {text!r}: glob matches no images (jpg, png, bmp)")
    # The folder part before the first wildcard names the camera: "shots/*.jpg" -> "shots".
    fixed = Path(pattern.split("*")[0].split("?")[0].split("[")[0])
    folder = fixed if pattern.endswith(("/", "\\")) or fixed.is_dir() else fixed.parent
    return ImagesSource(camera or sanitize_camera_id(folder.resolve().name), spec, paths, images_fps)


def native_fps(source: Source) -> float | None:
    """Frames per second the source was recorded at; None for live sources and unknown rates."""
    if isinstance(source, ImagesSource):
        return source.fps
    if isinstance(source, FileSource):
        capture = cv2.VideoCapture(str(source.path))
        try:
            fps = float(capture.get(cv2.CAP_PROP_FPS)) if capture.isOpened() else 0.0
        finally:
            capture.release()
        return fps if 0 < fps < 1000 else None
    return None


def read_video(path: Path) -> Iterator[FramePair]:
    """Every frame of a video file with its index; SourceError if it cannot be opened."""
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise SourceError(f"source {str(path)!r}: cannot be opened as a video")
        seq = 0
        while True:
            ok, frame = capture.read()
            if not ok or frame is None:
                return
            yield seq, frame
            seq += 1
    finally:
        capture.release()


def read_images(paths: Sequence[Path]) -> Iterator[FramePair]:
    """Each readable image with its index in `paths`; an unreadable file is logged and skipped."""
    for seq, path in enumerate(paths):
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if frame is None:
            log.error("skipping %s: not a readable image", path)
            continue
        yield seq, frame


def read_live(
    open_capture: Callable[[], Capture],
    stop: threading.Event,
    reconnect_max_s: float,
    name: str,
) -> Iterator[FramePair]:
    """Frames of a live source until `stop`; when it drops, reconnect with exponential backoff.

    seq keeps counting across reconnects: it is the frame's index in everything read from the source.
    """
    seq = 0
    delay = RECONNECT_START_S
    while not stop.is_set():
        capture = open_capture()
        try:
            read_any = False
            while not stop.is_set() and capture.isOpened():
                ok, frame = capture.read()
                if not ok or frame is None:
                    break
                read_any = True
                delay = RECONNECT_START_S  # a working connection resets the backoff
                yield seq, frame
                seq += 1
        finally:
            capture.release()
        if stop.is_set():
            return
        log.warning("%s %s; reconnecting in %.1f s", name, "dropped" if read_any else "unavailable", delay)
        stop.wait(delay)
        delay = min(delay * 2, reconnect_max_s)


def open_url(url: str, timeout_s: float) -> Capture:
    """An FFmpeg capture of `url` whose open and reads give up after `timeout_s`, so stop is noticed."""
    timeout_ms = int(timeout_s * 1000)
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms]
    return cv2.VideoCapture(url, cv2.CAP_FFMPEG, params)


def frames(
    source: Source, stop: threading.Event, reconnect_max_s: float = 30.0, network_timeout_s: float = 10.0
) -> Iterator[FramePair]:
    """One pass over `source` (endless for live sources) as (seq, frame_bgr)."""
    if isinstance(source, FileSource):
        return read_video(source.path)
    if isinstance(source, ImagesSource):
        return read_images(source.paths)
    if isinstance(source, UrlSource):
        url = source.url
        return read_live(lambda: open_url(url, network_timeout_s), stop, reconnect_max_s, f"stream {url}")
    index = source.index
    return read_live(lambda: cv2.VideoCapture(index), stop, reconnect_max_s, f"webcam {index}")


def open_webcam(index: int) -> bool:
    """True if webcam `index` opens now (it is released again at once)."""
    capture = cv2.VideoCapture(index)
    try:
        return bool(capture.isOpened())
    finally:
        capture.release()
