#!/usr/bin/env python3
"""cartlab's benchmark harness: the stateless cart in both store modes, the stateful cart, and
peers (the seed's own Node stack; `wasmtime serve` where installed), measured in one run,
alternating, with the load generator and the servers on different cores. Writes one Markdown
report: throughput, latency and CPU per request with ratios to the Node peer of the same round,
Redis commands per request, latency as stored sessions grow, the cost of a fresh instance per
request, memory under the write workload, and the instances a Redis stall holds. `bench/run.sh`
builds everything first and calls this.

    python3 bench/harness.py [--duration 5s] [--connections 32] [--rounds 2] [--output FILE]
    python3 bench/harness.py profile TARGET [--cartlab BIN] [--from DIR] [--output FILE]

Benchmarks are not tests: read the rows of one run against each other.
"""

import argparse
import contextlib
import http.client
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED_ITEMS = [("MacBook Pro", 2500), ("iPhone 15", 1200)]
ADD_BODY = '{"item":"iPhone 15","price":1200}'
# Host and Redis on one core, the load generator on the other (with two or more).
SERVER_CPU, LOAD_CPU = "0", "1"
COUNTED_REQUESTS = 100
SESSION_STEPS = [1_000, 100_000, 1_000_000]
# Cells at each step of stored sessions, the one with the lowest p50 reported: the steps are
# measured minutes apart, and on a shared machine a slow minute only ever adds latency.
SCALING_CELLS = 3


def log(message):
    print(message, file=sys.stderr, flush=True)


def pinned(cpu, argv):
    if shutil.which("taskset") and os.cpu_count() and os.cpu_count() >= 2:
        return ["taskset", "-c", cpu] + argv
    return argv


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- Redis -------------------------------------------------------------------------------


