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
        for command in re.split(r"&&|;", run):
            words = shlex.split(command)  # may start with RUN options such as --mount=...
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


@pytest.mark.parametrize("service", SERVICES)
def test_multi_stage_slim_runtime_non_root(service: str) -> None:
    parsed = dockerfile(service)
    args = {k: v for k, _, v in (a.partition("=") for a in parsed.all("ARG"))}
    bases = [re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], f.split()[0]) for f in parsed.all("FROM")]
    assert len(bases) == 2 and all(re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?", b) for b in bases), bases
    runtime = parsed.final_stage()
    # Only the virtual environment comes from the builder.
    assert [c.split() for c in runtime.all("COPY")] == [["--from=builder", "/app/.venv", "/app/.venv"]]
    assert "/app/.venv/bin" in runtime.env()["PATH"]
    user = runtime.all("USER")[-1].split(":")[0]
    assert user not in ("root", "0")
    last_user = max(i for i, (kw, _) in enumerate(runtime.instructions) if kw == "USER")
    assert all(kw != "RUN" for kw, _ in runtime.instructions[last_user:]), "RUN after USER runs as the service user"


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
    runs = " ".join(dockerfile(service).final_stage().all("RUN"))
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
