"""Hubble and Calico flow-log records for the source tests, built here from the documented
formats -- not copied from anywhere:

* Hubble: cilium api/v1/flow/flow.proto (``Flow``, ``Endpoint``, ``Layer4``, ``Policy``,
  ``Service``) in protobuf's JSON mapping with proto field names, as ``hubble observe -o json``
  writes a flow and ``-o jsonpb`` / the Hubble exporter write ``{"flow": ..., "node_name": ...,
  "time": ...}`` (Documentation/observability/hubble/configuration/export.rst); the events a
  connection makes follow the real kind+Cilium 1.10 corpus (corpora/flows/hubble-otel): a
  policy-verdict event (type 5) and traces (type 4) per node, ``is_reply`` on every packet,
  ``traffic_direction`` of the connection, ``ID`` only on the endpoint's own node.
* Calico Enterprise ``flows.log``: the field table of tigera/docs
  calico-enterprise/observability/elastic/flow/datatypes.mdx.
* Calico OSS Goldmane ``Flow``: projectcalico/calico goldmane/proto/api.proto in protobuf's JSON
  mapping (lowerCamelCase, enums as names, int64 as strings); Whisker's ``FlowResponse``:
  whisker-backend/pkg/apis/v1/flows.go.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DAY = "2024-03-01"


def stamp(offset: float) -> str:
    """An RFC 3339 time stamp ``offset`` seconds after 2024-03-01T12:00:00Z, nanoseconds."""
    whole = int(offset)
    ns = round((offset - whole) * 1e9)
    minutes, secs = divmod(whole, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{DAY}T{12 + hours:02d}:{minutes:02d}:{secs:02d}.{ns:09d}Z"


def epoch(offset: float) -> float:
    """``stamp(offset)`` in seconds since the epoch (as the flow file writes it)."""
    whole = int(offset)
    ns = round((offset - whole) * 1e9)
    return (1709294400 + whole) + ns / 1e9


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    ip: str
    node: str
    identity: int
    endpoint_id: int
    labels: Mapping[str, str] = field(default_factory=dict)
    workload: tuple[str, str] | None = None  # (kind, name)

    def endpoint(self, local: bool) -> dict[str, Any]:
        """The ``Endpoint`` Hubble writes: ``ID`` only on the node the pod runs on."""
        labels = [f"k8s:{k}={v}" for k, v in sorted(self.labels.items())]
        labels += [f"k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name="
                   f"{self.namespace}",
                   "k8s:io.cilium.k8s.policy.cluster=default",
                   "k8s:io.cilium.k8s.policy.serviceaccount=default",
                   f"k8s:io.kubernetes.pod.namespace={self.namespace}"]
        ep: dict[str, Any] = {}
        if local:
            ep["ID"] = self.endpoint_id
        ep.update({"identity": self.identity, "namespace": self.namespace,
                   "labels": sorted(labels), "pod_name": self.name})
        if self.workload:
            ep["workloads"] = [{"name": self.workload[1], "kind": self.workload[0]}]
        return ep


@dataclass(frozen=True)
class Reserved:
    """A reserved identity (not a pod): world, host, remote-node, ..."""

    ip: str
    labels: tuple[str, ...]
    identity: int
    node: str = ""

    def endpoint(self, local: bool) -> dict[str, Any]:
        return {"identity": self.identity, "labels": list(self.labels)}


End = Pod | Reserved

WEB = Pod("shop", "web-7d4f9c-x1", "10.0.1.10", "node-a", 20001, 101,
          {"app": "web", "tier": "front"}, ("Deployment", "web"))
API = Pod("shop", "api-5c6b7d-q2", "10.0.2.20", "node-b", 20002, 202,
          {"app": "api"}, ("Deployment", "api"))
DB = Pod("payments", "db-0", "10.0.2.30", "node-b", 20003, 203, {"app": "db"},
         ("StatefulSet", "db"))
DNS = Pod("kube-system", "coredns-abc-1", "10.0.3.53", "node-c", 102, 303, {"k8s-app": "kube-dns"})
WORLD = Reserved("52.1.2.3", ("reserved:world",), 2)
HOST_A = Reserved("10.0.1.1", ("reserved:host",), 1, "node-a")
REMOTE_NODE = Reserved("192.168.0.12", ("reserved:remote-node",), 6)
APISERVER = Reserved("192.168.0.10", ("reserved:kube-apiserver", "reserved:host"), 7)


def node_of(end: End) -> str:
    return end.node


def flow(t: float, node: str, src: End, dst: End, l4: Mapping[str, Any], *,
         verdict: str = "FORWARDED", reply: bool | None = None, direction: str | None = None,
         etype: int = 4, point: str | None = None, **extra: Any) -> dict[str, Any]:
    """One Hubble flow object seen on ``node``."""
    f: dict[str, Any] = {
        "time": stamp(t),
        "verdict": verdict,
        "IP": {"source": src.ip, "destination": dst.ip,
               "ipVersion": "IPv6" if ":" in src.ip else "IPv4"},
        "l4": dict(l4),
        "source": src.endpoint(node_of(src) == node),
        "destination": dst.endpoint(node_of(dst) == node),
        "Type": "L7" if etype == 129 else "L3_L4",
        "node_name": node,
        "event_type": {"type": etype},
    }
    if direction:
        f["traffic_direction"] = direction
    if point:
        f["trace_observation_point"] = point
    if reply is not None:
        f["is_reply"] = reply
    f.update(extra)
    return f


def envelope(f: Mapping[str, Any]) -> dict[str, Any]:
    """The ``-o jsonpb`` / exporter line of a flow."""
    return {"flow": dict(f), "node_name": f["node_name"], "time": f["time"]}


def tcp(sport: int, dport: int, **flags: bool) -> dict[str, Any]:
    l4: dict[str, Any] = {"source_port": sport, "destination_port": dport}
    if flags:
        l4["flags"] = {k: v for k, v in flags.items() if v}
    return {"TCP": l4}


def udp(sport: int, dport: int) -> dict[str, Any]:
    return {"UDP": {"source_port": sport, "destination_port": dport}}


def tcp_connection(client: End, server: End, sport: int, dport: int, *, t: float = 0.0,
                   denied: bool = False, with_reply: bool = True,
                   **extra: Any) -> list[dict[str, Any]]:
    """Every event Hubble writes for one TCP connection: at the client's node the egress
    policy verdict and trace, at the server's node the ingress verdict and trace, then the
    SYN-ACK, data and FIN of both directions at both nodes (once when they are the same
    node). ``denied``: the server's node drops the SYN (twice: one retransmission)."""
    cnode, snode = node_of(client), node_of(server)
    nodes = [n for n in dict.fromkeys((cnode, snode)) if n]
    events = [
        flow(t, cnode, client, server, tcp(sport, dport, SYN=True), etype=5,
             direction="EGRESS", reply=False, **extra),
        flow(t, cnode, client, server, tcp(sport, dport, SYN=True), direction="EGRESS",
             reply=False, point="TO_STACK", **extra),
    ]
    if snode:
        if denied:
            deny = [{"name": "default-deny", "namespace": getattr(server, "namespace", ""),
                     "kind": "CiliumNetworkPolicy"}]
            return events + [flow(t + k, snode, client, server, tcp(sport, dport, SYN=True),
                                  verdict="DROPPED", etype=1, direction="INGRESS",
                                  reply=False, drop_reason_desc="POLICY_DENIED",
                                  ingress_denied_by=deny) for k in (0.5, 1.5)]
        events += [
            flow(t + 0.001, snode, client, server, tcp(sport, dport, SYN=True), etype=5,
                 direction="INGRESS", reply=False),
            flow(t + 0.002, snode, client, server, tcp(sport, dport, SYN=True),
                 direction="INGRESS", reply=False, point="TO_ENDPOINT"),
        ]
    if not with_reply:
        return events
    packets = [({"SYN": True, "ACK": True}, False), ({"ACK": True}, True),
               ({"PSH": True, "ACK": True}, True), ({"PSH": True, "ACK": True}, False),
               ({"FIN": True, "ACK": True}, True), ({"FIN": True, "ACK": True}, False)]
    for k, (flags, up) in enumerate(packets, 1):
        for n in nodes:
            src, dst = (client, server) if up else (server, client)
            ports = (sport, dport) if up else (dport, sport)
            events.append(flow(t + 0.01 * k, n, src, dst, tcp(*ports, **flags),
                               direction="EGRESS" if n == cnode else "INGRESS",
                               reply=not up, point="TO_ENDPOINT"))
    return events