class Redis:
    """A redis-server of our own on a free loopback port, for the whole run."""

    def __init__(self, work):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}"
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", work]
        self.proc = subprocess.Popen(pinned(SERVER_CPU, argv), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        for _ in range(100):
            if self.cli("PING") == "PONG":
                break
            time.sleep(0.05)
        else:
            raise RuntimeError("redis-server did not start")
        self.version = self.cli("INFO", "server").split("redis_version:")[1].split()[0]

    def cli(self, *args):
        done = subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True,
                              text=True)
        return done.stdout.strip()

    def flush(self):
        self.cli("FLUSHALL")

    def dbsize(self):
        return int(self.cli("DBSIZE") or 0)

    def commandstats(self):
        """Calls per command, the harness's own commands left out."""
        calls = {}
        for line in self.cli("INFO", "commandstats").splitlines():
            m = re.match(r"cmdstat_([^:]+):calls=(\d+)", line)
            if m and not m.group(1).startswith(("info", "config", "monitor", "flushall",
                                                "dbsize", "ping")):
                calls[m.group(1)] = int(m.group(2))
        return calls

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def cpu_seconds(pid):
    """User plus system CPU time of process `pid` so far, from `/proc/<pid>/stat`."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            # Fields after the command name, which may hold spaces: utime and stime are the
            # 12th and 13th of them.
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---- servers -----------------------------------------------------------------------------


class Server:
    """A server process that prints `Serving http://...` once it listens."""

    def __init__(self, argv, env=None, cwd=ROOT):
        self.out = tempfile.TemporaryFile(mode="w+")
        # A shell's RUST_BACKTRACE=1 would make every error wasmtime builds (one per retired
        # instance, for a start) walk the stack: measure what a server runs with.
        inherited = {k: v for k, v in os.environ.items()
                     if k not in ("RUST_BACKTRACE", "RUST_LIB_BACKTRACE")}
        self.proc = subprocess.Popen(pinned(SERVER_CPU, argv), cwd=cwd,
                                     env={**inherited, **(env or {})}, stdout=subprocess.PIPE,
                                     stderr=self.out, text=True)
        self.url = None
        deadline = time.time() + 60
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            m = re.search(r"(?:Serving|Serving HTTP on) (http://[0-9.:]+)", line)
            if m:
                self.url = m.group(1).rstrip("/")
                break
        if not self.url:
            self.proc.kill()
            self.out.seek(0)
            raise RuntimeError(f"{argv[0]} did not start: {self.out.read()[-2000:]}")
        # Keep draining stdout so the server never blocks on a full pipe.
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()

    @property
    def pid(self):
        return self.proc.pid

    def rss_kib(self):
        """Resident memory of the server (the pinned child, not taskset)."""
        try:
            with open(f"/proc/{self.proc.pid}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            return None
        return None

    def cpu_seconds(self):
        """User plus system CPU time the server has used so far (`/proc/<pid>/stat`)."""
        return cpu_seconds(self.proc.pid)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Target:
    """One thing measured: how to start it, where its cart is, what its cookie is called."""

    def __init__(self, name, label, start, prefix, cookie):
        self.name, self.label, self.start, self.prefix, self.cookie = (
            name, label, start, prefix, cookie)


def cartlab_target(name, label, prefix, cartlab, app_dir, mode=None, extra=()):
    def start(redis, work):
        config = os.path.join(work, "rc.toml")
        with open(config, "w") as f:
            f.write(f'[key_value_store.default]\ntype = "redis"\nurl = "{redis.url}"\n')
        argv = [cartlab, "up", "--listen", "127.0.0.1:0", "--from", app_dir,
                "--runtime-config-file", config, "--state-dir", work,
                "--variable", f"redis_url={redis.url}", *extra]
        if mode:
            argv += ["--variable", f"session_store={mode}"]
        return Server(argv, env={"RUST_LOG": "warn"})
    return Target(name, label, start, prefix, "cartlab_" + prefix.strip("/"))


def node_target():
    def start(redis, work):
        return Server(["node", os.path.join(ROOT, "bench/peers/node/server.js")],
                      env={"PORT": "0", "REDIS_URL": redis.url})
    return Target("node", "Node: express-session + connect-redis (the seed's stack)", start, "",
                  "connect.sid")


def wasmtime_target(app_dir):
    wasm = os.path.join(app_dir, "target/wasm32-wasip2/release/stateful_cart.wasm")

    def start(redis, work):
        port = free_port()
        return Server(["wasmtime", "serve", "-S", "cli", "--addr", f"127.0.0.1:{port}", wasm])
    return Target("wasmtime", "`wasmtime serve`, stateful", start, "", "cartlab_stateful")


# ---- HTTP --------------------------------------------------------------------------------


def request(url, method, path, body=None, cookie=None):
    host = url.split("//", 1)[1]
    conn = http.client.HTTPConnection(host, timeout=10)
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if cookie:
        headers["Cookie"] = cookie
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    data = response.read()
    set_cookie = response.getheader("Set-Cookie")
    conn.close()
    return response.status, data, set_cookie


def start_session(server, target, items=SEED_ITEMS):
    """A session holding `items`; returns its `Cookie` header value."""
    cookie = None
    for item, price in items:
        status, data, set_cookie = request(server.url, "POST", f"{target.prefix}/cart/add",
                                           json.dumps({"item": item, "price": price}), cookie)
        if status != 200:
            raise RuntimeError(f"{target.name}: add answered {status}: {data[:200]!r}")
        if set_cookie:
            cookie = set_cookie.split(";", 1)[0]
    if not cookie or not cookie.startswith(target.cookie + "="):
        raise RuntimeError(f"{target.name}: no {target.cookie} cookie")
    return cookie


# ---- wrk ---------------------------------------------------------------------------------


def wrk(url, args, cookie=None, script=None, duration=None):
    argv = ["wrk", f"-t{args.threads}", f"-c{args.connections}",
            f"-d{duration or args.duration}", "--latency"]
    if cookie:
        argv += ["-H", f"Cookie: {cookie}"]
    if script:
        argv += ["-s", script]
    done = subprocess.run(pinned(LOAD_CPU, argv + [url]), capture_output=True, text=True)
    out = done.stdout

    def millis(text):
        m = re.match(r"([\d.]+)(us|ms|s)", text)
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
              "seconds": millis(duration or args.duration) / 1000}
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M)
        result[f"p{pct}"] = millis(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["non2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: (.*)", out)
    result["errors"] = m.group(1).strip() if m else ""
    return result


def with_cpu(server, redis, cell):
    """Runs the wrk `cell()` and adds the CPU time the server and Redis spent per request."""
    server_before, redis_before = server.cpu_seconds(), cpu_seconds(redis.proc.pid)
    result = cell()
    served = result["rps"] * result["seconds"]
    result["server_us"] = (server.cpu_seconds() - server_before) / served * 1e6
    result["redis_us"] = (cpu_seconds(redis.proc.pid) - redis_before) / served * 1e6
    return result


def rss_during(server, work):
    """Runs `work()` while sampling the server's RSS; returns (work's result, peak KiB)."""
    peak, stop = [0], threading.Event()

    def sample():
        while not stop.is_set():
            rss = server.rss_kib() or 0
            peak[0] = max(peak[0], rss)
            stop.wait(0.1)
    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        return work(), peak[0]
    finally:
        stop.set()
        sampler.join()


# ---- Redis commands per request ----------------------------------------------------------


@contextlib.contextmanager
def monitored(redis, work):
    """Counts the commands Redis runs that are no round trips of their own while the block
    runs: those inside scripts (MONITOR tags them `[0 lua]`) and a transaction's MULTI and
    queued commands, sent in one write with its EXEC (the EXEC is the round trip). INFO
    commandstats counts them all."""
    path = os.path.join(work, "monitor.log")
    with open(path, "w") as out:
        proc = subprocess.Popen(["redis-cli", "-p", str(redis.port), "MONITOR"], stdout=out)
        time.sleep(0.3)
        box = {}
        try:
            yield box
        finally:
            time.sleep(0.3)
            proc.terminate()
            proc.wait()
    inner, in_transaction = 0, set()
    with open(path) as f:
        for line in f:
            # `<time> [<db> <client address, or lua>] "<COMMAND>" ...`
            m = re.match(r'[\d.]+ \[\d+ ([^\]]+)\] "([^"]*)"', line)
            if not m:
                continue
            client, command = m.group(1), m.group(2).upper()
            if client == "lua":
                inner += 1
            elif command == "MULTI":
                in_transaction.add(client)
                inner += 1
            elif command in ("EXEC", "DISCARD"):
                in_transaction.discard(client)
            elif client in in_transaction:
                inner += 1
    box["inner"] = inner


def count_commands(redis, server, target, work):
    """Redis commands per request for the three write patterns that matter."""
    def measure(label, requests):
        before = redis.commandstats()
        with monitored(redis, work) as box:
            for method, path, body, cookie in requests:
                status, data, _ = request(server.url, method, path, body, cookie)
                if status != 200:
                    raise RuntimeError(f"{target.name} {label}: {status} {data[:200]!r}")
        after = redis.commandstats()
        delta = {cmd: after.get(cmd, 0) - before.get(cmd, 0) for cmd in after}
        delta = {cmd: n for cmd, n in delta.items() if n > 0}
        n = len(requests)
        total = sum(delta.values())
        return {"label": label, "per_request": (total - box["inner"]) / n,
                "inner": box["inner"] / n,
                "by_command": {cmd: count / n for cmd, count in sorted(delta.items())}}

    redis.flush()
    cookie = start_session(server, target)
    cart, add = f"{target.prefix}/cart", f"{target.prefix}/cart/add"
    rows = [measure("read (`GET /cart`, session written just now)",
                    [("GET", cart, None, cookie)] * COUNTED_REQUESTS)]
    rows.append(measure("add, new session",
                        [("POST", add, ADD_BODY, None)] * COUNTED_REQUESTS))
    existing = start_session(server, target, SEED_ITEMS[:1])
    rows.append(measure("add to an existing session",
                        [("POST", add, json.dumps({"item": f"item {n}", "price": 1}), existing)
                         for n in range(40)]))
    return rows


# ---- the report --------------------------------------------------------------------------


def fmt_rps(x):
    return f"{x / 1000:.1f}k"


def fmt_cpu(cell):
    return f"{cell['server_us']:.0f} / {cell['redis_us']:.1f} us"


def median(values):
    return statistics.median(values) if values else float("nan")


def run_all(args):
    work = tempfile.mkdtemp(prefix="cartlab-bench-")
    redis = Redis(work)
    # Whatever fails (a server that does not start, wrk, the seeder), Redis stops with us.
    try:
        return measure_all(args, work, redis)
    finally:
        redis.stop()
        shutil.rmtree(work, ignore_errors=True)


def measure_all(args, work, redis):
    app = os.path.abspath(args.from_dir)
    cartlab = os.path.abspath(args.cartlab)
    targets = [
        node_target(),
        cartlab_target("kv", "cartlab up, stateless, key-value on Redis", "/stateless",
                       cartlab, app),
        cartlab_target("redis", "cartlab up, stateless, `session_store=redis`", "/stateless",
                       cartlab, app, mode="redis"),
        cartlab_target("stateful", "cartlab up, stateful (instance memory)", "/stateful",
                       cartlab, app),
    ]
    skipped = []
    if shutil.which("wasmtime"):
        targets.append(wasmtime_target(app))
    else:
        skipped.append("`wasmtime serve`: wasmtime-cli is not installed "
                       "(`cargo install wasmtime-cli --locked`)")
    add_script = os.path.join(work, "add.lua")
    with open(add_script, "w") as f:
        f.write('wrk.method = "POST"\n'
                f"wrk.body = '{ADD_BODY}'\n"
                'wrk.headers["Content-Type"] = "application/json"\n')

    # Every target is up for the whole throughput part, and each round measures one cell of
    # each in turn (all reads, then all writes, in a rotating order): on a shared machine whose
    # speed drifts over tens of seconds, the cells a ratio compares are then seconds apart,
    # not minutes. A target idles while the others are measured (no load of its own).
    redis.flush()
    running = []
    try:
        for target in list(targets) if "throughput" in args.parts else []:
            try:
                server = target.start(redis, work)
            except RuntimeError as e:
                skipped.append(f"{target.label}: {str(e).splitlines()[0][:300]}")
                targets.remove(target)
                continue
            running.append((target, server, start_session(server, target)))
        # Unmeasured first: Node's JIT warms up, and so do the host's instances.
        for target, server, cookie in running:
            cart = server.url + target.prefix + "/cart"
            wrk(cart, args, duration=args.warmup, cookie=cookie)
            wrk(cart + "/add", args, duration=args.warmup, script=add_script)
        results = {target.name: [] for target, _, _ in running}
        for round_no in range(args.rounds if running else 0):
            turn = round_no % len(running)
            order = running[turn:] + running[:turn]
            reads = {}
            for target, server, cookie in order:
                log(f"round {round_no + 1}: {target.name} read")
                cart = server.url + target.prefix + "/cart"
                reads[target.name] = with_cpu(server, redis,
                                              lambda: wrk(cart, args, cookie=cookie))
            for target, server, cookie in order:
                log(f"round {round_no + 1}: {target.name} write")
                add = server.url + target.prefix + "/cart/add"
                write, peak = rss_during(server, lambda: with_cpu(
                    server, redis, lambda: wrk(add, args, script=add_script)))
                results[target.name].append({"read": reads[target.name], "write": write,
                                             "rss_peak": peak, "rss_after": server.rss_kib()})
    finally:
        for _, server, _ in running:
            server.stop()

    counts = {}
    for target in targets if "commands" in args.parts else []:
        if target.name in ("stateful", "wasmtime"):
            continue
        server = target.start(redis, work)
        try:
            counts[target.name] = count_commands(redis, server, target, work)
        finally:
            server.stop()

    scaling = {}
    for name in ("kv", "redis") if "sessions" in args.parts else []:
        target = next((t for t in targets if t.name == name), None)
        if target is None:  # it did not start: the report says why
            continue
        redis.flush()
        server = target.start(redis, work)
        try:
            cookie = start_session(server, target)
            rows = []
            for step in SESSION_STEPS:
                log(f"{name}: seeding to {step} sessions")
                subprocess.run([args.seeder, redis.url, str(step - count_sessions(redis)), "0",
                                "1800"], check=True, stdout=subprocess.DEVNULL)
                cells = [wrk(server.url + "/stateless/cart", args, cookie=cookie)
                         for _ in range(SCALING_CELLS)]
                rows.append((count_sessions(redis), min(cells, key=lambda cell: cell["p50"])))
            scaling[name] = rows
        finally:
            server.stop()

    reuse = {}
    for name, mode in (("kv", None), ("redis", "redis")) if "reuse" in args.parts else []:
        for label, extra in (("default", ()), ("reuse 1", ("--max-instance-reuse-count", "1"))):
            reuse[(name, label)] = []
        for _ in range(args.rounds):
            for label, extra in (("default", ()),
                                 ("reuse 1", ("--max-instance-reuse-count", "1"))):
                target = cartlab_target(name, "", "/stateless", cartlab, app, mode=mode,
                                        extra=extra)
                redis.flush()
                server = target.start(redis, work)
                try:
                    cookie = start_session(server, target)
                    reuse[(name, label)].append(
                        wrk(server.url + "/stateless/cart", args, cookie=cookie))
                finally:
                    server.stop()

    stalls = {}
    for target in targets if "stall" in args.parts else []:
        if target.name not in ("kv", "redis"):
            continue
        redis.flush()
        server = target.start(redis, work)
        try:
            stalls[target.name] = measure_stall(redis, server, target, args)
        finally:
            server.stop()

    return targets, skipped, results, counts, scaling, reuse, stalls, redis.version


STALL_MS = 300
# The stall's read load lasts STALL_LOAD_S; Redis pauses STALL_AFTER_S into it.
STALL_LOAD_S, STALL_AFTER_S = 3, 1


def instances_in_use(server, component="stateless-cart"):
    """The component's live instances now: the requests in flight on each."""
    status, data, _ = request(server.url, "GET", "/_lab/instances")
    if status != 200:
        raise RuntimeError(f"/_lab/instances answered {status}: {data[:200]!r}")
    for entry in json.loads(data)["components"]:
        if entry["component"] == component:
            return [instance["inFlight"] for instance in entry["instances"]]
    return []


