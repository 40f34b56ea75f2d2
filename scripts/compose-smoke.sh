#!/usr/bin/env bash
# `docker compose up`, for real: build every image from its Dockerfile, run docker-compose.yml on a
# Docker engine and check the running system. Prints one PASS/FAIL line per check; exits 1 on any
# failure, 0 when all pass or when no engine can be had (it says why it skips).
#
# Without a running engine it installs Debian's docker.io (root and apt-get needed) and starts a
# private dockerd (own socket, data root and bridge under $SMOKE_DIR); base images are stand-ins
# built here (Docker Hub and ghcr.io may be unreachable): a debootstrap'ed Debian 12 with Debian's
# python3.11, PyPI's uv binary, Debian's redis-server as redis. tests/smoke/docker-compose.modelserver.yml
# puts the project's model server where tensorflow/serving stands. Everything it made (containers,
# images, engine, data root) is removed on exit, also on failure. See docs/DEPLOY.md, Smoke test.
#
#   scripts/compose-smoke.sh          # SMOKE_DIR (default /var/tmp/emostream-smoke) must be outside the repo
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export PATH="$HOME/.local/bin:$PATH"   # uv (scripts/setup.sh)
SMOKE_DIR=${SMOKE_DIR:-/var/tmp/emostream-smoke}
PROJECT=emostream-smoke
TAG=smoke
DOCKER=/usr/bin/docker          # Debian's client: BuildKit built in (another `docker` may need buildx)
STARTED=$(date +%s)
FAILED=0
OWN_ENGINE=0
SKIPPED=0
BRIDGE=emosmoke0
BRIDGE_NET=10.213.0.1/24        # the bridge's address; compose networks come from POOL
POOL=10.214.0.0/16
POOL_PREFIX=10.214.
MADE_IMAGES=()                  # on an engine that was already running: what to remove afterwards

say() { echo "compose-smoke: $*"; }
skip() { say "SKIP: $*"; SKIPPED=1; exit 0; }
pass() { say "PASS: $*"; }
fail() { say "FAIL: $*"; FAILED=1; }
elapsed() { echo "$(( $(date +%s) - STARTED ))s"; }

