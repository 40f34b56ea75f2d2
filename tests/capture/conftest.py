"""Fixtures for capture tests: a real Redis on a dedicated db (flushed around each test), small media files."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import redis
from emostream_capture.capture import run_source
from emostream_capture.settings import CaptureSettings
from emostream_capture.sources import Source

from emostream import names, wire
from tests.conftest import db_url

TEST_DB = 15  # capture tests own this db and flush it before and after every test


@pytest.fixture
def redis_url() -> str:
    """EMOSTREAM_REDIS_URL (or the default) pointed at the capture tests' own db."""
    return db_url(TEST_DB)


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    """A client of the test db, empty at the start and flushed at the end."""
    connection = redis.Redis.from_url(redis_url)
    connection.flushdb()
    try:
        yield connection
    finally:
        connection.flushdb()
        connection.close()


def settings(redis_url: str, **overrides: Any) -> CaptureSettings:
    """Capture settings for tests: the test db, and whatever the test changes."""
    values: dict[str, Any] = {"sources": ["unused"], "redis_url": redis_url, "heartbeat_s": 60.0}
    return CaptureSettings(**{**values, **overrides})


def frame_image(index: int, width: int = 64, height: int = 48) -> np.ndarray:
    """A BGR picture that differs per index."""
    image = np.full((height, width, 3), (index * 11) % 256, np.uint8)
    cv2.rectangle(image, (index % width, 0), (index % width + 4, height // 2), (0, 0, 255), -1)
    return image


def write_video(path: Path, count: int, fps: float, width: int = 64, height: int = 48) -> Path:
    """An MJPG .avi of `count` frames at `fps`."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (width, height))
    assert writer.isOpened(), "this OpenCV cannot write MJPG .avi"
    for index in range(count):
        writer.write(frame_image(index, width, height))
    writer.release()
    return path


def write_images(folder: Path, count: int, suffix: str = ".png") -> list[Path]:
    """`count` images img000.png... in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"img{index:03d}{suffix}" for index in range(count)]
    for index, path in enumerate(paths):
        assert cv2.imwrite(str(path), frame_image(index, 32, 24))
    return paths


def read_frames(client: redis.Redis, camera: str) -> list[wire.Frame]:
    """Every frame still in the camera's stream, oldest first."""
    return [wire.decode_frame(fields) for _, fields in client.xrange(names.frames(camera))]


def progress(client: redis.Redis, camera: str) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in client.hgetall(names.progress(camera)).items()}


class Running:
    """run_source in a background thread, stopped and joined by the test."""

    def __init__(self, target: Callable[[threading.Event], int]) -> None:
        self.stop = threading.Event()
        self.result: int | None = None
        self.error: Exception | None = None
        self._target = target
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.result = self._target(self.stop)
        except Exception as error:
            self.error = error

    def finish(self, timeout: float = 10.0) -> None:
        self.stop.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "capture did not stop"
        assert self.error is None, self.error


def start_source(client: redis.Redis, source: Source, capture_settings: CaptureSettings) -> Running:
    """Start publishing `source` in a thread; the caller must call .finish()."""
    running = Running(lambda stop: run_source(client, source, capture_settings, stop))
    running.thread.start()
    return running
