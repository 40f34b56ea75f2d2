"""The capture loop against a real Redis: files, pacing, backpressure, image folders, bounds, loop."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import redis
from emostream_capture.capture import SharedMeter, backlog, publish, run_capture, run_source
from emostream_capture.sources import parse_source, parse_sources

from emostream import names
from emostream.streams import ensure_group
from emostream.telemetry import Meter
from tests.capture.conftest import progress, read_frames, settings, start_source, write_images, write_video
from tests.helpers.waiting import wait_for

pytestmark = pytest.mark.timeout(30)
log = logging.getLogger("test.capture")
N_FRAMES = 20
FPS = 10.0


def test_video_file_publishes_every_frame_with_progress(tmp_path: Path, client: redis.Redis, redis_url: str) -> None:
    source = parse_source(f"clip={write_video(tmp_path / 'clip.avi', N_FRAMES, FPS, 160, 120)}")
    before = int(time.time() * 1000)
    published = run_source(client, source, settings(redis_url, realtime=False, max_width=80), threading.Event())
    assert published == N_FRAMES
    frames = read_frames(client, "clip")
    assert [f.seq for f in frames] == list(range(N_FRAMES))
    assert {(f.camera, f.width, f.height) for f in frames} == {("clip", 80, 60)}  # downscaled, aspect kept
    assert all(before <= f.ts_capture_ms <= int(time.time() * 1000) for f in frames)
    image = cv2.imdecode(np.frombuffer(frames[3].jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.shape == (60, 80, 3)
    assert progress(client, "clip") == {"frames_published": str(N_FRAMES), "done": "1", "frames_total": str(N_FRAMES)}
    assert client.sismember(names.CAMERAS, "clip")


def test_a_restarted_capture_adds_to_the_counters(tmp_path: Path, client: redis.Redis, redis_url: str) -> None:
    # A capture restarted by its supervisor must not erase what the pipeline counted so far;
    # `emostream up` clears the counters itself when a new run starts.
    source = parse_source(str(write_video(tmp_path / "again.avi", 3, FPS)))
    client.hset(names.progress("again"), mapping={"frames_published": 99, "frames_detected": 7})
    run_source(client, source, settings(redis_url, realtime=False), threading.Event())
    expected = {"frames_published": "102", "frames_detected": "7", "done": "1", "frames_total": "3"}
    assert progress(client, "again") == expected


def test_paced_sources_drop_and_count_frames_the_detectors_cannot_take(
    tmp_path: Path, client: redis.Redis, redis_url: str
) -> None:
    # No detector reads: after shed_backlog frames wait, the rest are dropped at capture and counted.
    source = parse_source(f"busy={write_video(tmp_path / 'busy.avi', 12, 200.0)}")
    run_source(client, source, settings(redis_url, realtime=True, shed_backlog=5), threading.Event())
    assert [f.seq for f in read_frames(client, "busy")] == [0, 1, 2, 3, 4]
    assert progress(client, "busy") == {
        "frames_published": "5",
        "frames_dropped": "7",
        "done": "1",
        "frames_total": "5",
    }


def test_capture_registers_its_camera_again_after_redis_forgot_it(
    tmp_path: Path, client: redis.Redis, redis_url: str
) -> None:
    source = parse_source(f"again={write_video(tmp_path / 'again.avi', 3, FPS)}")
    stop = threading.Event()
    frames = 0

    class Forgetful(SharedMeter):
        def add(self, name: str, amount: int = 1) -> None:
            nonlocal frames
            frames += amount
            if frames == 1:
                client.delete(names.CAMERAS)  # what a Redis restart without persistence does

    run_source(client, source, settings(redis_url, realtime=False), stop, Forgetful(Meter(client, "t", "t", log)))
    assert frames == 3
    assert client.sismember(names.CAMERAS, "again")


def test_realtime_paces_at_the_file_rate(tmp_path: Path, client: redis.Redis, redis_url: str) -> None:
    source = parse_source(str(write_video(tmp_path / "paced.avi", N_FRAMES, FPS)))
    started = time.monotonic()
    run_source(client, source, settings(redis_url, realtime=True), threading.Event())
    paced = time.monotonic() - started
    client.delete(names.frames("paced"))
    started = time.monotonic()
    run_source(client, source, settings(redis_url, realtime=False), threading.Event())
    fast = time.monotonic() - started
    assert paced >= 0.8 * (N_FRAMES - 1) / FPS
    assert fast < paced / 3
    assert client.xlen(names.frames("paced")) == N_FRAMES


def test_backpressure_holds_until_the_detectors_ack(tmp_path: Path, client: redis.Redis, redis_url: str) -> None:
    source = parse_source(f"bp={write_video(tmp_path / 'bp.avi', N_FRAMES, FPS)}")
    stream = names.frames("bp")
    running = start_source(client, source, settings(redis_url, realtime=False, max_backlog=5))
    try:
        wait_for(lambda: client.xlen(stream) >= 5, 10.0, "five frames published")
        time.sleep(0.3)
        assert client.xlen(stream) == 5  # no group yet: the whole stream counts as backlog
        ensure_group(client, stream, names.DETECTOR_GROUP)
        entries = client.xreadgroup(names.DETECTOR_GROUP, "t", {stream: ">"}, count=3)[0][1]
        time.sleep(0.3)
        assert client.xlen(stream) == 5 and backlog(client, stream) == 5  # read but unacked still counts
        client.xack(stream, names.DETECTOR_GROUP, *(entry_id for entry_id, _ in entries))
        wait_for(lambda: client.xlen(stream) == 8, 10.0, "eight frames published")
        while progress(client, "bp").get("done") != "1":  # act as the detector until the file is done
            for _, batch in client.xreadgroup(names.DETECTOR_GROUP, "t", {stream: ">"}, block=100) or []:
                client.xack(stream, names.DETECTOR_GROUP, *(entry_id for entry_id, _ in batch))
        assert [f.seq for f in read_frames(client, "bp")] == list(range(N_FRAMES))
    finally:
        running.finish()
    assert running.result == N_FRAMES


def test_image_folder_and_glob_skip_unreadable_files(
    tmp_path: Path,
    client: redis.Redis,
    redis_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    paths = write_images(tmp_path / "pics", 4, ".jpg")
    paths[1].write_bytes(b"broken jpeg")
    fast = settings(redis_url, realtime=False)
    with caplog.at_level(logging.ERROR):
        run_source(client, parse_source(str(tmp_path / "pics")), fast, threading.Event())
    assert [f.seq for f in read_frames(client, "pics")] == [0, 2, 3]
    assert {(f.width, f.height) for f in read_frames(client, "pics")} == {(32, 24)}
    assert progress(client, "pics")["frames_total"] == "3"
    assert any("img001.jpg" in record.getMessage() for record in caplog.records)
    run_source(client, parse_source(f"sel={tmp_path}/pics/img00[23].jpg"), fast, threading.Event())
    assert [f.seq for f in read_frames(client, "sel")] == [0, 1]


def test_image_folder_is_paced_at_images_fps(tmp_path: Path, client: redis.Redis, redis_url: str) -> None:
    write_images(tmp_path / "slow", 5)
    started = time.monotonic()
    run_source(client, parse_source(str(tmp_path / "slow"), images_fps=20), settings(redis_url), threading.Event())
    assert time.monotonic() - started >= 0.8 * 4 / 20
    assert client.xlen(names.frames("slow")) == 5


def test_frame_that_fails_to_encode_is_skipped(
    client: redis.Redis, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        ok = publish(client, "bad", 0, np.zeros((0, 0, 3), np.uint8), settings(redis_url))
    assert not ok
    assert client.xlen(names.frames("bad")) == 0
    assert "cannot encode" in caplog.text


def test_streams_stay_near_maxlen(tmp_path: Path, client: redis.Redis, redis_url: str) -> None:
    source = parse_source(str(write_video(tmp_path / "long.avi", 400, 100, 16, 16)))
    run_source(
        client, source, settings(redis_url, realtime=False, max_backlog=10_000, stream_maxlen=50), threading.Event()
    )
    assert progress(client, "long")["frames_published"] == "400"
    assert 50 <= client.xlen(names.frames("long")) <= 50 + 100  # approximate trimming works per radix node


def test_loop_restarts_and_seq_keeps_counting(tmp_path: Path, client: redis.Redis, redis_url: str) -> None:
    source = parse_source(str(write_video(tmp_path / "loop.avi", 4, FPS)))
    running = start_source(client, source, settings(redis_url, realtime=False, loop=True, max_backlog=10_000))
    try:
        wait_for(lambda: client.xlen(names.frames("loop")) >= 10, 10.0, "ten looped frames")
    finally:
        running.finish()
    seqs = [f.seq for f in read_frames(client, "loop")]
    assert seqs == list(range(len(seqs)))
    assert "done" not in progress(client, "loop")


def test_several_sources_run_at_once(tmp_path: Path, client: redis.Redis, redis_url: str) -> None:
    write_images(tmp_path / "a", 3)
    sources = parse_sources([str(tmp_path / "a"), f"b={write_video(tmp_path / 'b.avi', 5, FPS)}"])
    code = run_capture(client, sources, settings(redis_url, realtime=False), threading.Event())
    assert code == 0
    assert client.smembers(names.CAMERAS) == {b"a", b"b"}
    assert (progress(client, "a")["frames_total"], progress(client, "b")["frames_total"]) == ("3", "5")
    assert client.exists(names.heartbeat("capture", settings(redis_url).consumer))


def test_backlog_counts_unread_entries_when_redis_cannot_tell_the_lag(client: redis.Redis) -> None:
    stream = names.frames("lagless")
    ids = [client.xadd(stream, {"n": i}) for i in range(5)]
    ensure_group(client, stream, names.DETECTOR_GROUP)
    client.xreadgroup(names.DETECTOR_GROUP, "t", {stream: ">"}, count=1)
    client.xdel(stream, ids[2])  # a deletion ahead of the group leaves Redis unable to compute lag
    assert client.xinfo_groups(stream)[0]["lag"] is None
    assert backlog(client, stream) == 3 + 1  # three unread entries left, one pending
    assert backlog(client, names.frames("nothing")) == 0


def test_a_failing_source_exits_1_without_stopping_the_others(
    tmp_path: Path,
    client: redis.Redis,
    redis_url: str,
) -> None:
    gone = write_video(tmp_path / "gone.avi", 3, FPS)
    sources = parse_sources([str(gone), f"ok={write_video(tmp_path / 'ok.avi', 3, FPS)}"])
    gone.unlink()  # vanishes between start-up checks and reading
    assert run_capture(client, sources, settings(redis_url, realtime=False), threading.Event()) == 1
    assert progress(client, "ok")["done"] == "1"
    assert "done" not in progress(client, "gone")
