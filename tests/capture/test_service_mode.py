"""Capture as a compose service: the ./media folder as sources, and finished files that stay finished."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import redis
from emostream_capture.capture import run_capture, run_source
from emostream_capture.main import main
from emostream_capture.media import media_sources
from emostream_capture.sources import FileSource, ImagesSource, parse_sources

from emostream import names
from tests.capture.conftest import Running, progress, read_frames, settings, write_images, write_video

FPS = 25.0


def test_media_folder_plays_videos_image_folders_and_its_own_images(tmp_path: Path) -> None:
    media = tmp_path / "media"
    media.mkdir()
    write_video(media / "door.avi", 3, FPS)
    write_video(media / "yard.avi", 2, FPS)
    write_images(media / "shots", 4)
    write_images(media, 2, ".jpg")  # loose images: one camera named after the folder
    (media / "notes.txt").write_text("not a video")
    (media / "empty").mkdir()
    write_video(media / ".hidden.avi", 2, FPS)
    found = {s.camera: s for s in media_sources(media, taken={"yard"})}
    assert set(found) == {"door", "shots", "media"}  # yard: camera id taken; junk skipped
    assert isinstance(found["door"], FileSource)
    assert isinstance(found["shots"], ImagesSource) and len(found["shots"].paths) == 4
    assert isinstance(found["media"], ImagesSource) and len(found["media"].paths) == 2


def test_missing_or_empty_media_folder_adds_nothing(tmp_path: Path) -> None:
    assert media_sources(tmp_path / "nowhere", taken=set()) == []
    assert media_sources(tmp_path, taken=set()) == []


def test_a_finished_file_is_not_replayed_by_a_service_restart(
    tmp_path: Path, client: redis.Redis, redis_url: str
) -> None:
    [source] = parse_sources([f"clip={write_video(tmp_path / 'clip.avi', 4, FPS)}"])
    service = settings(redis_url, realtime=False, keep_running=True)
    assert run_source(client, source, service, threading.Event()) == 4
    assert run_source(client, source, service, threading.Event()) == 0  # the restart: skipped
    assert [f.seq for f in read_frames(client, "clip")] == [0, 1, 2, 3]
    assert progress(client, "clip")["done"] == "1"
    # A plain `emostream capture` run plays it again, as before.
    assert run_source(client, source, settings(redis_url, realtime=False), threading.Event()) == 4


def test_a_file_cut_off_before_its_end_is_played_again(tmp_path: Path, client: redis.Redis, redis_url: str) -> None:
    [source] = parse_sources([f"cut={write_video(tmp_path / 'cut.avi', 3, FPS)}"])
    client.hset(names.progress("cut"), mapping={"frames_published": 1})  # a capture killed mid-file
    assert run_source(client, source, settings(redis_url, realtime=False, keep_running=True), threading.Event()) == 3


def test_service_stays_up_with_a_fresh_heartbeat_after_its_files_end(
    tmp_path: Path, client: redis.Redis, redis_url: str
) -> None:
    sources = parse_sources([f"short={write_video(tmp_path / 'short.avi', 2, FPS)}"])
    service = settings(redis_url, realtime=False, keep_running=True, heartbeat_s=0.2)
    running = Running(lambda stop: run_capture(client, sources, service, stop))
    running.thread.start()
    deadline = time.monotonic() + 10
    while progress(client, "short").get("done") != "1":
        assert time.monotonic() < deadline, "the file was not published"
        time.sleep(0.05)
    heartbeat = names.heartbeat("capture", service.consumer)
    client.delete(heartbeat)
    time.sleep(0.8)
    assert running.thread.is_alive(), "capture exited although it runs as a service"
    assert client.exists(heartbeat), "the idle service stopped refreshing its heartbeat"
    running.finish()
    assert running.result == 0


def test_without_keep_running_capture_exits_when_files_end(tmp_path: Path, client: redis.Redis, redis_url: str) -> None:
    sources = parse_sources([str(write_video(tmp_path / "once.avi", 2, FPS))])
    assert run_capture(client, sources, settings(redis_url, realtime=False), threading.Event()) == 0


def test_media_folder_alone_is_enough(
    tmp_path: Path, redis_url: str, client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "media").mkdir()
    write_video(tmp_path / "media" / "solo.avi", 2, FPS)
    monkeypatch.setenv("EMOSTREAM_REDIS_URL", redis_url)
    monkeypatch.delenv("CAPTURE_SOURCES", raising=False)
    assert main(["--media-dir", str(tmp_path / "media"), "--no-realtime"]) == 0
    assert progress(client, "solo")["done"] == "1"


def test_empty_media_folder_and_no_source_exits_2(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EMOSTREAM_REDIS_URL", redis_url)
    monkeypatch.delenv("CAPTURE_SOURCES", raising=False)
    assert main(["--media-dir", str(tmp_path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "no source" in lines[0] and str(tmp_path) in lines[0]
