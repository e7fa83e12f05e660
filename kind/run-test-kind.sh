#!/usr/bin/env bash
# Deploys the sandboxd image on a local kind cluster under the agent-sandbox
# controller and runs Tests/e2e/tester.py against it, twice:
#
#  1. a Sandbox (kind/sandbox-python-kind.yaml);
#  2. a SandboxClaim served from a SandboxWarmPool of a SandboxTemplate
#     (kind/sandbox-template-warmpool.yaml).
#
# Steps: create the kind cluster if missing; install the controller (core and
# extensions) from the released manifests of AGENT_SANDBOX_VERSION; build the
# image and `kind load` it; apply; wait for readiness; port-forward; run
# tester.py; clean up on exit (the cluster too, when this script created it).
#
# Needs kind, kubectl, python3 and docker (or podman, with
# KIND_EXPERIMENTAL_PROVIDER=podman), plus access to the registries kind and the
# controller's manifests pull from; it does not run on machines without them.
#
# Environment (all optional):
#   AGENT_SANDBOX_VERSION  controller release to install   (default below)
#   KIND_CLUSTER_NAME      cluster to use or create         (default sandboxd)
#   SANDBOXD_BINARY_FROM   build: compile sandboxd in the Swift image (default);
#                          host: build it with the local toolchain and copy it in
#   KEEP_CLUSTER=1         keep a cluster this script created
set -euo pipefail

# The agent-sandbox release whose CRDs the manifests are written against
# (Tests/e2e/test_deploy_files.py checks the manifests against them).
readonly AGENT_SANDBOX_VERSION="${AGENT_SANDBOX_VERSION:-v0.5.6}"
readonly RELEASE_URL="https://github.com/kubernetes-sigs/agent-sandbox/releases/download/${AGENT_SANDBOX_VERSION}"

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_ROOT
cd "${REPO_ROOT}"

readonly CLUSTER="${KIND_CLUSTER_NAME:-sandboxd}"
readonly IMAGE="sandboxd:latest"
readonly CONTAINER_PORT=8000
readonly SANDBOX_UID=1000
readonly NAMESPACE="sandboxd-kind-test"
readonly TESTER="Tests/e2e/tester.py"
readonly SANDBOX_MANIFEST="kind/sandbox-python-kind.yaml"
readonly WARMPOOL_MANIFEST="kind/sandbox-template-warmpool.yaml"
readonly SANDBOX_NAME="sandboxd-python"
readonly CLAIM_NAME="sandboxd-python-claim"
readonly WARMPOOL_NAME="sandboxd-python-pool"
readonly BINARY_FROM="${SANDBOXD_BINARY_FROM:-build}"
readonly WAIT_TIMEOUT="180s"

log() { printf '\n[run-test-kind] %s\n' "$*" >&2; }
die() {
    log "FAILED: $*"
    exit 1
}

for tool in kind kubectl python3; do
    command -v "${tool}" >/dev/null 2>&1 || die "${tool} is not installed"
done
if [[ ${KIND_EXPERIMENTAL_PROVIDER:-} == podman ]]; then
    ENGINE=podman
else
    ENGINE=docker
fi
command -v "${ENGINE}" >/dev/null 2>&1 || die "${ENGINE} is not installed"

KUBECTL=(kubectl --context "kind-${CLUSTER}")
CREATED_CLUSTER=0
PF_PID=""

