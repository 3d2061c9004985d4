#!/usr/bin/env python3
"""Checks deploy/kubernetes without a cluster; run through scripts/check-deploy.

What it checks, in order:
  1. yamllint --strict (deploy/kubernetes/.yamllint) on every YAML file there;
  2. every document: apiVersion, kind, metadata.name, and the one namespace of namespace.yaml;
  3. every SpinApp and SpinAppExecutor, in whatever file, against deploy/kubernetes/schema/ with
     check-jsonschema (any other kind in core.spinkube.dev is refused);
  4. every SpinApp against its app (annotation cartlab.dev/spin-manifest, read with tomllib):
     variable names in [variables], secret variables only from Secrets, ConfigMap/Secret keys
     that exist, an executor that exists, replicas >= 3, health paths the app routes, and a
     runtime-config.toml whose Redis is the one redis_url and redis_password name;
  5. selectors on the operator's pod label name a SpinApp that is here;
  6. shell scripts in ConfigMaps with `sh -n`, haproxy.cfg with `haproxy -c`.
--self-test then breaks copies of the tree in a temp dir, one fault each, and requires every
copy to be refused for that fault (and the unbroken copy to pass).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import urllib.parse
from pathlib import Path

import yaml

DEPLOY = Path("deploy/kubernetes")
SCHEMAS = {"SpinApp": "spinapp.schema.json", "SpinAppExecutor": "spinappexecutor.schema.json"}
SPIN_GROUP = "core.spinkube.dev"
MANIFEST_ANNOTATION = "cartlab.dev/spin-manifest"
MIN_REPLICAS = 3  # any one pod may go and the stateless cart still has two to serve from


class Run:
    """One check of one tree: what was checked and what failed."""

    def __init__(self, root: Path, bin_dir: Path, out: io.TextIOBase, metaschema: bool = True):
        self.root, self.bin, self.out, self.metaschema = root, bin_dir, out, metaschema
        self.errors = 0

    def ok(self, msg: str) -> None:
        print(f"  ok    {msg}", file=self.out)

    def fail(self, msg: str) -> None:
        self.errors += 1
        print(f"  FAIL  {msg}", file=self.out)

    def tool(self, args: list[str], what: str, env: dict | None = None) -> bool:
        p = subprocess.run(args, capture_output=True, text=True, env=env)
        if p.returncode == 0:
            self.ok(what)
            return True
        self.fail(f"{what}:\n{(p.stdout + p.stderr).rstrip()}")
        return False


def load_docs(run: Run, files: list[Path]) -> list[tuple[Path, int, dict]]:
    docs = []
    for f in files:
        try:
            loaded = list(yaml.safe_load_all(f.read_text()))
        except yaml.YAMLError as e:
            run.fail(f"{f.name}: not YAML: {e}")
            continue
        for i, d in enumerate(loaded):
            if d is None:
                continue
            if not isinstance(d, dict) or not all(k in d for k in ("apiVersion", "kind", "metadata")):
                run.fail(f"{f.name} document {i}: no apiVersion/kind/metadata")
                continue
            docs.append((f, i, d))
    return docs


def check_namespaces(run: Run, docs) -> None:
    namespaces = [d["metadata"].get("name") for _, _, d in docs if d["kind"] == "Namespace"]
    if len(namespaces) != 1:
        run.fail(f"want exactly one Namespace document, found {namespaces}")
        return
    bad = [f"{f.name}:{d['kind']}/{d['metadata'].get('name')}" for f, _, d in docs
           if d["kind"] != "Namespace" and d["metadata"].get("namespace") != namespaces[0]]
    if bad:
        run.fail(f"documents not in namespace {namespaces[0]}: {', '.join(bad)}")
    else:
        run.ok(f"{len(docs)} documents, all named, all in namespace {namespaces[0]}")


def check_schemas(run: Run, docs, tmp: Path) -> None:
    schema_dir = run.root / DEPLOY / "schema"
    if run.metaschema:
        run.tool([str(run.bin / "check-jsonschema"), "--check-metaschema",
                  *[str(schema_dir / s) for s in SCHEMAS.values()]], "schemas are valid JSON Schema")
    by_kind: dict[str, list[Path]] = {k: [] for k in SCHEMAS}
    found = 0
    for f, i, d in docs:
        # By kind too: a SpinApp under a wrong apiVersion must be refused, not skipped.
        if str(d["apiVersion"]).split("/")[0] != SPIN_GROUP and d["kind"] not in SCHEMAS:
            continue
        found += 1
        if d["kind"] not in SCHEMAS:
            run.fail(f"{f.name} document {i}: unknown kind {d['kind']!r} in {SPIN_GROUP} (no schema)")
            continue
        # One JSON file per document, named so that check-jsonschema's messages say where it came from.
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", str(d["metadata"].get("name")))
        j = tmp / f"{f.name}#{i}-{d['kind']}-{name}.json"
        j.write_text(json.dumps(d))
        by_kind[d["kind"]].append(j)
    validated = 0
    for kind, files in by_kind.items():
        if not files:
            continue
        validated += len(files)
        run.tool([str(run.bin / "check-jsonschema"), "--schemafile", str(schema_dir / SCHEMAS[kind]),
                  *map(str, files)],
                 f"{len(files)} {kind} document(s) match schema/{SCHEMAS[kind]}: "
                 + ", ".join(p.name.removesuffix(".json") for p in files))
    if validated != found:
        run.fail(f"{found} {SPIN_GROUP} documents found, {validated} validated")
    if not by_kind["SpinApp"]:
        run.fail("no SpinApp found")


def find(docs, kind: str, name: str, namespace: str | None):
    for _, _, d in docs:
        if d["kind"] == kind and d["metadata"].get("name") == name and d["metadata"].get("namespace") == namespace:
            return d
    return None


def data_of(doc: dict) -> dict:
    return {**(doc.get("data") or {}), **(doc.get("stringData") or {})}


def route_matches(route: str, path: str) -> bool:
    if route.endswith("/..."):
        prefix = route[: -len("...")]
        return path.startswith(prefix) or path == prefix.rstrip("/")
    return path == route


def check_spinapp(run: Run, f: Path, d: dict, docs) -> None:
    name = f"{f.name}:{d['metadata'].get('name')}"
    spec = d.get("spec") or {}
    ns = d["metadata"].get("namespace")
    before = run.errors

    rel = (d["metadata"].get("annotations") or {}).get(MANIFEST_ANNOTATION)
    if not rel:
        run.fail(f"{name}: no annotation {MANIFEST_ANNOTATION} naming its spin.toml")
        return
    manifest_path = run.root / rel
    if not manifest_path.is_file():
        run.fail(f"{name}: {rel} not found")
        return
    manifest = tomllib.loads(manifest_path.read_text())
    declared = manifest.get("variables") or {}

    if spec.get("executor") and not find(docs, "SpinAppExecutor", spec["executor"], ns):
        run.fail(f"{name}: no SpinAppExecutor {spec['executor']!r} in namespace {ns}")
    if not spec.get("enableAutoscaling") and not (isinstance(spec.get("replicas"), int) and spec["replicas"] >= MIN_REPLICAS):
        run.fail(f"{name}: replicas must be >= {MIN_REPLICAS}, is {spec.get('replicas')!r}")

    def resolve(ref_kind: str, ref: dict) -> str | None:
        obj = find(docs, ref_kind, ref.get("name"), ns)
        if obj is None:
            run.fail(f"{name}: {ref_kind} {ref.get('name')!r} not in deploy/kubernetes")
            return None
        value = data_of(obj).get(ref.get("key"))
        if value is None:
            run.fail(f"{name}: {ref_kind} {ref.get('name')!r} has no key {ref.get('key')!r}")
        return value

    values: dict[str, str | None] = {}
    seen = set()
    for var in spec.get("variables") or []:
        vname = var.get("name")
        if vname in seen:
            run.fail(f"{name}: variable {vname!r} bound twice")
        seen.add(vname)
        if vname not in declared:
            run.fail(f"{name}: variable {vname!r} is not in {rel} [variables] ({', '.join(sorted(declared))})")
            continue
        source = var.get("valueFrom") or {}
        if (declared[vname] or {}).get("secret") and "secretKeyRef" not in source:
            run.fail(f"{name}: {vname} is a secret variable in {rel}: bind it with valueFrom.secretKeyRef")
        if "value" in var:
            values[vname] = var["value"]
        elif "configMapKeyRef" in source:
            values[vname] = resolve("ConfigMap", source["configMapKeyRef"])
        elif "secretKeyRef" in source:
            values[vname] = resolve("Secret", source["secretKeyRef"])

    def effective(vname: str) -> str | None:
        if vname in values:
            return values[vname]
        return (declared.get(vname) or {}).get("default")

    routes = [t.get("route") for t in (manifest.get("trigger") or {}).get("http") or []]
    checks = spec.get("checks") or {}
    if "readiness" not in checks:
        run.fail(f"{name}: no readiness check")
    for probe_name, probe in checks.items():
        path = ((probe or {}).get("httpGet") or {}).get("path", "")
        matched = [r for r in routes if r != "/..." and route_matches(r, path)]
        if not matched:
            run.fail(f"{name}: {probe_name} path {path!r} is routed by none of {rel}'s cart routes {routes}")

    url = effective("redis_url")
    parsed = urllib.parse.urlsplit(url or "")
    if parsed.scheme != "redis" or not parsed.hostname or not parsed.port or parsed.username \
            or parsed.password or parsed.path not in ("", "/"):
        run.fail(f"{name}: redis_url {url!r} is not redis://host:port (it is also allowed_outbound_hosts)")
    password = effective("redis_password") or ""

    secret_name = (spec.get("runtimeConfig") or {}).get("loadFromSecret")
    if secret_name:
        toml_text = resolve("Secret", {"name": secret_name, "key": "runtime-config.toml"})
        if toml_text is not None:
            try:
                rc = tomllib.loads(toml_text)
            except tomllib.TOMLDecodeError as e:
                run.fail(f"{name}: runtime-config.toml in Secret {secret_name}: {e}")
                rc = {}
            for store, cfg in (rc.get("key_value_store") or {}).items():
                if cfg.get("type") != "redis":
                    continue
                kv = urllib.parse.urlsplit(cfg.get("url", ""))
                if (kv.hostname, kv.port) != (parsed.hostname, parsed.port):
                    run.fail(f"{name}: key_value_store.{store} is on {kv.hostname}:{kv.port}, "
                             f"redis_url on {parsed.hostname}:{parsed.port}")
                if urllib.parse.unquote(kv.password or "") != password:
                    run.fail(f"{name}: key_value_store.{store}'s password is not redis_password's")

    if run.errors == before:
        run.ok(f"{name} matches {rel}: variables {sorted(seen)}, executor {spec.get('executor')}, "
               f"replicas {spec.get('replicas')}, checks {[(k, (v or {}).get('httpGet', {}).get('path')) for k, v in checks.items()]}, "
               f"runtime config {secret_name}")


def check_selectors(run: Run, docs) -> None:
    """Selectors on the operator's pod label must name a SpinApp that is here."""
    apps = {d["metadata"].get("name") for _, _, d in docs if d["kind"] == "SpinApp"}
    for f, _, d in docs:
        labels = ((d.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        app = labels.get(SPIN_GROUP + "/app-name")
        if app is None:
            continue
        where = f"{f.name}:{d['kind']}/{d['metadata'].get('name')}"
        if app in apps:
            run.ok(f"{where} selects the pods of SpinApp {app}")
        else:
            run.fail(f"{where} selects SpinApp {app!r}, which is not here ({', '.join(sorted(apps))})")


def check_embedded(run: Run, docs, tmp: Path) -> None:
    for f, _, d in docs:
        if d["kind"] != "ConfigMap":
            continue
        for key, text in (d.get("data") or {}).items():
            where = f"{f.name}:{d['metadata']['name']}/{key}"
            path = tmp / f"{d['metadata']['name']}-{key}"
            path.write_text(text)
            if key.endswith(".sh"):
                run.tool(["sh", "-n", str(path)], f"{where}: sh -n")
            elif key.endswith(".cfg") and "haproxy" in key:
                if shutil.which("haproxy"):
                    env = {**os.environ, "REDIS_PASSWORD": "x", "POD_NAMESPACE": "cartlab"}
                    run.tool(["haproxy", "-q", "-c", "-f", str(path)], f"{where}: haproxy -c", env=env)
                elif os.environ.get("CI"):
                    run.fail(f"{where}: haproxy is not installed, so haproxy.cfg cannot be checked")
                else:
                    print(f"  SKIP  {where}: haproxy not installed (apt-get install haproxy); not checked",
                          file=run.out)


def check(root: Path, bin_dir: Path, out, metaschema: bool = True) -> int:
    run = Run(root, bin_dir, out, metaschema)
    deploy = root / DEPLOY
    files = sorted(p for p in deploy.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
    print(f"checking {len(files)} YAML files in {DEPLOY}", file=out)
    run.tool([str(bin_dir / "yamllint"), "--strict", "-c", str(deploy / ".yamllint"), str(deploy)],
             "yamllint --strict: " + ", ".join(p.name for p in files))
    docs = load_docs(run, files)
    check_namespaces(run, docs)
    with tempfile.TemporaryDirectory(prefix="check-deploy-") as t:
        tmp = Path(t)
        check_schemas(run, docs, tmp)
        for f, _, d in docs:
            if d["kind"] == "SpinApp":
                check_spinapp(run, f, d, docs)
        check_selectors(run, docs)
        check_embedded(run, docs, tmp)
    return run.errors


# --self-test: (name, file, old text, new text, what the refusal must mention). `old` must occur in
# the file, so a case cannot silently stop breaking anything when the manifests change.
HIDDEN_SPINAPP = """---
apiVersion: core.spinkube.dev/v1alpha1
kind: SpinApp
metadata:
  name: hidden
  namespace: cartlab
spec:
  image: ghcr.io/example/hidden:1
  executor: spin-cli
  replicass: 3
"""
PASSWORD_BLOCK = """    - name: redis_password
      valueFrom:
        secretKeyRef:
          name: cartlab-redis
          key: password
"""
CASES = [
    ("misspelled field", "spinapp-spin3.yaml", "  replicas: 3\n", "  replica: 3\n", "'replica' was unexpected"),
    ("replicas as a string", "spinapp-spin3.yaml", "  replicas: 3\n", "  replicas: \"3\"\n", "is not of type 'integer'"),
    ("replicas below 3", "spinapp-spin4.yaml", "  replicas: 3\n", "  replicas: 2\n", "replicas must be >= 3"),
    ("replicas with autoscaling", "spinapp-spin4.yaml", "  replicas: 3\n", "  replicas: 3\n  enableAutoscaling: true\n",
     "spinapp-spin4.yaml#0-SpinApp-cartlab-spin4.json::$.spec.replicas: 0 was expected"),
    ("missing image", "spinapp-spin4.yaml", "  image: ghcr.io/YOUR_ORG/cartlab-spin4:0.1.0\n", "",
     "'image' is a required property"),
    ("unknown variable", "spinapp-spin4.yaml", "- name: session_store\n", "- name: sesion_store\n",
     "'sesion_store' is not in spin.toml [variables]"),
    ("secret variable as a plain value", "spinapp-spin3.yaml", PASSWORD_BLOCK,
     "    - name: redis_password\n      value: hunter2\n", "redis_password is a secret variable"),
    ("ConfigMap key that does not exist", "app-config.yaml", "  session_store: redis\n", "  session-store: redis\n",
     "has no key 'session_store'"),
    ("executor that does not exist", "spinapp-spin4.yaml", "  executor: spin-cli\n", "  executor: spin-clii\n",
     "no SpinAppExecutor 'spin-clii'"),
    ("readiness path the app does not route", "spinapp-spin3.yaml", "path: /stateless/health", "path: /stateles/health",
     "readiness path '/stateles/health'"),
    ("runtime config with another password", "runtime-config-secret.yaml", "redis://:CHANGE-ME-redis-password@",
     "redis://:other@", "password is not redis_password's"),
    ("runtime config on another Redis", "runtime-config-secret.yaml", "@cartlab-redis-primary:6379", "@cartlab-redis:6379",
     "key_value_store.default is on cartlab-redis:6379"),
    ("redis_url with credentials", "app-config.yaml", "redis_url: redis://cartlab-redis-primary:6379",
     "redis_url: redis://:pw@cartlab-redis-primary:6379", "is not redis://host:port"),
    ("executor with a shim and a Spin image", "executor-containerd-shim-spin.yaml", "    runtimeClassName: wasmtime-spin-v2\n",
     "    runtimeClassName: wasmtime-spin-v2\n    spinImage: ghcr.io/example/spin:1\n",
     "$.spec.deploymentConfig: {'runtimeClassName': 'wasmtime-spin-v2', 'spinImage'"),
    ("SpinApp under the old API group", "spinapp-spin4.yaml", "apiVersion: core.spinkube.dev/v1alpha1",
     "apiVersion: core.spinoperator.dev/v1alpha1", "'core.spinkube.dev/v1alpha1' was expected"),
    ("misspelled kind", "executor-spin-cli.yaml", "kind: SpinAppExecutor\n", "kind: SpinAppExecuter\n",
     "unknown kind 'SpinAppExecuter'"),
    ("SpinApp hidden in a multi-document file", "redis-sentinel.yaml", "", HIDDEN_SPINAPP, "'replicass' was unexpected"),
    ("wrong spin.toml", "spinapp-spin3.yaml", "spin-manifest: deploy/spin3/spin.toml", "spin-manifest: deploy/spin5/spin.toml",
     "deploy/spin5/spin.toml not found"),
    ("document in another namespace", "app-config.yaml", "  namespace: cartlab\n", "  namespace: default\n",
     "not in namespace cartlab"),
    ("budget for a SpinApp that is not here", "disruption-budgets.yaml", "app-name: cartlab-spin4",
     "app-name: cartlab-spin5", "selects SpinApp 'cartlab-spin5'"),
    ("trailing spaces", "namespace.yaml", "kind: Namespace\n", "kind: Namespace  \n", "trailing-spaces"),
    ("truthy value yes", "executor-spin-cli.yaml", "installDefaultCACerts: true", "installDefaultCACerts: yes", "truthy"),
    ("broken shell script", "redis-sentinel.yaml", "    fi\n", "\n", "redis-start.sh: sh -n"),
    ("broken haproxy.cfg", "redis-sentinel.yaml", "default_backend primary", "default_backend primry", "haproxy -c"),
]


def copy_tree(root: Path, dest: Path) -> None:
    shutil.copytree(root / DEPLOY, dest / DEPLOY)
    for f in (root / DEPLOY).glob("*.yaml"):
        for d in yaml.safe_load_all(f.read_text()):
            rel = ((d or {}).get("metadata", {}).get("annotations") or {}).get(MANIFEST_ANNOTATION)
            if rel and (root / rel).is_file():
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(root / rel, dest / rel)


def self_test(root: Path, bin_dir: Path) -> int:
    def one(case):
        name, file, old, new, expect = case
        if name == "broken haproxy.cfg" and not shutil.which("haproxy"):
            return name, None, "haproxy not installed"
        with tempfile.TemporaryDirectory(prefix="check-deploy-selftest-") as t:
            dest = Path(t)
            copy_tree(root, dest)
            if file:
                p = dest / DEPLOY / file
                text = p.read_text()
                if old and old not in text:
                    return name, False, f"{file} no longer contains {old!r}: update this case"
                p.write_text(text.replace(old, new, 1) if old else text + new)
            out = io.StringIO()
            errors = check(dest, bin_dir, out, metaschema=False)
            log = out.getvalue()
            if file is None:
                return name, errors == 0, "passes" if errors == 0 else log
            if errors == 0:
                return name, False, "accepted"
            if expect not in log:
                return name, False, f"refused, but not for {expect!r}:\n{log}"
            why = next(line.strip() for line in log.splitlines() if expect in line).removeprefix("FAIL").strip()
            return name, True, f"refused: {why[:150]}"

    # A copy that fails unbroken would make every case "refused": then the cases prove nothing.
    name, good, detail = one(("unbroken copy", None, "", "", ""))
    print(f"  {'ok  ' if good else 'FAIL'}  {name}: {detail}")
    if not good:
        print("self-test: not run, the unbroken copy fails")
        return 1
    failed = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 4) as pool:
        for name, good, detail in pool.map(one, CASES):
            mark = "SKIP" if good is None else "ok  " if good else "FAIL"
            failed += good is False
            print(f"  {mark}  {name}: {detail}")
    print(f"self-test: {len(CASES) - failed} broken copies refused as expected, {failed} not")
    return failed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent,
                    help="repository root (default: this script's)")
    ap.add_argument("--bin", type=Path, required=True, help="directory with yamllint and check-jsonschema")
    ap.add_argument("--self-test", action="store_true", help="also require broken copies to be refused")
    args = ap.parse_args()
    errors = check(args.root.resolve(), args.bin, sys.stdout)
    print(f"deploy/kubernetes: {'ok' if errors == 0 else f'{errors} problem(s)'}")
    failed = 0
    if args.self_test and errors:
        print("self-test: not run, deploy/kubernetes itself fails")
    elif args.self_test:
        print("self-test: broken copies of deploy/kubernetes, each must be refused")
        failed = self_test(args.root.resolve(), args.bin)
    return 1 if errors or failed else 0


if __name__ == "__main__":
    sys.exit(main())
