#!/usr/bin/env bash
# Installs what the demo's containers need from Debian's packages (podman, runc,
# debootstrap) and builds the demo's images once (demo/containers/images.py: a debootstrap
# root filesystem cached in ISSU_CACHE_DIR, then one image per release). Idempotent: quick
# when everything is there. When the engine cannot run here it says why and exits 0: the
# demo's loopback hosts and every other test work without it.
#
#   usage: install-containers.sh PYTHON      (the venv's python; `make containers-install`)
set -euo pipefail
PY=${1:?usage: install-containers.sh PYTHON}

log() { printf 'install-containers: %s\n' "$*"; }
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

missing=()
for pkg in podman runc debootstrap; do
    installed "$pkg" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    SUDO=()
    [[ $(id -u) -eq 0 ]] || SUDO=(sudo)
    if ! command -v apt-get >/dev/null || { ((${#SUDO[@]})) && ! command -v sudo >/dev/null; }; then
        log "skipped: cannot install ${missing[*]} here (no apt-get or no root); the demo uses loopback hosts"
        exit 0
    fi
    log "installing ${missing[*]}"
    if ! { "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
           "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
               --no-install-recommends "${missing[@]}"; }; then
        log "skipped: installing ${missing[*]} failed; the demo uses loopback hosts"
        exit 0
    fi
else
    log "podman, runc and debootstrap present"
fi

if ! reason=$("$PY" -m demo.containers check 2>&1); then
    log "skipped: ${reason#containers: }"
    exit 0
fi
if ! "$PY" -m demo.containers build; then
    log "the images could not be built (above); the demo uses loopback hosts"
fi
