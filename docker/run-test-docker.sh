#!/usr/bin/env bash
# Container test for the sandboxd image (docker/Dockerfile).
#
#  1. builds sandboxd on the host (release, Swift stdlib linked statically) and
#     stages it as docker/dist/sandboxd;
#  2. builds the image with SANDBOXD_BINARY_FROM=host, so no Swift image is pulled;
#  3. runs it, publishing port 8000 on a free port of 127.0.0.1, and waits for
#     GET / by bounded polling;
#  4. runs Tests/e2e/tester.py against it and checks, inside the container, that
#     sandboxd runs as uid/gid 1000, the image's HEALTHCHECK passes and the
#     Python stack (pandas, scikit-learn, lightgbm) imports and fits a model;
#  5. does it all again with a read-only root filesystem and tmpfs at /app, /tmp;
#  6. prints the image size and the time from `run` to the first answered GET /.
#
# Uses docker when an engine answers `docker info`, podman otherwise. podman runs
# as root with runc and cgroupfs and needs the base image locally: run
# docker/prepare-base-images.sh first where no registry is reachable.
#
# Environment (all optional):
#   SANDBOXD_IMAGE    image name:tag to build and test   (default sandboxd:latest)
#   SANDBOXD_BINARY   use this prebuilt sandboxd instead of building on the host
#   SANDBOXD_TESTER   tester script                      (default Tests/e2e/tester.py)
#   READY_TIMEOUT     seconds to wait for GET /          (default 60)
#   PIP_CA_BUNDLE     CA bundle for pip inside the build (default: the host pip's
#                     `cert` setting, if any; for TLS-intercepting proxies)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_ROOT
cd "${REPO_ROOT}"

readonly IMAGE="${SANDBOXD_IMAGE:-sandboxd:latest}"
readonly TESTER="${SANDBOXD_TESTER:-Tests/e2e/tester.py}"
readonly READY_TIMEOUT="${READY_TIMEOUT:-60}"
readonly CONTAINER_PORT=8000
readonly SDK_SANDBOXD_CHECK="Tests/e2e/sdk_sandboxd_check.py"
readonly SANDBOXD_MODE_REST_PORT=8080
readonly SANDBOXD_MODE_GRPC_PORT=9090
readonly SANDBOX_UID=1000
readonly SCRATCH_PATH=".build-release"
readonly STAGED_BINARY="docker/dist/sandboxd"
readonly NAME_PREFIX="sandboxd-test-$$"

log() { printf '\n[run-test-docker] %s\n' "$*" >&2; }
die() {
    log "FAILED: $*"
    exit 1
}
now_ms() { date +%s%3N; }

# --- container engine --------------------------------------------------------
if command -v docker >/dev/null 2>&1 && timeout 20 docker info >/dev/null 2>&1; then
    ENGINE=(docker)
    BUILD_OPTS=()
    RUN_OPTS=()
    TMPFS_OWNED_BY_SANDBOX="uid=1000,gid=1000"
elif command -v podman >/dev/null 2>&1; then
    ENGINE=(podman --runtime runc --cgroup-manager=cgroupfs)
    # podman asks for nofile/nproc limits of 1048576 by default, more than this
    # machine allows; ask for the current limits instead, never more. runc also
    # failed here (EPERM) to set RLIMIT_NPROC above kernel.pid_max, so cap it there.
    cap_limit() { # value cap: the value, or the cap if the value is higher/unlimited
        if [[ $1 == unlimited ]] || (($1 > $2)); then echo "$2"; else echo "$1"; fi
    }
    nofile="$(cap_limit "$(ulimit -n)" 1048576)"
    nproc="$(cap_limit "$(ulimit -u)" "$(cat /proc/sys/kernel/pid_max 2>/dev/null || echo 32768)")"
    LIMITS=(--ulimit "nofile=${nofile}:${nofile}" --ulimit "nproc=${nproc}:${nproc}")
    # --format docker keeps the HEALTHCHECK (the OCI format has no such field).
    BUILD_OPTS=(--pull=never --format docker "${LIMITS[@]}")
    # podman schedules HEALTHCHECKs with systemd timers, and there may be no
    # systemd; check_healthcheck below runs the image's check itself instead.
    RUN_OPTS=("${LIMITS[@]}" --no-healthcheck)
    TMPFS_OWNED_BY_SANDBOX="U" # podman 4 has no uid=/gid= here; U chowns to the container user
