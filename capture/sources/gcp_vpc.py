"""Google Cloud VPC Flow Logs, as exported from Cloud Logging.

What is read: ``LogEntry`` objects of the log ``compute.googleapis.com/vpc_flows`` -- one per
line (a Cloud Storage sink, Pub/Sub, ``gcloud logging read --format=json`` piped through
``jq -c``) or as one JSON array (``gcloud logging read --format=json``) -- and their bare
``jsonPayload`` objects. Fields, from Google's "About VPC Flow Logs records" page
(cloud.google.com/vpc/docs/about-flow-logs-records):

* ``connection``: ``src_ip``, ``src_port``, ``dest_ip``, ``dest_port``, ``protocol`` (the IANA
  number), the 5-tuple of the packets this record counts;
* ``reporter``: the side that reported them (``SRC``, ``DEST``, or ``SRC_GATEWAY`` /
  ``DEST_GATEWAY`` for Interconnect and VPN gateways) -- the record's observation point;
* ``bytes_sent`` / ``packets_sent`` (int64, written as strings by Cloud Logging),
  ``start_time`` / ``end_time`` (RFC 3339);
* ``src_gke_details`` / ``dest_gke_details``: ``cluster`` {``cluster_name``,
  ``cluster_location``}, ``pod`` {``pod_name``, ``pod_namespace``, ``pod_workload``
  {``workload_name``, ``workload_type``: ``DEPLOYMENT``, ``STATEFUL_SET``, ...}} and
  ``service`` (the Services the pod belongs to, at most two, then ``MANY_SERVICES``);
* ``src_instance`` / ``dest_instance``: the VM (for a pod: its node), ``vm_name``;
* ``disposition`` (newer records): ``ALLOWED`` or ``DROPPED``.

Each direction of a connection is its own record, reported by each end whose subnet logs
flows, once per aggregation window: :mod:`capture.sources.connections` folds them, counting the
packets of a direction once (the reporter that counted most). GCP samples packets (about 1 in
30 before the configurable flow sampling), so every flow record is ``sampled: true`` and its
counts are estimates. GCP does not say which end opened a connection: the client is found by
``port-heuristic``.

Identity: ``*_gke_details`` become ``client_endpoint`` / ``server_endpoint`` (``namespace``,
``pod``, ``workload_kind`` -- ``DEPLOYMENT`` -> ``Deployment`` -- ``workload_name``, and the
node from ``*_instance.vm_name``). The Services are not kept: the flow file's ``service`` is the
Service a client addressed, and GCP lists the Services a pod belongs to.

Verdict: ``disposition`` ALLOWED is ``forwarded``, DROPPED ``dropped``; without it there is none
(GCP samples egress packets before the egress firewall rules, so an egress record alone does
not prove the packets went through).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from capture.errors import CaptureError
from capture.sources.base import Opened, ReadOptions, Sink, SourceFormat
from capture.sources.connections import PORTED, PROTOCOLS, SKIP_PROTOCOL, Endpoint, fold_for
from capture.sources.reading import (
    Addresses,
    count,
    first_json_value,
    head_text,
    iso_time,
    json_values,
    line_error,
)

NAME = "gcp-vpc"
# The log's name at the end of a LogEntry's logName, URL-encoded as Cloud Logging writes it.
FLOW_LOGS = ("compute.googleapis.com%2Fvpc_flows", "compute.googleapis.com/vpc_flows")
VERDICTS: Mapping[str, str] = {"ALLOWED": "forwarded", "DROPPED": "dropped"}


def _payload(obj: Any) -> Mapping[str, Any] | None:
    """The flow-log payload of a LogEntry or a bare payload; None when it is neither."""
    if not isinstance(obj, dict):
        return None
    payload = obj.get("jsonPayload")
    if isinstance(payload, dict):
        log_name = obj.get("logName")
        if "reporter" in payload or (isinstance(log_name, str)
                                     and log_name.endswith(FLOW_LOGS)):
            return payload
        return None
    if isinstance(obj.get("connection"), dict) and "reporter" in obj:
        return obj
    return None


class _Reader:
    def __init__(self, opened: Opened, sink: Sink) -> None:
        self.opened = opened
        self.sink = sink
        self.fold = fold_for(sink, NAME)
        self.addresses = Addresses()
        self.records = 0

    def bad(self, line: int, message: str) -> CaptureError:
        return line_error(self.opened, line, message)

    def entry(self, line: int, obj: Any) -> None:
        payload = _payload(obj)
        if payload is None:
            name = obj.get("logName") if isinstance(obj, dict) else None
            what = f"a log entry of {name}" if isinstance(name, str) else "a JSON value"
            raise self.bad(line, f"{what} that is not a VPC flow log record (filter the export "
                                 'on logName:"compute.googleapis.com%2Fvpc_flows")')
        self.records += 1
        self.sink.input_records += 1
        conn = payload.get("connection")
        if not isinstance(conn, dict):
            raise self.bad(line, 'no "connection" object')
        proto_number = self.number(conn, "protocol", line, 255, "connection.")
        proto = PROTOCOLS.get(proto_number)
        if proto is None:
            self.sink.skipped[SKIP_PROTOCOL] += 1
            return
        src = self.address(conn, "src_ip", line)
        dst = self.address(conn, "dest_ip", line)
        if proto in PORTED:
            sport: int | None = self.number(conn, "src_port", line, 65535, "connection.")
            dport: int | None = self.number(conn, "dest_port", line, 65535, "connection.")
        else:
            sport = dport = None
        start = self.time(payload, "start_time", line)
        end = self.time(payload, "end_time", line)
        if end < start:
            raise self.bad(line, "end_time is before start_time")
        reporter = payload.get("reporter")
        if not isinstance(reporter, str):
            raise self.bad(line, '"reporter" is not a string')
        disposition = payload.get("disposition")
        verdict = None
        if disposition is not None:
            verdict = VERDICTS.get(disposition) if isinstance(disposition, str) else None
            if verdict is None:
                raise self.bad(line, f"disposition {disposition!r} is neither ALLOWED nor "
                                     "DROPPED")
        packets = self.optional(payload, "packets_sent", line)
        nbytes = self.optional(payload, "bytes_sent", line)
        self.fold.add(
            proto, src, sport, dst, dport, start, end, packets, nbytes,
            point=reporter, verdict=verdict, sampled=True,
            src_endpoint=self.endpoint(payload, "src", line),
            dst_endpoint=self.endpoint(payload, "dest", line),
        )

    # -- fields ------------------------------------------------------------------------------

    def number(self, obj: Mapping[str, Any], key: str, line: int, most: int,
               where: str = "") -> int:
        value = count(obj.get(key))
        if value is None or value > most:
            raise self.bad(line, f"{where}{key} {obj.get(key)!r} is not a number from 0 to "
                                 f"{most}")
        return value

    def optional(self, obj: Mapping[str, Any], key: str, line: int) -> int:
        if obj.get(key) is None:
            return 0
        value = count(obj.get(key))
        if value is None:
            raise self.bad(line, f"{key} {obj.get(key)!r} is not a count")
        return value

    def address(self, conn: Mapping[str, Any], key: str, line: int) -> str:
        text = conn.get(key)
        canonical = self.addresses(text) if isinstance(text, str) else None
        if canonical is None:
            raise self.bad(line, f"connection.{key} {text!r} is not an IP address")
        return canonical

    def time(self, payload: Mapping[str, Any], key: str, line: int) -> float:
        text = payload.get(key)
        when = iso_time(text) if isinstance(text, str) else None
        if when is None:
            raise self.bad(line, f"{key} {text!r} is not an RFC 3339 time with a zone")
        return when

    def endpoint(self, payload: Mapping[str, Any], side: str, line: int) -> Endpoint | None:
        details = payload.get(f"{side}_gke_details")
        if details is None:
            return None
        where = f"{side}_gke_details"
        if not isinstance(details, dict):
            raise self.bad(line, f"{where} is not an object")
        pod = details.get("pod")
        if not isinstance(pod, dict):
            return None  # the cluster's nodes or a Service address: no pod to name
        out: Endpoint = {}
        for key, name in (("pod_namespace", "namespace"), ("pod_name", "pod")):
            value = pod.get(key)
            if value is not None:
                out[name] = self.text(value, f"{where}.pod.{key}", line)
        workload = pod.get("pod_workload", details.get("workload"))
        if isinstance(workload, dict):
            kind = workload.get("workload_type")
            workload_name = workload.get("workload_name")
            if kind is not None:
                out["workload_kind"] = _kind(self.text(kind, f"{where} workload_type", line))
            if workload_name is not None:
                out["workload_name"] = self.text(workload_name, f"{where} workload_name", line)
        elif workload is not None:
            raise self.bad(line, f"{where} workload is not an object")
        instance = payload.get(f"{side}_instance")
        if out and isinstance(instance, dict) and instance.get("vm_name") is not None:
            out["node"] = self.text(instance["vm_name"], f"{side}_instance.vm_name", line)
        return out or None

    def text(self, value: Any, where: str, line: int) -> str:
        if not isinstance(value, str) or not value:
            raise self.bad(line, f"{where} {value!r} is not a name")
        return value


def _kind(workload_type: str) -> str:
    """GCP's workload type as a Kubernetes kind: ``STATEFUL_SET`` -> ``StatefulSet``."""
    return "".join(part.capitalize() for part in workload_type.split("_"))


def _read(opened: Opened, sink: Sink, options: ReadOptions) -> None:
    reader = _Reader(opened, sink)
    for line, obj in json_values(opened, sink):
        reader.entry(line, obj)
        if options.progress is not None and reader.records % 65536 == 0:
            options.progress(reader.records, 0)
    if reader.records == 0:
        raise line_error(opened, None, "no VPC flow log records in the file")
    reader.fold.publish(sink)


def _sniff(head: bytes) -> bool:
    payload = _payload(first_json_value(head))
    return payload is not None and isinstance(payload.get("connection"), dict)


def _header(head: bytes) -> int | None:
    """Followed by parts: one LogEntry a line has no header; one JSON array cannot be read by
    parts."""
    return None if head_text(head).lstrip().startswith("[") else 0


GCP_VPC = SourceFormat(
    name=NAME,
    title="Google Cloud VPC flow log (Cloud Logging export)",
    sniff=_sniff,
    read=_read,
    header=_header,
)