def measure_stall(redis, server, target, args):
    """The read load while Redis holds every command for STALL_MS (`CLIENT PAUSE ... ALL`,
    a failover or a slow network as the app sees it): the most instances the component ran
    and the most requests in flight, from `/_lab/instances` every 10 ms, and wrk's cell
    around it."""
    cookie = start_session(server, target)
    cart = server.url + target.prefix + "/cart"
    wrk(cart, args, duration="1s", cookie=cookie)
    before = instances_in_use(server)
    box = {}
    load = threading.Thread(target=lambda: box.update(
        wrk(cart, args, duration=f"{STALL_LOAD_S}s", cookie=cookie)))
    load.start()
    time.sleep(STALL_AFTER_S)
    redis.cli("CLIENT", "PAUSE", str(STALL_MS), "ALL")
    peak_instances, peak_in_flight, end = 0, 0, time.time() + STALL_MS / 1000
    while time.time() < end:
        in_flight = instances_in_use(server)
        peak_instances = max(peak_instances, len(in_flight))
        peak_in_flight = max(peak_in_flight, sum(in_flight))
        time.sleep(0.01)
    load.join()
    return {"before": len(before), "instances": peak_instances, "in_flight": peak_in_flight,
            "wrk": box}


def count_sessions(redis):
    return int(redis.cli("EVAL", "return #redis.call('KEYS', 'cartlab:session:*')", "0") or 0)


