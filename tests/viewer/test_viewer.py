"""`emostream view` on a real Redis and a real uvicorn: SSE filtering, frames, cameras, metrics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import cv2
import httpx
import numpy as np
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from emostream import names, wire
from tests.helpers.waiting import free_port, wait_for


@pytest.fixture
def viewer(redis_url: str) -> Iterator[tuple[str, str]]:
    """(page URL, metrics URL) of a viewer process reading the test db."""
    port, metrics_port = free_port(), free_port()
    env = {**os.environ, "EMOSTREAM_REDIS_URL": redis_url, "EMOSTREAM_METRICS_PORT": str(metrics_port)}
    process = subprocess.Popen([sys.executable, "-m", "emostream.cli", "view", "--port", str(port)], env=env)
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(up, 30, "the viewer to answer")
        yield base, f"http://127.0.0.1:{metrics_port}/metrics"
    finally:
        process.terminate()
        process.wait(10)


def event_fields(camera: str, seq: int, track: str) -> dict[str, str]:
    event = wire.EmotionEvent(
        camera=camera,
        frame_seq=seq,
        face_index=0,
        ts_capture_ms=1000 + seq,
        ts_event_ms=2000 + seq,
        box=wire.Box(1, 2, 30, 40),
        label="happy",
        score=0.9,
        scores={"happy": 0.9, "neutral": 0.1},
        model="emotion",
        model_version=1,
        detector_score=0.8,
        faces_in_frame=1,
        track=wire.TrackInfo(track_id=track, label="happy", score=0.85, uncertain=False),
    )
    return wire.encode_event(event)


def subscribe(url: str, want: int, out: list[dict[str, object]], ready: threading.Event) -> None:
    with httpx.stream("GET", url, timeout=httpx.Timeout(20, read=20)) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        ready.set()
        for line in response.iter_lines():
            if line.startswith("data:"):
                out.append(json.loads(line[5:]))
                if len(out) >= want:
                    return


def test_sse_filters_by_camera(viewer: tuple[str, str], redis_client: redis.Redis) -> None:
    base, _ = viewer
    redis_client.xadd(names.EVENTS, event_fields("door", 0, "old"))  # before subscribing: not sent
    got: dict[str, list[dict[str, object]]] = {"door": [], "all": [], "tracks": []}
    urls = {
        "door": (f"{base}/api/events?camera=door", 3),
        "all": (f"{base}/api/events", 6),
        "tracks": (f"{base}/api/tracks?camera=lobby", 1),
    }
    threads = []
    for key, (url, want) in urls.items():
        ready = threading.Event()
        thread = threading.Thread(target=subscribe, args=(url, want, got[key], ready), daemon=True)
        thread.start()
        assert ready.wait(10)
        threads.append(thread)
    for seq in range(1, 4):
        redis_client.xadd(names.EVENTS, event_fields("door", seq, "door-1"))
        redis_client.xadd(names.EVENTS, event_fields("lobby", seq, "lobby-1"))
    redis_client.xadd(names.TRACKS, {"type": "start", "camera": "door", "track_id": "door-1"})
    redis_client.xadd(names.TRACKS, {"type": "start", "camera": "lobby", "track_id": "lobby-1", "uncertain": "0"})
    for thread in threads:
        thread.join(15)
    assert [(e["camera"], e["frame_seq"], e["track_id"]) for e in got["door"]] == [
        ("door", 1, "door-1"), ("door", 2, "door-1"), ("door", 3, "door-1"),
    ]  # fmt: skip
    assert sorted(e["camera"] for e in got["all"]) == ["door"] * 3 + ["lobby"] * 3
    first = got["door"][0]
    assert first["scores"] == {"happy": 0.9, "neutral": 0.1} and first["uncertain"] is False
    assert first["smoothed_label"] == "happy" and first["smoothed_score"] == 0.85
    assert got["tracks"] == [{"type": "start", "camera": "lobby", "track_id": "lobby-1", "uncertain": False}]


def put_frame(client: redis.Redis, camera: str, seq: int, value: int) -> None:
    image = np.full((90, 160, 3), value, dtype=np.uint8)
    jpeg = cv2.imencode(".jpg", image)[1].tobytes()
    frame = wire.Frame(camera=camera, seq=seq, ts_capture_ms=int(time.time() * 1000), jpeg=jpeg, width=160, height=90)
    client.xadd(names.frames(camera), wire.encode_frame(frame))
    client.sadd(names.CAMERAS, camera)
    client.hincrby(names.progress(camera), "frames_published", 1)


def test_frames_cameras_and_metrics(viewer: tuple[str, str], redis_client: redis.Redis) -> None:
    base, metrics_url = viewer
    for seq in range(5):
        put_frame(redis_client, "door", seq, 40 * seq)
    cameras = httpx.get(f"{base}/api/cameras").json()
    assert [(c["camera"], c["progress"]["frames_published"]) for c in cameras] == [("door", 5)]
    newest = httpx.get(f"{base}/api/cameras/door/frame")
    assert newest.status_code == 200 and newest.headers["x-frame-seq"] == "4"
    image = cv2.imdecode(np.frombuffer(newest.content, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert image.shape == (90, 160) and abs(int(image.mean()) - 160) <= 3
    second = httpx.get(f"{base}/api/cameras/door/frame", params={"seq": 2})
    assert second.headers["x-frame-seq"] == "2"
    assert httpx.get(f"{base}/api/cameras/door/frame", params={"seq": 99}).status_code == 404
    bad = httpx.get(f"{base}/api/cameras/door/frame", params={"seq": "x"})
    assert bad.status_code == 400 and "seq" in bad.json()["error"]
    bad_resume = httpx.get(f"{base}/api/events", params={"since": "yesterday"})
    assert bad_resume.status_code == 400 and "since" in bad_resume.json()["error"]
    page = httpx.get(base)
    assert page.status_code == 200 and "viewer.js" in page.text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(httpx.get(metrics_url).text)
        for s in family.samples
    }
    assert samples[("emostream_viewer_frames_total", (("camera", "door"),))] == 2  # the two frames sent, not the 404
