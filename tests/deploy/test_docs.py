"""docs/DEPLOY.md names only commands and services that exist."""

from __future__ import annotations

import re
from typing import Any

from emostream.cli import COMMANDS
from tests.deploy.conftest import DEPLOY_DOC

CODE = re.compile(r"```.*?```|`[^`\n]+`", re.S)


def _code() -> str:
    return "\n".join(CODE.findall(DEPLOY_DOC.read_text()))


def test_emostream_subcommands_exist() -> None:
    code = _code()
    # `emostream SUB`, and `--entrypoint emostream SERVICE SUB` in docker compose run
    used = set(re.findall(r"(?<![\w/:-])(?<!--entrypoint )emostream ([a-z][a-z-]*)", code))
    used |= set(re.findall(r"--entrypoint emostream [\w-]+ ([a-z][a-z-]*)", code))
    assert {"events", "health", "deploy"} <= used
    assert used <= set(COMMANDS), sorted(used - set(COMMANDS))


def test_compose_services_exist(services: dict[str, dict[str, Any]]) -> None:
    verbs = r"(?:exec|run --rm(?: --entrypoint \S+)?|--profile \w+ build)"
    named = set(re.findall(rf"docker compose {verbs} ([a-z][\w-]*)", _code()))
    named |= set(re.findall(r"--scale ([\w-]+)=", _code()))
    assert {"classifier", "redis", "trainer", "detector"} <= named
    assert named <= set(services), sorted(named - set(services))
