#!/usr/bin/env bash
# The lab host at two or more commits, measured in one run: each commit is built in its own
# worktree (one shared target directory, so only the workspace's own crates rebuild), then
# every round runs the same four cells against each build in turn, so that what the shared
# machine does to one build it does to the others. Writes a Markdown table: requests/s per
# build (median of the rounds, and every round), and each build's median as a ratio to the
# first commit's.
#
#   bench/compare.sh [-d 8s] [-c 16] [-r 3] [-o bench/results/compare-<date>.md] REV REV...
#
# -d: each wrk run's duration (8s); -c: wrk connections (16); -r: rounds (3); -o: the output.
# With two or more CPUs, the host and Redis run on CPU 0 and wrk on CPU 1.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=8s connections=16 rounds=3 out=bench/results/compare-$(date -u +%Y-%m-%d).md
while getopts d:c:r:o: flag; do
  case $flag in
    d) duration=$OPTARG ;;
    c) connections=$OPTARG ;;
    r) rounds=$OPTARG ;;
    o) out=$OPTARG ;;
    *) sed -n 2,12p "$0" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[ $# -ge 2 ] || { sed -n 2,12p "$0" >&2; exit 2; }
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
command -v redis-server >/dev/null || { echo "redis-server is missing: apt-get install -y redis-server" >&2; exit 1; }
server_cpu=() load_cpu=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  server_cpu=(taskset -c 0) load_cpu=(taskset -c 1)
fi

repo=$PWD
work=$(mktemp -d)
pids=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  for tree in "$work"/tree-*; do [ -d "$tree" ] && git -C "$repo" worktree remove --force "$tree"; done
  rm -rf "$work"
}
trap cleanup EXIT

