"""The whole system live on generated clips of two cameras, with two detector replicas taking turns
frame by frame: tracked events, the viewer in a real headless Chromium, and every service's /metrics.

The browser is Debian's chromium with its chromedriver (scripts/test.sh installs both as root).
Set EMOSTREAM_SCREENSHOT=path.png to save the page as the README's screenshot.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from emostream import names, wire
from emostream.demo import write_demo
from emostream.launcher import Children, wait_for_replicas
from tests.conftest import TEST_DB, db_url
from tests.helpers.waiting import free_port, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
ROOT = Path(__file__).resolve().parents[1]
CAMERAS = ("door", "lobby")
LABELS = {"happy", "neutral", "fear"}
SERVICES = ("capture", "detector-1", "detector-2", "classifier-1", "modelserver", "tracker", "viewer")


@dataclass
class Live:
    client: redis.Redis
    viewer: str
    metrics: dict[str, str]
    children: Children


@pytest.fixture(scope="module")
def live(detector_model_path: Path) -> Iterator[Live]:
    url = db_url(TEST_DB)
    client = redis.Redis.from_url(url)
    client.flushdb()
    ports = {service: free_port() for service in SERVICES}
    children = Children(
        {**os.environ, "EMOSTREAM_REDIS_URL": url, "EMOSTREAM_LOG_LEVEL": "WARNING", "TF_CPP_MIN_LOG_LEVEL": "3"}
    )
    scratch = Path(tempfile.mkdtemp(prefix="emostream-live-"))
    try:
        serving_port = free_port()
        children.emostream(
            "modelserver",
            ["serve-model", "--model-base", str(ROOT / "models/emotion"), "--port", str(serving_port)],
            EMOSTREAM_METRICS_PORT=str(ports["modelserver"]),
        )
        from emostream_serving.tf_serving import ServingClient

        with ServingClient(f"127.0.0.1:{serving_port}", "emotion") as serving:
            serving.wait_ready(120)
        # Classifier replicas finishing out of order are covered by tests/tracker; one here saves a
        # TensorFlow start on a busy machine.
        replicas = [("classifier", "classifier-1")]
        replicas += [("detector", "detector-1"), ("detector", "detector-2"), ("tracker", "tracker")]
        commands = {"classifier": "classify", "detector": "detect", "tracker": "track"}
        for service, consumer in replicas:
            children.emostream(
                consumer,
                [commands[service]],
                EMOSTREAM_CONSUMER=consumer,
                EMOSTREAM_METRICS_PORT=str(ports[consumer]),
                CLASSIFIER_SERVING_TARGET=f"127.0.0.1:{serving_port}",
                CLASSIFIER_MODEL_BASE=str(ROOT / "models/emotion"),
                DETECTOR_MODEL_DIR=str(detector_model_path.parent),
                DETECTOR_RANGE="near",  # the demo's faces are near; the tiled far search adds work, not faces
                DETECTOR_FRAMES_PER_READ="1",  # replicas take turns frame by frame: out of order downstream
            )
        viewer_port = free_port()
        children.emostream("viewer", ["view", "--port", str(viewer_port)], EMOSTREAM_METRICS_PORT=str(ports["viewer"]))
        wait_for_replicas(client, children, replicas, timeout_s=300)
        # The demo clip: the astronaut twice, drifting sideways; looped, paced at 6 frames/s per camera.
        sources = [f"{camera}={write_demo(scratch / camera)}" for camera in CAMERAS]
        children.emostream(
            "capture",
            ["capture", "--loop", "--images-fps", "6", *(a for s in sources for a in ("--sources", s))],
            EMOSTREAM_CONSUMER="capture",
            EMOSTREAM_METRICS_PORT=str(ports["capture"]),
        )

        def tracked_everywhere() -> bool:
            failure = children.failed(allowed_to_finish=set())
            assert failure is None, failure
            cameras = {e.camera for e in events(client) if e.track is not None}
            return cameras == set(CAMERAS) and len(track_entries(client)) >= 4

        wait_for(tracked_everywhere, 120, "tracked events from both cameras", interval=0.5)
        metrics = {service: f"http://127.0.0.1:{port}/metrics" for service, port in ports.items()}
        yield Live(client, f"http://127.0.0.1:{viewer_port}", metrics, children)
    finally:
        children.stop()
        shutil.rmtree(scratch, ignore_errors=True)
        client.flushdb()
        client.close()


def events(client: redis.Redis) -> list[wire.EmotionEvent]:
    return [wire.decode_event(fields) for _, fields in client.xrange(names.EVENTS)]


def track_entries(client: redis.Redis) -> list[dict[str, str]]:
    return [{k.decode(): v.decode() for k, v in f.items()} for _, f in client.xrange(names.TRACKS)]


def test_each_known_face_keeps_one_track(live: Live) -> None:
    wait_for(lambda: len(events(live.client)) >= 80, 120, "80 events", interval=0.5)
    by_face: dict[tuple[str, str], set[str]] = defaultdict(set)
    seqs: dict[str, list[int]] = defaultdict(list)
    for event in events(live.client):
        assert event.track is not None, event
        assert event.faces_in_frame == 2 and event.track.label in LABELS
        side = "left" if event.box.x < 400 else "right"
        by_face[(event.camera, side)].add(event.track.track_id)
        seqs[event.camera].append(event.frame_seq)
    # Two faces per camera that never cross: one track each, all different, through both replicas.
    assert sorted(by_face) == [(c, s) for c in CAMERAS for s in ("left", "right")]
    assert all(len(ids) == 1 for ids in by_face.values()), dict(by_face)
    assert len(set.union(*by_face.values())) == 4
    # Published in frame order per camera although two replicas of each stage handled the frames.
    assert all(s == sorted(s) for s in seqs.values())
    starts = {e["track_id"] for e in track_entries(live.client) if e["type"] == "start"}
    assert set.union(*by_face.values()) <= starts


def find_browser() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        pytest.fail(
            "the viewer test needs Chromium and chromedriver: run scripts/test.sh as root (it installs them) "
            "or `apt-get install chromium chromium-driver`"
        )
    return browser, driver


def chrome(browser: str, driver: str, profile: Path) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--window-size=1400,900",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(executable_path=driver))


CANVAS = "section.camera[data-camera='{}'] canvas"
HEX = {"happy": (0xF5, 0xC5, 0x18), "neutral": (0x9E, 0x9E, 0x9E), "fear": (0xA5, 0x5E, 0xEA)}


def canvas_state(page: Any, camera: str) -> dict[str, Any]:
    """What the page drew last on `camera`'s canvas, a digest of its pixels, and the colour on each box's edge."""
    state: dict[str, Any] = page.execute_script(
        """
        const c = document.querySelector(arguments[0]);
        if (!c || !c.dataset.frameSeq) return null;
        const g = c.getContext('2d');
        const boxes = JSON.parse(c.dataset.boxes);
        const edges = boxes.map(b => Array.from(g.getImageData(b.x, b.y + Math.round(b.h / 2), 1, 1).data));
        return {seq: Number(c.dataset.frameSeq), ids: c.dataset.trackIds, boxes, edges, png: c.toDataURL()};
        """,
        CANVAS.format(camera),
    )
    if state:
        state["digest"] = hashlib.sha256(base64.b64decode(state.pop("png").split(",", 1)[1])).hexdigest()
    return state


def test_viewer_in_headless_chromium(live: Live, tmp_path: Path) -> None:
    browser, driver = find_browser()
    page = chrome(browser, driver, tmp_path / "profile")
    try:
        page.get(live.viewer)
        wait_for(
            lambda: (
                {s.get_attribute("data-camera") for s in page.find_elements("css selector", "section.camera")}
                == set(CAMERAS)
            ),
            30,
            "a panel for each camera",
        )
        first: dict[str, dict[str, Any]] = {}
        for camera in CAMERAS:
            wait_for(
                lambda c=camera: (s := canvas_state(page, c)) and len(s["ids"].split()) == 2, 90, f"{camera} boxes"
            )
            first[camera] = canvas_state(page, camera)
        for camera in CAMERAS:
            # The picture updates: a later frame, other pixels. The demo sways on a sine, so
            # neighbouring frames near its turning points can be the same picture: wait for one that is not.
            seen: dict[str, Any] = {}

            def later_with_boxes(c: str = camera, seen: dict[str, Any] = seen) -> bool:
                seen.update(state := canvas_state(page, c))
                return bool(
                    state["seq"] > first[c]["seq"]
                    and len(state["ids"].split()) == 2
                    and state["digest"] != first[c]["digest"]
                )

            wait_for(later_with_boxes, 60, f"{camera} updating")
            later = dict(seen)
            assert later["seq"] > first[camera]["seq"] and later["digest"] != first[camera]["digest"]
            # Boxes with track ids on both faces, drawn in their label's colour.
            ids = later["ids"].split()
            assert len(ids) == 2 and all(i.startswith(f"{camera}-") for i in ids), later
            for box, edge in zip(later["boxes"], later["edges"], strict=True):
                want = HEX.get(box["label"], (0x2E, 0x86, 0xDE))
                assert all(abs(a - b) <= 40 for a, b in zip(edge[:3], want, strict=True)), (box, edge)
            # A timeline row per track.
            rows = page.find_elements("css selector", f"section.camera[data-camera='{camera}'] .track")
            assert set(ids) <= {row.get_attribute("data-track-id") for row in rows}
        if os.environ.get("EMOSTREAM_SCREENSHOT"):
            time.sleep(3)  # timelines fill a little
            page.save_screenshot(os.environ["EMOSTREAM_SCREENSHOT"])
        assert page.execute_script("return document.getElementById('status').textContent") == "live"
    finally:
        page.quit()


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(url, timeout=10).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def progress(client: redis.Redis, camera: str) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in client.hgetall(names.progress(camera)).items()}


def total(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, got), v in samples.items() if n == name and want <= set(got))


def test_every_service_serves_metrics_that_count_what_it_did(live: Live) -> None:
    for camera in CAMERAS:
        before = progress(live.client, camera)
        scraped = {service: scrape(url) for service, url in live.metrics.items()}
        after = progress(live.client, camera)

        def bracket(
            key: str, value: float, c: str = camera, low: dict[str, int] = before, high: dict[str, int] = after
        ) -> None:
            assert low.get(key, 0) <= value <= high.get(key, 0), (c, key, low, value, high)

        bracket("frames_published", total(scraped["capture"], "emostream_capture_frames_total", camera=camera))
        detectors = [scraped["detector-1"], scraped["detector-2"]]
        bracket("frames_detected", sum(total(s, "emostream_detector_frames_total", camera=camera) for s in detectors))
        bracket("faces_detected", sum(total(s, "emostream_detector_faces_total", camera=camera) for s in detectors))
        assert all(total(s, "emostream_detector_frames_total", camera=camera) > 0 for s in detectors)
        bracket("events", total(scraped["classifier-1"], "emostream_classifier_faces_total", camera=camera))
        bracket("tracked", total(scraped["tracker"], "emostream_tracker_events_total", camera=camera))
        assert total(scraped["tracker"], "emostream_tracker_track_entries_total", camera=camera, kind="start") >= 2
    models = scraped["modelserver"]
    assert models[("emostream_modelserver_model_version_info", (("model", "emotion"),))] == 2
    assert total(models, "emostream_modelserver_requests_total", method="Predict", code="OK") > 0
    predicted = total(models, "emostream_modelserver_faces_total", version="2")
    classified = total(scraped["classifier-1"], "emostream_classifier_faces_total")
    reused = total(scraped["classifier-1"], "emostream_classifier_reused_faces_total")
    assert predicted + reused >= classified > 0  # each face was predicted, or reused a recent prediction
    assert total(models, "emostream_modelserver_predict_seconds_count") > 0
    for service, stream in (("detector-1", names.frames("door")), ("classifier-1", names.FACES)):
        assert (
            "emostream_stream_backlog_entries",
            tuple(sorted({"stream": stream, "group": service.split("-")[0]}.items())),
        ) in scraped[service]
    assert total(scraped["tracker"], "emostream_pipeline_latency_seconds_count") > 0
    assert total(scraped["viewer"], "emostream_viewer_frames_total") > 0  # the browser test fetched frames
