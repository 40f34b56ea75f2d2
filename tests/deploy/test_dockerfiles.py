"""services/*/Dockerfile: the package each installs provides its entrypoint; images are lean and non-root."""

from __future__ import annotations

import fnmatch
import re
import shlex
import tomllib

import pytest

from emostream.cli import COMMANDS
from tests.deploy.conftest import ROOT, Dockerfile

SERVICES = sorted(p.parent.name for p in (ROOT / "services").glob("*/pyproject.toml"))
# Services that write a heartbeat, and the name `emostream health` knows them by.
HEARTBEAT = {"capture": "capture", "detector": "detector", "classifier": "classifier", "tracker": "tracker"}


def dockerfile(service: str) -> Dockerfile:
    return Dockerfile.read(ROOT / "services" / service / "Dockerfile")


def syncs(parsed: Dockerfile) -> list[list[str]]:
    """The argument lists of every `uv sync` in RUN instructions."""
    found = []
    for run in parsed.all("RUN"):
        lexer = shlex.shlex(run, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        tokens = list(lexer)
        commands: list[list[str]] = [[]]
        for token in tokens:  # split on && and ; outside quotes
            if token in ("&&", ";"):
                commands.append([])
            else:
                commands[-1].append(token)
        for words in commands:  # may start with RUN options such as --mount=...
            starts = [i for i in range(len(words) - 1) if words[i : i + 2] == ["uv", "sync"]]
            if starts:
                found.append(words[starts[0] + 2 :])
    return found


def test_every_workspace_member_has_a_dockerfile() -> None:
    assert SERVICES == ["capture", "classifier", "detector", "modelserver", "tracker", "trainer", "viewer"]
    for service in SERVICES:
        assert (ROOT / "services" / service / "Dockerfile").is_file(), service


@pytest.mark.parametrize("service", SERVICES)
def test_sync_installs_the_service_package(service: str, workspace_packages: set[str]) -> None:
    own = tomllib.loads((ROOT / "services" / service / "pyproject.toml").read_text())["project"]["name"]
    runs = syncs(dockerfile(service))
    assert runs, "no uv sync"
    for args in runs:
        package = args[args.index("--package") + 1]
        assert package in workspace_packages
        assert package == own
        # Exactly the lock, no dev tools, real installs (the runtime stage gets no source tree).
        assert {"--frozen", "--no-dev", "--no-editable"} <= set(args)
    # The last sync installs the workspace packages themselves.
    assert "--no-install-workspace" not in runs[-1]


@pytest.mark.parametrize("service", SERVICES)
def test_entrypoint_is_provided_by_the_installed_package(service: str) -> None:
    parsed = dockerfile(service)
    last_sync = syncs(parsed)[-1]
    package = last_sync[last_sync.index("--package") + 1]
    entrypoint = parsed.exec_form("ENTRYPOINT")
    assert entrypoint[0] == "emostream" and len(entrypoint) == 2
    assert entrypoint[1] in COMMANDS
    assert COMMANDS[entrypoint[1]][3] == package, f"`emostream {entrypoint[1]}` is not in {package}"


@pytest.mark.parametrize("service", SERVICES)
def test_workspace_metadata_copied_before_the_first_sync(service: str) -> None:
    # uv reads every member's pyproject.toml to resolve the workspace, even for one package.
    parsed = dockerfile(service)
    first_sync = next(i for i, (kw, rest) in enumerate(parsed.instructions) if kw == "RUN" and "uv sync" in rest)
    copied = " ".join(rest for kw, rest in parsed.instructions[:first_sync] if kw == "COPY").split()
    for member in SERVICES:
        assert f"services/{member}/pyproject.toml" in copied, member
    assert {"pyproject.toml", "uv.lock", "README.md"} <= set(copied)


def stages(parsed: Dockerfile) -> dict[str, tuple[str, list[tuple[str, str]]]]:
    """Stage name -> (its base: an image with ARG defaults applied, or an earlier stage; its instructions)."""
    args = {k: v for k, _, v in (a.partition("=") for a in parsed.all("ARG"))}
    result: dict[str, tuple[str, list[tuple[str, str]]]] = {}
    current: list[tuple[str, str]] = []
    for keyword, rest in parsed.instructions:
        if keyword == "FROM":
            words = rest.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], words[0])
            current = []
            result[words[2] if len(words) == 3 else str(len(result))] = (base, current)
        else:
            current.append((keyword, rest))
    return result


def image_of(stage: str, all_stages: dict[str, tuple[str, list[tuple[str, str]]]]) -> str:
    base = all_stages[stage][0]
    return image_of(base, all_stages) if base in all_stages else base


