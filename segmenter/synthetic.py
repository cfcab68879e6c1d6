"""Synthetic clusters: the one builder of made-up inventories and graphs that tests, benchmarks
and notebooks share.

:class:`ClusterBuilder` builds an inventory and its graph together, by hand (the test
scenarios). :func:`synthetic_graph` makes a plausible cluster of any size for pictures at scale;
:func:`synthetic_cluster` a large uniform one for compiler benchmarks. Everything is
deterministic in its seed.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field

import networkx as nx

from segmenter.model import (
    ContainerPort,
    Flow,
    Inventory,
    Labels,
    Namespace,
    Node,
    NodeId,
    Pod,
    Service,
    ServicePort,
    Transport,
    Workload,
    WorkloadRef,
)
from segmenter.planner import Plan

T0 = 1_764_000_000.0
DAY_T0 = 1_700_000_000.0  # the day of pod_timeline / day_of_flows


@dataclass
class ClusterBuilder:
    """Builds a consistent inventory and graph together: each workload gets pods with
    addresses and a graph node, each flow an edge entry as ``build_graph`` would make it."""

    pods: list[Pod] = field(default_factory=list)
    workloads: list[Workload] = field(default_factory=list)
    namespaces: set[str] = field(default_factory=set)
    services: list[Service] = field(default_factory=list)
    graph: nx.DiGraph = field(default_factory=nx.DiGraph)
    _ip: int = 10

    def workload(self, namespace: str, name: str, labels: dict[str, str], *,
                 kind: str = "Deployment", replicas: int = 1,
                 ports: tuple[ContainerPort, ...] = (), annotations: dict[str, str] | None = None,
                 host_network: bool = False) -> str:
        ref = WorkloadRef(namespace, kind, name)
        self.namespaces.add(namespace)
        self.workloads.append(Workload(ref, Labels.of(labels), Labels.of(annotations),
                                       Labels.of(labels), host_network))
        for i in range(replicas):
            self._ip += 1
            pod_labels = dict(labels)
            if kind == "Deployment":
                pod_labels["pod-template-hash"] = "7d9f8c6b5"
            if kind == "StatefulSet":
                pod_labels["statefulset.kubernetes.io/pod-name"] = f"{name}-{i}"
                pod_labels["controller-revision-hash"] = f"{name}-5f6d7"
            self.pods.append(Pod(namespace, f"{name}-{i}", Labels.of(pod_labels),
                                 (f"10.244.{self._ip // 250}.{self._ip % 250}",), ref,
                                 node="worker-1", host_network=host_network, ports=ports,
                                 annotations=Labels.of(annotations)))
        self.graph.add_node(ref.id, kind="workload", namespace=namespace, name=name,
                            workload_kind=kind, labels=dict(labels),
                            annotations=dict(annotations or {}), host_network=host_network,
                            pod_count=replicas, label=f"{namespace}/{name}")
        return ref.id

    def external(self, ip: str, name: str | None = None) -> str:
        node = NodeId.of_external(ip)
        self.graph.add_node(node, kind="external", addresses=[ip],
                            dns_names=[name] if name else [], private=False, label=name or ip)
        return node

    def node(self, name: str, ip: str) -> str:
        node = NodeId.of_node(name)
        self.graph.add_node(node, kind="node", addresses=[ip], label=name)
        return node

    def flow(self, client: str, server: str, port: int | None, protocol: str = "TCP", *,
             flows: int = 3, tls: bool = False) -> None:
        entry = {"protocol": protocol, "port": port, "flows": flows, "packets": flows * 10,
                 "bytes": flows * 1000, "first_seen": T0, "last_seen": T0 + 60, "tls": tls,
                 "via_service": None}
        if self.graph.has_edge(client, server):
            data = self.graph.edges[client, server]
            data["ports"] = sorted([*data["ports"], entry],
                                   key=lambda p: (p["protocol"], p["port"] or 0))
            data["flows"] += flows
        else:
            self.graph.add_edge(client, server, ports=[entry], flows=flows, packets=flows * 10,
                                bytes=flows * 1000, first_seen=T0, last_seen=T0 + 60)

    def inventory(self) -> Inventory:
        nss = tuple(Namespace(n, Labels.of({"kubernetes.io/metadata.name": n}))
                    for n in sorted(self.namespaces))
        return Inventory(namespaces=nss, workloads=tuple(self.workloads),
                         pods=tuple(self.pods), services=tuple(self.services))


def with_dns(b: ClusterBuilder) -> str:
    """Cluster DNS as CoreDNS ships it: ``kube-system/coredns`` behind Service ``kube-dns``."""
    dns = b.workload("kube-system", "coredns", {"k8s-app": "kube-dns"},
                     ports=(ContainerPort(53, Transport.UDP, "dns"),
                            ContainerPort(53, Transport.TCP, "dns-tcp"),
                            ContainerPort(9153, Transport.TCP, "metrics")))
    b.services.append(Service("kube-system", "kube-dns", cluster_ips=("10.96.0.10",),
                              selector=Labels.of({"k8s-app": "kube-dns"}),
                              ports=(ServicePort(53, Transport.UDP, "dns", "dns"),
                                     ServicePort(53, Transport.TCP, "dns-tcp", "dns-tcp"))))
    return dns


_WORDS = ("api", "web", "worker", "auth", "search", "cart", "orders", "billing", "notify",
          "render", "ingest", "report", "profile", "media", "export", "gateway", "session",
          "queue", "scheduler", "inventory", "pricing", "shipping", "ledger-sync", "audit")


def synthetic_graph(workloads: int = 300, *, seed: int = 0, window: float = 6 * 3600.0
                    ) -> nx.DiGraph:
    """A made-up cluster of ``workloads`` workloads in graph.json form, for trying the pictures
    at scale: team namespaces of services around a database each, ``payments/card-vault``
    labelled ``segmenter.io/data-class: pci`` and ``records/patient-db`` labelled ``phi``,
    cluster DNS, the API server, nodes and a few external peers. Deterministic in ``seed``.

    >>> g = synthetic_graph(40, seed=1)
    >>> sum(1 for _, a in g.nodes(data=True) if a["kind"] == "workload")
    40
    """
    rng = random.Random(seed)
    graph = nx.DiGraph()
    spaces = max(2, workloads // 12)
    names: list[str] = []

    def add_workload(namespace: str, name: str, kind: str = "Deployment",
                     extra: dict[str, str] | None = None) -> str:
        node = f"{namespace}/{kind}/{name}"
        labels = {"app": name, **(extra or {})}
        graph.add_node(node, kind="workload", namespace=namespace, name=name,
                       workload_kind=kind, labels=labels, annotations={},
                       host_network=False, pod_count=1 + rng.randrange(3), label=name,
                       observed=True)
        names.append(node)
        return node

    dns = add_workload("kube-system", "coredns", extra={"k8s-app": "kube-dns"})
    vault = add_workload("payments", "card-vault", "StatefulSet",
                         {"segmenter.io/data-class": "pci"})
    pay_api = add_workload("payments", "payments-api")
    patients = add_workload("records", "patient-db", "StatefulSet",
                            {"segmenter.io/data-class": "phi"})
    records_api = add_workload("records", "records-api")
    teams = [f"team-{i:02d}" for i in range(max(1, spaces - 3))]
    by_ns: dict[str, list[str]] = {"payments": [vault, pay_api], "records": [patients,
                                                                               records_api]}
    i = 0
    while len(names) < workloads:
        namespace = teams[i % len(teams)]
        members = by_ns.setdefault(namespace, [])
        if not members:
            members.append(add_workload(namespace, "postgres", "StatefulSet"))
        else:
            word = _WORDS[(i // len(teams)) % len(_WORDS)]
            suffix = (i // (len(teams) * len(_WORDS)))
            members.append(add_workload(namespace, f"{word}{'-' + str(suffix) if suffix else ''}"))
        i += 1
    for node_id in range(6):
        graph.add_node(NodeId.of_node(f"worker-{node_id}"), kind="node", label=f"worker-{node_id}",
                       addresses=[f"172.18.0.{node_id + 2}"], observed=True)
    graph.add_node("apiserver", kind="apiserver", label="apiserver", addresses=["172.18.0.1"],
                   observed=True)
    externals = [NodeId.of_external(f"203.0.113.{k}") for k in range(1, 9)]
    for k, ext in enumerate(externals):
        graph.add_node(ext, kind="external", label=ext.split(":", 1)[1],
                       addresses=[ext.split(":", 1)[1]], dns_names=[f"api{k}.partner.example"]
                       if k % 2 else [], private=False, observed=True)

    def flow(u: str, v: str, port: int, protocol: str = "TCP", tls: bool = False) -> None:
        first = T0 + window * rng.random() ** 4
        last = first + (T0 + window - first) * rng.random()
        flows = 1 + rng.randrange(50)
        entry = {"protocol": protocol, "port": port, "flows": flows, "packets": flows * 12,
                 "bytes": flows * 2400, "first_seen": first, "last_seen": last, "tls": tls,
                 "via_service": None}
        if graph.has_edge(u, v):
            ports = [p for p in graph.edges[u, v]["ports"]
                     if (p["protocol"], p["port"]) != (protocol, port)] + [entry]
        else:
            ports = [entry]
        ports.sort(key=lambda p: (p["protocol"], p["port"]))
        graph.add_edge(u, v, ports=ports, flows=sum(p["flows"] for p in ports),
                       packets=sum(p["packets"] for p in ports),
                       bytes=sum(p["bytes"] for p in ports),
                       first_seen=min(p["first_seen"] for p in ports),
                       last_seen=max(p["last_seen"] for p in ports))

    all_services = [n for n in names if n != dns]
    for namespace, members in sorted(by_ns.items()):
        store = members[0]
        for member in members[1:]:
            flow(member, dns, 53, "UDP")
            if rng.random() < 0.6:
                flow(member, store, 5432)
            for _ in range(rng.randrange(3)):
                peer = rng.choice(members[1:])
                if peer != member:
                    flow(member, peer, 8080)
            if rng.random() < 0.08:
                peer = rng.choice(all_services)
                if peer != member and graph.nodes[peer]["namespace"] != namespace:
                    flow(member, peer, 8080)
    flow(pay_api, vault, 5432)
    flow(records_api, patients, 5432, tls=True)
    for team in teams[:3]:
        flow(by_ns[team][1] if len(by_ns[team]) > 1 else by_ns[team][0], pay_api, 8443,
             tls=True)
    flow(by_ns[teams[0]][-1], records_api, 8443, tls=True)
    for k, ext in enumerate(externals):
        if k % 2:
            flow(rng.choice(all_services), ext, 443, tls=True)
        else:
            flow(ext, by_ns[teams[k % len(teams)]][-1], 8080)
    flow(pay_api, externals[1], 443, tls=True)
    for node_id in range(6):
        for member in rng.sample(all_services, min(3, len(all_services))):
            flow(NodeId.of_node(f"worker-{node_id}"), member, 8080)
    flow(dns, "apiserver", 6443, tls=True)
    return graph


def synthetic_plan(graph: nx.DiGraph) -> Plan:
    """The plan of :func:`synthetic_graph` (its stores declare themselves by label)."""
    from segmenter.config import Config
    from segmenter.planner import plan

    return plan(graph, Config(), dns_nodes=["kube-system/Deployment/coredns"])


BENCH_PORTS = (80, 443, 5432, 6379, 8080, 8443, 9090, 3306)


def synthetic_cluster(workloads: int, namespaces: int, edges: int, *, seed: int = 7,
                      ports: tuple[int, ...] = BENCH_PORTS) -> ClusterBuilder:
    """A large uniform cluster for compiler benchmarks: ``workloads`` Deployments of two pods
    spread over ``namespaces`` namespaces (one in 500 a PCI store, by annotation), cluster DNS,
    and ``edges`` random TCP calls between them on ``ports``.

    >>> b = synthetic_cluster(20, 4, 30, seed=1)
    >>> len(b.workloads), b.graph.number_of_edges() <= 30
    (21, True)
    """
    rng = random.Random(seed)
    builder = ClusterBuilder()
    with_dns(builder)
    names = [f"ns{i:03d}" for i in range(namespaces)]
    ids = []
    for i in range(workloads):
        name = f"svc{i}"
        ids.append(builder.workload(
            names[i % namespaces], name,
            {"app": name, "app.kubernetes.io/part-of": "bench", "tier": f"t{i % 3}"},
            replicas=2,
            annotations={"segmenter.io/data-class": "pci"} if i % 500 == 0 else None))
    for _ in range(edges):
        a, b = rng.sample(ids, 2)
        builder.flow(a, b, rng.choice(ports), flows=1)
    return builder


DAY = 86_400.0
PODS_PER_WORKLOAD = 10


def pod_timeline(n_pods: int, rng: random.Random, *, day_start: float = DAY_T0,
                 pods_per_workload: int = PODS_PER_WORKLOAD) -> tuple[Inventory, list[Pod]]:
    """A day in a cluster of ``n_pods`` pods of 10-pod Deployments (with a Service each) that
    come and go: fewer addresses than pods, so most addresses are held by two pods of different
    workloads at different times (IP reuse), as on a busy node pool."""
    n_workloads = max(1, n_pods // pods_per_workload)
    # Fewer addresses than pods: addresses are reused by later pods.
    n_ips = max(1, int(n_pods * 0.6))
    free = [f"10.{64 + i // 65536}.{(i // 256) % 256}.{i % 256}" for i in range(n_ips)]
    rng.shuffle(free)
    nodes = tuple(Node(f"node-{i:03d}", (f"10.0.{i // 256}.{i % 256}",)) for i in range(200))
    workloads = []
    services = []
    pods: list[Pod] = []
    # Pod lifetimes: a first generation from before the window, then replacements.
    events: list[tuple[float, int]] = []  # (start, workload index)
    for w in range(n_workloads):
        for _ in range(pods_per_workload):
            events.append((rng.uniform(-DAY, DAY), w))
    events.sort()
    releases: list[tuple[float, str]] = []  # (end, ip) of pods that ended
    for start, w in events:
        while releases and releases[0][0] <= start:
            free.append(heapq.heappop(releases)[1])
        if not free and releases:  # keep the pool from running dry: end the oldest early
            free.append(heapq.heappop(releases)[1])
        elif not free:  # every address held by a pod that outlives the day: one more address
            i = n_ips
            n_ips += 1
            free.append(f"10.{64 + i // 65536}.{(i // 256) % 256}.{i % 256}")
        ip = free.pop(rng.randrange(len(free)))
        end = start + rng.uniform(DAY / 4, 2 * DAY)
        ref = WorkloadRef(f"ns-{w % 50:02d}", "Deployment", f"app-{w:05d}")
        pods.append(
            Pod(
                namespace=ref.namespace,
                name=f"{ref.name}-{len(pods):06d}",
                labels=Labels.of({"app": ref.name}),
                ips=(ip,),
                owner=ref,
                node=nodes[len(pods) % len(nodes)].name,
                ports=(ContainerPort(8080, Transport.TCP, "http"),),
                start=day_start + start,
                end=None if end > DAY else day_start + end,
            )
        )
        if end <= DAY:
            heapq.heappush(releases, (end, ip))
    for w in range(n_workloads):
        ref = WorkloadRef(f"ns-{w % 50:02d}", "Deployment", f"app-{w:05d}")
        workloads.append(Workload(ref=ref, template_labels=Labels.of({"app": ref.name})))
        services.append(
            Service(
                namespace=ref.namespace,
                name=ref.name,
                cluster_ips=(f"10.96.{w // 256}.{w % 256}",),
                selector=Labels.of({"app": ref.name}),
                ports=(ServicePort(80, Transport.TCP, "http" if w % 2 else 8080),),
            )
        )
    inventory = Inventory(
        nodes=nodes,
        workloads=tuple(workloads),
        pods=tuple(pods),
        services=tuple(services),
    )
    return inventory, pods


def day_of_flows(
    n: int,
    pods: list[Pod],
    services: tuple[Service, ...],
    nodes: tuple[Node, ...],
    rng: random.Random,
    *,
    day_start: float = DAY_T0,
) -> list[Flow]:
    """``n`` flows over the day of :func:`pod_timeline`: each workload calls a few fixed
    dependencies, as real applications do (ClusterIP 45 %, pod IP 45 %, the internet 5 %, the
    kubelet probing from its node 5 %), each at a time when the client pod held its address."""
    by_workload: dict[str, list[Pod]] = {}
    for pod in pods:
        by_workload.setdefault(pod.owner.name, []).append(pod)
    index = {svc.name: i for i, svc in enumerate(services)}
    deps = {name: rng.sample(range(len(services)), 4) for name in by_workload}
    internet = [f"93.184.{rng.randrange(256)}.{rng.randrange(256)}" for _ in range(500)]
    node_ip = {node.name: node.addresses[0] for node in nodes}
    flows = []
    for _ in range(n):
        client = rng.choice(pods)
        lo = max(day_start - DAY, client.start or day_start - DAY)
        hi = min(day_start + DAY, client.end or day_start + DAY)
        ts = rng.uniform(lo, max(lo, hi - 1))
        kind = rng.random()
        client_ip = client.ips[0]
        dep = services[rng.choice(deps[client.owner.name])]
        if kind < 0.45:
            server, port = dep.cluster_ips[0], 80
        elif kind < 0.90:  # straight to a pod of the dependency that is alive at ts
            alive = [
                p
                for p in by_workload[services[index[dep.name]].name]
                if (p.start or 0) <= ts <= (p.end or float("inf"))
            ]
            server, port = (rng.choice(alive).ips[0], 8080) if alive else (dep.cluster_ips[0], 80)
        elif kind < 0.95:
            server, port = rng.choice(internet), 443
        else:  # the kubelet probes the pod from its node
            client_ip = node_ip[client.node or ""]
            server, port = client.ips[0], 8080
        flows.append(
            Flow(
                Transport.TCP,
                client_ip,
                server,
                rng.randrange(32768, 60999),
                port,
                ts,
                ts + 1.5,
                5,
                600,
                4,
                3000,
            )
        )
    return flows
