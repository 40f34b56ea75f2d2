"""A media folder as sources: what `docker compose up` plays from ./media without any configuration."""

from __future__ import annotations

import logging
from collections.abc import Collection
from pathlib import Path

from emostream_capture import sources as src

log = logging.getLogger("emostream.capture")


def media_sources(folder: Path, taken: Collection[str], images_fps: float = 10.0) -> list[src.Source]:
    """Each video file in `folder` (camera = its stem), each sub-folder of images, and the folder's own images.

    Hidden entries are ignored. What cannot be played (not a video, a folder without images, a camera id
    already `taken`) is skipped with one log line, so one stray file does not stop the others. A missing
    or empty folder gives no source.
    """
    if not folder.is_dir():
        log.info("media folder %s does not exist: nothing to play from it", folder)
        return []
    found: list[src.Source] = []
    cameras = set(taken)
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    specs = [str(p) for p in entries if p.is_dir() or p.suffix.lower() not in src.IMAGE_SUFFIXES]
    if any(p.is_file() and p.suffix.lower() in src.IMAGE_SUFFIXES for p in entries):
        specs.append(str(folder))  # the folder's own images, together, as one camera
    for spec in specs:
        try:
            source = src.parse_source(spec, images_fps)
        except src.SourceError as error:
            log.warning("media: skipping %s: %s", spec, error)
            continue
        if source.camera in cameras:
            log.warning("media: skipping %s: camera id %r is already in use", spec, source.camera)
            continue
        cameras.add(source.camera)
        found.append(source)
    return found