@pytest.mark.parametrize("service", SERVICES)
def test_multi_stage_slim_runtime_non_root(service: str) -> None:
    parsed = dockerfile(service)
    found = stages(parsed)
    # uv from its pinned image; builder and runtime from the same slim Python image.
    assert re.fullmatch(r"ghcr\.io/astral-sh/uv:\d+\.\d+\.\d+", found["uv"][0])
    python = {image_of(name, found) for name in ("builder", "runtime")}
    assert len(python) == 1 and re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?", python.pop())
    runtime = parsed.final_stage()
    # Only the virtual environment comes from the builder (and, for capture, the demo's frames).
    copied = [c.split() for c in runtime.all("COPY")]
    assert copied[0] == ["--from=builder", "/app/.venv", "/app/.venv"]
    assert copied[1:] == ([["--from=builder", "/app/demo", "/opt/emostream/demo"]] if service == "capture" else [])
    assert "/app/.venv/bin" in runtime.env()["PATH"]
    user = runtime.all("USER")[-1].split(":")[0]
    assert user not in ("root", "0")
    last_user = max(i for i, (kw, _) in enumerate(runtime.instructions) if kw == "USER")
    assert all(kw != "RUN" for kw, _ in runtime.instructions[last_user:]), "RUN after USER runs as the service user"


@pytest.mark.parametrize("service", SERVICES)
def test_builds_offline_and_behind_a_proxy(service: str) -> None:
    """Built-in frontend, base images as build arguments, the optional CA bundle as a secret for every download."""
    text = (ROOT / "services" / service / "Dockerfile").read_text()
    assert not text.startswith("# syntax"), "a # syntax= line makes BuildKit fetch a frontend image"
    parsed = dockerfile(service)
    args = {k for k, _, _ in (a.partition("=") for a in parsed.all("ARG"))}
    assert {"PYTHON_IMAGE", "UV_IMAGE"} <= args
    assert all(f.split()[0].startswith("${") or f.split()[0] in stages(parsed) for f in parsed.all("FROM"))
    downloads = [r for r in parsed.all("RUN") if "uv sync" in r or "uv pip install" in r or "fetch-detector-model" in r]
    assert downloads
    for run in downloads:
        assert "--mount=type=secret,id=ca-bundle" in run, run
        assert "--mount=type=bind,source=deploy/docker/with-extra-ca,target=/usr/local/bin/with-extra-ca" in run
        assert "with-extra-ca uv" in run or "with-extra-ca emostream" in run, run
    for mount in re.findall(r"--mount=type=bind,source=([^,\s]+)", text):
        assert (ROOT / mount).is_file(), mount  # from the build context, never copied into an image
    assert "COPY deploy" not in text and "ca-bundle /" not in text


@pytest.mark.parametrize("service", SERVICES)
def test_healthcheck(service: str) -> None:
    healthcheck = dockerfile(service).final_stage().all("HEALTHCHECK")
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


def test_detector_bakes_in_the_verified_models() -> None:
    runtime = dockerfile("detector").final_stage()
    model_dir = runtime.env()["DETECTOR_MODEL_DIR"]
    fetch = [shlex.split(r) for r in runtime.all("RUN") if "fetch-detector-model" in r]
    assert len(fetch) == 1
    words = fetch[0]
    start = words.index("emostream")
    assert words[start + 1] == "fetch-detector-model" and "fetch-detector-model" in COMMANDS
    assert words[words.index("--dir") + 1] in (model_dir, "$DETECTOR_MODEL_DIR")


@pytest.mark.parametrize("service", ["capture", "detector"])
def test_opencv_images_have_its_system_libraries(service: str) -> None:
    found = stages(dockerfile(service))
    chain, stage = [], "runtime"
    while stage in found:  # the runtime stage and the stages it is built on
        chain += [rest for kw, rest in found[stage][1] if kw == "RUN"]
        stage = found[stage][0]
    runs = " ".join(chain)
    assert {"libgl1", "libglib2.0-0"} <= set(runs.split())
    assert "--no-install-recommends" in runs and "rm -rf /var/lib/apt/lists/*" in runs


def test_dockerignore_keeps_data_out_but_not_the_build_inputs() -> None:
    patterns = [
        p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines() if p.strip() and not p.startswith("#")
    ]
    for required in (".git", ".env", ".venv", "data", "runs", "models", "tests", "media"):
        assert required in patterns, required
    needed = {"pyproject.toml", "uv.lock", "README.md", "src", "services"}
    for service in SERVICES:
        for copy in dockerfile(service).all("COPY"):
            words = copy.split()
            if not words[0].startswith("--from"):
                needed.update(words[:-1])
    for path in needed:
        for pattern in patterns:
            if not pattern.startswith("!"):
                assert not fnmatch.fnmatch(path, pattern) and not path.startswith(pattern.rstrip("/") + "/"), (
                    f".dockerignore {pattern!r} drops {path}, which a Dockerfile copies"
                )
