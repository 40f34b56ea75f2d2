"""The viewer's web application (Starlette): the page, camera and frame APIs, and SSE subscriptions."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aioredis
from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from emostream import metrics, names
from emostream_viewer import feeds

STATIC = Path(__file__).parent / "static"
STREAM_ID = re.compile(r"^\d{1,20}(-\d{1,20})?$")
NO_STORE = {"Cache-Control": "no-store"}


def _client(request: Request) -> aioredis.Redis:
    client: aioredis.Redis = request.app.state.redis
    return client


async def index(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", headers=NO_STORE)


async def camera_list(request: Request) -> Response:
    found = await feeds.cameras(_client(request))
    return JSONResponse(
        [{"camera": c.camera, "progress": c.progress, "last_frame_ms": c.last_frame_ms} for c in found],
        headers=NO_STORE,
    )


def _int_param(request: Request, name: str) -> int | None:
    value = request.query_params.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        return None


async def camera_frame(request: Request) -> Response:
    """One JPEG: `?seq=` (with `&ts=` its capture time, to find it fast) or the newest."""
    camera = request.path_params["camera"]
    for name in ("seq", "ts"):
        if request.query_params.get(name) not in (None, "") and _int_param(request, name) is None:
            return JSONResponse({"error": f"{name} must be an integer"}, status_code=400)
    found = await feeds.frame(_client(request), camera, _int_param(request, "seq"), _int_param(request, "ts"))
    if found is None:
        return JSONResponse({"error": f"no such frame of camera {camera!r} (frames are kept briefly)"}, 404)
    metrics.VIEWER_FRAMES.labels(camera).inc()
    headers = {
        **NO_STORE,
        "X-Frame-Seq": str(found.seq),
        "X-Frame-Ts": str(found.ts_capture_ms),
        "X-Frame-Width": str(found.width),
        "X-Frame-Height": str(found.height),
    }
    return Response(found.jpeg, media_type="image/jpeg", headers=headers)


def _subscription(stream: str, label: str):  # type: ignore[no-untyped-def]
    async def endpoint(request: Request) -> Response:
        """Server-Sent Events, one JSON object per entry; `?camera=` filters, Last-Event-ID resumes."""
        client = _client(request)
        camera = request.query_params.get("camera") or None
        resume = request.headers.get("last-event-id") or request.query_params.get("since")
        if resume and not STREAM_ID.match(resume):
            return JSONResponse(
                {"error": "Last-Event-ID / since must be a stream entry id such as 1700000000000-0"}, 400
            )
        # Resolved now, before the response starts: an entry added after the request is never missed.
        after = resume if resume else await feeds.last_id(client, stream)

        async def entries() -> AsyncIterator[dict[str, Any]]:
            metrics.VIEWER_CLIENTS.labels(label).inc()
            try:
                async for item in feeds.follow(client, stream, after, camera):
                    if item is None:
                        continue
                    entry_id, body = item
                    metrics.VIEWER_SENT.labels(label).inc()
                    yield {"id": entry_id, "event": label, "data": json.dumps(body, separators=(",", ":"))}
            finally:
                metrics.VIEWER_CLIENTS.labels(label).dec()

        return EventSourceResponse(entries(), ping=15, headers=NO_STORE)

    return endpoint


async def health(request: Request) -> Response:
    await _client(request).ping()
    return JSONResponse({"ok": True})


async def redis_down(request: Request, error: Exception) -> Response:
    return JSONResponse({"error": f"Redis unavailable: {type(error).__name__}"}, status_code=503)


def create_app(redis_url: str) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.redis = aioredis.Redis.from_url(redis_url)
        try:
            yield
        finally:
            await app.state.redis.aclose()

    routes = [
        Route("/", index),
        Route("/healthz", health),
        Route("/api/cameras", camera_list),
        Route("/api/cameras/{camera}/frame", camera_frame),
        Route("/api/events", _subscription(names.EVENTS, "event")),
        Route("/api/tracks", _subscription(names.TRACKS, "track")),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    handlers = {redis.RedisError: redis_down}
    return Starlette(routes=routes, lifespan=lifespan, exception_handlers=handlers)