def udp_exchange(client: End, server: End, sport: int, dport: int, *,
                 t: float = 0.0) -> list[dict[str, Any]]:
    """A UDP request and its answer as Hubble writes them: at the client's node the egress
    policy verdict and trace, at the server's node the ingress trace, and the answer
    (``is_reply``) at both nodes."""
    cnode, snode = node_of(client), node_of(server)
    events = [
        flow(t, cnode, client, server, udp(sport, dport), etype=5, direction="EGRESS",
             reply=False),
        flow(t, cnode, client, server, udp(sport, dport), direction="EGRESS", reply=False,
             point="TO_STACK"),
    ]
    if snode:
        events.append(flow(t + 0.001, snode, client, server, udp(sport, dport),
                           direction="INGRESS", reply=False, point="TO_ENDPOINT"))
    for n in dict.fromkeys(x for x in (snode, cnode) if x):
        events.append(flow(t + 0.002, n, server, client, udp(dport, sport),
                           direction="INGRESS" if n == snode else "EGRESS", reply=True,
                           point="TO_ENDPOINT"))
    return events


def dns_lookup(client: Pod, server: Pod, sport: int, name: str, answers: list[str], *,
               t: float = 0.0) -> list[dict[str, Any]]:
    """A lookup through Cilium's DNS proxy: its L7 request and response records and the
    response's L4 trace."""
    node = client.node
    query = {"query": name + ".", "qtypes": ["A"], "observation_source": "proxy"}
    return [
        flow(t, node, client, server, udp(sport, 53), verdict="REDIRECTED", etype=5,
             direction="EGRESS", reply=False),
        flow(t + 0.001, node, client, server, udp(sport, 53), etype=129, direction="EGRESS",
             reply=False, l7={"type": "REQUEST", "dns": query}),
        flow(t + 0.002, node, server, client, udp(53, sport), etype=129, direction="EGRESS",
             reply=True, l7={"type": "RESPONSE", "latency_ns": 1000000,
                             "dns": {**query, "ips": answers, "ttl": 30,
                                     "cnames": [], "rrtypes": ["A"]}}),
        flow(t + 0.003, node, server, client, udp(53, sport), direction="EGRESS", reply=True,
             point="TO_ENDPOINT"),
    ]


