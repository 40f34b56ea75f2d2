"""docker-compose.yml: valid for docker compose, consistent with the code, the images and TF Serving."""

from __future__ import annotations

import importlib
import json
import os
import re
import shlex
import shutil
import subprocess
import time
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import redis
import yaml
from pydantic_settings import BaseSettings

from emostream.cli import COMMANDS
from emostream.settings import CommonSettings, env_name
from tests.deploy.conftest import (
    COMPOSE_FILE,
    DEPLOY_DOC,
    DOCKERFILE,
    ENV_EXAMPLE,
    ROOT,
    Dockerfile,
    compose_variables,
    environment,
    volumes,
)
from tests.helpers.waiting import free_port

# Subcommand -> the settings class it reads (env names via emostream.settings.env_name).
SETTINGS_CLASSES = {
    "capture": ("emostream_capture.settings", "CaptureSettings"),
    "detect": ("emostream_detector.settings", "DetectorSettings"),
    "classify": ("emostream_classifier.settings", "ClassifierSettings"),
    "track": ("emostream_tracker.settings", "TrackerSettings"),
    "view": ("emostream_viewer.settings", "ViewerSettings"),
}
# Compose services that run an emostream subcommand, and which.
EXPECTED_SUBCOMMANDS = {
    "capture": "capture",
    "capture-webcam": "capture",
    "detector": "detect",
    "classifier": "classify",
    "trainer": "train",
    "tracker": "track",
    "viewer": "view",
}


def subcommand_argv(service: dict[str, Any]) -> list[str] | None:
    """The service's entrypoint: its own, else its Dockerfile's; None for third-party images."""
    if "build" not in service:
        return None
    if "entrypoint" in service:
        entry = service["entrypoint"]
        return entry.split() if isinstance(entry, str) else list(entry)
    if "build" in service:
        return Dockerfile.read(DOCKERFILE).stages()[service["build"]["target"]].exec_form("ENTRYPOINT")
    return None


def settings_env_names(subcommand: str) -> set[str]:
    """Environment variables the service's settings read."""
    module, name = SETTINGS_CLASSES[subcommand]
    cls: type[BaseSettings] = getattr(importlib.import_module(module), name)
    names = {env_name(cls, f) for f in cls.model_fields}
    if not issubclass(cls, CommonSettings):
        # Settings that hold the common ones separately read CommonSettings as well.
        names |= {env_name(CommonSettings, f) for f in CommonSettings.model_fields}
    return names


# --- docker compose itself ------------------------------------------------------------------------


def _compose_command() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    return None


@pytest.fixture(scope="module")
def compose_cli() -> list[str]:
    command = _compose_command()
    if command is None:
        # CI must run this check: .ci/run installs Debian's docker-compose.
        if os.environ.get("CI"):
            pytest.fail("neither docker-compose nor `docker compose` is installed, and CI is set")
        pytest.skip("docker-compose not installed (apt-get install docker-compose)")
    return command


