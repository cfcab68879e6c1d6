"""Render connections as the flow-log formats of ``capture.sources`` (for the tests).

Each renderer writes what its source's documentation says the cloud or Zeek writes for one
connection -- both directions, at both observation points where the format has several -- so
that tests can compare what the sources fold back with what was rendered:

* AWS VPC Flow Logs: one record per direction per network interface (flow-logs.md,
  flow-logs-records-examples.md in shared/corpora/flows/aws-vpc);
* GCP VPC Flow Logs: one LogEntry per direction per reporter, fields as in Google's "About VPC
  Flow Logs records" (no openly licensed sample with GKE pod details exists);
* Azure VNet flow logs version 4: a B and an E tuple per connection at each interface
  (vnet-flow-logs-overview, and the samples in shared/corpora/flows/azure);
* Zeek conn.log: one line per connection, TSV with its header or JSON.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

AWS_V5_HEADER = ("version account-id interface-id srcaddr dstaddr srcport dstport protocol "
                 "packets bytes start end action log-status tcp-flags pkt-srcaddr pkt-dstaddr "
                 "flow-direction")
PROTO_NUMBERS = {"TCP": 6, "UDP": 17, "ICMP": 1}
ZEEK_FIELDS = ("ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto",
               "service", "duration", "orig_bytes", "resp_bytes", "conn_state", "local_orig",
               "local_resp", "missed_bytes", "history", "orig_pkts", "orig_ip_bytes",
               "resp_pkts", "resp_ip_bytes", "tunnel_parents")
ZEEK_TYPES = ("time", "string", "addr", "port", "addr", "port", "enum", "string", "interval",
              "count", "count", "string", "bool", "bool", "count", "string", "count", "count",
              "count", "count", "set[string]")


@dataclass(frozen=True)
class Conn:
    """One connection, client -> server."""

    proto: str
    client: str
    cport: int
    server: str
    sport: int
    start: int = 1_700_000_000
    packets_c2s: int = 5
    bytes_c2s: int = 600
    packets_s2c: int = 4
    bytes_s2c: int = 3000

    @property
    def key(self) -> tuple[str, str, str, int]:
        return self.client, self.server, self.proto, self.sport


def aws_records(conn: Conn, *, flags: bool = True, verdict: str = "ACCEPT") -> list[str]:
    """The four records (two directions at two interfaces) in ``AWS_V5_HEADER`` order."""
    end = conn.start + 30
    number = PROTO_NUMBERS[conn.proto]
    tcp = conn.proto == "TCP"
    c_flags = (3 if tcp else 0) if flags else "-"  # SYN + FIN from the client
    s_flags = (19 if tcp else 0) if flags else "-"  # SYN-ACK + FIN from the server
    out = []
    for eni, c2s_dir, s2c_dir in (("eni-client", "egress", "ingress"),
                                  ("eni-server", "ingress", "egress")):
        out.append(f"5 123456789012 {eni} {conn.client} {conn.server} {conn.cport} {conn.sport} "
                   f"{number} {conn.packets_c2s} {conn.bytes_c2s} {conn.start} {end} {verdict} "
                   f"OK {c_flags} {conn.client} {conn.server} {c2s_dir}")
        out.append(f"5 123456789012 {eni} {conn.server} {conn.client} {conn.sport} {conn.cport} "
                   f"{number} {conn.packets_s2c} {conn.bytes_s2c} {conn.start} {end} {verdict} "
                   f"OK {s_flags} {conn.server} {conn.client} {s2c_dir}")
    return out


def aws_default_records(conn: Conn) -> list[str]:
    """Both directions at the client's interface, in the default (version 2) format."""
    end = conn.start + 30
    number = PROTO_NUMBERS[conn.proto]
    return [
        f"2 123456789012 eni-client {conn.client} {conn.server} {conn.cport} {conn.sport} "
        f"{number} {conn.packets_c2s} {conn.bytes_c2s} {conn.start} {end} ACCEPT OK",
        f"2 123456789012 eni-client {conn.server} {conn.client} {conn.sport} {conn.cport} "
        f"{number} {conn.packets_s2c} {conn.bytes_s2c} {conn.start} {end} ACCEPT OK",
    ]


