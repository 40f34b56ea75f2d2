"""Shared readers for the deployment files: compose (interpolated like docker compose does), Dockerfiles, .env.

Nothing here needs a Docker engine.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DEPLOY_DOC = ROOT / "docs" / "DEPLOY.md"

# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}; $$ is a literal $.
_VARIABLE = re.compile(r"\$\$|\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


def compose_variables(tree: Any) -> set[str]:
    """Names of the variables interpolated in a loaded compose file (comments do not count)."""
    if isinstance(tree, dict):
        return set().union(*map(compose_variables, tree.values())) if tree else set()
    if isinstance(tree, list):
        return set().union(*map(compose_variables, tree)) if tree else set()
    if isinstance(tree, str):
        return {m.group(1) for m in _VARIABLE.finditer(tree) if m.group(1)}
    return set()


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's interpolation over a loaded YAML tree (a required variable that is unset raises)."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        name, op, arg = match.groups()
        if name is None:
            return "$"
        current = env.get(name)
        missing = current is None or (current == "" and (op or "").startswith(":"))
        if op and op.endswith("?") and missing:
            raise KeyError(f"{name}: {arg}")
        if op and op.endswith("-") and missing:
            return arg
        return current or ""

    return _VARIABLE.sub(replace, value)


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines; one pair of surrounding quotes is removed, as docker compose does."""
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition("=")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[key.strip()] = value
    return env


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's `environment`, list or mapping form, as strings."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


@dataclass
class Volume:
    source: str
    target: str
    read_only: bool


def volumes(service: dict[str, Any]) -> list[Volume]:
    """A service's volumes in short syntax (source:target[:mode])."""
    result = []
    for spec in service.get("volumes") or []:
        parts = spec.split(":")
        result.append(Volume(parts[0], parts[1], len(parts) > 2 and "ro" in parts[2].split(",")))
    return result


@dataclass
class Dockerfile:
    """The instructions of one Dockerfile, continuation lines joined, comments dropped."""

    path: Path
    instructions: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def read(cls, path: Path) -> Dockerfile:
        parsed = cls(path)
        logical = ""
        for raw in path.read_text().splitlines():
            stripped = raw.strip()
            if stripped.startswith("#") or not stripped:
                continue
            if stripped.endswith("\\"):
                logical += stripped[:-1] + " "
                continue
            logical += stripped
            keyword, _, rest = logical.partition(" ")
            parsed.instructions.append((keyword.upper(), rest.strip()))
            logical = ""
        return parsed

    def all(self, keyword: str) -> list[str]:
        return [rest for kw, rest in self.instructions if kw == keyword]

    def final_stage(self) -> Dockerfile:
        last_from = max(i for i, (kw, _) in enumerate(self.instructions) if kw == "FROM")
        return Dockerfile(self.path, self.instructions[last_from:])

    def stages(self) -> dict[str, Stage]:
        """Stage name -> the stage (unnamed ones by position), with ARG defaults applied to its base."""
        args = {k: v for k, _, v in (a.partition("=") for a in self.all("ARG"))}
        result: dict[str, Stage] = {}
        for keyword, rest in self.instructions:
            if keyword == "FROM":
                words = rest.split()
                base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], words[0])
                name = words[2] if len(words) == 3 else str(len(result))
                result[name] = Stage(self.path, [], name=name, base=base)
            elif result:
                result[next(reversed(result))].instructions.append((keyword, rest))
        return result

    def chain(self, target: str) -> list[Stage]:
        """The target stage and the stages it is built on, target first."""
        found = self.stages()
        chain = [found[target]]
        while chain[-1].base in found:
            chain.append(found[chain[-1].base])
        return chain

    def env(self) -> dict[str, str]:
        """ENV settings in KEY=VALUE form."""
        result = {}
        for rest in self.all("ENV"):
            for word in shlex.split(rest):
                key, _, value = word.partition("=")
                result[key] = value
        return result

    def exec_form(self, keyword: str) -> list[str]:
        """The JSON (exec) form of the last ENTRYPOINT / CMD."""
        return list(json.loads(self.all(keyword)[-1]))


@dataclass
class Stage(Dockerfile):
    """One stage of a multi-stage Dockerfile: its name and its base (an image or an earlier stage)."""

    name: str = ""
    base: str = ""


DOCKERFILE = ROOT / "Dockerfile"


@pytest.fixture(scope="session")
def compose_text() -> str:
    return COMPOSE_FILE.read_text()


@pytest.fixture(scope="session")
def example_env() -> dict[str, str]:
    return read_env_file(ENV_EXAMPLE)


@pytest.fixture(scope="session")
def compose(compose_text: str, example_env: dict[str, str]) -> dict[str, Any]:
    """docker-compose.yml interpolated with .env.example, x- extensions dropped."""
    loaded = yaml.safe_load(compose_text)
    tree: dict[str, Any] = interpolate({k: v for k, v in loaded.items() if not k.startswith("x-")}, example_env)
    return tree


@pytest.fixture(scope="session")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = compose["services"]
    return result


@pytest.fixture(scope="session")
def workspace_packages() -> set[str]:
    """Names of the uv workspace's packages: the root and every services/* member."""
    names = {tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["name"]}
    for member in (ROOT / "services").glob("*/pyproject.toml"):
        names.add(tomllib.loads(member.read_text())["project"]["name"])
    return names
