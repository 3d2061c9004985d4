#!/usr/bin/env bash
# The benchmark, one command: builds the host, the components, the session seeder and the Node
# peer, then runs bench/harness.py, which writes bench/results/<date>.md (the machine, the
# versions, the exact command, every table). Arguments go to the harness:
#
#   bench/run.sh [--duration 5s] [--connections 32] [--rounds 2] [--output FILE]
#   bench/run.sh profile redis|kv          # perf's top frames of the host under the read load
#
# Needs wrk, redis-server, node and npm, taskset (util-linux), and perf for `profile`
# (`apt-get install -y wrk redis-server nodejs npm linux-perf`).
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in wrk redis-server redis-cli node npm python3; do
  command -v "$tool" >/dev/null || { echo "$tool is missing (see bench/README.md)" >&2; exit 1; }
done
cargo build --release -p cartlab --bin cartlab --example expiry_seed
cargo build --target wasm32-wasip2 --release
[ -d bench/peers/node/node_modules ] || npm ci --prefix bench/peers/node --no-audit --no-fund
CARTLAB_BENCH_COMMAND="bench/run.sh${*:+ $*}" exec python3 bench/harness.py "$@"
