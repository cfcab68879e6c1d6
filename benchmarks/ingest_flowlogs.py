"""Hubble flow logs: ``capture.ingest`` vs hubble-audit2policy, on generated Hubble records.

Generates ``--records`` Hubble exporter lines (``{"flow": {...}, "node_name", "time"}``, with
the labels, identities and fields Cilium 1.10+ writes) for a synthetic cluster: ``--namespaces``
namespaces of deployments with 3 pods each, spread over ``--nodes`` nodes, talking to each other
on their service ports, to CoreDNS and to a few outside names. Every connection is written as
Hubble writes it: the policy-verdict event and the trace at the client's node (EGRESS), the
trace and the policy verdict at the server's node (INGRESS, on a remote node: twice as many),
the SYN-ACK, data and FIN packets of both directions with ``is_reply``, and for DNS the proxy's
L7 request and response records with their answers; a share of connections is denied by policy
(DROPPED at the server, never answered). Then it measures, in the same run:

* every stage of ``segmenter.pipeline`` from the file to policies, in a fresh interpreter:
  ingest, read_traffic, make_graph against a generated inventory of the same pods, make_plan,
  compile_policies, emit for every registered target, and the variant without an inventory
  (inventory_from_records, make_graph, make_plan, compile_policies): each stage's CPU and wall
  time and the process's peak RSS after it, with the checks that no flow has a client's
  ephemeral port as its server port and no rule allows one;
* hubble-audit2policy (from PyPI; skipped with a message when not installed) reading the same
  file and building its CiliumNetworkPolicies: its time, the ratios, and how many of its rules
  allow a port that only ever was a client's ephemeral port (the reply-port rules it makes
  because it takes the destination port of reply packets).

CPU times (``time.process_time``) are the measure: on a shared host, wall times include the
waits for a core.

    .venv/bin/python benchmarks/ingest_flowlogs.py               # 1,000,000 records
    .venv/bin/python benchmarks/ingest_flowlogs.py --records 200000 --keep /tmp/bench

Every figure is also given as a ratio to baselines measured in the same run on the same file:
a plain read that decodes every line and folds nothing (orjson, and the standard library's
json), and hubble-audit2policy. Then benchmarks/ingest_vpc_zeek.py gives the same-size figures
for AWS VPC flow logs and Zeek conn.log (``--no-vpc-zeek`` skips them).

Targets (issue 13): under 10 s for 1M records end to end on one core, and >= 10x
hubble-audit2policy.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

EPHEMERAL_MIN = 32768  # the generator's client ports are all at or above this
T0 = 1_700_000_000
SERVER_PORTS = (8080, 9080, 5432, 6379, 443, 3306)
WORLD = (("api.stripe.com", "52.1.2.3"), ("s3.amazonaws.com", "52.216.0.7"),
         ("github.com", "140.82.112.3"))


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    app: str
    ip: str
    node: str
    identity: int
    port: int
    endpoint_id: int

    def endpoint(self, local: bool) -> str:
        """The Endpoint object as Hubble writes it (``ID`` only on the pod's own node)."""
        labels = [f"k8s:app={self.app}", "k8s:version=v1",
                  f"k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name={self.namespace}",
                  "k8s:io.cilium.k8s.policy.cluster=default",
                  f"k8s:io.cilium.k8s.policy.serviceaccount={self.app}",
                  f"k8s:io.kubernetes.pod.namespace={self.namespace}"]
        obj: dict[str, object] = {}
        if local:
            obj["ID"] = self.endpoint_id
        obj.update({"identity": self.identity, "namespace": self.namespace, "labels": labels,
                    "pod_name": self.name,
                    "workloads": [{"name": self.app, "kind": "Deployment"}]})
        return json.dumps(obj, separators=(",", ":"))


def cluster(namespaces: int, nodes: int, seed: int) -> list[Pod]:
    rng = random.Random(seed)
    pods = []
    n = 0
    for i in range(namespaces):
        ns = f"team{i:02d}"
        for d in range(8):
            app = f"svc{d}"
            port = SERVER_PORTS[d % len(SERVER_PORTS)]
            for r in range(3):
                n += 1
                node = rng.randrange(nodes)
                pods.append(Pod(ns, f"{app}-7d4f9c{i:02d}{d}-{r:05d}", app,
                                f"10.{node}.{n >> 8 & 255}.{n & 255}", f"node-{node:02d}",
                                10000 + i * 16 + d, port, n))
    coredns = Pod("kube-system", "coredns-5d78c9869d-abcde", "kube-dns", "10.250.0.10",
                  "node-00", 102, 53, 9999)
    return [*pods, coredns]


def _stamp(t: float) -> str:
    secs = int(t)
    ns = round((t - secs) * 1e9)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{ns:09d}Z"


class Writer:
    """Hubble exporter lines for connections."""

    def __init__(self, out: io.TextIOBase) -> None:
        self.out = out
        self.count = 0
        self.eps: dict[tuple[str, bool], str] = {}

    def ep(self, pod: Pod | None, local: bool, reserved: str = "world") -> str:
        if pod is None:
            return f'{{"identity":2,"labels":["reserved:{reserved}"]}}'
        key = (pod.name, local)
        text = self.eps.get(key)
        if text is None:
            text = self.eps[key] = pod.endpoint(local)
        return text

    def event(self, t: float, node: str, *, verdict: str, src_ip: str, dst_ip: str, l4: str,
              src: str, dst: str, etype: int, direction: str, reply: bool | None,
              point: str = "", extra: str = "", summary: str = "") -> None:
        stamp = _stamp(t)
        fields = [f'"time":"{stamp}"', f'"verdict":"{verdict}"',
                  f'"IP":{{"source":"{src_ip}","destination":"{dst_ip}","ipVersion":"IPv4"}}',
                  f'"l4":{l4}', f'"source":{src}', f'"destination":{dst}',
                  '"Type":"L7"' if etype == 129 else '"Type":"L3_L4"',
                  f'"node_name":"{node}"', f'"event_type":{{"type":{etype}}}',
                  f'"traffic_direction":"{direction}"']
        if point:
            fields.append(f'"trace_observation_point":"{point}"')
        if reply is not None:
            fields.append(f'"is_reply":{"true" if reply else "false"}')
        if extra:
            fields.append(extra)
        fields.append(f'"Summary":"{summary}"')
        self.out.write(f'{{"flow":{{{",".join(fields)}}},"node_name":"{node}",'
                       f'"time":"{stamp}"}}\n')
        self.count += 1


def _tcp(sport: int, dport: int, flags: str) -> str:
    return (f'{{"TCP":{{"source_port":{sport},"destination_port":{dport},'
            f'"flags":{{{flags}}}}}}}')


def tcp_connection(w: Writer, rng: random.Random, t: float, client: Pod, server: Pod | None,
                   *, server_ip: str, port: int, denied: bool, names: str = "") -> None:
    """One TCP connection, every event Hubble writes for it."""
    sport = rng.randrange(EPHEMERAL_MIN, 61000)
    cnode = client.node
    snode = server.node if server is not None else ""
    remote = server is not None and snode != cnode
    c_local = w.ep(client, True)
    c_remote = w.ep(client, False)
    s_local = w.ep(server, True)
    s_remote = w.ep(server, False)
    syn, synack, ack, psh, fin = ('"SYN":true', '"SYN":true,"ACK":true', '"ACK":true',
                                  '"PSH":true,"ACK":true', '"FIN":true,"ACK":true')
    up = dict(src_ip=client.ip, dst_ip=server_ip)
    down = dict(src_ip=server_ip, dst_ip=client.ip)
    dest = f'"destination_names":[{names}]' if names else ""
    allowed = ('"egress_allowed_by":[{"name":"allow-egress","namespace":"'
               + client.namespace + '","kind":"CiliumNetworkPolicy"}]')
    w.event(t, cnode, verdict="FORWARDED", l4=_tcp(sport, port, syn), src=c_local, dst=s_remote,
            etype=5, direction="EGRESS", reply=False, extra=allowed, summary="TCP Flags: SYN",
            **up)
    w.event(t, cnode, verdict="FORWARDED", l4=_tcp(sport, port, syn), src=c_local, dst=s_remote,
            etype=4, direction="EGRESS", reply=False, point="TO_STACK" if remote else "",
            extra=dest, summary="TCP Flags: SYN", **up)
    if server is None:  # to the world: only the client's node sees it
        for k, (flags, is_up) in enumerate(((synack, False), (ack, True), (psh, True),
                                            (psh, False), (fin, True), (fin, False))):
            ev = dict(up if is_up else down)
            w.event(t + 0.001 * (k + 1), cnode, verdict="FORWARDED",
                    l4=_tcp(sport, port, flags) if is_up else _tcp(port, sport, flags),
                    src=c_local if is_up else s_remote, dst=s_remote if is_up else c_local,
                    etype=4, direction="EGRESS", reply=not is_up, **ev)
        return
    if denied:
        denied_by = ('"ingress_denied_by":[{"name":"default-deny","namespace":"'
                     + server.namespace + '","kind":"CiliumNetworkPolicy"}]')
        for k in range(2):  # the SYN and one retransmission, dropped at the server
            w.event(t + k, snode, verdict="DROPPED", l4=_tcp(sport, port, syn),
                    src=c_remote if remote else c_local, dst=s_local, etype=1,
                    direction="INGRESS", reply=False,
                    extra='"drop_reason_desc":"POLICY_DENIED",' + denied_by,
                    summary="TCP Flags: SYN", **up)
        return
    w.event(t + 0.0001, snode, verdict="FORWARDED", l4=_tcp(sport, port, syn),
            src=c_remote if remote else c_local, dst=s_local, etype=5, direction="INGRESS",
            reply=False, summary="TCP Flags: SYN", **up)
    w.event(t + 0.0002, snode, verdict="FORWARDED", l4=_tcp(sport, port, syn),
            src=c_remote if remote else c_local, dst=s_local, etype=4, direction="INGRESS",
            reply=False, point="TO_ENDPOINT", summary="TCP Flags: SYN", **up)
    packets = ((synack, False), (ack, True), (psh, True), (psh, False), (fin, True),
               (fin, False))
    for k, (flags, is_up) in enumerate(packets):
        ev = dict(up if is_up else down)
        l4 = _tcp(sport, port, flags) if is_up else _tcp(port, sport, flags)
        nodes = (snode, cnode) if remote else (snode,)
        for n in nodes:
            local_c, local_s = n == cnode, n == snode
            c_ep = c_local if local_c else c_remote
            s_ep = s_local if local_s else s_remote
            src, dst = (c_ep, s_ep) if is_up else (s_ep, c_ep)
            w.event(t + 0.001 * (k + 1), n, verdict="FORWARDED", l4=l4, src=src, dst=dst,
                    etype=4, direction="INGRESS" if n == snode else "EGRESS",
                    reply=not is_up, point="TO_ENDPOINT", **ev)


def dns_lookup(w: Writer, rng: random.Random, t: float, client: Pod, dns: Pod, *, name: str,
               answer: str) -> None:
    """A DNS query through Cilium's DNS proxy: L4 traces and the L7 request and response."""
    sport = rng.randrange(EPHEMERAL_MIN, 61000)
    c, s = w.ep(client, True), w.ep(dns, client.node == dns.node)
    udp_up = f'{{"UDP":{{"source_port":{sport},"destination_port":53}}}}'
    udp_down = f'{{"UDP":{{"source_port":53,"destination_port":{sport}}}}}'
    up = dict(src_ip=client.ip, dst_ip=dns.ip)
    down = dict(src_ip=dns.ip, dst_ip=client.ip)
    w.event(t, client.node, verdict="REDIRECTED", l4=udp_up, src=c, dst=s, etype=5,
            direction="EGRESS", reply=False, **up)
    query = f'"query":"{name}.","qtypes":["A"],"observation_source":"proxy"'
    w.event(t + 0.0001, client.node, verdict="FORWARDED", l4=udp_up, src=c, dst=s, etype=129,
            direction="EGRESS", reply=False,
            extra=f'"l7":{{"type":"REQUEST","dns":{{{query}}}}}', **up)
    w.event(t + 0.002, client.node, verdict="FORWARDED", l4=udp_down, src=s, dst=c, etype=129,
            direction="EGRESS", reply=True,
            extra=(f'"l7":{{"type":"RESPONSE","latency_ns":1500000,"dns":{{{query},'
                   f'"ips":["{answer}"],"ttl":30,"rrtypes":["A"]}}}}'), **down)
    w.event(t + 0.0021, client.node, verdict="FORWARDED", l4=udp_down, src=s, dst=c, etype=4,
            direction="EGRESS", reply=True, point="TO_ENDPOINT", **down)


def generate(path: Path, records: int, namespaces: int, nodes: int, seed: int) -> list[Pod]:
    """Write about ``records`` lines; returns the pods."""
    rng = random.Random(seed)
    pods = cluster(namespaces, nodes, seed)
    dns = pods[-1]
    workers = pods[:-1]
    by_ns: dict[str, list[Pod]] = {}
    for p in workers:
        by_ns.setdefault(p.namespace, []).append(p)
    namespaces_list = sorted(by_ns)
    with open(path, "w", encoding="utf-8") as out:
        w = Writer(out)
        t = float(T0)
        while w.count < records:
            t += rng.random() * 0.01
            client = rng.choice(workers)
            roll = rng.random()
            if roll < 0.2:
                name, ip = rng.choice(WORLD)
                if rng.random() < 0.5:
                    dns_lookup(w, rng, t, client, dns, name=name, answer=ip)
                else:
                    tcp_connection(w, rng, t, client, None, server_ip=ip, port=443,
                                   denied=False, names=f'"{name}"')
                continue
            if roll < 0.35:
                dns_lookup(w, rng, t, client, dns,
                           name=f"svc{rng.randrange(8)}.{client.namespace}.svc.cluster.local",
                           answer=rng.choice(workers).ip)
                continue
            # Mostly within the namespace, some across.
            ns = client.namespace if rng.random() < 0.8 else rng.choice(namespaces_list)
            server = rng.choice(by_ns[ns])
            if server is client:
                continue
            tcp_connection(w, rng, t, client, server, server_ip=server.ip, port=server.port,
                           denied=rng.random() < 0.05)
    return pods


def inventory(path: Path, pods: list[Pod], nodes: int) -> None:
    """A ``kubectl get -o json`` List of the generated cluster."""
    items: list[dict[str, object]] = []
    stamp = "2023-11-14T00:00:00Z"
    for ns in sorted({p.namespace for p in pods}):
        items.append({"apiVersion": "v1", "kind": "Namespace",
                      "metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}}})
    for n in range(nodes):
        items.append({"apiVersion": "v1", "kind": "Node",
                      "metadata": {"name": f"node-{n:02d}"},
                      "status": {"addresses": [{"type": "InternalIP",
                                                "address": f"192.168.0.{n + 10}"}]}})
    apps = sorted({(p.namespace, p.app, p.port) for p in pods})
    for ns, app, port in apps:
        labels = {"app": app, "version": "v1"}
        proto = "UDP" if port == 53 else "TCP"
        items.append({"apiVersion": "apps/v1", "kind": "Deployment",
                      "metadata": {"name": app, "namespace": ns, "creationTimestamp": stamp},
                      "spec": {"template": {"metadata": {"labels": labels}, "spec": {}}}})
        items.append({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                      "metadata": {"name": f"{app}-rs", "namespace": ns,
                                   "creationTimestamp": stamp,
                                   "ownerReferences": [{"kind": "Deployment", "name": app,
                                                        "controller": True}]},
                      "spec": {"template": {"metadata": {"labels": labels}, "spec": {}}}})
        items.append({"apiVersion": "v1", "kind": "Service",
                      "metadata": {"name": app, "namespace": ns},
                      "spec": {"clusterIP": "None", "selector": {"app": app},
                               "ports": [{"port": port, "protocol": proto,
                                          "targetPort": port}]}})
    for p in pods:
        proto = "UDP" if p.port == 53 else "TCP"
        items.append({"apiVersion": "v1", "kind": "Pod",
                      "metadata": {"name": p.name, "namespace": p.namespace,
                                   "labels": {"app": p.app, "version": "v1"},
                                   "creationTimestamp": stamp,
                                   "ownerReferences": [{"kind": "ReplicaSet",
                                                        "name": f"{p.app}-rs",
                                                        "controller": True}]},
                      "spec": {"nodeName": p.node, "containers": [
                          {"name": p.app, "ports": [{"containerPort": p.port,
                                                     "protocol": proto}]}]},
                      "status": {"phase": "Running", "podIP": p.ip}})
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))


# -- our pipeline, stage by stage, in a fresh interpreter --------------------------------------

def stages(flows: str, inv: str, work: str) -> dict[str, dict[str, float]]:
    """Every stage of ``segmenter.pipeline`` from the Hubble file to each target's policies:
    CPU and wall seconds, and the process's peak RSS after the stage (KiB). Run in a fresh
    interpreter (``--stages``), so that the peaks are this pipeline's own."""
    import gc

    from segmenter import pipeline
    from segmenter.policy.ir import PolicySet
    from segmenter.targets import TARGETS

    out: dict[str, dict[str, float]] = {}

    def stage(name: str, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        gc.collect()
        cpu, wall = time.process_time(), time.perf_counter()
        result = fn(*args, **kwargs)
        out[name] = {"cpu": time.process_time() - cpu, "wall": time.perf_counter() - wall,
                     "rss": float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)}
        return result

    out["start"] = {"cpu": 0.0, "wall": 0.0,
                    "rss": float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)}
    flow_path = str(Path(work) / "pipeline-flows.jsonl")
    ingested = stage("ingest", pipeline.ingest, [flows], flow_path)
    traffic = stage("read_traffic", pipeline.read_traffic, [flow_path])
    inventory = pipeline.read_inventory([inv])
    graph = stage("make_graph (inventory)", pipeline.make_graph, traffic, inventory)
    config = pipeline.read_config(None, ["pci=team00/app=svc2"])
    result = stage("make_plan", pipeline.make_plan, graph, config)
    policy_set: PolicySet = stage("compile_policies", pipeline.compile_policies, graph, result,
                                  inventory)
    files = 0
    for target in TARGETS.values():
        outputs = stage(f"emit {target.name}", pipeline.emit, policy_set, [target])
        files += sum(len(docs) for o in outputs.values() for docs in o.files.values())
    derived = stage("inventory_from_records", pipeline.inventory_from_records, traffic)
    graph_records = stage("make_graph (records)", pipeline.make_graph, traffic, derived)
    result_records = stage("make_plan (records)", pipeline.make_plan, graph_records, config)
    stage("compile_policies (records)", pipeline.compile_policies, graph_records,
          result_records, derived.inventory)
    # Rules that allow a client's ephemeral port (reply packets taken for requests): none.
    ephemeral = sum(1 for p in policy_set.policies
                    for rules in (p.ingress or (), p.egress or ()) for rule in rules
                    for port in rule.ports if (port.port or 0) >= EPHEMERAL_MIN)
    out["counts"] = {"flows": float(len(traffic.flows)), "dns": float(len(traffic.dns)),
                     "records": float(ingested.flows), "edges": float(graph.number_of_edges()),
                     "edges_records": float(graph_records.number_of_edges()),
                     "policies": float(len(policy_set.policies)), "objects": float(files),
                     "ephemeral_rules": float(ephemeral),
                     "ephemeral_servers": float(sum(1 for f in traffic.flows
                                                    if (f.server_port or 0) >= EPHEMERAL_MIN)),
                     "blocked": float(len(graph.graph.get("blocked") or ()))}
    return out


