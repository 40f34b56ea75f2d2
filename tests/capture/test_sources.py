"""Spec parsing, clear errors at start, and the live reader's reconnect backoff."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from emostream_capture import sources as src
from emostream_capture.sources import (
    FileSource,
    ImagesSource,
    SourceError,
    UrlSource,
    WebcamSource,
    parse_source,
    parse_sources,
)

from tests.capture.conftest import write_images, write_video

pytestmark = pytest.mark.timeout(20)


def test_webcam_specs_default_to_webcam_ids() -> None:
    assert parse_source("0") == WebcamSource("webcam0", 0)
    assert parse_source("webcam:2") == WebcamSource("webcam2", 2)
    assert parse_source("door=1") == WebcamSource("door", 1)


def test_url_specs_take_the_host_as_camera_id() -> None:
    assert parse_source("rtsp://cam.local:554/live") == UrlSource("cam.local", "rtsp://cam.local:554/live")
    assert parse_source("http://127.0.0.1:8080/video.mjpg?a=1").camera == "127.0.0.1"
    named = parse_source("lobby=https://10.0.0.5/s?x=1&y=2")
    assert named == UrlSource("lobby", "https://10.0.0.5/s?x=1&y=2")


def test_video_file_camera_is_the_sanitized_stem(tmp_path: Path) -> None:
    video = write_video(tmp_path / "my clip#1.avi", 2, 10)
    source = parse_source(str(video))
    assert source == FileSource("my_clip_1", video)
    assert src.native_fps(source) == pytest.approx(10, abs=0.01)


def test_folder_and_glob_sources_list_images_sorted(tmp_path: Path) -> None:
    paths = write_images(tmp_path / "shots", 3)
    (tmp_path / "shots" / "notes.txt").write_text("not an image")
    folder = parse_source(str(tmp_path / "shots"), images_fps=5)
    assert isinstance(folder, ImagesSource)
    assert (folder.camera, folder.paths, folder.fps) == ("shots", tuple(paths), 5)
    pattern = parse_source(f"g={tmp_path}/shots/img00[12].png")
    assert isinstance(pattern, ImagesSource)
    assert (pattern.camera, pattern.paths) == ("g", tuple(paths[1:]))
    assert parse_source(f"{tmp_path}/shots/*").camera == "shots"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("missing.avi", "no such file or folder"),
        ("nowhere/*.jpg", "glob matches no images"),
        ("bad id=0", "camera id 'bad id'"),
        ("cam=", "nothing after"),
    ],
)
def test_unusable_specs_are_errors_naming_the_spec(spec: str, message: str) -> None:
    with pytest.raises(SourceError, match=message) as caught:
        parse_source(spec)
    assert repr(spec) in str(caught.value)


def test_empty_folder_and_broken_video_are_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="folder has no images"):
        parse_source(str(tmp_path / "empty"))
    (tmp_path / "fake.avi").write_bytes(b"not a video at all")
    with pytest.raises(SourceError, match="cannot be opened as a video"):
        parse_source(str(tmp_path / "fake.avi"))


def test_duplicate_camera_ids_are_an_error(tmp_path: Path) -> None:
    video = write_video(tmp_path / "cam.avi", 2, 10)
    with pytest.raises(SourceError, match="both have camera id 'webcam0'"):
        parse_sources(["0", "webcam:0"])
    with pytest.raises(SourceError, match="camera id 'cam'"):
        parse_sources([str(video), "cam=1"])
    assert [s.camera for s in parse_sources([str(video), "other=1"])] == ["cam", "other"]


class FakeCamera:
    """A capture that yields `frames` frames and then drops (or never opens when frames is None)."""

    def __init__(self, frames: int | None) -> None:
        self.left = frames or 0
        self.opened = frames is not None

    def isOpened(self) -> bool:
        return self.opened

    def read(self) -> tuple[bool, np.ndarray | None]:
        if self.left <= 0:
            return False, None
        self.left -= 1
        return True, np.zeros((2, 2, 3), np.uint8)

    def release(self) -> None:
        self.opened = False


class RecordingStop(threading.Event):
    """A stop event whose waits return at once and are recorded; it sets itself after `waits` waits."""

    def __init__(self, waits: int) -> None:
        super().__init__()
        self.delays: list[float] = []
        self.limit = waits

    def wait(self, timeout: float | None = None) -> bool:
        self.delays.append(float(timeout or 0))
        if len(self.delays) >= self.limit:
            self.set()
        return self.is_set()


def test_live_source_reconnects_with_backoff_and_keeps_counting() -> None:
    # Connection results: 2 frames, then 3 failures, then 1 frame, then failures.
    script: list[int | None] = [2, None, None, None, 1, None, None]
    stop = RecordingStop(waits=6)
    pairs = list(src.read_live(lambda: FakeCamera(script.pop(0)), stop, reconnect_max_s=1.5, name="fake"))
    assert [seq for seq, _ in pairs] == [0, 1, 2]
    # drop -> 0.5; failures double up to the 1.5 s cap; a good connection resets to 0.5.
    assert stop.delays == [0.5, 1.0, 1.5, 1.5, 0.5, 1.0]