cleanup() {
    local rc=$?
    if [[ -n ${PF_PID} ]]; then kill "${PF_PID}" 2>/dev/null || true; fi
    if ((rc != 0)); then
        log "state at failure"
        "${KUBECTL[@]}" -n "${NAMESPACE}" get sandboxes,sandboxclaims,sandboxwarmpools,pods -o wide >&2 2>&1 || true
        "${KUBECTL[@]}" -n agent-sandbox-system logs deployment/agent-sandbox-controller --tail=40 >&2 2>&1 || true
    fi
    if ((CREATED_CLUSTER == 1)) && [[ ${KEEP_CLUSTER:-0} != 1 ]]; then
        log "deleting kind cluster ${CLUSTER}"
        kind delete cluster --name "${CLUSTER}" || true
    else
        "${KUBECTL[@]}" delete namespace "${NAMESPACE}" --ignore-not-found --wait=false >/dev/null 2>&1 || true
    fi
    exit "${rc}"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- cluster and controller ----------------------------------------------------
if kind get clusters 2>/dev/null | grep -qx "${CLUSTER}"; then
    log "using existing kind cluster ${CLUSTER}"
else
    log "creating kind cluster ${CLUSTER}"
    CREATED_CLUSTER=1
    kind create cluster --name "${CLUSTER}" --wait 120s
fi

log "installing agent-sandbox ${AGENT_SANDBOX_VERSION} (core + extensions)"
# Server-side apply: the CRDs embed the whole PodSpec schema and are too large
# for the last-applied annotation of a client-side apply.
"${KUBECTL[@]}" apply --server-side --force-conflicts -f "${RELEASE_URL}/sandbox-with-extensions.yaml"
for crd in sandboxes.agents.x-k8s.io sandboxtemplates.extensions.agents.x-k8s.io \
    sandboxwarmpools.extensions.agents.x-k8s.io sandboxclaims.extensions.agents.x-k8s.io; do
    "${KUBECTL[@]}" wait --for=condition=Established "crd/${crd}" --timeout=60s
done
"${KUBECTL[@]}" -n agent-sandbox-system rollout status deployment/agent-sandbox-controller --timeout="${WAIT_TIMEOUT}"

# --- image ---------------------------------------------------------------------
if [[ ${BINARY_FROM} == host ]]; then
    log "building sandboxd on the host"
    swift build -c release --static-swift-stdlib --product sandboxd --scratch-path .build-release
    install -D -m 0755 "$(swift build -c release --static-swift-stdlib --scratch-path .build-release \
        --show-bin-path)/sandboxd" docker/dist/sandboxd
fi
log "building ${IMAGE} (sandboxd binary from: ${BINARY_FROM})"
"${ENGINE}" build --build-arg "SANDBOXD_BINARY_FROM=${BINARY_FROM}" -f docker/Dockerfile -t "${IMAGE}" .
log "loading ${IMAGE} into kind"
if [[ ${ENGINE} == docker ]]; then
    kind load docker-image "${IMAGE}" --name "${CLUSTER}"
else
    archive="$(mktemp /tmp/sandboxd-image.XXXXXX.tar)"
    podman save -o "${archive}" "${IMAGE}"
    kind load image-archive "${archive}" --name "${CLUSTER}"
    rm -f "${archive}"
fi

# --- helpers -------------------------------------------------------------------
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Port-forwards to the pod, waits (bounded) for GET /, runs tester.py.
test_pod() { # pod
    local pod=$1 port attempt
    "${KUBECTL[@]}" -n "${NAMESPACE}" wait --for=condition=Ready "pod/${pod}" --timeout="${WAIT_TIMEOUT}"
    local ids
    ids="$("${KUBECTL[@]}" -n "${NAMESPACE}" exec "${pod}" -- cat /proc/1/status | awk '$1 == "Uid:" {print $2, $3}')"
    [[ ${ids} == "${SANDBOX_UID} ${SANDBOX_UID}" ]] || die "${pod}: sandboxd runs as uid '${ids}'"
    port="$(free_port)"
    "${KUBECTL[@]}" -n "${NAMESPACE}" port-forward "pod/${pod}" "${port}:${CONTAINER_PORT}" >/dev/null &
    PF_PID=$!
    for ((attempt = 0; ; attempt++)); do
        if curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:${port}/" 2>/dev/null; then break; fi
        kill -0 "${PF_PID}" 2>/dev/null || die "port-forward to ${pod} exited"
        ((attempt < 300)) || die "no answer to GET / through the port-forward within 30 s"
        sleep 0.1
    done
    log "python3 ${TESTER} 127.0.0.1 ${port}  (pod ${pod})"
    python3 "${TESTER}" 127.0.0.1 "${port}" || die "${TESTER} failed against ${pod}"
    kill "${PF_PID}" 2>/dev/null || true
    wait "${PF_PID}" 2>/dev/null || true
    PF_PID=""
}

pod_of_sandbox() { # sandbox: its pod's name (the controller names it after the sandbox unless annotated)
    local pod
    pod="$("${KUBECTL[@]}" -n "${NAMESPACE}" get sandbox "$1" \
        -o jsonpath='{.metadata.annotations.agents\.x-k8s\.io/pod-name}')"
    echo "${pod:-$1}"
}

"${KUBECTL[@]}" create namespace "${NAMESPACE}" --dry-run=client -o yaml | "${KUBECTL[@]}" apply -f -

# --- 1. a Sandbox --------------------------------------------------------------
log "applying ${SANDBOX_MANIFEST}"
"${KUBECTL[@]}" -n "${NAMESPACE}" apply -f "${SANDBOX_MANIFEST}"
"${KUBECTL[@]}" -n "${NAMESPACE}" wait --for=condition=Ready "sandbox/${SANDBOX_NAME}" --timeout="${WAIT_TIMEOUT}"
test_pod "$(pod_of_sandbox "${SANDBOX_NAME}")"
"${KUBECTL[@]}" -n "${NAMESPACE}" delete -f "${SANDBOX_MANIFEST}" --wait=false

# --- 2. a claim served from the warm pool --------------------------------------
log "applying ${WARMPOOL_MANIFEST}"
"${KUBECTL[@]}" -n "${NAMESPACE}" apply -f "${WARMPOOL_MANIFEST}"
"${KUBECTL[@]}" -n "${NAMESPACE}" wait --for=condition=Ready "sandboxclaim/${CLAIM_NAME}" --timeout="${WAIT_TIMEOUT}"
claimed="$("${KUBECTL[@]}" -n "${NAMESPACE}" get sandboxclaim "${CLAIM_NAME}" -o jsonpath='{.status.sandbox.name}')"
[[ -n ${claimed} ]] || die "claim ${CLAIM_NAME} is Ready but names no sandbox"
test_pod "$(pod_of_sandbox "${claimed}")"
replicas="$("${KUBECTL[@]}" -n "${NAMESPACE}" get sandboxwarmpool "${WARMPOOL_NAME}" -o jsonpath='{.spec.replicas}')"
"${KUBECTL[@]}" -n "${NAMESPACE}" wait --for="jsonpath={.status.readyReplicas}=${replicas}" \
    "sandboxwarmpool/${WARMPOOL_NAME}" --timeout="${WAIT_TIMEOUT}"
log "warm pool ${WARMPOOL_NAME} refilled to ${replicas} ready sandboxes"

log "PASSED"
