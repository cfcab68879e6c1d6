"""Google Cloud VPC flow logs as a traffic source (capture/sources/gcp_vpc.py).

No openly licensed real sample with GKE pod details exists (shared/corpora/flows/README.md):
every record here is built by ``flowlog_render.gcp_entries`` from Google's documented record
format ("About VPC Flow Logs records", cloud.google.com/vpc/docs/about-flow-logs-records):
``jsonPayload.connection`` {src_ip, src_port, dest_ip, dest_port, protocol}, ``reporter``
SRC/DEST, ``src_gke_details`` / ``dest_gke_details`` {cluster, pod {pod_name, pod_namespace,
pod_workload {workload_name, workload_type}}, service [...]}, ``*_instance.vm_name``,
``start_time`` / ``end_time`` (RFC 3339), ``bytes_sent`` / ``packets_sent`` (int64 written as
strings by Cloud Logging), ``disposition``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from capture_pcapbuild import records
from flowlog_render import Conn, gcp_entries, gke, write

from capture.errors import CaptureError
from capture.sources import SOURCES, detect

CHECKOUT = Conn("TCP", "10.4.1.7", 51000, "10.4.2.9", 5432, packets_c2s=12, bytes_c2s=1400,
                packets_s2c=10, bytes_s2c=9000)
CLIENT_GKE = gke("shop", "checkout-7d9f8c6b5-x2x4q", "checkout")
SERVER_GKE = gke("data", "postgres-0", "postgres", kind="STATEFUL_SET", service="postgres")


def _lines(entries: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(e) + "\n" for e in entries)


def _flows(tmp_path: Path, text: str, name: str = "vpc_flows.json") -> tuple[dict[str, Any],
                                                                            list[dict[str, Any]]]:
    header, flows, _dns = records([write(tmp_path / name, text)])
    return header, flows


def _error(tmp_path: Path, text: str) -> str:
    path = write(tmp_path / "bad.json", text)
    with pytest.raises(CaptureError) as err:
        records([path])
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)
    return str(err.value)


def test_four_reports_of_one_connection_are_one_sampled_flow(tmp_path: Path) -> None:
    entries = gcp_entries(CHECKOUT, client_gke=CLIENT_GKE, server_gke=SERVER_GKE)
    assert len(entries) == 4 and {e["jsonPayload"]["reporter"] for e in entries} == {"SRC",
                                                                                      "DEST"}
    header, flows = _flows(tmp_path, _lines(entries))
    (flow,) = flows
    assert (flow["client"], flow["client_port"], flow["server"], flow["server_port"]) == (
        "10.4.1.7", 51000, "10.4.2.9", 5432)
    # Each direction was reported twice (by both ends): counted once.
    assert (flow["packets_to_server"], flow["bytes_to_server"]) == (12, 1400)
    assert (flow["packets_to_client"], flow["bytes_to_client"]) == (10, 9000)
    assert flow["sampled"] is True and flow["sources"] == ["gcp-vpc"]
    assert flow["direction"] == "port-heuristic"  # GCP does not say who opened it
    assert "verdict" not in flow  # no disposition: egress is sampled before the firewall
    assert flow["client_endpoint"] == {"namespace": "shop", "pod": "checkout-7d9f8c6b5-x2x4q",
                                       "workload_kind": "Deployment",
                                       "workload_name": "checkout",
                                       "node": "gke-prod-pool-1-node-a"}
    assert flow["server_endpoint"] == {"namespace": "data", "pod": "postgres-0",
                                       "workload_kind": "StatefulSet",
                                       "workload_name": "postgres",
                                       "node": "gke-prod-pool-1-node-b"}
    assert flow["first_seen"] == CHECKOUT.start and flow["last_seen"] == CHECKOUT.start + 20
    assert header["version"] == 2 and header["stats"]["flows"] == 1


def test_a_json_array_as_gcloud_prints_it(tmp_path: Path) -> None:
    entries = gcp_entries(CHECKOUT, client_gke=CLIENT_GKE, server_gke=SERVER_GKE)
    _h, from_lines = _flows(tmp_path, _lines(entries), "a.json")
    _h, from_array = _flows(tmp_path, json.dumps(entries, indent=2) + "\n", "b.json")
    assert from_lines == from_array


def test_only_the_source_side_reports(tmp_path: Path) -> None:
    """A VM talking to the internet: only its own subnet logs, once per direction."""
    conn = Conn("TCP", "10.4.1.7", 40000, "142.250.74.46", 443)
    entries = [e for e in gcp_entries(conn, client_gke=CLIENT_GKE)
               if (e["jsonPayload"]["reporter"] == "SRC") == (
                   e["jsonPayload"]["connection"]["src_ip"] == conn.client)]
    assert len(entries) == 2
    _h, flows = _flows(tmp_path, _lines(entries))
    (flow,) = flows
    assert (flow["client"], flow["server_port"]) == (conn.client, 443)
    assert (flow["packets_to_server"], flow["packets_to_client"]) == (5, 4)
    assert "server_endpoint" not in flow


@pytest.mark.parametrize(("disposition", "verdict"), [("ALLOWED", "forwarded"),
                                                      ("DROPPED", "dropped")])
def test_disposition_is_the_verdict(tmp_path: Path, disposition: str, verdict: str) -> None:
    _h, flows = _flows(tmp_path, _lines(gcp_entries(CHECKOUT, disposition=disposition)))
    assert [f["verdict"] for f in flows] == [verdict]


def test_numbers_as_numbers_and_bare_payloads(tmp_path: Path) -> None:
    """int64 fields as JSON numbers (BigQuery / Pub/Sub re-encodings), and the payload without
    its LogEntry."""
    payloads = []
    for entry in gcp_entries(CHECKOUT):
        payload = entry["jsonPayload"]
        payload["bytes_sent"] = int(payload["bytes_sent"])
        payload["connection"]["src_port"] = str(payload["connection"]["src_port"])
        payloads.append(payload)
    _h, flows = _flows(tmp_path, _lines(payloads))
    assert [(f["packets_to_server"], f["bytes_to_server"]) for f in flows] == [(12, 1400)]


def test_other_protocols_are_skipped(tmp_path: Path) -> None:
    entries = gcp_entries(CHECKOUT)
    esp = json.loads(json.dumps(entries[0]))
    esp["jsonPayload"]["connection"] = {"src_ip": "10.4.1.7", "dest_ip": "35.1.1.1",
                                        "protocol": 50}
    header, flows = _flows(tmp_path, _lines([*entries, esp]))
    assert header["stats"]["skipped"] == {"unsupported-protocol": 1} and len(flows) == 1


def test_detected_by_content_and_only_by_this_source(tmp_path: Path) -> None:
    path = write(tmp_path / "no-suffix", _lines(gcp_entries(CHECKOUT)))
    assert detect(str(path))[1].name == "gcp-vpc"
    head = path.read_bytes()[:65536]
    assert [s.name for s in SOURCES if s.sniff(head)] == ["gcp-vpc"]
    array = write(tmp_path / "array", json.dumps(gcp_entries(CHECKOUT), indent=2))
    assert detect(str(array))[1].name == "gcp-vpc"


def _mangle(path: str, value: Any) -> str:
    entries = gcp_entries(CHECKOUT)
    target = entries[2]
    *parents, leaf = path.split(".")
    obj = target
    for key in parents:
        obj = obj[key]
    if value is KeyError:
        del obj[leaf]
    else:
        obj[leaf] = value
    return _lines(entries)


@pytest.mark.parametrize(("path", "value", "expected"), [
    ("jsonPayload.connection.src_ip", "10.4.2.999", "connection.src_ip '10.4.2.999' is not an "
                                                    "IP address"),
    ("jsonPayload.connection.dest_port", 70000, "connection.dest_port 70000"),
    ("jsonPayload.start_time", "yesterday", "start_time 'yesterday' is not an RFC 3339 time"),
    ("jsonPayload.start_time", "2023-11-14T22:13:20", "is not an RFC 3339 time with a zone"),
    ("jsonPayload.packets_sent", "-3", "packets_sent '-3' is not a count"),
    ("jsonPayload.disposition", "MAYBE", "disposition 'MAYBE'"),
    ("jsonPayload.connection", KeyError, 'no "connection" object'),
    ("jsonPayload.src_gke_details", {"pod": {"pod_name": 7}}, "src_gke_details.pod.pod_name 7"),
])
def test_bad_records_name_the_file_and_line(tmp_path: Path, path: str, value: Any,
                                            expected: str) -> None:
    message = _error(tmp_path, _mangle(path, value))
    assert "(line 3): " in message and expected in message


def test_a_log_entry_of_another_log_is_refused(tmp_path: Path) -> None:
    firewall = {"jsonPayload": {"connection": {"src_ip": "10.4.1.7", "src_port": 1,
                                               "dest_ip": "10.4.2.9", "dest_port": 22,
                                               "protocol": 6},
                                "disposition": "DENIED"},
                "logName": "projects/p/logs/compute.googleapis.com%2Ffirewall"}
    message = _error(tmp_path, _lines([*gcp_entries(CHECKOUT), firewall]))
    assert "(line 5): a log entry of projects/p/logs/compute.googleapis.com%2Ffirewall" in message


def test_array_errors_name_the_line_of_the_element(tmp_path: Path) -> None:
    entries = gcp_entries(CHECKOUT)
    entries[1]["jsonPayload"]["end_time"] = "1999-01-01T00:00:00Z"  # before its start
    text = json.dumps(entries, indent=2)
    message = _error(tmp_path, text)
    line = int(message.split("(line ", 1)[1].split(")")[0])
    assert text.splitlines()[line - 1].strip() == "{"  # the element's first line
    assert "end_time is before start_time" in message


def test_empty_exports_are_errors(tmp_path: Path) -> None:
    # "[]" is claimed by no format: nothing in it says it is a flow log.
    with pytest.raises(CaptureError, match="formats read"):
        records([write(tmp_path / "empty.json", "[]\n")])
    truncated = json.dumps(gcp_entries(CHECKOUT))[:-1]
    message = _error(tmp_path, truncated)
    assert "ends inside a JSON array" in message
