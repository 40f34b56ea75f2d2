"""`emostream serve-model`: run the model server until SIGINT or SIGTERM."""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from emostream import metrics
from emostream.cpu import computes_bfloat16
from emostream.lifecycle import stop_on_signals
from emostream.light_imports import tensorflow_protos_only_if_standalone
from emostream.settings import load
from emostream_modelserver.precision import Precision, PrecisionError, rewrite_to_bfloat16
from emostream_modelserver.runtime import Runtime, choose, usable_cores

log = logging.getLogger("emostream_modelserver")
SHUTDOWN_GRACE_SECONDS = 5.0


class ModelServerSettings(BaseSettings):
    """Serve SavedModel versions over TF Serving's gRPC API."""

    model_config = SettingsConfigDict(extra="forbid", env_prefix="MODELSERVER_")

    model_base: Path = Field(Path("models/emotion"), description="TF Serving model base path")
    model_name: str = Field("emotion", min_length=1, description="model name clients ask for")
    host: str = Field("127.0.0.1", min_length=1, description="address to bind")
    port: int = Field(8500, ge=0, le=65535, description="gRPC port, 0 for any free one")
    poll_seconds: float = Field(1.0, gt=0, le=3600, description="how often to look for new versions")
    model_config_file: Path | None = Field(
        None, description="TF Serving model config file (text ModelServerConfig): versions and labels to serve"
    )
    model_config_file_poll_wait_seconds: float = Field(
        1.0, ge=0, le=3600, description="how often to re-read the model config file (0: read it once)"
    )
    allow_version_labels_for_unavailable_models: bool = Field(
        False, description="let a new label point at a version still loading (TF Serving's flag of that name)"
    )
    config_base_path: Path | None = Field(
        None,
        description="serve the config's --model-name from this folder instead of its base_path "
        "(the config names the path inside the TF Serving container)",
    )
    runtime: Runtime = Field(
        "auto",
        description="what computes the model: litert runs a version's compiled copy without TensorFlow's "
        "runtime; tensorflow runs the SavedModel; auto is litert, or tensorflow for precision bfloat16",
    )
    precision: Precision = Field(
        "auto",
        description="compute precision: int8 (LiteRT's int8 copy), float32, or bfloat16 (TensorFlow on CPUs with "
        "AVX512-BF16 or AMX); auto is int8 with litert, and bfloat16 where native, else float32, with tensorflow",
    )
    threads: int = Field(0, ge=0, le=1024, description="cores one model call may use (0: all this process may use)")
    metrics_port: int = Field(
        0,
        ge=0,
        le=65535,
        description="serve Prometheus metrics on this port at /metrics (0: off)",
        validation_alias="EMOSTREAM_METRICS_PORT",
    )
    log_level: str = Field(
        "INFO",
        pattern="^(DEBUG|INFO|WARNING|ERROR)$",
        description="logging level",
        validation_alias="EMOSTREAM_LOG_LEVEL",
    )


def main(argv: list[str] | None = None, *, native_bfloat16: bool | None = None) -> int:
    """Run the model server; 0 after a clean shutdown, 2 on a bad setting, 1 if it cannot start.

    `native_bfloat16` overrides what /proc/cpuinfo says about this CPU (for tests).
    """
    try:
        settings = load(ModelServerSettings, argv, prog="emostream serve-model")
    except SystemExit as done:  # a bad setting (2, after one line naming it) or --help (0)
        return int(done.code or 0)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if settings.model_config_file is None and not settings.model_base.is_dir():
        log.warning("model base %s does not exist yet; waiting for a version to appear", settings.model_base)
    try:
        native = computes_bfloat16() if native_bfloat16 is None else native_bfloat16
        compute = choose(settings.runtime, settings.precision, native)
    except PrecisionError as error:
        print(f"emostream serve-model: {error}", file=sys.stderr)
        return 2
    if compute.runtime == "litert":
        tensorflow_protos_only_if_standalone()  # a process that never runs TensorFlow: ~600 MB and seconds less
    elif compute.precision == "bfloat16":
        rewrite_to_bfloat16()
    threads = settings.threads or usable_cores()
    log.info("computing with %s in %s on %d core(s)", compute.runtime, compute.precision, threads)
    # The server's modules are imported here so that `--help` and bad flags answer at once.
    from emostream_modelserver.model_config import ConfigError
    from emostream_modelserver.server import start_server
    from emostream_modelserver.versions import load_version

    stop = stop_on_signals()
    try:
        server = start_server(
            settings.model_base,
            settings.model_name,
            settings.port,
            settings.host,
            settings.poll_seconds,
            model_config_file=settings.model_config_file,
            config_poll_seconds=settings.model_config_file_poll_wait_seconds,
            allow_labels_for_unavailable=settings.allow_version_labels_for_unavailable_models,
            base_override=settings.config_base_path,
            loader=functools.partial(load_version, compute=compute, threads=threads),
        )
    except OSError as error:
        print(f"emostream serve-model: {error}", file=sys.stderr)
        return 1
    except ConfigError as error:  # as TF Serving: "Failed to start server. Error: <code>: <message>"
        print(f"emostream serve-model: {error.code.name}: {error.message}", file=sys.stderr)
        return 1
    try:
        metrics.serve(settings.metrics_port)
    except OSError as error:
        print(f"emostream serve-model: cannot serve metrics on port {settings.metrics_port}: {error}", file=sys.stderr)
        server.stop(0)
        return 1
    stop.wait()
    log.info("shutting down")
    server.stop(SHUTDOWN_GRACE_SECONDS)
    log.info("model server stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
