"""Secrets and bad addresses: no password in any error, log line or command line; one line for each problem."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import redis

from emostream.connection import RedisUnavailable, check_url, connect, redact
from tests.helpers.waiting import free_port

SECRET = "s3cretPW"
needs_redis_server = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"redis://:{SECRET}@db:6379/0", "redis://:***@db:6379/0"),
        (f"redis://app:{SECRET}@db/2", "redis://app:***@db/2"),
        (f"rediss://app:{SECRET}@db:6380", "rediss://app:***@db:6380"),
        ("redis://db:6379/0", "redis://db:6379/0"),
        (f"app:{SECRET}@db", "<a URL holding '@', not shown>"),
        (f"redis://:{SECRET}@db:notaport/0", "redis://:***@db:notaport/0"),
    ],
)
def test_redact_hides_the_password(url: str, shown: str) -> None:
    assert redact(url) == shown
    assert SECRET not in redact(url)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("garbage", "scheme 'missing'"),
        ("http://db:6379", "scheme 'http'"),
        ("redis://", "no host"),
        ("redis://db:port/0", "not a URL"),
        ("redis://db:6379/zero", "database 'zero'"),
    ],
)
def test_bad_urls_are_named_in_one_line(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        check_url(url)
    with pytest.raises(RedisUnavailable, match="bad Redis URL") as failed:
        connect(url)
    assert "\n" not in str(failed.value)


@pytest.fixture
def guarded_redis() -> Iterator[int]:
    """A private redis-server that requires SECRET."""
    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--requirepass", SECRET],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis(port=port, password=SECRET).ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        yield port
    finally:
        server.terminate()
        server.wait(10)


@needs_redis_server
def test_a_wrong_password_is_reported_as_such_and_never_shown(guarded_redis: int) -> None:
    with pytest.raises(RedisUnavailable) as wrong:
        connect(f"redis://:wrong-{SECRET}@127.0.0.1:{guarded_redis}/0")
    assert "refused the credentials" in str(wrong.value)
    assert "no Redis answers" not in str(wrong.value) and SECRET not in str(wrong.value)
    with pytest.raises(RedisUnavailable, match="refused the credentials"):
        connect(f"redis://127.0.0.1:{guarded_redis}/0")  # none given
    assert connect(f"redis://:{SECRET}@127.0.0.1:{guarded_redis}/0").ping()


def run_command(*argv: str, url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EMOSTREAM_REDIS_URL": url}
    return subprocess.run(
        [sys.executable, "-m", "emostream.cli", *argv], env=env, capture_output=True, text=True, timeout=120
    )


@needs_redis_server
def test_commands_show_one_line_without_the_password(guarded_redis: int) -> None:
    wrong = run_command("events", url=f"redis://:{SECRET}x@127.0.0.1:{guarded_redis}/0")
    assert wrong.returncode == 1
    [line] = wrong.stderr.strip().splitlines()
    assert line.startswith("emostream events: Redis at redis://:***@127.0.0.1:") and "refused the credentials" in line
    down = run_command("events", url=f"redis://:{SECRET}@127.0.0.1:{free_port()}/0")
    [line] = down.stderr.strip().splitlines()
    assert "no Redis answers at redis://:***@127.0.0.1:" in line and SECRET not in line
    health = run_command("health", "detector", url=f"redis://:{SECRET}x@127.0.0.1:{guarded_redis}/0")
    assert health.returncode == 1 and SECRET not in health.stderr and len(health.stderr.strip().splitlines()) == 1


def test_a_password_on_the_command_line_is_refused() -> None:
    # `ps` shows every process's arguments to every user; the environment it does not.
    result = run_command("events", "--redis-url", f"redis://:{SECRET}@127.0.0.1:1/0", url="redis://127.0.0.1:1/0")
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert "--redis-url holds a password" in line and SECRET not in line