else
    die "no container engine: neither 'docker info' nor podman works"
fi
log "engine: ${ENGINE[*]}"

# --- cleanup -----------------------------------------------------------------
CONTAINERS=()
cleanup() {
    local rc=$?
    local name
    for name in "${CONTAINERS[@]}"; do
        if ((rc != 0)); then
            log "logs of ${name} (last 60 lines)"
            "${ENGINE[@]}" logs --tail 60 "${name}" >&2 2>&1 || true
        fi
        "${ENGINE[@]}" rm -f "${name}" >/dev/null 2>&1 || true
    done
    exit "${rc}"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- 1. sandboxd built on the host -------------------------------------------
t_host=$(now_ms)
if [[ -n ${SANDBOXD_BINARY:-} ]]; then
    binary="${SANDBOXD_BINARY}"
    log "using prebuilt ${binary}"
else
    if ! dpkg -s libmicrohttpd-dev >/dev/null 2>&1; then
        log "installing libmicrohttpd-dev"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libmicrohttpd-dev >/dev/null
    fi
    log "swift build -c release --static-swift-stdlib --product sandboxd"
    swift build -c release --static-swift-stdlib --product sandboxd --scratch-path "${SCRATCH_PATH}"
    binary="$(swift build -c release --static-swift-stdlib --scratch-path "${SCRATCH_PATH}" --show-bin-path)/sandboxd"
fi
[[ -x ${binary} ]] || die "no sandboxd binary at ${binary}"
install -D -m 0755 "${binary}" "${STAGED_BINARY}"
if command -v strip >/dev/null 2>&1; then strip "${STAGED_BINARY}"; fi
host_build_s=$((($(now_ms) - t_host) / 1000))

# --- 2. image ----------------------------------------------------------------
secret_opts=()
pip_ca="${PIP_CA_BUNDLE:-${PIP_CERT:-$(python3 -m pip config get global.cert 2>/dev/null || true)}}"
if [[ -n ${pip_ca} && -r ${pip_ca} ]]; then
    log "pip in the build trusts ${pip_ca}"
    secret_opts=(--secret "id=pip_ca,src=${pip_ca}")
fi
log "building ${IMAGE}"
t_build=$(now_ms)
"${ENGINE[@]}" build "${BUILD_OPTS[@]}" "${secret_opts[@]}" \
    --build-arg SANDBOXD_BINARY_FROM=host -f docker/Dockerfile -t "${IMAGE}" .
image_build_s=$((($(now_ms) - t_build) / 1000))
image_bytes="$("${ENGINE[@]}" image inspect --format '{{.Size}}' "${IMAGE}")"

# --- helpers -----------------------------------------------------------------
in_container() { # name command...: run a command in the container as its user
    local name=$1
    shift
    "${ENGINE[@]}" exec "${name}" "$@"
}

answers_get_root() { # port
    if command -v curl >/dev/null 2>&1; then
        curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$1/" 2>/dev/null
    else
        python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
            "http://127.0.0.1:$1/" 2>/dev/null
    fi
}

# Starts a container and waits for GET /; sets PORT and READY_MS.
start_container() { # name extra-run-options...
    local name=$1
    shift
    local t0 deadline attempt=0
    CONTAINERS+=("${name}")
    t0=$(now_ms)
    "${ENGINE[@]}" run -d --name "${name}" "${RUN_OPTS[@]}" "$@" \
        -p "127.0.0.1::${CONTAINER_PORT}" "${IMAGE}" >/dev/null
    PORT="$("${ENGINE[@]}" port "${name}" "${CONTAINER_PORT}/tcp" | head -n 1)"
    PORT="${PORT##*:}"
    [[ ${PORT} =~ ^[0-9]+$ ]] || die "${name}: no published port for ${CONTAINER_PORT}"
    deadline=$((t0 + READY_TIMEOUT * 1000))
    until answers_get_root "${PORT}"; do
        attempt=$((attempt + 1))
        if ((attempt % 20 == 0)) &&
            [[ "$("${ENGINE[@]}" inspect --format '{{.State.Running}}' "${name}")" != true ]]; then
            die "${name} exited before answering GET /"
        fi
        (($(now_ms) < deadline)) || die "${name}: no answer to GET / within ${READY_TIMEOUT} s"
        sleep 0.05
    done
    READY_MS=$(($(now_ms) - t0))
    log "${name}: GET / answered on 127.0.0.1:${PORT}, ${READY_MS} ms after run"
}

check_runs_as_sandbox_user() { # name
    local status uid gid comm
    status="$(in_container "$1" cat /proc/1/status)"
    comm="$(awk '$1 == "Name:" {print $2}' <<<"${status}")"
    uid="$(awk '$1 == "Uid:" {print $2, $3, $4, $5}' <<<"${status}")"
    gid="$(awk '$1 == "Gid:" {print $2, $3, $4, $5}' <<<"${status}")"
    [[ ${comm} == sandboxd ]] || die "PID 1 is '${comm}', not sandboxd"
    local want="${SANDBOX_UID} ${SANDBOX_UID} ${SANDBOX_UID} ${SANDBOX_UID}"
    [[ ${uid} == "${want}" && ${gid} == "${want}" ]] || die "sandboxd runs as uid '${uid}' gid '${gid}'"
    log "PID 1 is sandboxd, uid/gid ${SANDBOX_UID} (real, effective, saved, fs)"
}

check_healthcheck() { # name: runs the image's HEALTHCHECK command in the container
    local test_json
    local -a argv
    test_json="$("${ENGINE[@]}" image inspect --format '{{json .Config.Healthcheck.Test}}' "${IMAGE}")"
    mapfile -d '' -t argv < <(python3 -c '
import json, sys
test = json.loads(sys.argv[1])
assert test and test[0] == "CMD", test
sys.stdout.write("\0".join(test[1:]) + "\0")' "${test_json}")
    in_container "$1" "${argv[@]}" || die "HEALTHCHECK failed"
    log "HEALTHCHECK passes"
}

check_python_stack() { # name
    in_container "$1" python3 -c '
import numpy as np, pandas as pd, lightgbm as lgb
from sklearn.linear_model import LogisticRegression
rng = np.random.default_rng(0)
X = pd.DataFrame(rng.normal(size=(300, 4)), columns=list("abcd"))
y = (X["a"] + X["b"] > 0).astype(int)
linear = LogisticRegression().fit(X, y).score(X, y)
boosted = (lgb.LGBMClassifier(n_estimators=30, verbose=-1).fit(X, y).predict(X) == y).mean()
assert linear > 0.9 and boosted > 0.9, (linear, boosted)
print(f"pandas {pd.__version__}, lightgbm {lgb.__version__}: accuracy {linear:.2f} / {boosted:.2f}")' ||
        die "python stack check failed"
}

run_tester() {
    [[ -f ${TESTER} ]] || die "${TESTER} not found"
    log "python3 ${TESTER} 127.0.0.1 ${PORT}"
    python3 "${TESTER}" 127.0.0.1 "${PORT}" || die "${TESTER} failed"
}

# --- 3./4. writable root filesystem ------------------------------------------
start_container "${NAME_PREFIX}-rw"
ready_rw_ms=${READY_MS}
in_container "${NAME_PREFIX}-rw" sandboxd --version
check_runs_as_sandbox_user "${NAME_PREFIX}-rw"
check_healthcheck "${NAME_PREFIX}-rw"
check_python_stack "${NAME_PREFIX}-rw"
run_tester

# --- 5. read-only root filesystem, writable /app and /tmp --------------------
# The sandboxd runtime mode: the Go daemon's arguments (kind/sandboxd-runtime-template.yaml), driven by the SDK's
# sandboxd mode (files over REST, commands over gRPC), read-only root with a writable /workspace.
start_sandboxd_mode_container() { # name
    local name=$1 t0 deadline
    CONTAINERS+=("${name}")
    t0=$(now_ms)
    "${ENGINE[@]}" run -d --name "${name}" "${RUN_OPTS[@]}" --read-only \
        --tmpfs "/workspace:rw,mode=0755,${TMPFS_OWNED_BY_SANDBOX}" --tmpfs /tmp:rw,mode=1777 \
        -p "127.0.0.1::${SANDBOXD_MODE_REST_PORT}" -p "127.0.0.1::${SANDBOXD_MODE_GRPC_PORT}" "${IMAGE}" \
        --listen-host=0.0.0.0 --rest-port="${SANDBOXD_MODE_REST_PORT}" --grpc-port="${SANDBOXD_MODE_GRPC_PORT}" \
        --root-dir=/workspace --shutdown-timeout=10s >/dev/null
    REST_PORT="$("${ENGINE[@]}" port "${name}" "${SANDBOXD_MODE_REST_PORT}/tcp" | head -n 1)"
    REST_PORT="${REST_PORT##*:}"
    GRPC_PORT="$("${ENGINE[@]}" port "${name}" "${SANDBOXD_MODE_GRPC_PORT}/tcp" | head -n 1)"
    GRPC_PORT="${GRPC_PORT##*:}"
    [[ ${REST_PORT} =~ ^[0-9]+$ && ${GRPC_PORT} =~ ^[0-9]+$ ]] || die "${name}: ports not published"
    deadline=$((t0 + READY_TIMEOUT * 1000))
    until python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
        "http://127.0.0.1:${REST_PORT}/v1/health" 2>/dev/null; do
        (($(now_ms) < deadline)) || die "${name}: no answer to GET /v1/health within ${READY_TIMEOUT} s"
        sleep 0.05
    done
    READY_MS=$(($(now_ms) - t0))
    log "${name}: GET /v1/health answered on 127.0.0.1:${REST_PORT} (gRPC on ${GRPC_PORT}), ${READY_MS} ms after run"
}

start_container "${NAME_PREFIX}-ro" --read-only \
    --tmpfs "/app:rw,mode=0755,${TMPFS_OWNED_BY_SANDBOX}" \
    --tmpfs /tmp:rw,mode=1777
ready_ro_ms=${READY_MS}
in_container "${NAME_PREFIX}-ro" sh -c '
    touch /app/.probe /tmp/.probe && rm /app/.probe /tmp/.probe || exit 1
    if touch /opt/venv/.probe 2>/dev/null || touch /.probe 2>/dev/null; then exit 2; fi' ||
    die "read-only run: /app and /tmp must be writable and the rest not"
log "read-only root filesystem in force; /app and /tmp writable"
check_runs_as_sandbox_user "${NAME_PREFIX}-ro"
check_python_stack "${NAME_PREFIX}-ro"
run_tester

# --- 6. report ---------------------------------------------------------------
start_sandboxd_mode_container "${NAME_PREFIX}-sandboxd-mode"
ready_sandboxd_mode_ms=${READY_MS}
check_runs_as_sandbox_user "${NAME_PREFIX}-sandboxd-mode"
log "python3 ${SDK_SANDBOXD_CHECK} 127.0.0.1 ${REST_PORT} ${GRPC_PORT}"
python3 "${SDK_SANDBOXD_CHECK}" 127.0.0.1 "${REST_PORT}" "${GRPC_PORT}" || die "${SDK_SANDBOXD_CHECK} failed"

log "PASSED"
printf '%-40s %s\n' \
    "engine" "${ENGINE[0]}" \
    "image" "${IMAGE}" \
    "image size" "$((image_bytes / 1000000)) MB (${image_bytes} bytes)" \
    "host build of sandboxd" "${host_build_s} s" \
    "image build" "${image_build_s} s" \
    "run -> first GET / (writable root)" "${ready_rw_ms} ms" \
    "run -> first GET / (read-only root)" "${ready_ro_ms} ms" \
    "run -> first GET /v1/health (sandboxd mode)" "${ready_sandboxd_mode_ms} ms" \
    "whole script" "${SECONDS} s"
