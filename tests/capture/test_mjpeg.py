"""MJPEG over HTTP from a server in the test, which hangs up after a few frames: capture reconnects."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import pytest
import redis
from emostream_capture.sources import UrlSource, parse_source

from emostream import names
from tests.capture.conftest import frame_image, progress, read_frames, settings, start_source

pytestmark = pytest.mark.timeout(30)
FRAMES_PER_CONNECTION = 6
BOUNDARY = b"frameboundary"


class MjpegServer(ThreadingHTTPServer):
    daemon_threads = True
    connections = 0


class MjpegHandler(BaseHTTPRequestHandler):
    """Sends FRAMES_PER_CONNECTION JPEG parts as multipart/x-mixed-replace, then closes the connection."""

    server: MjpegServer

    def do_GET(self) -> None:
        self.server.connections += 1
        self.send_response(200)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY.decode()}")
        self.end_headers()
        try:
            for index in range(FRAMES_PER_CONNECTION):
                jpeg = cv2.imencode(".jpg", frame_image(index, 64, 48))[1].tobytes()
                head = b"--%s\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % (BOUNDARY, len(jpeg))
                self.wfile.write(head + jpeg + b"\r\n")
                self.wfile.flush()
                time.sleep(0.02)
        except OSError:  # the reader went away first
            pass

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def mjpeg_server() -> Iterator[MjpegServer]:
    server = MjpegServer(("127.0.0.1", 0), MjpegHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_mjpeg_stream_survives_the_server_hanging_up(
    mjpeg_server: MjpegServer,
    client: redis.Redis,
    redis_url: str,
) -> None:
    url = f"http://127.0.0.1:{mjpeg_server.server_address[1]}/video.mjpg"
    source = parse_source(url)
    assert source == UrlSource("127.0.0.1", url)
    wanted = FRAMES_PER_CONNECTION * 2 + 2  # only reachable over three connections
    # max_backlog=1 with no detector: live sources are never held back, so this must not stall.
    running = start_source(client, source, settings(redis_url, network_timeout_s=3, realtime=False, max_backlog=1))
    try:
        deadline = time.monotonic() + 15
        while int(progress(client, "127.0.0.1").get("frames_published", 0)) < wanted:
            assert time.monotonic() < deadline, f"only {progress(client, '127.0.0.1')} after 15 s"
            time.sleep(0.05)
    finally:
        running.finish()
    assert mjpeg_server.connections >= 3
    frames = read_frames(client, "127.0.0.1")
    assert [f.seq for f in frames] == list(range(len(frames)))  # seq continues across reconnects
    assert {(f.width, f.height) for f in frames} == {(64, 48)}
    assert "done" not in progress(client, "127.0.0.1")  # a live source never finishes
    assert client.sismember(names.CAMERAS, "127.0.0.1")