def versions(redis_version, app_dir):
    def out(argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True).stdout.strip()
        except OSError:
            return "not found"
    lock = json.load(open(os.path.join(ROOT, "bench/peers/node/package-lock.json")))
    pkgs = lock.get("packages", {})
    node_pkgs = ", ".join(f"{p} {pkgs.get('node_modules/' + p, {}).get('version', '?')}"
                          for p in ("express", "express-session", "connect-redis", "redis"))
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    # How the host and components were built matters as much as the code (LTO alone moved the
    # host's reads by a quarter or more): the report names the release profile it measured.
    with open(os.path.join(ROOT, "Cargo.toml"), "rb") as manifest:
        release = tomllib.load(manifest).get("profile", {}).get("release", {})
    profile = ", ".join(f"{k} = {json.dumps(v)}" for k, v in release.items()
                        if not isinstance(v, dict)) or "cargo's defaults"
    return [
        f"Machine: {os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}.",
        f"Built with `[profile.release]` {profile}.",
        f"Versions: cartlab {out(['git', '-C', app_dir, 'rev-parse', '--short', 'HEAD'])}"
        f" ({out(['rustc', '--version'])}), Redis {redis_version}, Node {out(['node', '--version'])}"
        f" ({node_pkgs}), {out(['wrk', '--version']).splitlines()[0] if shutil.which('wrk') else 'wrk ?'}.",
    ]


