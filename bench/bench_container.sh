#!/usr/bin/env bash
# The container's figures for bench/README.md: engine start with the base image, image build
# (cold, after a code-only change, unchanged), image size, and `docker stop` of a running daemon.
#
#   bench/bench_container.sh            # as root, with no Docker engine running
#
# It starts its own dockerd through tools/container-engine.sh in a fresh directory
# (BENCH_ENGINE_DIR, default /var/tmp/leadbox-bench-engine, removed first so the base image is
# provided from scratch: pulled, or built from Debian packages where no registry answers) and
# stops and removes it at the end. Installing docker.io itself (apt) is not timed: run `tools/container-engine.sh
# up` once before, then `down`.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
export CONTAINER_ENGINE_DIR=${BENCH_ENGINE_DIR:-/var/tmp/leadbox-bench-engine}
engine="$repo/tools/container-engine.sh"
if docker info >/dev/null 2>&1; then
  echo "a Docker engine is already running: stop it first (its images would be reused)" >&2
  exit 2
fi
rm -rf "$CONTAINER_ENGINE_DIR"
work=$(mktemp -d)
trap '"$engine" down; rm -rf "$work" "$CONTAINER_ENGINE_DIR"' EXIT

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

t=$(now); "$engine" up; up_s=$(since "$t")

# The build context as users have it: the tracked files of the checkout.
git -C "$repo" ls-files -z | tar -C "$repo" --null -T - -c | tar -C "$work" -x
t=$(now); docker build -q --network=host -t leadbox:bench "$work" >/dev/null; cold_s=$(since "$t")
echo "# code-only change" >>"$work/agent/__init__.py"
t=$(now); docker build -q --network=host -t leadbox:bench "$work" >/dev/null; code_s=$(since "$t")
t=$(now); docker build -q --network=host -t leadbox:bench "$work" >/dev/null; same_s=$(since "$t")
size_mb=$(docker image inspect -f '{{.Size}}' leadbox:bench | awk '{ printf "%.0f", $1 / 1e6 }')
base_mb=$(docker image inspect -f '{{.Size}}' python:3.11-slim | awk '{ printf "%.0f", $1 / 1e6 }')

name=leadbox-bench-$$
docker run -d --name "$name" --health-interval 1s --health-start-period 1s leadbox:bench >/dev/null
for _ in $(seq 90); do
  [[ $(docker inspect -f '{{.State.Health.Status}}' "$name") == healthy ]] && break
  sleep 1
done
t=$(now); docker stop "$name" >/dev/null; stop_s=$(since "$t")
code=$(docker inspect -f '{{.State.ExitCode}}' "$name")
docker rm -v "$name" >/dev/null

cat <<REPORT
| figure | value |
|---|---|
| engine start + base image from scratch | ${up_s} s |
| image build, cold (no layer cached; pip downloads the dependencies) | ${cold_s} s |
| image build after a code-only change | ${code_s} s |
| image build, nothing changed | ${same_s} s |
| image size (base image alone) | ${size_mb} MB (${base_mb} MB) |
| docker stop of a healthy, idle daemon (exit code) | ${stop_s} s (${code}) |
engine $(docker version --format '{{.Server.Version}}'), CLI $(docker version --format '{{.Client.Version}}'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)
REPORT
