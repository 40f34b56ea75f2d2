"""scripts/compose-smoke.sh's eyes inside the stack: run in a classifier container, reads Redis and the model server.

    docker exec -i CONTAINER python - clip CAMERA [--version V] [--timeout S] < probe.py
    ... python - playing CAMERA [--timeout S]
    ... python - served-version V [--label L] [--timeout S]
    ... python - heartbeats SERVICE
    ... python - deadletters

`clip` waits until capture has published the whole file and every face the detectors found has its
event, then prints one line and exits 1 when a frame went undetected, or an event is missing,
duplicated or names another version. (How many faces a frame holds is the detector's business: it
tracks faces across frames, so replays of the same clip may differ by a face or two.)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter

from emostream import names
from emostream.connection import connect
from emostream.names import Progress as P
from emostream.wire import decode_event, decode_face

SETTLE_S = 3.0


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def clip_state(client, camera: str) -> dict:  # type: ignore[no-untyped-def]
    progress = {_text(k): _text(v) for k, v in client.hgetall(names.progress(camera)).items()}
    faces = Counter()
    for _, fields in client.xrange(names.FACES):
        face = decode_face(fields)
        if face.camera == camera:
            faces[face.identity] += 1
    events = Counter()
    versions = set()
    for _, fields in client.xrange(names.EVENTS):
        event = decode_event(fields)
        if event.camera == camera:
            events[f"{event.camera}:{event.frame_seq}:{event.face_index}"] += 1
            versions.add(event.model_version)
    return {"progress": progress, "faces": faces, "events": events, "versions": versions}


def clip(args: argparse.Namespace) -> int:
    client = connect(os.environ["EMOSTREAM_REDIS_URL"])
    deadline = time.monotonic() + args.timeout
    last, stable_since = None, time.monotonic()
    while True:
        state = clip_state(client, args.camera)
        progress = state["progress"]
        total = int(progress.get(P.FRAMES_TOTAL, -1))
        finished = (
            progress.get(P.DONE) == "1"
            and int(progress.get(P.FRAMES_DETECTED, 0)) + int(progress.get(P.FRAMES_FAILED, 0)) >= total
            and set(state["events"]) >= set(state["faces"])
        )
        summary = (progress.get(P.DONE), len(state["faces"]), sum(state["events"].values()))
        if summary != last:
            last, stable_since = summary, time.monotonic()
        if finished and time.monotonic() - stable_since >= SETTLE_S:
            break
        if time.monotonic() > deadline:
            print(f"clip {args.camera}: not finished after {args.timeout:.0f}s: progress {progress}")
            return 1
        time.sleep(0.5)
    faces, events = state["faces"], state["events"]
    duplicates = sum(n - 1 for n in events.values() if n > 1) + sum(n - 1 for n in faces.values() if n > 1)
    missing = set(faces) - set(events)
    extra = set(events) - set(faces)
    versions = sorted(state["versions"])
    detected, lost = int(progress.get(P.FRAMES_DETECTED, 0)), int(progress.get(P.FRAMES_FAILED, 0))
    line = (
        f"clip {args.camera}: {total} frames, {detected} detected, {lost} failed, {len(faces)} faces, "
        f"{sum(events.values())} events, "
        f"{duplicates} duplicates, {len(missing)} missing, {len(extra)} without a face, model versions {versions}"
    )
    failed = bool(duplicates or missing or extra or not faces or lost or detected < total)
    if args.version is not None and versions != [args.version]:
        line += f"; expected only version {args.version}"
        failed = True
    print(line)
    return 1 if failed else 0


def playing(args: argparse.Namespace) -> int:
    """Wait until capture has published a first frame of the camera's current run."""
    client = connect(os.environ["EMOSTREAM_REDIS_URL"])
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        published = int(client.hget(names.progress(args.camera), P.FRAMES_PUBLISHED) or 0)
        if published and not client.hget(names.progress(args.camera), P.DONE):
            print(f"clip {args.camera} is playing ({published} frames published)")
            return 0
        time.sleep(0.2)
    print(f"clip {args.camera} did not start playing within {args.timeout:.0f}s")
    return 1


def served_version(args: argparse.Namespace) -> int:
    """Wait until the label the classifiers ask for answers a Predict with the version."""
    import numpy as np
    from emostream_serving.tf_serving import ServingClient, ServingError

    deadline = time.monotonic() + args.timeout
    target, model = os.environ["CLASSIFIER_SERVING_TARGET"], os.environ["CLASSIFIER_MODEL_NAME"]
    with ServingClient(target, model, version_label=args.label) as serving:
        served: object = None
        while time.monotonic() < deadline:
            try:
                served = serving.predict(np.zeros((1, 48, 48, 1), np.uint8)).model_version
            except ServingError as error:
                served = str(error)
            if served == args.version:
                print(f"label '{args.label}' answers with version {served}")
                return 0
            time.sleep(0.5)
    print(f"label '{args.label}' answers {served!r}, not version {args.version}, after {args.timeout:.0f}s")
    return 1


def heartbeats(args: argparse.Namespace) -> int:
    client = connect(os.environ["EMOSTREAM_REDIS_URL"])
    prefix = names.heartbeat(args.service, "")
    found = {}
    for key in client.scan_iter(match=prefix + "*"):
        beat = json.loads(client.get(key) or "{}")
        found[_text(key)[len(prefix) :]] = beat.get("totals", {})
    print(json.dumps(found, sort_keys=True))
    return 0


def deadletters(_: argparse.Namespace) -> int:
    client = connect(os.environ["EMOSTREAM_REDIS_URL"])
    print(client.xlen(names.DEAD_LETTERS))
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="probe.py")
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("clip")
    p.add_argument("camera")
    p.add_argument("--version", type=int)
    p.add_argument("--timeout", type=float, default=180)
    p.set_defaults(run=clip)
    p = commands.add_parser("playing")
    p.add_argument("camera")
    p.add_argument("--timeout", type=float, default=60)
    p.set_defaults(run=playing)
    p = commands.add_parser("served-version")
    p.add_argument("version", type=int)
    p.add_argument("--label", default=os.environ.get("CLASSIFIER_VERSION_LABEL", "stable"))
    p.add_argument("--timeout", type=float, default=90)
    p.set_defaults(run=served_version)
    p = commands.add_parser("heartbeats")
    p.add_argument("service")
    p.set_defaults(run=heartbeats)
    p = commands.add_parser("deadletters")
    p.set_defaults(run=deadletters)
    args = parser.parse_args(argv)
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
