"""`emostream up` as supervisors use it: SIGTERM stops everything it started, a second run on the same Redis
runs again, and a restart of its Redis loses only what docs/RELIABILITY.md says."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from emostream_modelserver.server import RunningServer

from emostream import names
from tests.helpers.waiting import free_port, wait_for
from tests.test_up import check_events, run_up, write_video

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(480),
]  # two or three `up` runs, each starting TensorFlow and MediaPipe


def children_of(pid: int) -> set[int]:
    """Every live descendant of `pid`, from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def up_env(redis_url: str, detector_model_path: Path, tmp_path: Path) -> Iterator[dict[str, str]]:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    yield {
        **os.environ,
        "EMOSTREAM_REDIS_URL": redis_url,
        "DETECTOR_MODEL_DIR": str(detector_model_path.parent),
        "DETECTOR_RANGE": "near",  # faces are counted exactly; tests/detector covers the ranges
        "TMPDIR": str(scratch),
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }


def test_sigterm_to_up_stops_every_child_and_removes_its_temp_folder(
    up_env: dict[str, str],
    redis_client: redis.Redis,
    tiny_model_base: Path,
    model_server: RunningServer,
    tmp_path: Path,
) -> None:
    # No source: the built-in demo, written into up's temp folder, looped. The model server runs in this
    # process to spare a slow start; up's children are stopped the same way whatever they are.
    target = f"127.0.0.1:{model_server.port}"
    command = ["up", "--loop", "--model-base", str(tiny_model_base), "--serving-target", target]
    up = subprocess.Popen(
        [sys.executable, "-m", "emostream.cli", *command],
        env=up_env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def capture_started() -> bool:
            return bool(redis_client.exists(names.heartbeat("capture", "capture")))

        wait_for(lambda: capture_started() or up.poll() is not None, 200, "up to start capture, its last service")
        assert up.poll() is None, up.communicate()[1][-3000:]
        children = children_of(up.pid)
        assert len(children) >= 3, children  # detector, classifier, capture
        assert list((tmp_path / "tmp").iterdir()), "up keeps its demo in a temp folder"
        up.send_signal(signal.SIGTERM)  # only to up, as systemd, docker, timeout and CI do
        _, err = up.communicate(timeout=60)
    finally:
        if up.poll() is None:
            up.kill()
    assert up.returncode == 0, err[-3000:]
    assert "Traceback" not in err
    wait_for(lambda: not any(alive(pid) for pid in children), 10, "every child to end")
    assert list((tmp_path / "tmp").iterdir()) == []


def test_a_second_up_once_on_the_same_redis_runs_again(
    tmp_path: Path,
    redis_url: str,
    tiny_model_base: Path,
    detector_model_path: Path,
    model_server: RunningServer,
) -> None:
    video = write_video(tmp_path / "hall.avi", 6)
    args = ["--model-base", str(tiny_model_base), "--serving-target", f"127.0.0.1:{model_server.port}", str(video)]
    check_events(run_up(args, redis_url, detector_model_path, tmp_path), "hall", 6)
    # The first run left this camera's counters at "done": the second must not take them for its own.
    check_events(run_up(args, redis_url, detector_model_path, tmp_path), "hall", 6)


def test_up_names_a_missing_source_in_one_line(up_env: dict[str, str], tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "emostream.cli", "up", str(tmp_path / "nonexistent.mp4"), "--once"],
        env={**up_env, "EMOSTREAM_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"emostream up: source '{tmp_path / 'nonexistent.mp4'}': no such file or folder: {tmp_path / 'nonexistent.mp4'}"
    ]
    assert list((tmp_path / "tmp").iterdir()) == []
