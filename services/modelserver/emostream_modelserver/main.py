"""`emostream serve-model`: run the model server until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger("emostream_modelserver")

T = TypeVar("T")
SHUTDOWN_GRACE_SECONDS = 5.0


class SettingError(ValueError):
    """A flag or environment variable with an unusable value; the message names it."""


@dataclass(frozen=True)
class Settings:
    """Where the models are, what they are called, where to listen."""

    model_base: Path
    model_name: str
    host: str
    port: int
    poll_seconds: float


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        # One line, not argparse's usage block, like every other bad value.
        raise SettingError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="emostream serve-model", description="Serve SavedModel versions over TF Serving's gRPC API.")
    parser.add_argument("--model-base", help="TF Serving model base path (env MODELSERVER_MODEL_BASE; default models/emotion)")
    parser.add_argument("--model-name", help="model name clients ask for (env MODELSERVER_MODEL_NAME; default emotion)")
    parser.add_argument("--host", help="address to bind (env MODELSERVER_HOST; default 127.0.0.1)")
    parser.add_argument("--port", help="gRPC port, 0 for any free one (env MODELSERVER_PORT; default 8500)")
    parser.add_argument("--poll-seconds", help="how often to look for new versions (env MODELSERVER_POLL_SECONDS; default 1.0)")
    return parser


def _port(text: str) -> int:
    if not text.strip().isdigit():
        raise ValueError("expected a port number 0-65535")
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError("out of range 0-65535")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError("expected a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError("must be a positive number")
    return value


def _text(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be empty")
    return text


def _pick(flag: str | None, flag_name: str, env: Mapping[str, str], env_name: str, default: str, parse: Callable[[str], T]) -> T:
    """The flag if given, else the environment variable, else the default, parsed."""
    if flag is not None:
        source, raw = flag_name, flag
    elif env_name in env:
        source, raw = env_name, env[env_name]
    else:
        source, raw = "default", default
    try:
        return parse(raw)
    except ValueError as error:
        raise SettingError(f"bad value for {source}: {raw!r} ({error})") from None


def parse_settings(argv: list[str] | None, env: Mapping[str, str]) -> Settings:
    """Settings from flags, then MODELSERVER_* environment variables, then defaults."""
    args = _parser().parse_args(argv)
    return Settings(
        model_base=_pick(args.model_base, "--model-base", env, "MODELSERVER_MODEL_BASE", "models/emotion", lambda s: Path(_text(s))),
        model_name=_pick(args.model_name, "--model-name", env, "MODELSERVER_MODEL_NAME", "emotion", _text),
        host=_pick(args.host, "--host", env, "MODELSERVER_HOST", "127.0.0.1", _text),
        port=_pick(args.port, "--port", env, "MODELSERVER_PORT", "8500", _port),
        poll_seconds=_pick(args.poll_seconds, "--poll-seconds", env, "MODELSERVER_POLL_SECONDS", "1.0", _seconds),
    )


def _install_signal_handlers(stop: threading.Event) -> None:
    def handle(signum: int, _frame: object) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        stop.set()

    if threading.current_thread() is threading.main_thread():  # signal handlers only install there
        signal.signal(signal.SIGINT, handle)
        signal.signal(signal.SIGTERM, handle)


def main(argv: list[str] | None = None) -> int:
    """Run the model server; 0 after a clean shutdown, 2 on a bad setting, 1 if it cannot start."""
    try:
        settings = parse_settings(argv, os.environ)
    except SettingError as error:
        print(f"emostream serve-model: {error}", file=sys.stderr)
        return 2
    except SystemExit as done:  # --help
        return int(done.code or 0)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not settings.model_base.is_dir():
        log.warning("model base %s does not exist yet; waiting for a version to appear", settings.model_base)
    # TensorFlow is imported here so that `--help` and bad flags answer without its slow start.
    from emostream_modelserver.server import start_server

    stop = threading.Event()
    _install_signal_handlers(stop)
    try:
        server = start_server(settings.model_base, settings.model_name, settings.port, settings.host, settings.poll_seconds)
    except OSError as error:
        print(f"emostream serve-model: {error}", file=sys.stderr)
        return 1
    stop.wait()
    server.stop(SHUTDOWN_GRACE_SECONDS)
    log.info("model server stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
