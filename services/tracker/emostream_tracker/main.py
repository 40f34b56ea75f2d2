"""`emostream track`: run the tracker service (emostream_tracker.tracker) until a signal stops it."""

from __future__ import annotations

import threading

from emostream import metrics, names
from emostream.connection import RedisUnavailable, connect
from emostream.lifecycle import run_until_stopped, stop_on_signals
from emostream.settings import load
from emostream.telemetry import setup_logging
from emostream_tracker.settings import TrackerSettings
from emostream_tracker.tracker import Tracker


def main(argv: list[str]) -> int:
    settings = load(TrackerSettings, argv, prog="emostream track")
    log = setup_logging(settings.log_level, "tracker")
    try:
        client = connect(settings.redis_url)
    except RedisUnavailable as error:
        log.error("%s", error)
        return 1
    stop: threading.Event = stop_on_signals()
    tracker = Tracker(settings, client, log)
    metrics.serve(settings.metrics_port, metrics.StreamBacklog(client, lambda: [names.SCORED], names.TRACKER_GROUP))
    log.info("tracking faces as consumer %r of group %r", settings.consumer, names.TRACKER_GROUP)
    run_until_stopped(stop, tracker.step, log)
    log.info("stopped")
    return 0