def plain_read(kind: str, path: str) -> dict[str, float]:
    """The baseline: read every line of ``path`` and decode it (orjson, or the standard
    library's json), folding nothing; CPU seconds and this process's peak RSS (KiB)."""
    if kind == "orjson":
        import orjson  # type: ignore[import-not-found,unused-ignore]

        loads = orjson.loads
    else:
        loads = json.loads
    cpu = time.process_time()
    count = 0
    with open(path, "rb") as lines:
        for line in lines:
            loads(line)
            count += 1
    return {"cpu": time.process_time() - cpu, "count": float(count),
            "rss": float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)}


def _plain_subprocess(kind: str, flows: Path) -> dict[str, float] | None:
    root = Path(__file__).resolve().parents[1]
    res = subprocess.run([sys.executable, __file__, "--plain", kind, str(flows)],
                         capture_output=True, text=True, cwd=root, check=False)
    if res.returncode != 0:
        return None  # orjson not installed
    result: dict[str, float] = json.loads(res.stdout.splitlines()[-1])
    return result


def _stages_subprocess(flows: Path, inv: Path, work: Path) -> dict[str, dict[str, float]]:
    root = Path(__file__).resolve().parents[1]
    res = subprocess.run([sys.executable, __file__, "--stages", str(flows), str(inv), str(work)],
                         capture_output=True, text=True, cwd=root, check=True)
    result: dict[str, dict[str, float]] = json.loads(res.stdout.splitlines()[-1])
    return result


