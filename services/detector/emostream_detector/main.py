"""`emostream detect`: a consumer-group replica turning frames into face crops."""

from __future__ import annotations

import threading

import cv2

from emostream import metrics, names
from emostream.connection import RedisUnavailable, connect
from emostream.lifecycle import run_until_stopped, stop_on_signals
from emostream.settings import load
from emostream.telemetry import setup_logging
from emostream_detector.detection import finder_from_settings
from emostream_detector.detector import Detector, frame_streams
from emostream_detector.model_file import ModelFetchError, fetch
from emostream_detector.settings import DetectorSettings


def main(argv: list[str]) -> int:
    settings = load(DetectorSettings, argv, prog="emostream detect")
    log = setup_logging(settings.log_level, "detector")
    try:
        client = connect(settings.redis_url)
        models = fetch(settings.model_dir)
    except (RedisUnavailable, ModelFetchError) as error:
        log.error("%s", error)
        return 1
    stop: threading.Event = stop_on_signals()
    # Its work is many small images (128-pixel windows, 48-pixel crops): OpenCV's thread pool adds no
    # speed there, only CPU taken from the other services on the same cores.
    cv2.setNumThreads(1)
    finder = finder_from_settings(settings, models)
    detector = Detector(settings, client, finder, log)
    try:
        backlog = metrics.StreamBacklog(client, lambda: frame_streams(client), names.DETECTOR_GROUP)
        metrics.serve(settings.metrics_port, backlog)
    except OSError as error:
        log.error("cannot serve metrics on port %d: %s", settings.metrics_port, error)
        return 1
    log.info(
        "detecting faces (range %s, faces from %d px) as consumer %r of group %r",
        settings.range,
        settings.min_face_px if settings.range != "near" else 0,
        settings.consumer,
        names.DETECTOR_GROUP,
    )
    run_until_stopped(stop, detector.step, log)
    finder.close()
    log.info("stopped")
    return 0
