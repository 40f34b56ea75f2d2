"""The Dockerfile: one target per service, whose package provides its entrypoint; images lean and non-root."""

from __future__ import annotations

import fnmatch
import re
import shlex
import tomllib
from typing import Any

import pytest

from emostream.cli import COMMANDS
from tests.deploy.conftest import DOCKERFILE, ROOT, Dockerfile, Stage

# Workspace members that are libraries other members depend on: installed with them, no image of their own.
LIBRARIES = {"serving"}
SERVICES = sorted(p.parent.name for p in (ROOT / "services").glob("*/pyproject.toml") if p.parent.name not in LIBRARIES)
# Services that write a heartbeat, and the name `emostream health` knows them by.
HEARTBEAT = {"capture": "capture", "detector": "detector", "classifier": "classifier", "tracker": "tracker"}
# Stages every target shares.
SHARED = {"uv", "python", "opencv", "metadata", "dependencies"}


@pytest.fixture(scope="module")
def parsed() -> Dockerfile:
    return Dockerfile.read(DOCKERFILE)


def syncs(stage: Dockerfile) -> list[list[str]]:
    """The argument lists of every `uv sync` in RUN instructions."""
    found = []
    for run in stage.all("RUN"):
        lexer = shlex.shlex(run, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        commands: list[list[str]] = [[]]
        for token in lexer:  # split on && and ; outside quotes
            if token in ("&&", ";"):
                commands.append([])
            else:
                commands[-1].append(token)
        for words in commands:  # may start with RUN options such as --mount=...
            starts = [i for i in range(len(words) - 1) if words[i : i + 2] == ["uv", "sync"]]
            if starts:
                found.append(words[starts[0] + 2 :])
    return found


def package_of(service: str) -> str:
    name: str = tomllib.loads((ROOT / "services" / service / "pyproject.toml").read_text())["project"]["name"]
    return name


def test_one_target_per_workspace_member_and_compose_builds_them(
    parsed: Dockerfile, services: dict[str, dict[str, Any]]
) -> None:
    assert SERVICES == ["capture", "classifier", "detector", "modelserver", "tracker", "trainer", "viewer"]
    assert not list((ROOT / "services").glob("*/Dockerfile")), "one Dockerfile, at the root"
    stages = parsed.stages()
    assert set(stages) == SHARED | set(SERVICES) | {f"{s}-venv" for s in SERVICES}
    targets = {}
    for name, service in services.items():
        if "build" in service:
            build = service["build"]
            assert build["context"] == "." and build.get("dockerfile", "Dockerfile") == "Dockerfile"
            targets[name.removesuffix("-webcam")] = build["target"]
    assert targets == {s: s for s in SERVICES if s != "modelserver"}  # tfserving is the model server there


def test_dependencies_installed_once_for_every_target(parsed: Dockerfile) -> None:
    dependencies = parsed.stages()["dependencies"]
    [args] = syncs(dependencies)
    # Every member's locked dependencies, no workspace package yet: the layer every target shares.
    assert {"--frozen", "--no-dev", "--no-editable", "--no-install-workspace", "--all-packages"} <= set(args)
    # uv reads every member's pyproject.toml to resolve the workspace: all of them come before the sync,
    # from a stage that keeps nothing else, so a source change does not rebuild this layer.
    first_sync = next(i for i, (kw, rest) in enumerate(dependencies.instructions) if kw == "RUN" and "uv sync" in rest)
    copied = [rest.split() for kw, rest in dependencies.instructions[:first_sync] if kw == "COPY"]
    assert ["pyproject.toml", "uv.lock", "README.md", "./"] in copied
    assert ["--from=metadata", "/src/services", "services"] in copied
    metadata = parsed.stages()["metadata"]
    assert metadata.all("COPY") == ["services /src/services"]
    assert metadata.all("RUN") == ["find /src/services -type f ! -name pyproject.toml -delete"]


@pytest.mark.parametrize("service", SERVICES)
def test_venv_stage_syncs_exactly_the_service_package(service: str, parsed: Dockerfile) -> None:
    venv = parsed.stages()[f"{service}-venv"]
    assert venv.base == "dependencies"
    runs = syncs(venv)
    assert runs, "no uv sync"
    for args in runs:
        assert args[args.index("--package") + 1] == package_of(service)
        # Exactly the lock, no dev tools, real installs (the runtime stage gets no source tree).
        assert {"--frozen", "--no-dev", "--no-editable"} <= set(args)
        assert "--no-install-workspace" not in args and "--inexact" not in args
    # Bytecode, compiled once the venv holds only what the service runs (a read-only root cannot cache it).
    assert "--compile-bytecode" in runs[-1] or any("compileall" in run for run in venv.all("RUN"))


@pytest.mark.parametrize("service", SERVICES)
def test_entrypoint_is_provided_by_the_installed_package(service: str, parsed: Dockerfile) -> None:
    entrypoint = parsed.stages()[service].exec_form("ENTRYPOINT")
    assert entrypoint[0] == "emostream" and len(entrypoint) == 2
    assert entrypoint[1] in COMMANDS
    assert COMMANDS[entrypoint[1]][3] == package_of(service), f"`emostream {entrypoint[1]}` is not in {service}"


def base_image(parsed: Dockerfile, stage: str) -> str:
    return parsed.chain(stage)[-1].base


@pytest.mark.parametrize("service", SERVICES)
def test_slim_runtime_non_root(service: str, parsed: Dockerfile) -> None:
    stages = parsed.stages()
    # uv from its pinned image; builder and runtime from the same slim Python image.
    assert re.fullmatch(r"ghcr\.io/astral-sh/uv:\d+\.\d+\.\d+", stages["uv"].base)
    python = {base_image(parsed, name) for name in (service, f"{service}-venv", "metadata")}
    assert len(python) == 1 and re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?", python.pop())
    runtime = stages[service]
    assert runtime.base in ("python", "opencv"), "a runtime carries no builder stage"
    # Only the virtual environment comes from the builder (and, for capture, the demo's frames).
    copied = [c.split() for c in runtime.all("COPY")]
    venv = f"--from={service}-venv"
    assert copied[0] == [venv, "/app/.venv", "/app/.venv"]
    assert copied[1:] == ([[venv, "/app/demo", "/opt/emostream/demo"]] if service == "capture" else [])
    assert "/app/.venv/bin" in stages["python"].env()["PATH"]
    user = runtime.all("USER")[-1].split(":")[0]
    assert user not in ("root", "0")
    last_user = max(i for i, (kw, _) in enumerate(runtime.instructions) if kw == "USER")
    assert all(kw != "RUN" for kw, _ in runtime.instructions[last_user:]), "RUN after USER runs as the service user"


def test_builds_offline_and_behind_a_proxy(parsed: Dockerfile) -> None:
    """Built-in frontend, base images as build arguments, the optional CA bundle as a secret for every download."""
    text = DOCKERFILE.read_text()
    assert not text.startswith("# syntax"), "a # syntax= line makes BuildKit fetch a frontend image"
    args = {k for k, _, _ in (a.partition("=") for a in parsed.all("ARG"))}
    assert {"PYTHON_IMAGE", "UV_IMAGE"} <= args
    stages = parsed.stages()
    assert all(f.split()[0].startswith("${") or f.split()[0] in stages for f in parsed.all("FROM"))
    downloads = [r for r in parsed.all("RUN") if "uv sync" in r or "uv pip install" in r or "fetch-detector-model" in r]
    assert len(downloads) >= len(SERVICES) + 1
    for run in downloads:
        assert "--mount=type=secret,id=ca-bundle" in run, run
        assert "--mount=type=bind,source=deploy/docker/with-extra-ca,target=/usr/local/bin/with-extra-ca" in run
        assert "with-extra-ca uv" in run or "with-extra-ca emostream" in run, run
    for mount in re.findall(r"--mount=type=bind,source=([^,\s]+)", text):
        assert (ROOT / mount).is_file(), mount  # from the build context, never copied into an image
    assert "COPY deploy" not in text and "ca-bundle /" not in text


@pytest.mark.parametrize("service", SERVICES)
def test_healthcheck(service: str, parsed: Dockerfile) -> None:
    healthcheck = parsed.stages()[service].all("HEALTHCHECK")
    assert len(healthcheck) == 1
    if service == "trainer":
        assert healthcheck[0] == "NONE"  # a batch job
        return
    command = healthcheck[0].split("CMD", 1)[1].strip()
    if service in HEARTBEAT:
        assert command == f'["emostream", "health", "{HEARTBEAT[service]}"]'
        assert "health" in COMMANDS
    elif service == "viewer":
        assert "/healthz" in command
    else:
        assert "8500" in command


def test_detector_bakes_in_the_verified_models(parsed: Dockerfile) -> None:
    runtime = parsed.stages()["detector"]
    model_dir = runtime.env()["DETECTOR_MODEL_DIR"]
    fetch = [shlex.split(r) for r in runtime.all("RUN") if "fetch-detector-model" in r]
    assert len(fetch) == 1
    words = fetch[0]
    start = words.index("emostream")
    assert words[start + 1] == "fetch-detector-model" and "fetch-detector-model" in COMMANDS
    assert words[words.index("--dir") + 1] in (model_dir, "$DETECTOR_MODEL_DIR")


@pytest.mark.parametrize("service", ["capture", "detector"])
def test_opencv_images_have_its_system_libraries(service: str, parsed: Dockerfile) -> None:
    stages: list[Stage] = parsed.chain(service)
    runs = " ".join(run for stage in stages for run in stage.all("RUN"))
    assert {"libgl1", "libglib2.0-0"} <= set(runs.split())
    if service == "detector":  # MediaPipe's
        assert {"libegl1", "libgles2"} <= set(runs.split())
    assert "--no-install-recommends" in runs and "rm -rf /var/lib/apt/lists/*" in runs


def test_dockerignore_keeps_data_out_but_not_the_build_inputs(parsed: Dockerfile) -> None:
    patterns = [
        p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines() if p.strip() and not p.startswith("#")
    ]
    for required in (".git", ".env", ".venv", "data", "runs", "models", "tests", "media"):
        assert required in patterns, required
    needed = {"pyproject.toml", "uv.lock", "README.md", "src", "services"}
    for copy in parsed.all("COPY"):
        words = copy.split()
        if not words[0].startswith("--from"):
            needed.update(words[:-1])
    for path in needed:
        for pattern in patterns:
            if not pattern.startswith("!"):
                assert not fnmatch.fnmatch(path, pattern) and not path.startswith(pattern.rstrip("/") + "/"), (
                    f".dockerignore {pattern!r} drops {path}, which the Dockerfile copies"
                )