def _audit2policy(flows: Path) -> tuple[float, float, int, int, int] | None:
    """hubble-audit2policy on ``flows``: CPU and wall seconds, policies, rules, rules on
    ephemeral ports."""
    try:
        import hubble_audit2policy as h2p  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    cpu, wall = time.process_time(), time.perf_counter()
    policies, _counts, _total, _matched, _pods = h2p.parse_flows(
        str(flows), list(h2p.DEFAULT_LABEL_KEYS), set(), set())
    buf = io.StringIO()
    for (ns, app), rules in sorted(policies.items()):
        h2p._dump_yaml(h2p.build_policy(ns, app, rules), buf)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    rules = ephemeral = 0
    for ruleset in policies.values():
        for direction in ("egress", "ingress"):
            for _ns, _peer, port, _proto in ruleset[direction]:
                rules += 1
                if port >= EPHEMERAL_MIN:
                    ephemeral += 1
    return cpu, wall, len(policies), rules, ephemeral


WITH_INVENTORY = ("ingest", "read_traffic", "make_graph (inventory)", "make_plan",
                  "compile_policies")
FROM_RECORDS = ("ingest", "read_traffic", "inventory_from_records", "make_graph (records)",
                "make_plan (records)", "compile_policies (records)")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--namespaces", type=int, default=20)
    ap.add_argument("--nodes", type=int, default=12)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--keep", metavar="DIR",
                    help="generate into DIR and keep the files (reused when already there)")
    ap.add_argument("--no-vpc-zeek", action="store_true",
                    help="skip the AWS VPC and Zeek figures (benchmarks/ingest_vpc_zeek.py)")
    ap.add_argument("--stages", nargs=3, metavar=("FLOWS", "INVENTORY", "WORK"),
                    help=argparse.SUPPRESS)  # the child process that measures our stages
    ap.add_argument("--plain", nargs=2, metavar=("KIND", "FLOWS"),
                    help=argparse.SUPPRESS)  # the child process of the baseline read
    args = ap.parse_args(argv)
    if args.stages:
        print(json.dumps(stages(*args.stages)))
        return
    if args.plain:
        print(json.dumps(plain_read(*args.plain)))
        return

    with tempfile.TemporaryDirectory(prefix="segmenter-bench-") as tmp:
        work = Path(args.keep) if args.keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        flows = work / f"hubble-events-{args.records}.log"
        inv = work / f"inventory-{args.records}.json"
        t = time.perf_counter()
        if not (flows.exists() and inv.exists()):
            pods = generate(flows, args.records, args.namespaces, args.nodes, args.seed)
            inventory(inv, pods, args.nodes)
        with open(flows, "rb") as lines:
            n = sum(1 for _ in lines)
        size = os.path.getsize(flows)
        print(f"{n:,} Hubble records ({size / 2**20:,.0f} MiB) ready in "
              f"{time.perf_counter() - t:.1f} s")
        try:
            import orjson  # type: ignore[import-not-found,unused-ignore]  # noqa: F401
            decoder = "orjson"
        except ImportError:
            decoder = "the standard library's json (pip install orjson: about 1.8x faster)"
        print(f"JSON decoder: {decoder}; load average {os.getloadavg()[0]:.1f} on "
              f"{os.cpu_count()} CPUs (wall times on a busy host overstate; CPU times are "
              "the measure)")

        # The baselines, each in a fresh interpreter: reading and decoding every line, folding
        # nothing -- the least any reader of these records does.
        plain = {kind: m for kind in ("orjson", "json")
                 if (m := _plain_subprocess(kind, flows)) is not None}
        base_kind = "orjson" if "orjson" in plain else "json"
        base_cpu = plain[base_kind]["cpu"]
        print("\nbaseline, a plain read of the same file (every line decoded, nothing folded):")
        for kind, m in plain.items():
            print(f"  {kind + '.loads per line':<30} {m['cpu']:7.2f} s CPU  "
                  f"x{m['cpu'] / base_cpu:.2f}  peak RSS {m['rss'] / 1024:,.0f} MiB")

        measured = _stages_subprocess(flows, inv, work)
        counts = measured.pop("counts")
        base = measured.pop("start")["rss"]
        print(f"\nsegmenter.pipeline, one process, one core ({counts['records']:,.0f} flows, "
              f"{counts['dns']:,.0f} DNS answers; {counts['edges']:,.0f} edges; "
              f"{counts['policies']:,.0f} policies; {counts['blocked']:,.0f} blocked entries):")
        print(f"  {'stage':<30} {'CPU s':>7} {'x ' + base_kind + ' read':>14} {'wall s':>7} "
              f"{'peak RSS MiB':>13}")
        for name, m in measured.items():
            print(f"  {name:<30} {m['cpu']:7.2f} {m['cpu'] / base_cpu:14.2f} {m['wall']:7.2f} "
                  f"{m['rss'] / 1024:13,.0f}")
        emits = [k for k in measured if k.startswith("emit ")]
        totals = {}
        for label, names in (("with the inventory", (*WITH_INVENTORY, *emits)),
                             ("from the records", (*FROM_RECORDS, *emits))):
            cpu = sum(measured[k]["cpu"] for k in names)
            wall = sum(measured[k]["wall"] for k in names)
            totals[label] = (cpu, wall)
            print(f"  end to end {label}: {cpu:.2f} s CPU ({wall:.2f} s wall), "
                  f"x{cpu / base_cpu:.2f} the {base_kind} read; "
                  f"target < 10 s: {'met' if cpu < 10 else 'NOT met'}")
        ingest_cpu = measured["ingest"]["cpu"]
        over = (measured["ingest"]["rss"] - base) * 1024
        print(f"  ingest alone: {ingest_cpu:.2f} s CPU, x{ingest_cpu / base_cpu:.2f} the "
              f"{base_kind} read, {n / ingest_cpu:,.0f} records/s; peak RSS "
              f"{measured['ingest']['rss'] / 1024:,.0f} MiB ({over / 2**20:,.0f} MiB over the "
              f"interpreter: {over / counts['flows']:,.0f} bytes per distinct connection, "
              f"{over / n:,.0f} per record)")
        print(f"  checks: flows with an ephemeral server port: "
              f"{counts['ephemeral_servers']:.0f}; rules allowing an ephemeral port: "
              f"{counts['ephemeral_rules']:.0f}; edges from the records alone: "
              f"{counts['edges_records']:,.0f} (with the inventory {counts['edges']:,.0f})")

        h2p = _audit2policy(flows)
        if h2p is None:
            print("hubble-audit2policy: not installed (pip install hubble-audit2policy); "
                  "comparison skipped")
        else:
            h_cpu, h_wall, policies, rules, ephemeral = h2p
            print(f"\nhubble-audit2policy on the same records: {h_cpu:.2f} s CPU "
                  f"({h_wall:.2f} s wall), {policies} policies, {rules:,} rules, "
                  f"{ephemeral:,} of them on a client's ephemeral port (from reply packets)")
            for label, (cpu, wall) in totals.items():
                print(f"  ratio, end to end {label}: {h_cpu / cpu:.1f}x by CPU "
                      f"({h_wall / wall:.1f}x by wall); target >= 10x: "
                      f"{'met' if h_cpu / cpu >= 10 else 'NOT met'}")
            print(f"  ratio, ingest alone: {h_cpu / ingest_cpu:.1f}x by CPU")
            print(f"  hubble-audit2policy: x{h_cpu / base_cpu:.2f} the {base_kind} read")
    print(f"(this process: peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB)")
    if not args.no_vpc_zeek:
        # The same million-record figures for AWS VPC flow logs and Zeek conn.log, each
        # against its own plain-parse baseline (that script's doc says how).
        print("\n-- AWS VPC flow logs and Zeek conn.log (benchmarks/ingest_vpc_zeek.py) --",
              flush=True)
        subprocess.run([sys.executable, str(Path(__file__).with_name("ingest_vpc_zeek.py")),
                        "--records", str(args.records)], check=True)


if __name__ == "__main__":
    main()
