"""What a Redis restart loses, with the private redis-server `emostream up` starts: everything without
persistence (the default), at most the last second of writes with --redis-dir (docs/RELIABILITY.md)."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
import redis

from emostream import names
from emostream.launcher import redis_server_args
from tests.helpers.waiting import free_port

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed"),
]


def start(args: list[str], port: int) -> tuple[subprocess.Popen[bytes], redis.Redis]:
    server = subprocess.Popen(args, stdout=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            return server, client
        except redis.BusyLoadingError:
            time.sleep(0.05)
        except redis.ConnectionError:
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)


def state(client: redis.Redis) -> dict[str, object]:
    """What the pipeline keeps in Redis: stream entries, groups with pending entries, markers, counters."""
    frames = names.frames("door")
    groups = client.xinfo_groups(frames) if client.exists(frames) else []
    return {
        "frames": client.xlen(frames),
        "pending": [int(group["pending"]) for group in groups],
        "events": client.xlen(names.EVENTS),
        "marker": bool(client.exists(names.seen("face", "door:1:0:5"))),
        "progress": client.hgetall(names.progress("door")),
        "cameras": client.smembers(names.CAMERAS),
    }


@pytest.mark.parametrize("persist", [False, True], ids=["persistence-off", "persistence-on"])
def test_what_a_crash_of_redis_loses(tmp_path: Path, persist: bool) -> None:
    port = free_port()
    args = redis_server_args(str(shutil.which("redis-server")), port, tmp_path, tmp_path / "data" if persist else None)
    (tmp_path / "data").mkdir()
    server, client = start(args, port)
    try:
        frames = names.frames("door")
        for seq in range(5):
            client.xadd(frames, {"pb": f"frame {seq}"})
        client.xgroup_create(frames, names.DETECTOR_GROUP, id="0")
        client.xreadgroup(names.DETECTOR_GROUP, "d1", {frames: ">"}, count=2)  # two frames in flight
        client.xadd(names.EVENTS, {"camera": "door"})
        client.set(names.seen("face", "door:1:0:5"), 1, ex=3600)
        client.hset(names.progress("door"), mapping={"frames_published": 5})
        client.sadd(names.CAMERAS, "door")
        before = state(client)
        time.sleep(1.5)  # appendfsync everysec: what is older than a second is on disk
        server.kill()  # a crash, not a clean shutdown
        server.wait()
        server, client = start(args, port)
        after = state(client)
    finally:
        server.kill()
        server.wait()
    if persist:
        assert after == before  # entries, the group with its two pending frames, marker, counters, registry
        assert before["pending"] == [2]
    else:
        assert client is not None
        assert after == {"frames": 0, "pending": [], "events": 0, "marker": False, "progress": {}, "cameras": set()}
    assert not list(tmp_path.glob("*.rdb")) and not list(tmp_path.glob("appendonly*"))  # off: nothing on disk


@pytest.mark.parametrize("persist", [False, True], ids=["persistence-off", "persistence-on"])
def test_what_a_clean_shutdown_of_redis_loses(tmp_path: Path, persist: bool) -> None:
    # SIGTERM (systemd, docker stop, `up` stopping): with persistence on even the last writes are kept.
    port = free_port()
    args = redis_server_args(str(shutil.which("redis-server")), port, tmp_path, tmp_path / "data" if persist else None)
    (tmp_path / "data").mkdir()
    server, client = start(args, port)
    try:
        frames = names.frames("door")
        for seq in range(5):
            client.xadd(frames, {"pb": f"frame {seq}"})
        client.xgroup_create(frames, names.DETECTOR_GROUP, id="0")
        client.xreadgroup(names.DETECTOR_GROUP, "d1", {frames: ">"}, count=2)
        client.xadd(names.EVENTS, {"camera": "door"})
        client.set(names.seen("face", "door:1:0:5"), 1, ex=3600)
        client.hset(names.progress("door"), mapping={"frames_published": 5})
        client.sadd(names.CAMERAS, "door")
        before = state(client)
        server.terminate()  # at once: no second for the fsync to catch up
        assert server.wait(10) == 0
        server, client = start(args, port)
        after = state(client)
    finally:
        server.kill()
        server.wait()
    if persist:
        assert after == before and before["pending"] == [2]
    else:
        assert after == {"frames": 0, "pending": [], "events": 0, "marker": False, "progress": {}, "cameras": set()}
    assert not list(tmp_path.glob("*.rdb")) and not list(tmp_path.glob("appendonly*"))
