#!/usr/bin/env bash
# Throughput and latency of the cart API in the lab host, measured by wrk in a
# second process over loopback. Writes bench/results/<date>.md with the exact
# commands. Targets are ratios read from one run (these machines are shared).
#
#   bench/run.sh [duration=10s] [connections=16] [output=bench/results/<date>.md]
#
# With two or more CPUs, the host and Redis run on CPU 0 and wrk on CPU 1, so the load
# generator does not steal the server's core.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10s}
connections=${2:-16}
out=${3:-bench/results/$(date -u +%Y-%m-%d).md}
server_cpu=() load_cpu=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  server_cpu=(taskset -c 0) load_cpu=(taskset -c 1)
fi
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
command -v redis-server >/dev/null || { echo "redis-server is missing: apt-get install -y redis-server" >&2; exit 1; }

work=$(mktemp -d)
redis_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"${server_cpu[@]}" redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" --daemonize no >"$work/redis.log" 2>&1 &
redis_pid=$!
printf '[key_value_store.default]\ntype = "redis"\nurl = "redis://127.0.0.1:%s"\n' "$redis_port" >"$work/rc.toml"

cargo build --release -p cartlab >/dev/null
cargo build --target wasm32-wasip2 --release >/dev/null
RUST_LOG=warn "${server_cpu[@]}" target/release/cartlab up --listen 127.0.0.1:0 --runtime-config-file "$work/rc.toml" \
  --state-dir "$work" >"$work/up.out" 2>"$work/up.err" &
lab_pid=$!
trap 'kill $lab_pid $redis_pid 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do grep -q '^Serving' "$work/up.out" 2>/dev/null && break; sleep 0.1; done
url=$(sed -n 's/^Serving //p' "$work/up.out")
[ -n "$url" ] || { cat "$work/up.err" >&2; exit 1; }

# Each component gets one seeded session for the GET benchmark.
cookie_for() {
  curl -s -c "$work/jar-$1" -o /dev/null -H 'content-type: application/json' \
    -d '{"item":"MacBook Pro","price":2500}' "$url/$1/cart/add"
  awk -v name="cartlab_$1" '$6 == name { print name "=" $7 }' "$work/jar-$1"
}

cat >"$work/add.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"item":"iPhone 15","price":1200}'
wrk.headers["Content-Type"] = "application/json"
LUA

mkdir -p "$(dirname "$out")"
{
  echo "# cartlab lab host benchmark, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "Machine: $(nproc) cores, $(uname -sr). Host: \`cartlab up\` (release), Redis $(redis-server --version | awk '{print $3}' | cut -d= -f2) on loopback."
  echo "Command: \`bench/run.sh $duration $connections\` at $(git rev-parse --short HEAD); each row is \`wrk -t2 -c$connections -d$duration --latency ...\`."
  if [ ${#server_cpu[@]} -gt 0 ]; then echo "Pinned: host and Redis on CPU 0, wrk on CPU 1."; fi
  echo "POST add runs without a cookie, so every request starts a session (one write);"
  echo "GET cart uses one seeded session: stateless (key-value mode on Redis) reads it with a"
  echo "CAS handle and rewrites it to slide its expiry (a GET and a compare-and-set Lua script);"
  echo "stateful reads and rewrites instance memory."
  echo
  echo "| component | request | requests/s | p50 | p99 | non-2xx |"
  echo "|---|---|---:|---:|---:|---:|"
} >"$out"

for component in stateless stateful; do
  cookie=$(cookie_for "$component")
  for request in get add; do
    if [ "$request" = get ]; then
      result=$("${load_cpu[@]}" wrk -t2 -c"$connections" -d"$duration" --latency -H "Cookie: $cookie" "$url/$component/cart")
      label="GET /cart"
    else
      result=$("${load_cpu[@]}" wrk -t2 -c"$connections" -d"$duration" --latency -s "$work/add.lua" "$url/$component/cart/add")
      label="POST /cart/add"
    fi
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$result")
    p50=$(awk '$1 == "50%" {print $2}' <<<"$result")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$result")
    non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$result")
    echo "| $component | $label | $rps | $p50 | $p99 | ${non2xx:-0} |" >>"$out"
  done
done
echo >>"$out"
echo "Written to $out"
cat "$out"
