"""`emostream up --once` end to end: a generated video with known faces in, one JSON event per face out."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import redis
from emostream_modelserver.server import RunningServer

from emostream.demo import demo_frames
from emostream.native_logs import chatter
from tests.conftest import LABELS, MODEL_NAME
from tests.helpers.waiting import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(200)]


def write_video(path: Path, count: int, fps: float = 10.0) -> Path:
    """An MJPG .avi of demo frames: two faces each, the left one at x≈113+shift, the right one at x≈577-shift."""
    frames = demo_frames(count)
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (width, height))
    assert writer.isOpened(), "this OpenCV cannot write MJPG .avi"
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def shift(index: int, count: int) -> int:
    return int(25 * np.sin(index / count * 2 * np.pi))


def run_up(args: list[str], redis_url: str, detector_model_path: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "EMOSTREAM_REDIS_URL": redis_url,
        "DETECTOR_MODEL_DIR": str(detector_model_path.parent),
        "DETECTOR_RANGE": "near",  # these tests count faces exactly; tests/detector covers the ranges
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "GLOG_minloglevel": "2",
    }
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "emostream.cli",
            "up",
            "--once",
            "--no-realtime",
            "--timeout-s",
            "120",
            "--format",
            "json",
            *args,
        ],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
    )


def check_events(result: subprocess.CompletedProcess[str], camera: str, frames: int) -> list[dict[str, Any]]:
    assert result.returncode == 0, result.stderr[-4000:]
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert all(line.startswith("{") for line in lines), f"stdout holds more than events: {lines[:5]}"
    events = [json.loads(line) for line in lines]
    per_face = Counter((e["camera"], e["frame_seq"], e["face_index"]) for e in events)
    expected = {(camera, seq, index) for seq in range(frames) for index in (0, 1)}
    assert set(per_face) == expected, sorted(set(per_face) ^ expected)
    assert all(count == 1 for count in per_face.values()), per_face
    assert len(events) == 2 * frames
    for event in events:
        box, dx = event["box"], shift(event["frame_seq"], frames)
        if event["face_index"] == 0:
            assert abs(box["x"] - (113 + dx)) <= 15 and 105 <= box["y"] <= 140, event
        else:
            assert abs(box["x"] - (577 - dx)) <= 15 and 140 <= box["y"] <= 170, event
        assert 95 <= box["w"] <= 135, event
        assert event["label"] in LABELS
        assert set(event["scores"]) == set(LABELS)
        assert sum(event["scores"].values()) == pytest.approx(1.0, abs=2e-3)
        assert (event["model"], event["model_version"]) == (MODEL_NAME, 1)
        assert event["detector_score"] > 0.5
        assert event["ts_event_ms"] >= event["ts_capture_ms"]
    return events


def test_up_once_gives_one_event_per_face_from_the_stable_version(
    tmp_path: Path,
    redis_url: str,
    detector_model_path: Path,
) -> None:
    """The model config beside the base serves version 1 as `stable`, named as the container sees it
    (/models/emotion); `up` serves that config from the local base, so events come from version 1
    although version 2 is newer."""
    from tests.helpers.tiny_model import export_tiny_version

    base = tmp_path / "models" / MODEL_NAME
    export_tiny_version(base, 1, LABELS)
    export_tiny_version(base, 2, LABELS)
    (base.parent / "models.config").write_text(
        'model_config_list { config { name: "emotion" base_path: "/models/emotion" model_platform: "tensorflow" '
        'model_version_policy { specific { versions: 1 } } version_labels { key: "stable" value: 1 } } }\n'
    )
    video = write_video(tmp_path / "hallway.avi", 20)
    result = run_up(["--model-base", str(base), str(video)], redis_url, detector_model_path, tmp_path)
    check_events(result, "hallway", 20)
    check_start_up_lines(result.stderr)


def check_start_up_lines(stderr: str) -> None:
    """What `up` waits for, then one line per service as it becomes ready, and no native library chatter."""
    lines = stderr.splitlines()
    assert lines[0] == "emostream up: waiting for model server, classifier-1, detector-1, tracker-1", lines
    ready = [line.split(" ready")[0].removeprefix("emostream up: ") for line in lines[1:5]]
    assert sorted(ready) == ["classifier-1", "detector-1", "model server", "tracker-1"], lines
    assert ready.index("model server") < ready.index("classifier-1")  # a classifier is ready once its model is
    assert [line for line in lines if chatter(line)] == []


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
def test_up_starts_a_private_redis_when_none_answers(
    tmp_path: Path,
    tiny_model_base: Path,
    detector_model_path: Path,
    model_server: RunningServer,
) -> None:
    nothing_there = f"redis://127.0.0.1:{free_port()}/0"
    video = write_video(tmp_path / "lobby.avi", 4)
    # The model server runs in this process (saves starting one); up still starts Redis and the services.
    result = run_up(
        ["--model-base", str(tiny_model_base), "--serving-target", f"127.0.0.1:{model_server.port}", str(video)],
        nothing_there,
        detector_model_path,
        tmp_path,
    )
    check_events(result, "lobby", 4)
    assert f"no Redis at {nothing_there}; started a private redis-server" in result.stderr


def test_capture_waits_until_every_replica_is_ready(redis_client: redis.Redis) -> None:
    from emostream import names
    from emostream.launcher import Children, NotReady, wait_for_replicas

    children = Children(dict(os.environ))
    replicas = [("detector", "detector-1"), ("classifier", "classifier-1")]
    with pytest.raises(NotReady, match="detector-1, classifier-1"):
        wait_for_replicas(redis_client, children, replicas, timeout_s=0.3)
    for service, consumer in replicas:
        redis_client.set(names.heartbeat(service, consumer), "{}", ex=30)
    wait_for_replicas(redis_client, children, replicas, timeout_s=0.3)  # returns: both are ready

    children.start("detector-1", [sys.executable, "-c", "raise SystemExit(3)"]).wait()
    with pytest.raises(NotReady, match="detector-1 exited with code 3"):
        wait_for_replicas(redis_client, children, replicas, timeout_s=5)