def _rfc3339(t: float) -> str:
    import datetime

    when = datetime.datetime.fromtimestamp(t, datetime.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"  # nanoseconds, as Logging writes


def gke(namespace: str, pod: str, workload: str, kind: str = "DEPLOYMENT",
        service: str | None = None) -> dict[str, Any]:
    """A ``*_gke_details`` object as Google documents it."""
    details: dict[str, Any] = {
        "cluster": {"cluster_location": "europe-west1", "cluster_name": "prod"},
        "pod": {"pod_name": pod, "pod_namespace": namespace,
                "pod_workload": {"workload_name": workload, "workload_type": kind}},
    }
    if service is not None:
        details["service"] = [{"service_name": service, "service_namespace": namespace}]
    return details


def gcp_entries(conn: Conn, *, client_gke: dict[str, Any] | None = None,
                server_gke: dict[str, Any] | None = None,
                disposition: str | None = None) -> list[dict[str, Any]]:
    """Four LogEntries: each direction as reported by its source and by its destination."""
    out = []
    client_vm, server_vm = "gke-prod-pool-1-node-a", "gke-prod-pool-1-node-b"
    for n, (src, sport, dst, dport, packets, nbytes, src_gke, dst_gke, src_vm, dst_vm) in (
        enumerate((
            (conn.client, conn.cport, conn.server, conn.sport, conn.packets_c2s,
             conn.bytes_c2s, client_gke, server_gke, client_vm, server_vm),
            (conn.server, conn.sport, conn.client, conn.cport, conn.packets_s2c,
             conn.bytes_s2c, server_gke, client_gke, server_vm, client_vm),
        ))):
        for reporter in ("SRC", "DEST"):
            payload: dict[str, Any] = {
                "connection": {"src_ip": src, "src_port": sport, "dest_ip": dst,
                               "dest_port": dport, "protocol": PROTO_NUMBERS[conn.proto]},
                "reporter": reporter,
                # Cloud Logging writes int64 fields as JSON strings.
                "bytes_sent": str(nbytes),
                "packets_sent": str(packets),
                "start_time": _rfc3339(conn.start + n * 0.25),
                "end_time": _rfc3339(conn.start + 20),
                "rtt_msec": "3",
            }
            if src_gke is not None:
                payload["src_gke_details"] = src_gke
                payload["src_instance"] = {"vm_name": src_vm,
                                           "project_id": "p", "zone": "europe-west1-b",
                                           "region": "europe-west1"}
            if dst_gke is not None:
                payload["dest_gke_details"] = dst_gke
                payload["dest_instance"] = {"vm_name": dst_vm,
                                            "project_id": "p", "zone": "europe-west1-c",
                                            "region": "europe-west1"}
            if disposition is not None:
                payload["disposition"] = disposition
            out.append({
                "insertId": f"x{n}{reporter}",
                "jsonPayload": payload,
                "logName": "projects/p/logs/compute.googleapis.com%2Fvpc_flows",
                "receiveTimestamp": _rfc3339(conn.start + 60),
                "resource": {"type": "gce_subnetwork",
                             "labels": {"project_id": "p", "subnetwork_name": "default",
                                        "location": "europe-west1"}},
                "timestamp": _rfc3339(conn.start + 20),
            })
    return out


def azure_vnet_records(conns: Sequence[Conn], *, deny: bool = False) -> list[dict[str, Any]]:
    """One VNet flow log record per interface (the client's and the server's), each with a
    B and an E tuple per connection (a D tuple when ``deny``)."""
    out = []
    for mac, io in (("00224871C001", "O"), ("00224871C002", "I")):
        tuples = []
        for c in conns:
            ms = c.start * 1000
            base = f"{c.client},{c.server},{c.cport},{c.sport},{PROTO_NUMBERS[c.proto]},{io}"
            if deny:
                tuples.append(f"{ms},{base},D,NX,0,0,0,0")
                continue
            tuples.append(f"{ms},{base},B,NX,0,0,0,0")
            tuples.append(f"{ms + 20_000},{base},E,NX,{c.packets_c2s},{c.bytes_c2s},"
                          f"{c.packets_s2c},{c.bytes_s2c}")
        out.append({
            "time": "2023-11-14T22:14:00.0000000Z",
            "flowLogVersion": 4,
            "flowLogGUID": "00000000-0000-0000-0000-000000000001",
            "macAddress": mac,
            "category": "FlowLogFlowEvent",
            "flowLogResourceID": "/SUBSCRIPTIONS/0/RESOURCEGROUPS/RG/PROVIDERS/"
                                 "MICROSOFT.NETWORK/NETWORKWATCHERS/NW/FLOWLOGS/VNET",
            "targetResourceID": "/subscriptions/0/resourceGroups/rg/providers/"
                                "Microsoft.Network/virtualNetworks/vnet",
            "operationName": "FlowLogFlowEvent",
            "flowRecords": {"flows": [{"aclID": "00000000-0000-0000-0000-0000000000aa",
                                       "flowGroups": [{"rule": "DefaultRule_AllowVnetInBound",
                                                       "flowTuples": tuples}]}]},
        })
    return out


def zeek_row(conn: Conn, uid: str) -> dict[str, Any]:
    tcp = conn.proto == "TCP"
    return {
        "ts": conn.start + 0.25, "uid": uid, "id.orig_h": conn.client,
        "id.orig_p": conn.cport, "id.resp_h": conn.server, "id.resp_p": conn.sport,
        "proto": conn.proto.lower(), "service": None, "duration": 1.5,
        "orig_bytes": 100, "resp_bytes": 2000, "conn_state": "SF", "local_orig": True,
        "local_resp": True, "missed_bytes": 0, "history": "ShADadFf" if tcp else "Dd",
        "orig_pkts": conn.packets_c2s, "orig_ip_bytes": conn.bytes_c2s,
        "resp_pkts": conn.packets_s2c, "resp_ip_bytes": conn.bytes_s2c,
        "tunnel_parents": [],
    }


def zeek_tsv(rows: Iterable[dict[str, Any]], fields: Sequence[str] = ZEEK_FIELDS,
             names: Sequence[str] | None = None) -> str:
    """A conn.log as Zeek's ASCII writer writes it (``names``: the header's column names, for a
    renamed log)."""

    def cell(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, bool):
            return "T" if value else "F"
        if isinstance(value, list):
            return ",".join(value) if value else "(empty)"
        if isinstance(value, float):
            return f"{value:.6f}"
        return str(value)

    head = ["#separator \\x09", "#set_separator\t,", "#empty_field\t(empty)",
            "#unset_field\t-", "#path\tconn", "#open\t2023-11-14-22-13-20",
            "#fields\t" + "\t".join(names or fields), "#types\t" + "\t".join(ZEEK_TYPES)]
    lines = ["\t".join(cell(r.get(f)) for f in fields) for r in rows]
    return "\n".join([*head, *lines, "#close\t2023-11-14-23-00-00"]) + "\n"


def zeek_json(rows: Iterable[dict[str, Any]]) -> str:
    return "".join(json.dumps({k: v for k, v in r.items() if v is not None}) + "\n"
                   for r in rows)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
