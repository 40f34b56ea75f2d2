#!/usr/bin/env bash
# Install what is missing, then run the whole system locally: `scripts/up.sh [SOURCE ...] [--once] ...`
# With no source and no webcam it plays the built-in demo. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$HOME/.local/bin:$PATH"
exec uv run --frozen --no-sync emostream up "$@"
