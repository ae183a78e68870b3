#!/usr/bin/env bash
# Installs what demo/services needs: Debian packages (ZooKeeper, RabbitMQ, OpenSSH server,
# OpenJDK 17, Maven; Chromium for the web console's browser test; supervisor: its
# supervisord runs in the supervisord profile's test) and Apache Cassandra 5.0.x
# jars from Maven Central into a cache.
# Idempotent and quick when everything is there; `make services-install` calls it.
#
#   ISSU_CACHE_DIR         jar cache (default ${XDG_CACHE_HOME:-~/.cache}/issu)
#   ISSU_CASSANDRA_VERSION preferred release (default 5.0.8; neighbours are tried if it fails)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${ISSU_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/issu}
PREFERRED=${ISSU_CASSANDRA_VERSION:-5.0.8}
CANDIDATES=("$PREFERRED" 5.0.8 5.0.7 5.0.9 5.0.6 5.0.5 5.0.4)

log() { printf 'install-services: %s\n' "$*"; }
die() { printf 'install-services: error: %s\n' "$*" >&2; exit 1; }

# ------------------------------------------------------------------ Debian packages
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

missing=()
for pkg in zookeeper rabbitmq-server openssh-server openssh-client maven chromium supervisor; do
    installed "$pkg" || missing+=("$pkg")
done
if ! compgen -G '/usr/lib/jvm/java-17-openjdk*/bin/java' >/dev/null; then
    missing+=(openjdk-17-jre-headless)
fi

if ((${#missing[@]})); then
    command -v apt-get >/dev/null || die "apt-get not found; install by hand: ${missing[*]}"
    SUDO=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null || die "need root (or sudo) to install: ${missing[*]}"
        SUDO=(sudo)
    fi
    # The packages' own system services would bind 0.0.0.0:22/5672/4369 and collide with the
    # loopback instances: keep them from starting during the install (Debian policy-rc.d).
    policy=/usr/sbin/policy-rc.d
    added_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
        "${SUDO[@]}" chmod 755 "$policy"
        added_policy=1
    fi
    cleanup_policy() { if ((added_policy)); then "${SUDO[@]}" rm -f "$policy"; fi; }
    trap cleanup_policy EXIT
    log "installing ${missing[*]}"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
    cleanup_policy
    trap - EXIT
else
    log "Debian packages present"
fi

# ------------------------------------------------------------------ Cassandra jars
complete() { # a lib dir is usable when it holds cassandra-all and jamm (the -javaagent)
    local lib=$1 version=$2
    [[ -f $lib/cassandra-all-$version.jar ]] && compgen -G "$lib/jamm-*.jar" >/dev/null
}

for version in "${CANDIDATES[@]}"; do
    if complete "$CACHE/cassandra-$version/lib" "$version"; then
        log "Cassandra $version jars present in $CACHE/cassandra-$version/lib"
        exit 0
    fi
done

mkdir -p "$CACHE"
tried=()
for version in "${CANDIDATES[@]}"; do
    [[ " ${tried[*]-} " == *" $version "* ]] && continue
    tried+=("$version")
    dest=$CACHE/cassandra-$version
    tmp=$dest/lib.partial
    mvn_log=$dest/mvn.log
    rm -rf "$tmp"
    mkdir -p "$tmp"
    log "fetching org.apache.cassandra:cassandra-all:$version and its runtime dependencies"
    if (cd "$HERE/cassandra" && mvn -B -q \
            org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies \
            -Dcassandra.version="$version" -DincludeScope=runtime \
            -DoutputDirectory="$tmp") >"$mvn_log" 2>&1 \
        && complete "$tmp" "$version"; then
        rm -rf "$dest/lib"
        mv "$tmp" "$dest/lib"
        log "Cassandra $version: $(find "$dest/lib" -name '*.jar' | wc -l) jars in $dest/lib"
        exit 0
    fi
    rm -rf "$tmp"
    printf 'install-services: cassandra-all:%s failed; unresolved coordinates (full log %s):\n' \
        "$version" "$mvn_log" >&2
    grep -Eo "(Could not (resolve|find|transfer) [^:]*:? ?)?[A-Za-z0-9_.-]+:[A-Za-z0-9_.-]+:(jar|pom)(:[A-Za-z0-9_.-]+)?:[0-9][A-Za-z0-9_.-]*" \
        "$mvn_log" | sort -u | sed 's/^/    /' >&2 || tail -n 20 "$mvn_log" >&2
done
die "no Cassandra 5.0.x could be fetched from Maven Central (tried ${tried[*]})"
