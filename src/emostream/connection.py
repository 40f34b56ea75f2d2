"""Connect to Redis with one clear line when it does not answer, never showing the password."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import redis

from emostream.errors import EmostreamError

REDIS_SCHEMES = ("redis", "rediss", "unix")
URL_FORM = "redis://[[user]:password@]host[:port][/db] (or rediss://, unix:///path/to/socket)"


class RedisUnavailable(EmostreamError, RuntimeError):
    """No Redis answers at the configured URL, or it refused the credentials."""


def redact(url: str) -> str:
    """`url` with its password replaced by ***, safe for logs and errors."""
    if "@" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in REDIS_SCHEMES or "@" not in parts.netloc:
        return "<a URL holding '@', not shown>"  # cannot tell where a password ends: show none of it
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def check_url(url: str) -> str:
    """`url` if it can name a Redis; ValueError (whose message holds no password) otherwise."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError on a port that is not a number
    except ValueError as error:
        raise ValueError(f"not a URL ({error}); expected {URL_FORM}") from None
    if parts.scheme not in REDIS_SCHEMES:
        raise ValueError(
            f"scheme {parts.scheme or 'missing'!r} is not one of {', '.join(REDIS_SCHEMES)}; expected {URL_FORM}"
        )
    if parts.scheme != "unix" and not parts.hostname:
        raise ValueError(f"no host; expected {URL_FORM}")
    db = parts.path.strip("/")
    if parts.scheme != "unix" and db and not db.isdigit():
        raise ValueError(f"database {db!r} is not a number; expected {URL_FORM}")
    return url


def connect(url: str, timeout_s: float = 5.0) -> redis.Redis:
    """A client for `url` that has answered PING."""
    shown = redact(url)
    try:
        client = redis.Redis.from_url(check_url(url), socket_connect_timeout=timeout_s, health_check_interval=30)
    except ValueError as error:
        raise RedisUnavailable(f"bad Redis URL {shown}: {error}") from None
    try:
        client.ping()
    except redis.AuthenticationError as error:
        raise RedisUnavailable(
            f"Redis at {shown} refused the credentials ({error}); check the user and password in EMOSTREAM_REDIS_URL"
        ) from None
    except redis.ResponseError as error:  # e.g. AUTH sent to a Redis that has no password
        raise RedisUnavailable(f"Redis at {shown} refused the connection: {error}") from None
    except (redis.ConnectionError, redis.TimeoutError, OSError) as error:
        raise RedisUnavailable(
            f"no Redis answers at {shown} ({error}); set EMOSTREAM_REDIS_URL, or run `emostream up`, which starts "
            "a private redis-server when one is installed (Debian/Ubuntu: apt-get install redis-server)"
        ) from None
    return client