case "$SMOKE_DIR" in "$ROOT"|"$ROOT"/*) say "SMOKE_DIR must be outside the repository"; exit 2 ;; esac

# --- an engine --------------------------------------------------------------------------------------
root_apt() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; }
need_packages() {
    local missing=()
    command -v dockerd >/dev/null 2>&1 && [ -x "$DOCKER" ] || missing+=(docker.io)
    command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
    command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
    [ ${#missing[@]} = 0 ] && return 0
    root_apt || skip "needs ${missing[*]}, and installing them needs root and apt-get"
    say "installing ${missing[*]}"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; } \
        || skip "could not install ${missing[*]} with apt-get"
}

start_engine() {
    root_apt || skip "starting a private Docker engine needs root"
    mkdir -p "$SMOKE_DIR"
    # A bridge of our own, so an engine already on this host (docker0) is not touched.
    ip link delete "$BRIDGE" 2>/dev/null || true
    ip link add "$BRIDGE" type bridge 2>/dev/null && ip addr add "$BRIDGE_NET" dev "$BRIDGE" && ip link set "$BRIDGE" up \
        || skip "cannot create the network bridge $BRIDGE (ip link add: not allowed here?)"
    OWN_ENGINE=1
    # The data root on a file system of its own, in a sparse file: teardown then unmounts it and
    # deletes one file instead of the images' million files (minutes). A plain folder where loop
    # mounts are not allowed.
    mkdir -p "$SMOKE_DIR/data"
    { truncate -s 64G "$SMOKE_DIR/data.img" && mkfs.ext4 -q -F -m 0 "$SMOKE_DIR/data.img" \
        && mount -o loop "$SMOKE_DIR/data.img" "$SMOKE_DIR/data"; } >/dev/null 2>&1 || rm -f "$SMOKE_DIR/data.img"
    dockerd --host "unix://$SMOKE_DIR/docker.sock" --data-root "$SMOKE_DIR/data" --exec-root "$SMOKE_DIR/exec" \
        --pidfile "$SMOKE_DIR/docker.pid" --bridge "$BRIDGE" --default-address-pool "base=$POOL,size=24" \
        >"$SMOKE_DIR/dockerd.log" 2>&1 &
    export DOCKER_HOST="unix://$SMOKE_DIR/docker.sock"
    for _ in $(seq 60); do "$DOCKER" info >/dev/null 2>&1 && return 0; sleep 1; done
    tail -5 "$SMOKE_DIR/dockerd.log" >&2
    skip "the private dockerd did not start (its log is above)"
}

compose() {
    docker-compose -p "$PROJECT" --project-directory "$SMOKE_DIR/project" \
        -f "$SMOKE_DIR/project/docker-compose.yml" -f "$ROOT/tests/smoke/docker-compose.modelserver.yml" "$@"
}

teardown() {
    local status=$?
    set +e
    if [ -n "${DOCKER_HOST:-}" ] && [ -d "$SMOKE_DIR/project" ]; then
        compose down --volumes --remove-orphans --timeout 5 >/dev/null 2>&1
    fi
    if [ "$OWN_ENGINE" = 1 ]; then
        if [ -f "$SMOKE_DIR/docker.pid" ]; then
            local pid
            pid=$(cat "$SMOKE_DIR/docker.pid")
            kill "$pid" 2>/dev/null
            for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
            kill -9 "$pid" 2>/dev/null
        fi
        # Whatever the engine left mounted under its folders, then the folders (images included).
        grep -o " $SMOKE_DIR/[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null
        ip link delete "$BRIDGE" 2>/dev/null
        # The engine's firewall rules for its bridge and networks (shared chains stay for other engines).
        for table in nat filter; do
            iptables -t "$table" -S 2>/dev/null | grep -e "$BRIDGE" -e "$POOL_PREFIX" | sed 's/^-A /-D /' \
                | while read -r rule; do eval "iptables -t $table $rule" 2>/dev/null; done
        done
        rm -rf "$SMOKE_DIR"
    else
        [ ${#MADE_IMAGES[@]} = 0 ] || "$DOCKER" image rm -f "${MADE_IMAGES[@]}" >/dev/null 2>&1
        rm -rf "$SMOKE_DIR"
    fi
    say "torn down after $(elapsed)"
    [ "$SKIPPED" = 1 ] && exit 0
    [ "$status" != 0 ] && exit "$status"
    [ "$FAILED" = 0 ] || { say "some checks FAILED"; exit 1; }
    say "all checks passed"
}

[ "$(id -u)" = 0 ] || skip "needs root (a private Docker engine, debootstrap for the stand-in base images)"
need_packages
[ -d "$SMOKE_DIR" ] && { say "$SMOKE_DIR exists: another smoke test running, or a stale one (remove it)"; exit 2; }
trap teardown EXIT
trap 'exit 130' INT
trap 'exit 143' TERM   # so that teardown runs when CI stops the job
if "$DOCKER" info >/dev/null 2>&1; then
    say "using the running Docker engine ${DOCKER_HOST:-}"
else
    unset DOCKER_HOST
    start_engine
fi
mkdir -p "$SMOKE_DIR"
export DOCKER_BUILDKIT=1 COMPOSE_DOCKER_CLI_BUILD=1 EMOSTREAM_TAG=$TAG
say "engine ready after $(elapsed)"

# --- stand-in base images ---------------------------------------------------------------------------
dockerfile_arg() { sed -n "s/^ARG $1=//p" "$ROOT/Dockerfile"; }
UV_VERSION=$(dockerfile_arg UV_IMAGE | sed 's/.*://')
REDIS_IMAGE=$(sed -n 's/^    image: \(redis:[^ ]*\)$/\1/p' "$ROOT/docker-compose.yml")
PYTHON_BASE=emostream-smoke/python:3.11-bookworm
UV_BASE=emostream-smoke/uv:$UV_VERSION
MIRROR=$(sed -n 's/^URIs: \(http[^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
MIRROR=${MIRROR:-http://deb.debian.org/debian}
base="$SMOKE_DIR/base"
mkdir -p "$base"
for try in 1 2; do   # a second try when the mirror hiccups
    rm -rf "$base/rootfs"
    debootstrap --variant=minbase --include=python3.11,ca-certificates bookworm "$base/rootfs" "$MIRROR" \
        >"$base/debootstrap.log" 2>&1 && break
    tail -5 "$base/debootstrap.log"
    [ "$try" = 2 ] && { fail "debootstrap from $MIRROR failed twice"; exit 1; }
done
# Trimmed as the slim Python images are: no apt lists, documentation or locales.
rm -rf "$base"/rootfs/var/lib/apt/lists/* "$base"/rootfs/var/cache/apt/* "$base"/rootfs/usr/share/{doc,man,locale}/*
MADE_IMAGES+=("$PYTHON_BASE" "$UV_BASE")
tar -C "$base/rootfs" -c . | "$DOCKER" import --change 'CMD ["python3.11"]' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' - "$PYTHON_BASE" >/dev/null
rm -rf "$base/rootfs"
# The uv binary of the pinned release, from its PyPI wheel.
uv venv -q "$base/uv" --python 3.11 && uv pip install -q --python "$base/uv" "uv==$UV_VERSION"
tar -C "$base/uv/bin" -c uv | "$DOCKER" import - "$UV_BASE" >/dev/null
# redis: Debian's redis-server (7.0) standing in for the image compose names; sh, redis-server and
# redis-cli on PATH, as there.
if [ "$OWN_ENGINE" = 1 ] || ! "$DOCKER" image inspect "$REDIS_IMAGE" >/dev/null 2>&1; then
    MADE_IMAGES+=("$REDIS_IMAGE")
    printf 'FROM %s\nRUN apt-get update && apt-get install -y --no-install-recommends redis-server && rm -rf /var/lib/apt/lists/*\n' \
        "$PYTHON_BASE" | "$DOCKER" build -q -t "$REDIS_IMAGE" - >/dev/null
fi
say "stand-in base images ($PYTHON_BASE, $UV_BASE, $REDIS_IMAGE) after $(elapsed)"

# --- every service image, from the real Dockerfile --------------------------------------------------
secret=()
[ -s "${SSL_CERT_FILE:-}" ] && secret=(--secret "id=ca-bundle,src=$SSL_CERT_FILE")
build() {  # one target of the Dockerfile (a service's image: its compose target); a second try when a download fails
    local log="$SMOKE_DIR/build-$1.log" try
    for try in 1 2; do
        timeout 1500 "$DOCKER" build --target "$1" -t "emostream-$1:$TAG" \
            --build-arg "PYTHON_IMAGE=$PYTHON_BASE" --build-arg "UV_IMAGE=$UV_BASE" "${secret[@]}" \
            --progress=plain . >"$log" 2>&1 && return 0
        say "building target $1 failed (try $try): $(grep -m1 -i 'error' "$log" || tail -n 1 "$log")"
    done
    tail -n 20 "$log"
    return 1
}
lane() { for service in "$@"; do build "$service" || return 1; done; }
# The images compose builds: every service with a build target.
mapfile -t SERVICES < <(sed -n 's/^      target: \([a-z]*\)$/\1/p' docker-compose.yml)
for service in "${SERVICES[@]}"; do MADE_IMAGES+=("emostream-$service:$TAG"); done
# Two lanes at once: one build's layer writes overlap the other's CPU work. The stages every target
# shares (the builder with all locked dependencies) are built once: the engine runs an identical step
# of concurrent builds once, and later builds find it in its cache.
mapfile -t OTHERS < <(printf '%s\n' "${SERVICES[@]}" | grep -vx 'modelserver\|trainer')
lane modelserver trainer & tensorflow_lane=$!
lane "${OTHERS[@]}" & other_lane=$!
built=0
wait "$tensorflow_lane" || built=1
wait "$other_lane" || built=1
[ "$built" = 0 ] || { fail "not every image builds (logs above)"; exit 1; }
pass "every image builds ($(elapsed)): $("$DOCKER" images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep "^emostream-[a-z]*:$TAG " | sort | tr '\n' ' ')"
"$DOCKER" run --rm "emostream-trainer:$TAG" --help >/dev/null && pass "the trainer image runs \`emostream train --help\`" \
    || fail "the trainer image does not run"

# --- a project folder: the real compose file, its config, the newest model, clips in ./media ---------
project="$SMOKE_DIR/project"
mkdir -p "$project/media" "$SMOKE_DIR/clips"
cp docker-compose.yml "$project/"
cp -r deploy models "$project/"   # the models folder as a clone has it: versions and models.config
deploy() {  # `emostream deploy` on the host, as docs/DEPLOY.md says to when it must wait for loads
    uv run --frozen --no-sync emostream deploy --model-base "$project/models/emotion" \
        --serving-target 127.0.0.1:8500 "$@"
}
# The served version (label stable in models/models.config) and the number the next one will get.
read -r VERSION NEXT < <(uv run --frozen --no-sync python - "$project/models" <<'EOF'
import sys
from pathlib import Path
from emostream.model_repository import next_version
from emostream_trainer.serving_config import read_roles
models = Path(sys.argv[1])
roles = read_roles(models / "models.config", "emotion")
print(roles.stable if roles else "", next_version(models / "emotion"))
EOF
)
[ -n "$VERSION" ] || { fail "models/models.config serves no version"; exit 1; }
# Clips of the demo's two faces (mp4v, 10 fps), copied under new names to play them again: 4 s, and
# 12 s (the same 40 frames three times) to change things mid-clip.
uv run --frozen --no-sync python - "$SMOKE_DIR/clips" <<'EOF'
import sys, cv2
from emostream.demo import demo_frames
frames = demo_frames(40)
for name, repeat in (("clip.mp4", 1), ("long.mp4", 3)):
    out = cv2.VideoWriter(f"{sys.argv[1]}/{name}", cv2.VideoWriter_fourcc(*"mp4v"), 10.0, frames[0].shape[1::-1])
    for frame in frames * repeat:
        out.write(frame)
    out.release()
EOF
cp "$SMOKE_DIR/clips/clip.mp4" "$project/media/clip1.mp4"
chmod -R a+rX "$project"
REDIS_PASSWORD=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
export REDIS_PASSWORD   # the only setting: to prove it stays out of logs and command lines

# --- up ---------------------------------------------------------------------------------------------
compose up -d --no-build >"$SMOKE_DIR/up.log" 2>&1 || { cat "$SMOKE_DIR/up.log"; fail "docker-compose up"; exit 1; }

wait_healthy() {  # $1: expected number of containers
    local deadline=$(( $(date +%s) + 300 )) states
    while :; do
        states=$(compose ps -q | xargs -r "$DOCKER" inspect -f '{{.Name}} {{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}')
        if [ "$(grep -c ' healthy$' <<<"$states")" = "$1" ]; then echo "$states" | sed 's#^/##' | tr '\n' ' '; return 0; fi
        [ "$(date +%s)" -gt "$deadline" ] && { echo "$states" | tr '\n' ' '; return 1; }
        sleep 3
    done
}
if states=$(wait_healthy 7); then pass "every service healthy ($(elapsed)): $states"
else fail "not every service became healthy: $states"; compose logs --tail 20; exit 1; fi

CLASSIFIER=$(compose ps -q classifier | head -1)
probe() { "$DOCKER" exec -i "$CLASSIFIER" python - "$@" <"$ROOT/tests/smoke/probe.py"; }
check_clip() {  # camera, what it shows, probe flags
    local camera=$1 what=$2 out
    shift 2
    if out=$(probe clip "$camera" "$@"); then pass "$what: $out"; else fail "$what: $out"; fi
}

check_clip demo "the built-in demo plays with no configuration"
check_clip clip1 "a clip in ./media gives one event per detected face, no duplicate"

# --- finished files stay finished; replicas share the work ------------------------------------------
heartbeats() { probe heartbeats "$1"; }
compose up -d --no-build --scale detector=2 --scale classifier=2 >>"$SMOKE_DIR/up.log" 2>&1
if states=$(wait_healthy 9); then pass "scaled to 2 detectors and 2 classifiers, all healthy"
else fail "scaled replicas not healthy: $states"; fi
before_detector=$(heartbeats detector) before_classifier=$(heartbeats classifier)
cp "$SMOKE_DIR/clips/clip.mp4" "$project/media/clip2.mp4"
compose restart capture >/dev/null 2>&1
check_clip clip2 "--scale detector=2 --scale classifier=2: one event per face, no duplicate"
check_clip clip1 "a finished file is not replayed when capture restarts"
sleep 12   # every replica refreshes its heartbeat counters every 10 s
shared() {  # service, counter, before (JSON), after (JSON): every replica's counter grew
    uv run --frozen --no-sync python -c '
import json, sys
service, counter, before, after = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
grew = {name: totals.get(counter, 0) - before.get(name, {}).get(counter, 0) for name, totals in after.items()}
print(f"{service} replicas, {counter} each handled of clip2: {sorted(grew.values())}")
sys.exit(0 if len(grew) >= 2 and all(n > 0 for n in grew.values()) else 1)' "$@"
}
out=$(shared detector frames "$before_detector" "$(heartbeats detector)") && pass "$out" || fail "$out"
out=$(shared classifier events "$before_classifier" "$(heartbeats classifier)") && pass "$out" || fail "$out"

# --- a new model version rolled out while a clip plays ----------------------------------------------
# As a user rolls out a version (docs/DEPLOY.md, Redeploy): publish a SavedModel folder as the next
# version, the candidate (label canary, loaded beside the served one), then promote it (label stable).
# The model server re-reads models/models.config every second, as TF Serving does.
cp "$SMOKE_DIR/clips/long.mp4" "$project/media/clip3.mp4"
compose restart capture >/dev/null 2>&1
out=$(probe playing clip3) || fail "$out"
if out=$(deploy publish "$project/models/emotion/$VERSION" 2>&1); then pass "deploy publish: $(tail -n 1 <<<"$out")"
else fail "deploy publish: $out"; fi
if out=$(deploy promote --force --watch-s 0 2>&1); then pass "deploy promote: $(tail -n 1 <<<"$out")"
else fail "deploy promote: $out"; fi
check_clip clip3 "every face of a clip playing while version $NEXT is published and promoted has its event"
out=$(probe served-version "$NEXT") && pass "version $NEXT is served: $out" || fail "$out"
failed=$(compose logs --no-color classifier 2>&1 | grep -c "not answering\|refused\|rejected\|shadow request failed\| ERROR " || true)
[ "$failed" = 0 ] && pass "no failed model request (served or shadow) in the classifiers' logs" \
    || fail "$failed failed model requests logged"

# --- a detector restart mid-clip; the events name the new version -----------------------------------
cp "$SMOKE_DIR/clips/long.mp4" "$project/media/clip4.mp4"
compose restart capture >/dev/null 2>&1
out=$(probe playing clip4) || fail "$out"
compose restart detector >/dev/null 2>&1
check_clip clip4 "docker compose restart detector mid-clip loses nothing; events name version $NEXT" \
    --version "$NEXT"
dead=$(probe deadletters)
[ "$dead" = 0 ] && pass "no dead letters" || fail "$dead dead letters"

# --- hardening and secrets --------------------------------------------------------------------------
hardening=$(compose ps -q | xargs "$DOCKER" inspect -f '{{.Name}} {{.Config.User}} {{.HostConfig.ReadonlyRootfs}}' | sed 's#^/##')
bad=""
while read -r name user readonly; do
    uid=$("$DOCKER" exec "$name" id -u 2>/dev/null || echo "?")
    { [ "$uid" != 0 ] && [ "$uid" != "?" ] && [ "$readonly" = true ]; } || bad+="$name(uid $uid, read-only $readonly) "
done <<<"$hardening"
[ -z "$bad" ] && pass "every container runs as non-root with a read-only root filesystem ($(wc -l <<<"$hardening") containers)" \
    || fail "not hardened: $bad"
if compose logs --no-color 2>&1 | grep -qF "$REDIS_PASSWORD"; then fail "the Redis password appears in docker compose logs"
else pass "the Redis password appears nowhere in docker compose logs ($(compose logs --no-color 2>&1 | wc -l) lines)"; fi
ps -eo args >"$SMOKE_DIR/ps.txt"
if grep -qF -- "$REDIS_PASSWORD" "$SMOKE_DIR/ps.txt"; then fail "the Redis password is on a command line (ps)"
else pass "the Redis password is on no command line (ps -eo args on the host, containers included)"; fi

say "checks done after $(elapsed)"
