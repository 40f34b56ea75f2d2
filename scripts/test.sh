#!/usr/bin/env bash
# Install what is missing, make sure a Redis answers, then run the test suite: `scripts/test.sh [pytest args]`.
set -euo pipefail
cd "$(dirname "$0")/.."
root_apt() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; }
bash scripts/setup.sh
export PATH="$HOME/.local/bin:$PATH"

# Offline validation of docker-compose.yml needs Debian's docker-compose (no engine is used).
if ! command -v docker-compose >/dev/null 2>&1 && root_apt; then
  (apt-get update -qq && apt-get install -y -qq docker-compose >/dev/null) || echo "could not install docker-compose"
fi

# The viewer test drives Debian's Chromium through its chromedriver; without them it fails, naming them.
if ! { command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; } && root_apt; then
  (apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null) || echo "could not install chromium"
fi

# Tests use a real Redis: EMOSTREAM_REDIS_URL, else 127.0.0.1:6379, else a private redis-server.
export EMOSTREAM_REDIS_URL="${EMOSTREAM_REDIS_URL:-redis://127.0.0.1:6379/0}"
if ! uv run --frozen --no-sync python -c "import redis,os; redis.Redis.from_url(os.environ['EMOSTREAM_REDIS_URL']).ping()" 2>/dev/null; then
  if ! command -v redis-server >/dev/null 2>&1 && root_apt; then
    apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
  fi
  command -v redis-server >/dev/null 2>&1 || { echo "tests need Redis: install redis-server or set EMOSTREAM_REDIS_URL" >&2; exit 1; }
  port=6391
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes --dir /tmp >/dev/null
  export EMOSTREAM_REDIS_URL="redis://127.0.0.1:$port/0"
  trap 'redis-cli -p '"$port"' shutdown nosave >/dev/null 2>&1 || true' EXIT
  for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
fi
uv run --frozen --no-sync pytest "$@"
