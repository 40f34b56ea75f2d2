"""`emostream capture` as a command: settings, start-up errors, exit codes, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from emostream_capture.main import PROG, main
from emostream_capture.settings import CaptureSettings

from emostream import names
from emostream.settings import load
from tests.capture.conftest import progress, read_frames, write_images, write_video

pytestmark = pytest.mark.timeout(30)


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_bad_setting_exits_2_naming_it(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CAPTURE_JPEG_QUALITY", "500")
    with pytest.raises(SystemExit) as exited:
        main(["--sources", "0"])
    assert exited.value.code == 2
    assert "CAPTURE_JPEG_QUALITY" in one_error_line(capsys)


def test_no_sources_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([])
    assert exited.value.code == 2
    assert "CAPTURE_SOURCES" in one_error_line(capsys)


@pytest.mark.parametrize("specs", [["missing.avi"], ["0", "webcam:0"]])
def test_unusable_sources_exit_2_naming_the_spec(specs: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([part for spec in specs for part in ("--sources", spec)]) == 2
    assert repr(specs[-1]) in one_error_line(capsys)


def test_redis_unavailable_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    video = write_video(tmp_path / "v.avi", 2, 10)
    assert main(["--redis-url", "redis://127.0.0.1:1/0", str(video)]) == 1
    assert "no Redis answers" in one_error_line(capsys)


def test_positional_sources_join_the_sources_flag() -> None:
    settings = load(
        CaptureSettings, ["a.avi", "--consumer", "x", "0", "--sources", "b.avi"], PROG, positional="sources"
    )
    assert settings.sources == ["b.avi", "a.avi", "0"] and settings.consumer == "x"
    settings = load(CaptureSettings, ["--consumer", "cam", "cam"], PROG, positional="sources")
    assert settings.sources == ["cam"] and settings.consumer == "cam"


def test_main_publishes_sources_from_env_and_flags(
    tmp_path: Path,
    client: redis.Redis,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write_images(tmp_path / "folder", 3)
    video = write_video(tmp_path / "film.avi", 4, 10)
    monkeypatch.setenv("CAPTURE_SOURCES", json.dumps([f"env={tmp_path / 'folder'}"]))
    monkeypatch.setenv("EMOSTREAM_REDIS_URL", redis_url)
    assert main(["--no-realtime", "--jpeg-quality", "70"]) == 0
    assert [f.seq for f in read_frames(client, "env")] == [0, 1, 2]
    monkeypatch.delenv("CAPTURE_SOURCES")
    assert main(["--no-realtime", "--source", str(video), str(tmp_path / "folder")]) == 0
    assert progress(client, "film")["frames_total"] == "4"
    assert progress(client, "folder")["done"] == "1"


def test_sigterm_stops_a_looping_capture_cleanly(tmp_path: Path, client: redis.Redis, redis_url: str) -> None:
    video = write_video(tmp_path / "term.avi", 5, 50)
    code = "import sys; from emostream_capture.main import main; sys.exit(main(sys.argv[1:]))"
    env = {**os.environ, "EMOSTREAM_REDIS_URL": redis_url}
    process = subprocess.Popen(
        [sys.executable, "-c", code, "--loop", str(video)], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 20
        while client.xlen(names.frames("term")) < 6:  # past the first pass, so it really loops
            assert process.poll() is None and time.monotonic() < deadline, "capture did not start looping"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()
    assert "done" not in progress(client, "term")


def test_check_prints_the_camera_ids_and_publishes_nothing(
    tmp_path: Path, client: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    video = write_video(tmp_path / "hall.avi", 3, fps=10.0)
    folder = tmp_path / "door"
    write_images(folder, 2)
    unreachable = "redis://127.0.0.1:1/0"  # a check needs no Redis
    assert main(["--check", "--redis-url", unreachable, str(video), f"porch={folder}"]) == 0
    assert json.loads(capsys.readouterr().out) == ["hall", "porch"]
    assert client.keys("*") == []


def test_check_names_an_unusable_source_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "gone.mp4"
    assert main(["--check", str(missing)]) == 2
    assert one_error_line(capsys) == f"{PROG}: source '{missing}': no such file or folder: {missing}"
