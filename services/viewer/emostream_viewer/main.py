"""`emostream view`: the live web viewer and SSE subscriptions, served by uvicorn."""

from __future__ import annotations

import sys

import uvicorn

from emostream import metrics
from emostream.connection import RedisUnavailable, connect
from emostream.settings import load
from emostream.telemetry import setup_logging
from emostream_viewer.app import create_app
from emostream_viewer.settings import ViewerSettings

PROG = "emostream view"


def main(argv: list[str]) -> int:
    settings = load(ViewerSettings, argv, prog=PROG)
    log = setup_logging(settings.log_level, "viewer")
    try:
        connect(settings.redis_url).close()
    except RedisUnavailable as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 1
    try:
        metrics.serve(settings.metrics_port)
    except OSError as error:
        print(f"{PROG}: cannot serve metrics on port {settings.metrics_port}: {error}", file=sys.stderr)
        return 1
    log.info("viewer on http://%s:%d/", settings.host, settings.port)
    config = uvicorn.Config(
        create_app(settings.redis_url),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        access_log=False,  # a page polls frames several times a second
        timeout_graceful_shutdown=2,  # open SSE subscriptions would otherwise hold shutdown
    )
    server = uvicorn.Server(config)
    try:
        server.run()
    except SystemExit as error:  # uvicorn exits 1 when it cannot bind
        print(f"{PROG}: cannot serve on {settings.host}:{settings.port}", file=sys.stderr)
        return int(error.code or 1)
    return 0
