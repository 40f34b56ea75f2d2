"""Connect to Redis with a clear message when it does not answer."""

from __future__ import annotations

import redis


class RedisUnavailable(RuntimeError):
    """No Redis answers at the configured URL."""


def connect(url: str, timeout_s: float = 5.0) -> redis.Redis:
    """A client for `url` that has answered PING."""
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout_s, health_check_interval=30)
    try:
        client.ping()
    except (redis.ConnectionError, redis.TimeoutError, OSError) as error:
        raise RedisUnavailable(
            f"no Redis answers at {url} ({error}); set EMOSTREAM_REDIS_URL, or run `emostream up`, which starts "
            "a private redis-server when one is installed (Debian/Ubuntu: apt-get install redis-server)"
        ) from error
    return client
