#!/usr/bin/env bash
# Runs catga-cluster next to etcd and nginx on this machine and prints one
# table (also written as JSON and Markdown under target/bench/).
#
#   bash bench/run.sh                   # the full profile (about 12 minutes)
#   bash bench/run.sh --profile quick   # every section for a moment
#   bash bench/run.sh --sections crash,pause --rounds 50
#
# Installs what it needs on Debian (etcd-server, etcd-client, nginx; as
# root), builds the release binaries, and starts every process on loopback.
# Any argument is passed to catga-bench (see `catga-bench --help`).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || need+=(etcd-client)
[ -x /usr/sbin/nginx ] || need+=(nginx)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "bench/run.sh: install ${need[*]} (as root: apt-get install ${need[*]})" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# The packages may start system services on the default ports; the
# benchmark uses its own ports and data, so they are left alone.

cargo build --release -p order-system -p catga-bench
mkdir -p target/bench
target/release/catga-bench --json target/bench/results.json "$@" | tee target/bench/results.md
