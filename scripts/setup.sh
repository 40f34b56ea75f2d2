#!/usr/bin/env bash
# Install everything the system and its tests need into .venv (idempotent, from uv.lock),
# and fetch the MediaPipe face detector model (checksum-verified, cached outside the repo).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v uv >/dev/null 2>&1; then
  python3 -m pip install --quiet --user uv 2>/dev/null || python3 -m pip install --quiet uv
  export PATH="$HOME/.local/bin:$PATH"
fi
# Bytecode compiled now, not by every process at start: where Python may not write it (PYTHONDONTWRITEBYTECODE,
# a read-only install) each service would otherwise compile its imports, seconds of CPU, at every start.
uv sync --quiet --frozen --all-packages --all-extras --python 3.11 --compile-bytecode
uv run --frozen --no-sync python -m compileall -q src services >/dev/null  # the workspace's own, installed editable
uv run --frozen --no-sync emostream fetch-detector-model >/dev/null
# The shipped versions' LiteRT copies, which the local model server runs, are built here, not committed.
out=$(uv run --frozen --no-sync emostream deploy compile 2>&1) || { echo "$out" >&2; exit 1; }  # quiet unless it fails
