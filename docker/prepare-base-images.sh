#!/usr/bin/env bash
# Makes the base image that docker/Dockerfile names, for machines that reach
# Debian's package archive but no container registry (e.g. this project's CI).
#
# It debootstraps a minimal Debian bookworm (default mirror), trims it the way
# the official "-slim" image is trimmed, and imports it into podman as
# docker.io/library/debian:bookworm-slim, so that
# `podman build --pull=never -f docker/Dockerfile .` needs no registry.
# A user with Docker Hub access never needs this script.
#
# Idempotent: an image that already exists is left alone.
# Usage: bash docker/prepare-base-images.sh     (as root)
set -euo pipefail

readonly SUITE="bookworm"
readonly IMAGE="debian:bookworm-slim"
readonly QUALIFIED_IMAGE="docker.io/library/${IMAGE}"

log() { printf '[prepare-base-images] %s\n' "$*" >&2; }

if [[ ${EUID} -ne 0 ]]; then
    log "must run as root (debootstrap and rootful podman)"
    exit 1
fi

# Installs the tools this script and run-test-docker.sh need, if missing.
missing=()
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v runc >/dev/null 2>&1 || missing+=(runc)
if ((${#missing[@]} > 0)); then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" \
        containernetworking-plugins iptables uidmap >/dev/null
fi

if podman image exists "${QUALIFIED_IMAGE}"; then
    log "${QUALIFIED_IMAGE} already exists; nothing to do"
    exit 0
fi

workdir="$(mktemp -d /var/tmp/prepare-base-images.XXXXXX)"
cleanup() { rm -rf "${workdir}"; }
trap cleanup EXIT

rootfs="${workdir}/rootfs"
start=${SECONDS}
log "debootstrap --variant=minbase ${SUITE} (default mirror)"
debootstrap --variant=minbase "${SUITE}" "${rootfs}" >"${workdir}/debootstrap.log" 2>&1 || {
    tail -n 40 "${workdir}/debootstrap.log" >&2
    exit 1
}
log "debootstrap took $((SECONDS - start)) s"

# Mirror the official image's apt sources (deb822, with updates and security)
# and its -slim trimming: no docs, man pages or locales in later installs,
# no downloaded .debs kept, no recommends.
cat >"${rootfs}/etc/apt/sources.list.d/debian.sources" <<SOURCES
Types: deb
URIs: http://deb.debian.org/debian
Suites: ${SUITE} ${SUITE}-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: ${SUITE}-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
rm -f "${rootfs}/etc/apt/sources.list"

cat >"${rootfs}/etc/dpkg/dpkg.cfg.d/docker" <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
DPKG
cat >"${rootfs}/etc/apt/apt.conf.d/docker-clean" <<'APT'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
APT
cat >"${rootfs}/etc/apt/apt.conf.d/docker-no-recommends" <<'APT'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
APT
cat >"${rootfs}/etc/apt/apt.conf.d/docker-no-languages" <<'APT'
Acquire::Languages "none";
APT

# Drop what the exclusions above would not have installed, plus caches.
find "${rootfs}/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
find "${rootfs}/usr/share/doc" -mindepth 1 -type d -empty -delete
rm -rf "${rootfs}/usr/share/man/"* "${rootfs}/usr/share/info/"* "${rootfs}/usr/share/lintian" \
    "${rootfs}/var/cache/apt/"*.bin "${rootfs}/var/cache/apt/archives/"*.deb \
    "${rootfs}/var/lib/apt/lists/"* "${rootfs}/var/log/"*.log "${rootfs}/var/log/apt/"*
find "${rootfs}/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
# The image must not carry the build machine's identity.
: >"${rootfs}/etc/hostname"
: >"${rootfs}/etc/resolv.conf"
rm -f "${rootfs}/etc/machine-id" && : >"${rootfs}/etc/machine-id"

log "importing as ${QUALIFIED_IMAGE}"
tar --numeric-owner --xattrs -C "${rootfs}" -c . |
    podman import --change 'CMD ["bash"]' - "${QUALIFIED_IMAGE}" >/dev/null
# `FROM debian:bookworm-slim` with --pull=never finds this image: podman
# normalizes a short Docker Hub name to docker.io/library/... for local lookup.
podman images "${QUALIFIED_IMAGE}" >&2
log "done in $((SECONDS - start)) s"