def _run_config(cli: list[str], env_file: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    # Variables from this process would override the env file: keep the compose ones out.
    used = compose_variables(yaml.safe_load(COMPOSE_FILE.read_text()))
    env = {k: v for k, v in os.environ.items() if k not in used}
    return subprocess.run(
        [*cli, "--env-file", str(env_file), "-f", str(COMPOSE_FILE), "config", *extra],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )


def test_compose_config_validates(compose_cli: list[str], tmp_path: Path) -> None:
    env_file = tmp_path / "test.env"
    env_file.write_text(
        "REDIS_PASSWORD=test-password\nCAPTURE_SOURCES='[\"cam=/media/a.mp4\"]'\n"
        "DETECTOR_REPLICAS=3\nCLASSIFIER_REPLICAS=2\n"
    )
    quiet = _run_config(compose_cli, env_file, "-q")
    assert quiet.returncode == 0, quiet.stderr
    resolved = _run_config(compose_cli, env_file)
    assert resolved.returncode == 0, resolved.stderr
    services = yaml.safe_load(resolved.stdout)["services"]
    # Replica counts come from the environment and resolve to integers.
    assert services["detector"]["deploy"]["replicas"] == 3
    assert services["classifier"]["deploy"]["replicas"] == 2
    assert services["classifier"]["environment"]["EMOSTREAM_REDIS_URL"] == "redis://:test-password@redis:6379/0"
    assert services["capture"]["environment"]["CAPTURE_SOURCES"] == '["cam=/media/a.mp4"]'
    assert set(EXPECTED_SUBCOMMANDS) | {"redis", "tfserving"} == set(services)


def test_compose_config_matches_example_env(compose_cli: list[str], services: dict[str, dict[str, Any]]) -> None:
    """docker compose resolves .env.example exactly as the interpolation these tests read."""
    resolved = _run_config(compose_cli, ENV_EXAMPLE)
    assert resolved.returncode == 0, resolved.stderr
    real = yaml.safe_load(resolved.stdout)["services"]
    for name, service in services.items():
        assert environment(real[name]) == environment(service), name
        assert real[name].get("image") == service.get("image"), name


def test_compose_needs_no_configuration(compose_cli: list[str], tmp_path: Path) -> None:
    """A fresh clone, no .env: compose resolves, Redis has no password, capture plays the demo and ./media."""
    empty = tmp_path / "empty.env"  # not the repo's .env, which a developer may have
    empty.write_text("")
    resolved = _run_config(compose_cli, empty)
    assert resolved.returncode == 0, resolved.stderr
    services = yaml.safe_load(resolved.stdout)["services"]
    assert environment(services["detector"])["EMOSTREAM_REDIS_URL"] == "redis://:@redis:6379/0"
    assert environment(services["redis"])["REDIS_PASSWORD"] == ""
    capture = environment(services["capture"])
    assert json.loads(capture["CAPTURE_SOURCES"]) == ["demo=/opt/emostream/demo"]
    assert capture["CAPTURE_MEDIA_DIR"] == "/media" and capture["CAPTURE_KEEP_RUNNING"] == "true"
    media = next(v for v in volumes(services["capture"]) if v.target == "/media")
    assert media.read_only and media.source.endswith("/media")


def test_capture_image_holds_the_default_demo(compose_text: str) -> None:
    raw = yaml.safe_load(compose_text)["services"]["capture"]["environment"]["CAPTURE_SOURCES"]
    default = re.fullmatch(r"\$\{CAPTURE_SOURCES:-(.*)\}", raw)
    assert default, raw
    [spec] = json.loads(default.group(1))
    demo_dir = spec.split("=", 1)[1]
    runtime = Dockerfile.read(DOCKERFILE).stages()["capture"]
    assert ["--from=capture-venv", "/app/demo", demo_dir] in [c.split() for c in runtime.all("COPY")]


# --- the services and the code --------------------------------------------------------------------


def test_every_service_runs_an_existing_subcommand(services: dict[str, dict[str, Any]]) -> None:
    found = {}
    for name, service in services.items():
        argv = subcommand_argv(service)
        if argv is None:
            continue
        assert argv[0] == "emostream", name
        assert argv[1] in COMMANDS, f"{name}: `emostream {argv[1]}` is not in emostream.cli.COMMANDS"
        found[name] = argv[1]
    assert found == EXPECTED_SUBCOMMANDS


@pytest.mark.parametrize("name", [n for n, sub in EXPECTED_SUBCOMMANDS.items() if sub in SETTINGS_CLASSES])
def test_environment_is_read_by_the_service_settings(name: str, services: dict[str, dict[str, Any]]) -> None:
    subcommand = EXPECTED_SUBCOMMANDS[name]
    known = settings_env_names(subcommand)
    unknown = set(environment(services[name])) - known
    assert not unknown, f"{name} sets variables its settings do not read: {sorted(unknown)}"


def test_services_without_settings_set_no_environment(services: dict[str, dict[str, Any]]) -> None:
    for name, subcommand in EXPECTED_SUBCOMMANDS.items():
        if subcommand not in SETTINGS_CLASSES:
            assert environment(services[name]) == {}, f"{name} ({subcommand}) takes flags, not variables"


def test_consumer_name_left_to_the_hostname(services: dict[str, dict[str, Any]]) -> None:
    # A fixed EMOSTREAM_CONSUMER would make every replica the same consumer in its group.
    for name, service in services.items():
        assert "EMOSTREAM_CONSUMER" not in environment(service), name


def test_every_variable_is_documented(compose_text: str, services: dict[str, dict[str, Any]]) -> None:
    example = ENV_EXAMPLE.read_text()
    documented = {line.split("=", 1)[0] for line in example.splitlines() if re.match(r"^\w+=", line)}
    missing = compose_variables(yaml.safe_load(compose_text)) - documented
    assert not missing, f"variables used by docker-compose.yml but not set in .env.example: {sorted(missing)}"
    docs = example + DEPLOY_DOC.read_text()
    for name in EXPECTED_SUBCOMMANDS:
        for variable in environment(services[name]):
            assert variable in docs, f"{variable} ({name}) is in neither .env.example nor docs/DEPLOY.md"


# --- network ---------------------------------------------------------------------------------------


def _published(service: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(host ip, host port, container port) of each `ports` entry in short syntax."""
    result = []
    for spec in service.get("ports") or []:
        parts = str(spec).split("/")[0].split(":")
        assert len(parts) == 3, f"{spec}: publish with an explicit host address"
        result.append((parts[0], int(parts[1]), int(parts[2])))
    return result


def test_nothing_published_beyond_localhost(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        assert service.get("network_mode") != "host", name
        for host, _, _ in _published(service):
            assert host == "127.0.0.1", f"{name} publishes on {host}"
    assert "ports" not in services["redis"]
    assert {n for n, s in services.items() if s.get("ports")} == {"tfserving", "viewer"}


def test_classifier_targets_tfserving_grpc(services: dict[str, dict[str, Any]]) -> None:
    host, _, port = environment(services["classifier"])["CLASSIFIER_SERVING_TARGET"].rpartition(":")
    assert host == "tfserving"
    # The tensorflow/serving image listens for gRPC on 8500 and REST on 8501.
    container_ports = {container for _, _, container in _published(services["tfserving"])}
    assert int(port) == 8500
    assert container_ports == {8500, 8501}
    assert {"redis", "tfserving"} <= set(services["classifier"]["depends_on"])


def test_redis_url_points_at_the_redis_service(
    services: dict[str, dict[str, Any]],
    example_env: dict[str, str],
) -> None:
    url = environment(services["detector"])["EMOSTREAM_REDIS_URL"]
    assert url == f"redis://:{example_env['REDIS_PASSWORD']}@redis:6379/0"
    redis = services["redis"]
    assert environment(redis)["REDIS_PASSWORD"] == example_env["REDIS_PASSWORD"]
    assert environment(redis)["REDISCLI_AUTH"] == example_env["REDIS_PASSWORD"]


def test_redis_password_never_on_a_command_line(compose_text: str, services: dict[str, dict[str, Any]]) -> None:
    """redis-server reads `requirepass` from stdin; its arguments and the shell's hold no password."""
    redis = services["redis"]
    assert example_password(services) not in " ".join([*redis["entrypoint"], *redis["command"]])
    assert "requirepass" not in " ".join(redis["healthcheck"]["test"])
    script = yaml.safe_load(compose_text)["services"]["redis"]["command"][0]
    # Compose leaves $$VAR to the container's shell: the value is never interpolated into the script.
    assert "$${REDIS_PASSWORD:+requirepass $$REDIS_PASSWORD}" in script
    assert re.search(r"exec redis-server - .*<<", script)


def example_password(services: dict[str, dict[str, Any]]) -> str:
    return environment(services["redis"])["REDIS_PASSWORD"]


@pytest.mark.parametrize("password", ["s3cret-hex", ""])
def test_redis_script_takes_the_password_on_stdin(password: str, tmp_path: Path) -> None:
    """The compose script itself, run by sh with a real redis-server: the password (if any) is enforced,
    and redis-server's command line does not hold it."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not installed (scripts/test.sh installs it)")
    script = yaml.safe_load(COMPOSE_FILE.read_text())["services"]["redis"]["command"][0].replace("$$", "$")
    port = free_port()
    script = script.replace('--save ""', f'--save "" --port {port} --bind 127.0.0.1')
    env = {**os.environ, "REDIS_PASSWORD": password, "REDIS_APPENDONLY": "no"}
    server = subprocess.Popen(["sh", "-c", script], env=env, cwd=tmp_path, stdout=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=port, password=password or None, socket_connect_timeout=1)
        deadline = time.monotonic() + 10
        while True:
            try:
                assert client.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start from the compose script"
                time.sleep(0.1)
        if password:
            with pytest.raises(redis.AuthenticationError):
                redis.Redis(port=port).ping()
        cmdline = Path(f"/proc/{server.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        assert cmdline.startswith("redis-server"), cmdline  # exec: redis-server is the container's process
        assert not password or password not in cmdline
    finally:
        server.terminate()
        server.wait(10)


def test_redis_pinned_and_not_persisted(services: dict[str, dict[str, Any]]) -> None:
    redis = services["redis"]
    assert re.fullmatch(r"redis:7\.\d+\.\d+-alpine", redis["image"])
    argv = shlex.split(redis["command"][0].split("<<")[0])
    # No RDB snapshots and no AOF: frames hold faces and must not reach the disk.
    assert argv[argv.index("--save") + 1] == ""
    # The default; REDIS_APPENDONLY=yes is the operator's explicit choice (docs/RELIABILITY.md).
    assert argv[argv.index("--appendonly") + 1] == "$REDIS_APPENDONLY"
    assert yaml.safe_load(COMPOSE_FILE.read_text())["services"]["redis"]["environment"]["REDIS_APPENDONLY"] == (
        "${REDIS_APPENDONLY:-no}"
    )
    assert not volumes(redis)


@pytest.mark.parametrize("name", ["redis", "tfserving", "capture", "detector", "classifier"])
def test_long_running_services_hardened(name: str, services: dict[str, dict[str, Any]]) -> None:
    service = services[name]
    assert service["read_only"] is True and "/tmp" in service["tmpfs"]
    assert service["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in service["security_opt"]
    assert service["restart"] == "unless-stopped"
    if "build" in service:  # the image's own USER (tests/deploy/test_dockerfiles.py)
        assert "user" not in service
    else:
        assert str(service["user"]).split(":")[0] not in ("0", "root", "")


def test_classifier_batch_limit_is_tfserving_batching_file(services: dict[str, dict[str, Any]]) -> None:
    """CLASSIFIER_BATCH_SIZE is checked at start against the very file TF Serving batches by."""
    classifier, tfserving = services["classifier"], services["tfserving"]
    path = Path(environment(classifier)["CLASSIFIER_BATCHING_CONFIG"])
    mount = next(v for v in volumes(classifier) if path.is_relative_to(v.target))
    assert mount.read_only
    flags = dict(arg.split("=", 1) for arg in tfserving["command"])
    served = Path(flags["--batching_parameters_file"])
    tf_mount = next(v for v in volumes(tfserving) if served.is_relative_to(v.target))
    assert (mount.source, path.relative_to(mount.target)) == (tf_mount.source, served.relative_to(tf_mount.target))


def test_start_order_waits_for_health(services: dict[str, dict[str, Any]]) -> None:
    for name in ("capture", "capture-webcam", "detector", "classifier"):
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy", name
    assert services["classifier"]["depends_on"]["tfserving"]["condition"] == "service_healthy"
    for name in ("redis", "tfserving"):
        assert services[name]["healthcheck"]["test"], name


def test_replicas_from_environment(compose_text: str) -> None:
    raw = yaml.safe_load(compose_text)["services"]
    assert raw["detector"]["deploy"]["replicas"] == "${DETECTOR_REPLICAS:-1}"
    assert raw["classifier"]["deploy"]["replicas"] == "${CLASSIFIER_REPLICAS:-1}"
    # --scale needs services without fixed container names or host ports.
    for name in ("detector", "classifier"):
        assert "container_name" not in raw[name] and "ports" not in raw[name]


def test_profiles(services: dict[str, dict[str, Any]]) -> None:
    assert services["capture-webcam"]["profiles"] == ["webcam"]
    assert "/dev/video0:/dev/video0" in services["capture-webcam"]["devices"]
    assert services["trainer"]["profiles"] == ["train"]
    for name in ("redis", "tfserving", "capture", "detector", "classifier"):
        assert "profiles" not in services[name], f"{name} must start with a plain `docker compose up`"


# --- models ----------------------------------------------------------------------------------------


def test_tfserving_serves_the_model_config(services: dict[str, dict[str, Any]]) -> None:
    from emostream_trainer.serving_config import read_roles

    tfserving = services["tfserving"]
    model_name = environment(tfserving)["MODEL_NAME"]
    flags = dict(arg.split("=", 1) for arg in tfserving["command"])
    config_path = PurePosixPath(flags["--model_config_file"])
    # The folder is mounted, not the file: `emostream deploy` replaces the file by a rename.
    models = next(v for v in volumes(tfserving) if config_path.is_relative_to(v.target))
    assert models.source == "./models" and models.read_only
    roles = read_roles(ROOT / models.source / config_path.relative_to(models.target), model_name)
    assert roles is not None and roles.stable is not None
    host_base = Path(models.source) / PurePosixPath(roles.base_path).relative_to(models.target)
    assert (ROOT / host_base / str(roles.stable) / "saved_model.pb").is_file()
    assert flags["--allow_version_labels_for_unavailable_models"] == "true"  # else no labelled config starts
    assert float(flags["--model_config_file_poll_wait_seconds"]) > 0
    assert f"/v1/models/{model_name} " in " ".join(tfserving["healthcheck"]["test"])

    classifier = environment(services["classifier"])
    assert classifier["CLASSIFIER_MODEL_NAME"] == model_name
    assert classifier["CLASSIFIER_VERSION_LABEL"] == "stable"
    # The classifier reads labels from the very folder TF Serving serves, read-only.
    base = next(v for v in volumes(services["classifier"]) if v.target == classifier["CLASSIFIER_MODEL_BASE"])
    assert Path(base.source) == Path(".") / host_base and base.read_only

    trainer = services["trainer"]
    command = trainer["command"]
    export_base = PurePosixPath(command[command.index("--model-base") + 1])
    export = next(v for v in volumes(trainer) if export_base.is_relative_to(v.target))
    assert export.source == models.source and not export.read_only  # the config beside the base too
    data = next(v for v in volumes(trainer) if v.target == "/data")
    assert data.source == "./data" and data.read_only
    assert all(arg.startswith("/data/") for arg in (command[0], command[command.index("--validation") + 1]))


def test_tfserving_flags_and_config_files(services: dict[str, dict[str, Any]]) -> None:
    tfserving = services["tfserving"]
    flags = dict(arg.split("=", 1) for arg in tfserving["command"])
    assert flags["--enable_batching"] == "true"
    assert float(flags["--file_system_poll_wait_seconds"]) > 0
    config = next(v for v in volumes(tfserving) if v.target == "/config")
    assert config.read_only
    for flag in ("--batching_parameters_file", "--monitoring_config_file"):
        relative = Path(flags[flag]).relative_to(config.target)
        assert (ROOT / config.source / relative).is_file(), flag


def _version(text: str) -> tuple[int, int]:
    match = re.match(r"(\d+)\.(\d+)", text)
    assert match, text
    return int(match.group(1)), int(match.group(2))


def test_tfserving_not_older_than_the_training_tensorflow(compose_text: str) -> None:
    image = yaml.safe_load(compose_text)["services"]["tfserving"]["image"]
    default_tag = re.fullmatch(r"tensorflow/serving:\$\{TF_SERVING_TAG:-([\w.-]+)\}", image)
    assert default_tag, f"{image}: pin a default tag"
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    tensorflow = next(p["version"] for p in lock["package"] if p["name"] == "tensorflow")
    # A SavedModel may use ops that an older TF Serving lacks.
    assert _version(default_tag.group(1)) >= _version(tensorflow)
    assert re.fullmatch(r"\d+\.\d+\.\d+", default_tag.group(1)), "pin an exact release"
