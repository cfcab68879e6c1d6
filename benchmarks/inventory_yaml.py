"""Benchmark: the same kubectl dump read as JSON and as YAML (``segmenter inventory``).

Run: ``.venv/bin/python benchmarks/inventory_yaml.py [--pods N] [--baseline-pods N]``

It writes one ``kind: List`` of N pods (default 50,000) shaped like ``kubectl get pods -A -o
json`` output (owner references, managedFields, containers with ports, env and probes, status
with conditions and container states, about 3.5 KB of YAML each) plus one Service per 10 pods,
once as JSON (``-o json``: 4-space indent) and once as YAML (``-o yaml``), then runs
``segmenter inventory`` on each in a fresh process and prints the time and the peak RSS of
both, and their ratio: YAML against JSON of the same inventory, in the same run.

For reference it also times PyYAML's own loader (``yaml.load_all`` with ``CSafeLoader``, which
the inventory reader used before ``segmenter.documents``) against the reader now used, on a
dump of ``--baseline-pods`` pods (default 5,000: the old loader takes minutes on 50,000).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from segmenter.render import to_yaml

# Runs in a fresh process: one measurement each, peak RSS its own.
CHILD = r"""
import json, sys, time
mode, path, out = sys.argv[1:4]
t = time.perf_counter()
if mode == "cli":
    from segmenter.cli import main
    code = main(["inventory", path, "-o", out])
    assert code == 0, code
elif mode == "reader":
    from segmenter.documents import load_yaml
    load_yaml(path)
elif mode == "pyyaml":
    import yaml
    with open(path, encoding="utf-8") as handle:
        list(yaml.load_all(handle.read(), Loader=yaml.CSafeLoader))
seconds = time.perf_counter() - t
# VmHWM: this process's own peak (getrusage's ru_maxrss would carry the parent's over exec).
with open("/proc/self/status", encoding="ascii") as status:
    peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(json.dumps({"seconds": seconds, "rss_mib": peak / 1024}))