def write_lines(path: Path, objects: Iterable[Mapping[str, Any]], *,
                gz: bool = False) -> Path:
    text = "".join(json.dumps(o, separators=(",", ":")) + "\n" for o in objects)
    if gz:
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


# -- Calico ------------------------------------------------------------------------------------


def calico_record(reporter: str, *, action: str = "allow", start: int = 1709294400,
                  end: int | None = None, proto: str = "tcp", dest_port: int | None = 5432,
                  source: Mapping[str, Any] | None = None,
                  dest: Mapping[str, Any] | None = None, policies: Any = None,
                  packets: tuple[int, int] = (5, 4), byte_counts: tuple[int, int] = (400, 900),
                  host: str | None = None, **extra: Any) -> dict[str, Any]:
    """A Calico Enterprise ``flows.log`` record (datatypes.mdx fields). ``packets`` and
    ``byte_counts`` are (client -> server, server -> client); "in" / "out" are the reporting
    end's."""
    src = {"ip": "10.0.1.10", "name": "-", "name_aggr": "web-7d4f9c-*", "namespace": "shop",
           "port": None, "type": "wep", "labels": {"labels": ["app=web", "tier=front"]},
           **(source or {})}
    dst = {"ip": "10.0.2.30", "name": "-", "name_aggr": "db-*", "namespace": "payments",
           "type": "wep", "labels": {"labels": ["app=db"]}, **(dest or {})}
    up, down = packets
    bup, bdown = byte_counts
    if reporter == "dst":
        counts = {"packets_in": up, "packets_out": down, "bytes_in": bup, "bytes_out": bdown}
    else:
        counts = {"packets_in": down, "packets_out": up, "bytes_in": bdown, "bytes_out": bup}
    record: dict[str, Any] = {
        "start_time": start, "end_time": end if end is not None else start + 300,
        "source_ip": src["ip"], "source_name": src["name"], "source_name_aggr": src["name_aggr"],
        "source_namespace": src["namespace"], "source_port": src["port"],
        "source_type": src["type"], "source_labels": src["labels"],
        "dest_ip": dst["ip"], "dest_name": dst["name"], "dest_name_aggr": dst["name_aggr"],
        "dest_namespace": dst["namespace"], "dest_port": dest_port, "dest_type": dst["type"],
        "dest_labels": dst["labels"], "dest_service_namespace": "-", "dest_service_name": "-",
        "dest_service_port": "-", "proto": proto, "action": action, "reporter": reporter,
        "policies": policies if policies is not None else {"enforced_policies": []},
        "num_flows": 1, "num_flows_started": 1, "num_flows_completed": 1,
        "host": host or ("node-a" if reporter == "src" else "node-b"),
        **counts, **extra,
    }
    return record


def goldmane_flow(reporter: str = "Src", *, action: str = "Allow", start: int = 1709294400,
                  source_name: str = "web-7d4f9c-*", source_namespace: str = "shop",
                  dest_name: str = "db-*", dest_namespace: str = "payments",
                  source_type: Any = "WorkloadEndpoint", dest_type: Any = "WorkloadEndpoint",
                  dest_port: Any = "5432", proto: str = "tcp",
                  enforced: list[dict[str, Any]] | None = None,
                  pending: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A Goldmane ``Flow`` in protobuf's JSON mapping (lowerCamelCase, int64 as strings)."""
    up, down = ("14", "11") if reporter == "Src" else ("11", "14")
    return {
        "Key": {"sourceName": source_name, "sourceNamespace": source_namespace,
                "sourceType": source_type, "destName": dest_name,
                "destNamespace": dest_namespace, "destType": dest_type, "destPort": dest_port,
                "destServiceName": "-", "destServiceNamespace": "-",
                "destServicePortName": "-", "proto": proto, "reporter": reporter,
                "action": action,
                "policies": {"enforcedPolicies": enforced or [],
                             "pendingPolicies": pending or []}},
        "startTime": str(start), "endTime": str(start + 15),
        "sourceLabels": ["app=web", "pod-template-hash=7d4f9c"], "destLabels": ["app=db"],
        "packetsIn": down, "packetsOut": up, "bytesIn": "957", "bytesOut": "1226",
        "numConnectionsStarted": "1", "numConnectionsCompleted": "1",
        "numConnectionsLive": "0",
    }
