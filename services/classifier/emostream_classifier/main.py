"""`emostream classify`: a consumer-group replica turning face crops into emotion events."""

from __future__ import annotations

import logging
import sys
import threading

from emostream_serving.tf_serving import ServingClient, ServingNotReady

from emostream import metrics, names
from emostream.connection import RedisUnavailable, connect
from emostream.lifecycle import run_until_stopped, stop_on_signals
from emostream.settings import load
from emostream.telemetry import setup_logging
from emostream_classifier.classifier import Classifier, make_shadow
from emostream_classifier.serving_limits import batch_size_problem
from emostream_classifier.settings import ClassifierSettings


def wait_for_model(serving: ServingClient, stop: threading.Event, log: logging.Logger) -> bool:
    """Block until the model answers (True) or `stop` is set (False): the first heartbeat then means ready."""
    waited = False
    while not stop.is_set():
        try:
            serving.wait_ready(timeout=1.0)
            return True
        except ServingNotReady as error:
            if not waited:
                log.info("waiting for the model: %s", error)
                waited = True
    return False


def main(argv: list[str]) -> int:
    settings = load(ClassifierSettings, argv, prog="emostream classify")
    log = setup_logging(settings.log_level, "classifier")
    problem = batch_size_problem(settings.batch_size, settings.batching_config)
    if problem:
        print(f"emostream classify: {problem}", file=sys.stderr)
        return 2
    try:
        client = connect(settings.redis_url)
    except RedisUnavailable as error:
        log.error("%s", error)
        return 1
    stop = stop_on_signals()
    with ServingClient(
        settings.serving_target,
        settings.model_name,
        timeout_seconds=settings.request_timeout_s,
        version_label=settings.version_label,
    ) as serving:
        if not wait_for_model(serving, stop, log):
            log.info("stopped")
            return 0
        shadow = make_shadow(settings, client)
        classifier = Classifier(settings, client, serving, log, stop, shadow)
        try:
            backlog = metrics.StreamBacklog(client, lambda: [names.FACES], names.CLASSIFIER_GROUP)
            metrics.serve(settings.metrics_port, backlog)
        except OSError as error:
            log.error("cannot serve metrics on port %d: %s", settings.metrics_port, error)
            return 1
        log.info("classifying faces via %s %s", settings.serving_target, serving.describe())
        run_until_stopped(stop, classifier.step, log)
        if shadow is not None:
            shadow.close()
    log.info("stopped")
    return 0