"""


def pod(i: int) -> dict[str, Any]:
    ns = f"team-{i % 40:02d}"
    app = f"svc-{i // 10:05d}"
    ip = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": f"{app}-7d9f8c6b5-{i:06d}", "namespace": ns, "uid": f"5f0c{i:08x}-aaaa",
            "creationTimestamp": "2024-05-01T10:00:00Z", "resourceVersion": str(100000 + i),
            "generateName": f"{app}-7d9f8c6b5-",
            "labels": {"app": app, "pod-template-hash": "7d9f8c6b5",
                       "app.kubernetes.io/name": app, "tier": "backend"},
            "annotations": {"kubectl.kubernetes.io/restartedAt": "2024-05-01T09:00:00Z",
                            "prometheus.io/scrape": "true"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                 "name": f"{app}-7d9f8c6b5", "uid": "rs-uid",
                                 "controller": True, "blockOwnerDeletion": True}],
            "managedFields": [{
                "apiVersion": "v1", "fieldsType": "FieldsV1",
                "manager": "kube-controller-manager", "operation": "Update",
                "time": "2024-05-01T10:00:00Z",
                "fieldsV1": {"f:metadata": {"f:generateName": {},
                                            "f:labels": {".": {}, "f:app": {}}},
                             "f:spec": {"f:containers": {'k:{"name":"main"}': {
                                 ".": {}, "f:image": {}, "f:name": {}, "f:ports": {}}}}}}],
        },
        "spec": {
            "nodeName": f"node-{i % 200:03d}", "serviceAccountName": "default",
            "restartPolicy": "Always", "dnsPolicy": "ClusterFirst",
            "containers": [{
                "name": "main", "image": f"registry.example.com/{app}:1.2.3",
                "imagePullPolicy": "IfNotPresent",
                "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"},
                          {"containerPort": 9090, "name": "metrics", "protocol": "TCP"}],
                "env": [{"name": f"VAR_{k}", "value": f"value-{k}"} for k in range(6)],
                "resources": {"limits": {"cpu": "500m", "memory": "256Mi"},
                              "requests": {"cpu": "100m", "memory": "128Mi"}},
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080},
                                   "periodSeconds": 10},
            }],
            "tolerations": [{"effect": "NoExecute", "key": "node.kubernetes.io/not-ready",
                             "operator": "Exists", "tolerationSeconds": 300}],
        },
        "status": {
            "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
            "hostIP": f"192.168.{(i % 200) // 100}.{i % 100 + 1}",
            "startTime": "2024-05-01T10:00:01Z", "qosClass": "Burstable",
            "conditions": [{"type": t, "status": "True",
                            "lastTransitionTime": "2024-05-01T10:00:05Z"}
                           for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")],
            "containerStatuses": [{"name": "main", "ready": True, "restartCount": 0,
                                   "image": f"registry.example.com/{app}:1.2.3",
                                   "state": {"running": {"startedAt": "2024-05-01T10:00:03Z"}}}],
        },
    }


def service(i: int) -> dict[str, Any]:
    app = f"svc-{i:05d}"
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": app, "namespace": f"team-{(i * 10) % 40:02d}"},
            "spec": {"type": "ClusterIP", "clusterIP": f"10.96.{i >> 8 & 255}.{i & 255}",
                     "selector": {"app": app},
                     "ports": [{"name": "http", "port": 80, "protocol": "TCP",
                                "targetPort": "http"}]}}


def write_dump(folder: Path, pods: int, stem: str) -> tuple[Path, Path]:
    items = [pod(i) for i in range(pods)] + [service(i) for i in range(pods // 10)]
    doc = {"apiVersion": "v1", "kind": "List", "items": items, "metadata": {}}
    as_json, as_yaml = folder / f"{stem}.json", folder / f"{stem}.yaml"
    with open(as_json, "w", encoding="utf-8") as handle:
        json.dump(doc, handle, indent=4)
    # segmenter's own block-style emitter: the YAML kubectl writes, 15x faster than PyYAML's.
    as_yaml.write_text(to_yaml([doc]), encoding="utf-8")
    return as_json, as_yaml


def measure(mode: str, path: Path, out: Path) -> dict[str, float]:
    result = subprocess.run([sys.executable, "-c", CHILD, mode, str(path), str(out)],
                            capture_output=True, text=True, check=True)
    measured: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return measured


def _without_sources(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    data.pop("sources")  # the dump's file name
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=50_000)
    parser.add_argument("--baseline-pods", type=int, default=5_000,
                        help="pods in the dump PyYAML's own loader is timed on (0: skip)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="segmenter-bench-") as tmp:
        folder = Path(tmp)
        t = time.perf_counter()
        as_json, as_yaml = write_dump(folder, args.pods, "dump")
        print(f"setup: {args.pods:,} pods and {args.pods // 10:,} Services; JSON "
              f"{as_json.stat().st_size / 2**20:,.0f} MiB, YAML "
              f"{as_yaml.stat().st_size / 2**20:,.0f} MiB "
              f"[{time.perf_counter() - t:.0f} s to write]")
        j = measure("cli", as_json, folder / "from-json.json")
        y = measure("cli", as_yaml, folder / "from-yaml.json")
        same = _without_sources(folder / "from-json.json") == _without_sources(
            folder / "from-yaml.json")
        print(f"segmenter inventory, JSON dump: {j['seconds']:7.1f} s   peak RSS "
              f"{j['rss_mib']:7,.0f} MiB")
        print(f"segmenter inventory, YAML dump: {y['seconds']:7.1f} s   peak RSS "
              f"{y['rss_mib']:7,.0f} MiB")
        print(f"YAML / JSON: {y['seconds'] / j['seconds']:.2f}x the time, "
              f"{y['rss_mib'] / j['rss_mib']:.2f}x the memory; same inventory written: {same}")
        if args.baseline_pods:
            _, small = write_dump(folder, args.baseline_pods, "small")
            old = measure("pyyaml", small, folder / "unused")
            new = measure("reader", small, folder / "unused")
            print(f"reading the YAML of {args.baseline_pods:,} pods: PyYAML CSafeLoader "
                  f"{old['seconds']:.1f} s / {old['rss_mib']:,.0f} MiB, segmenter.documents "
                  f"{new['seconds']:.1f} s / {new['rss_mib']:,.0f} MiB: "
                  f"{old['seconds'] / new['seconds']:.1f}x faster, "
                  f"{old['rss_mib'] / new['rss_mib']:.1f}x less memory")


if __name__ == "__main__":
    main()