# Build each commit (once: the builds are kept by commit under the shared target); its tree
# then holds its own binary and components, newer than its sources, so `cartlab up` builds
# nothing.
revs=() names=()
shared_target=${CARGO_TARGET_DIR:-$repo/target/bench-compare}
for rev in "$@"; do
  name=$(git rev-parse --short "$rev")
  tree=$work/tree-$name
  kept=$shared_target/builds/$(git rev-parse "$rev")
  git worktree add --detach -q "$tree" "$rev"
  if [ ! -x "$kept/cartlab" ]; then
    echo "== building $name" >&2
    (cd "$tree" && CARGO_TARGET_DIR=$shared_target cargo build -q --release -p cartlab \
      && CARGO_TARGET_DIR=$shared_target cargo build -q --target wasm32-wasip2 --release)
    mkdir -p "$kept"
    cp "$shared_target"/wasm32-wasip2/release/*.wasm "$kept/"
    cp "$shared_target/release/cartlab" "$kept/"
  fi
  mkdir -p "$tree/target/release" "$tree/target/wasm32-wasip2/release"
  cp "$kept/cartlab" "$tree/target/release/"
  cp "$kept"/*.wasm "$tree/target/wasm32-wasip2/release/"
  revs+=("$tree") names+=("$name")
done

redis_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"${server_cpu[@]}" redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
  --dir "$work" --daemonize no >"$work/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
printf '[key_value_store.default]\ntype = "redis"\nurl = "redis://127.0.0.1:%s"\n' "$redis_port" >"$work/rc.toml"
cat >"$work/add.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"item":"iPhone 15","price":1200}'
wrk.headers["Content-Type"] = "application/json"
LUA

# One round on one build: the host starts fresh on an empty Redis, then four wrk runs.
# Prints "component request requests/s p99" lines.
measure() {
  local tree=$1 state=$work/state-$RANDOM
  redis-cli -p "$redis_port" flushall >/dev/null
  mkdir -p "$state"
  (cd "$tree" && RUST_LOG=warn exec "${server_cpu[@]}" target/release/cartlab up --listen 127.0.0.1:0 \
    --runtime-config-file "$work/rc.toml" --state-dir "$state" >"$state/up.out" 2>"$state/up.err") &
  local host=$!
  for _ in $(seq 300); do grep -q '^Serving' "$state/up.out" 2>/dev/null && break; sleep 0.1; done
  local url
  url=$(sed -n 's/^Serving //p' "$state/up.out")
  [ -n "$url" ] || { cat "$state/up.err" >&2; exit 1; }
  for component in stateless stateful; do
    curl -s -c "$state/jar" -o /dev/null -H 'content-type: application/json' \
      -d '{"item":"MacBook Pro","price":2500}' "$url/$component/cart/add"
    local cookie
    cookie=$(awk -v name="cartlab_$component" '$6 == name { print name "=" $7 }' "$state/jar")
    for request in get add; do
      local result
      if [ "$request" = get ]; then
        result=$("${load_cpu[@]}" wrk -t2 -c"$connections" -d"$duration" --latency -H "Cookie: $cookie" "$url/$component/cart")
      else
        result=$("${load_cpu[@]}" wrk -t2 -c"$connections" -d"$duration" --latency -s "$work/add.lua" "$url/$component/cart/add")
      fi
      echo "$component $request $(awk '/Requests\/sec/ {print $2}' <<<"$result") $(awk '$1 == "99%" {print $2}' <<<"$result") $(awk '/Non-2xx/ {print $5}' <<<"$result")"
    done
  done
  kill "$host" 2>/dev/null || true
  wait "$host" 2>/dev/null || true
}

for round in $(seq "$rounds"); do
  for i in "${!revs[@]}"; do
    echo "== round $round: ${names[$i]}" >&2
    measure "${revs[$i]}" | sed "s/^/${names[$i]} $round /" >>"$work/raw"
  done
done

mkdir -p "$(dirname "$out")"
python3 - "$work/raw" "$out" "$duration" "$connections" "$rounds" "${names[@]}" <<'PY'
import statistics, subprocess, sys
raw, out, duration, connections, rounds, *names = sys.argv[1:]
cells = {}
for line in open(raw):
    name, _round, component, request, rps, p99, *non2xx = line.split()
    cells.setdefault((component, request), {}).setdefault(name, []).append((float(rps), p99, non2xx[0] if non2xx else "0"))
labels = {"get": "GET /cart", "add": "POST /cart/add"}
machine = subprocess.run(["uname", "-sr"], capture_output=True, text=True).stdout.strip()
cores = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
head = " | ".join(f"{n} req/s (rounds)" for n in names)
ratios = " | ".join(f"{n}/{names[0]}" for n in names[1:])
lines = [
    f"# cartlab lab host at {', '.join(names)}, one alternating run",
    "",
    f"Machine: {cores} cores, {machine}. Command: `bench/compare.sh -d {duration} -c {connections} -r {rounds} {' '.join(names)}`;",
    f"each cell is `wrk -t2 -c{connections} -d{duration}` against `cartlab up` (release) with key-value on a local Redis,",
    "host and Redis pinned to CPU 0, wrk to CPU 1; every round starts each build fresh on an emptied Redis,",
    "builds in turn. Medians of the rounds; the ratios are of medians.",
    "",
    f"| component | request | {head} | {ratios} |",
    "|---|---|" + "---:|" * (len(names) + len(names) - 1),
]
for (component, request), by_name in cells.items():
    medians = {n: statistics.median(r[0] for r in by_name[n]) for n in names}
    shown = " | ".join(
        f"**{medians[n]:.0f}** ({', '.join(f'{r[0]:.0f}' for r in by_name[n])})" for n in names
    )
    rel = " | ".join(f"{medians[n] / medians[names[0]]:.2f}" for n in names[1:])
    errors = sum(int(r[2]) for n in names for r in by_name[n])
    lines.append(f"| {component} | {labels[request]} | {shown} | {rel} |" + (f" non-2xx: {errors}" if errors else ""))
open(out, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
echo "Written to $out" >&2
