"""The `emostream` command: one subcommand per service and job.

Service subcommands import their package only when called, so an image that
installs one service runs its own subcommand without the others' dependencies.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Sequence

from emostream.errors import EmostreamError
from emostream.heap import keep_freed_memory
from emostream.light_imports import mark_standalone, tensorflow_protos_only
from emostream.native_logs import third_party_log_env

# subcommand -> (module, function, one-line help, package that provides it)
COMMANDS: dict[str, tuple[str, str, str, str]] = {
    "up": ("emostream.launcher", "main", "run the whole system locally and print events", "emostream"),
    "events": ("emostream.events_command", "main", "follow the emotion event stream", "emostream"),
    "health": ("emostream.health_command", "main", "exit 0 if a service's heartbeat is fresh", "emostream"),
    "capture": (
        "emostream_capture.main",
        "main",
        "publish frames from cameras, files, URLs, folders",
        "emostream-capture",
    ),
    "detect": ("emostream_detector.main", "main", "detect faces in frame streams", "emostream-detector"),
    "fetch-detector-model": (
        "emostream_detector.model_file",
        "main",
        "download and verify the face detector",
        "emostream-detector",
    ),
    "classify": ("emostream_classifier.main", "main", "classify faces through TF Serving gRPC", "emostream-classifier"),
    "track": (
        "emostream_tracker.main",
        "main",
        "follow faces across frames, smooth labels, publish tracked events",
        "emostream-tracker",
    ),
    "view": ("emostream_viewer.main", "main", "serve the live web viewer and SSE subscriptions", "emostream-viewer"),
    "serve-model": (
        "emostream_modelserver.main",
        "main",
        "serve SavedModels over TF Serving's gRPC API",
        "emostream-modelserver",
    ),
    "train": ("emostream_trainer.train_command", "main", "train and export a new model version", "emostream-trainer"),
    "evaluate": (
        "emostream_trainer.evaluate_command",
        "main",
        "evaluate a model on a labelled folder",
        "emostream-trainer",
    ),
    "ensemble": (
        "emostream_trainer.ensemble_command",
        "main",
        "export the mean of several model versions as one version",
        "emostream-trainer",
    ),
    "deploy": (
        "emostream_trainer.deploy_command",
        "main",
        "list, publish or roll back model versions",
        "emostream-trainer",
    ),
}


# Commands whose process never runs TensorFlow, though it may import its protos (classify) or be
# offered it (MediaPipe in detect): they load those modules without TensorFlow's runtime.
WITHOUT_TENSORFLOW = frozenset({"up", "events", "health", "capture", "detect", "classify", "track", "view"})


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {help_text}" for name, (_, _, help_text, _) in COMMANDS.items()]
    return "usage: emostream <command> [options]\n\ncommands:\n" + "\n".join(lines)


def resolve(command: str) -> Callable[[list[str]], int]:
    module_name, function, _, package = COMMANDS[command]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if not module_name.startswith(error.name or "\0"):
            raise
        raise SystemExit(f"emostream {command}: the package {package} is not installed here") from None
    entry: Callable[[list[str]], int] = getattr(module, function)
    return entry


def main(argv: Sequence[str] | None = None) -> int:
    # TensorFlow's and MediaPipe's C++ start-up chatter hides real logs unless the level asks for it
    for name, value in third_party_log_env(os.environ.get("EMOSTREAM_LOG_LEVEL", "INFO")).items():
        os.environ.setdefault(name, value)
    # TensorFlow turns oneDNN on only for CPUs with AVX-512 VNNI/BF16 or AMX; on AVX2 it still serves ~20 % faster
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0 if args else 2
    if args[0] not in COMMANDS:
        print(f"emostream: unknown command {args[0]!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    if argv is None:  # a process of its own, not a call from other code
        mark_standalone()
        keep_freed_memory()
        if args[0] in WITHOUT_TENSORFLOW:
            tensorflow_protos_only()
    command = resolve(args[0])
    try:
        return command(args[1:])
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # the last line of defence: every known failure already has its own line
        if os.environ.get("EMOSTREAM_LOG_LEVEL", "").upper() == "DEBUG":
            raise
        print(f"emostream {args[0]}: {_one_line(error)}", file=sys.stderr)
        return 1


def _one_line(error: Exception) -> str:
    """A known failure (EmostreamError) as its message; anything else also names its type, as a bug would."""
    lines = str(error).strip().splitlines()
    first = lines[0] if lines else "no message"
    if isinstance(error, EmostreamError):
        return first
    return f"{type(error).__name__}: {first} (EMOSTREAM_LOG_LEVEL=DEBUG shows the traceback)"


if __name__ == "__main__":
    sys.exit(main())