def report(args, targets, skipped, results, counts, scaling, reuse, stalls, redis_version):
    lines = [f"# cartlab benchmark, {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC", ""]
    lines += versions(redis_version, args.from_dir)
    lines += [
        f"Command: `{args.command}`; every cell is `wrk -t{args.threads} -c{args.connections} "
        f"-d{args.duration} --latency`, {args.rounds} rounds. All targets run at once on one "
        f"emptied Redis, each warmed up for {args.warmup} (reads, then writes, unmeasured); a "
        "round is one read cell of each target in turn, then one write cell of each, in an order "
        "that rotates every round.",
        f"Pinned: servers and Redis on CPU {SERVER_CPU}, wrk on CPU {LOAD_CPU} (`taskset`).",
        "CPU per request: the user and system time the server process (all its threads) and "
        "Redis spent during the cell (`/proc/<pid>/stat`), divided by the requests served.",
        "Read: `GET /cart` of a session holding the seed's two items (written just before). "
        "Write: `POST /cart/add` without a cookie, so every request creates a session.",
    ]
    if results:
        lines += [
            "", "## Throughput, per round (ratio to the Node peer of the same round)", "",
            "| target | read req/s | read p50 / p99 | read CPU: server / Redis | write req/s | "
            "write p50 / p99 | write CPU: server / Redis | write peak RSS |",
            "|---|---|---|---|---|---|---|---|",
        ]
    node = results.get("node", [])
    for target in targets:
        for i, row in enumerate(results.get(target.name, [])):
            ratio = ""
            if target.name != "node" and i < len(node):
                ratio = (f" ({row['read']['rps'] / node[i]['read']['rps']:.2f}x)",
                         f" ({row['write']['rps'] / node[i]['write']['rps']:.2f}x)")
            else:
                ratio = ("", "")
            r, w = row["read"], row["write"]
            errors = "".join(f", {c['non2xx']} non-2xx" for c in (r, w) if c["non2xx"])
            lines.append(
                f"| {target.label}, round {i + 1} | {fmt_rps(r['rps'])}{ratio[0]} | "
                f"{r['p50']:.2f} / {r['p99']:.2f} ms | {fmt_cpu(r)} | "
                f"{fmt_rps(w['rps'])}{ratio[1]} | {w['p50']:.2f} / {w['p99']:.2f} ms{errors} | "
                f"{fmt_cpu(w)} | {row['rss_peak'] / 1024:.0f} MiB |")
    for s in skipped:
        lines.append(f"\nNot run: {s}")

    labels = {t.name: t.label for t in targets}
    if counts:
        lines += ["", "## Redis commands per request", "",
                  f"{COUNTED_REQUESTS} requests one after another (40 for the add to an existing "
                  "session), `INFO commandstats` before and after. Round trips are the commands "
                  "a client waited for; commands that scripts ran inside Redis (MONITOR's `lua` lines) "
                  "and a transaction's MULTI and queued commands (sent in one write with its "
                  "EXEC) are shown apart, since commandstats counts them too.", "",
                  "| target | request | round trips | inside scripts or MULTI | by command (commandstats) |",
                  "|---|---|---:|---:|---|"]
    for name, rows in counts.items():
        for row in rows:
            by = ", ".join(f"{cmd.upper()} {n:.2f}" for cmd, n in row["by_command"].items())
            lines.append(f"| {labels[name]} | {row['label']} | {row['per_request']:.2f} | "
                         f"{row['inner']:.2f} | {by} |")

    if scaling:
        lines += ["", "## Read latency as stored sessions grow", "",
                  "The same `GET /cart` with other sessions in Redis (written as the cart writes "
                  "them, by `crates/cartlab/examples/expiry_seed.rs`, queued for expiry as in "
                  f"key-value mode). {SCALING_CELLS} cells at each step, the one with the "
                  "lowest p50 shown (the steps are minutes apart; a slow minute on a shared "
                  "machine only adds latency).", "",
                  "| target | sessions stored | req/s | p50 | p99 |", "|---|---:|---:|---:|---:|"]
    for name, rows in scaling.items():
        for n, r in rows:
            lines.append(f"| {labels[name]} | {n:,} | {fmt_rps(r['rps'])} | {r['p50']:.2f} ms | "
                         f"{r['p99']:.2f} ms |")

    if reuse:
        lines += ["", "## A fresh instance per request (`--max-instance-reuse-count 1`)", "",
                  "| target | reuse | read req/s per round | p50 |", "|---|---|---|---:|"]
    for (name, label), rows in reuse.items():
        lines.append(f"| {labels[name]} | {label} | "
                     f"{', '.join(fmt_rps(r['rps']) for r in rows)} | "
                     f"{median([r['p50'] for r in rows]):.2f} ms |")

    if stalls:
        lines += ["", f"## A {STALL_MS} ms Redis stall under the read load", "",
                  f"`wrk -t{args.threads} -c{args.connections} -d{STALL_LOAD_S}s` reads; after "
                  f"{STALL_AFTER_S} s Redis holds "
                  f"every command for {STALL_MS} ms (`CLIENT PAUSE {STALL_MS} ALL`). The most "
                  "instances of the component and requests in flight during the stall, from "
                  "`/_lab/instances` every 10 ms. Redis mode's `spin:redis` calls are async: an "
                  "instance waiting on Redis takes more requests. Key-value mode's `wasi:keyvalue` "
                  "calls are synchronous: an instance waiting on Redis takes none, so each "
                  "waiting request holds an instance of its own.", "",
                  "| target | instances before | instances during the stall | requests in flight "
                  f"| req/s over the {STALL_LOAD_S} s | p99 | non-2xx |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name, stall in stalls.items():
        w = stall["wrk"]
        lines.append(f"| {labels[name]} | {stall['before']} | {stall['instances']} | "
                     f"{stall['in_flight']} | {fmt_rps(w['rps'])} | {w['p99']:.0f} ms | "
                     f"{w['non2xx']} |")

    lines += ["", "## The targets of issue 13", ""]
    lines += checks(results, counts, scaling, reuse)
    return "\n".join(lines) + "\n"


def checks(results, counts, scaling, reuse):
    out = []

    def check(ok, text):
        out.append(f"- {'met' if ok else '**not met**'}: {text}")

    def check_ratios(ratios, least, text):
        """A target over ratios of the same round; a part this run left out is no row."""
        if ratios:
            check(min(ratios) >= least, f"{text}: {', '.join(f'{x:.2f}x' for x in ratios)}")

    node = results.get("node", [])
    for name in ("kv", "redis"):
        rows = results.get(name, [])
        for kind in ("read", "write"):
            ratios = [r[kind]["rps"] / n[kind]["rps"] for r, n in zip(rows, node)]
            check_ratios(ratios, 3, f"{name} {kind} >= 3x Node in every round")
        stateful = results.get("stateful", [])
        ratios = [r["read"]["rps"] / s["read"]["rps"] for r, s in zip(rows, stateful)]
        check_ratios(ratios, 0.8, f"{name} read >= 0.8x stateful read")
    kv, rd = results.get("kv", []), results.get("redis", [])
    for kind in ("read", "write"):
        ratios = [r[kind]["rps"] / k[kind]["rps"] for r, k in zip(rd, kv)]
        check_ratios(ratios, 1, f"Redis mode >= key-value mode, {kind}")
    limits = {"kv": (1, 3, 4), "redis": (1, 1, 2)}
    for name, (read, create, existing) in limits.items():
        rows = counts.get(name)
        if rows:
            got = [r["per_request"] for r in rows]
            check(got[0] <= read and got[1] <= create and got[2] <= existing,
                  f"{name}: round trips read {got[0]:.2f} (<= {read}), new session "
                  f"{got[1]:.2f} (<= {create}), existing {got[2]:.2f} (<= {existing})")
    for name, rows in scaling.items():
        if len(rows) >= 2:
            ratio = rows[-1][1]["p50"] / rows[0][1]["p50"]
            check(ratio <= 1.2, f"{name}: p50 at {rows[-1][0]:,} sessions / at {rows[0][0]:,}: "
                  f"{ratio:.2f}")
    for name in ("kv", "redis"):
        if not reuse.get((name, "default")) or not reuse.get((name, "reuse 1")):
            continue
        default = median([r["rps"] for r in reuse[(name, "default")]])
        one = median([r["rps"] for r in reuse[(name, "reuse 1")]])
        check(one / default >= 0.5, f"{name}: reuse 1 / default read throughput {one / default:.2f}")
    return out


# ---- profile -----------------------------------------------------------------------------


def profile(args):
    """`perf record` on the host while wrk reads; the top frames, self time."""
    work = tempfile.mkdtemp(prefix="cartlab-profile-")
    redis = Redis(work)
    mode = {"kv": None, "redis": "redis", "stateful": None}[args.target]
    prefix = "/stateful" if args.target == "stateful" else "/stateless"
    # perfmap: perf names the components' functions (where their .wasm keeps its names).
    target = cartlab_target(args.target, "", prefix, os.path.abspath(args.cartlab),
                            os.path.abspath(args.from_dir), mode=mode, extra=args.host_flags)
    server = None
    try:
        server = target.start(redis, work)
        cookie = start_session(server, target)
        data = args.perf_data or os.path.join(work, "perf.data")
        perf = subprocess.Popen(["perf", "record", "-F", "499", "--call-graph", args.call_graph,
                                 "-o", data, "-p",
                                 str(server.pid)], stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        result = wrk(server.url + prefix + "/cart", args, cookie=cookie)
        perf.send_signal(2)
        perf.wait()
        top = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children",
                              "--sort", "dso,symbol", "--percent-limit", "0.7", "-g", "none"],
                             capture_output=True, text=True).stdout
    finally:
        if server:
            server.stop()
        redis.stop()
        shutil.rmtree(work, ignore_errors=True)
    rows = [line for line in top.splitlines() if line.strip() and not line.startswith("#")]
    text = "\n".join([
        f"# Profile: `cartlab up`, {args.target}, `GET {prefix}/cart` under wrk",
        "",
        f"Command: `{args.command}` ({os.path.basename(args.cartlab)} at {args.from_dir});"
        f" {fmt_rps(result['rps'])} req/s, p50 {result['p50']:.2f} ms while recorded"
        f" (`perf record -F 499 --call-graph {args.call_graph}`, self time, frames of 0.7% and more).",
        "", "```", *rows[:40], "```", ""])
    return text


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", nargs="?", default="all", choices=["all", "profile"])
    parser.add_argument("target", nargs="?", default="redis", choices=["kv", "redis", "stateful"],
                        help="for profile: the stateless cart in a store mode, or the stateful"
                        " cart (default redis)")
    parser.add_argument("--duration", default="5s", help="each wrk run (default 5s)")
    parser.add_argument("--warmup", default="2s",
                        help="unmeasured load on each target before its cells (default 2s)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (32)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (2)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds (2)")
    parser.add_argument("--cartlab", default=os.path.join(ROOT, "target/release/cartlab"))
    parser.add_argument("--from", dest="from_dir", default=ROOT,
                        help="the app directory (spin.toml and its built .wasm)")
    parser.add_argument("--seeder", default=os.path.join(ROOT, "target/release/examples/expiry_seed"))
    parser.add_argument("--output", help="the report (default bench/results/<date>.md)")
    parser.add_argument("--parts", default="throughput,commands,sessions,reuse,stall",
                        type=lambda text: set(text.split(",")),
                        help="what to measure (default: throughput,commands,sessions,reuse,"
                        "stall)")
    parser.add_argument("--host-flag", dest="host_flags", action="append", default=[],
                        help="for profile: a flag for `cartlab up` (e.g. --host-flag=--perfmap)")
    parser.add_argument("--call-graph", default="dwarf,16384",
                        help="for profile: perf's --call-graph (default dwarf,16384)")
    parser.add_argument("--perf-data", help="for profile: keep perf's recording here")
    args = parser.parse_args()
    args.command = os.environ.get("CARTLAB_BENCH_COMMAND") or " ".join(
        ["python3", "bench/harness.py", *sys.argv[1:]])
    if args.what == "profile":
        text = profile(args)
        out = args.output or os.path.join(ROOT, f"bench/results/profile-{args.target}.md")
    else:
        text = report(args, *run_all(args))
        out = args.output or os.path.join(ROOT, f"bench/results/{time.strftime('%Y-%m-%d')}.md")
    with open(out, "w") as f:
        f.write(text)
    print(text)
    log(f"written to {out}")


if __name__ == "__main__":
    main()
