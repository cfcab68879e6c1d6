"""Azure VNet and NSG flow logs as a traffic source (capture/sources/azure_flow.py).

Real records: ``shared/corpora/flows/azure`` (the Microsoft documentation examples as Elastic's
tests carry them; read in place). Generated records (``flowlog_render.azure_vnet_records``)
follow the VNet flow log version 4 layout documented by Microsoft (vnet-flow-logs-overview) and
seen in those samples.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from capture_pcapbuild import records
from flowlog_render import Conn, azure_vnet_records, write

from capture.errors import CaptureError
from capture.sources import SOURCES

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpora" / "flows" / "azure"
needs_corpus = pytest.mark.skipif(
    not (CORPUS / "vnet-sample_logs-testdata.log").is_file(),
    reason=f"Azure flow-log corpus not found at {CORPUS} (the 'shared' folder beside the repo)",
)
API = Conn("TCP", "10.1.0.4", 50123, "10.1.1.5", 443, packets_c2s=9, bytes_c2s=1200,
           packets_s2c=7, bytes_s2c=8800)


def _key(f: dict[str, Any]) -> tuple[Any, ...]:
    return f["client"], f["client_port"], f["server"], f["server_port"], f["proto"]


def _blob(recs: list[dict[str, Any]]) -> str:
    return json.dumps({"records": recs}, indent=2) + "\n"


def _error(tmp_path: Path, text: str) -> str:
    path = write(tmp_path / "PT1H.json", text)
    with pytest.raises(CaptureError) as err:
        records([path])
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)
    return str(err.value)


@needs_corpus
def test_vnet_sample() -> None:
    header, flows, _dns = records([CORPUS / "vnet-sample_logs-testdata.log"])
    assert len(flows) == 14 and header["stats"]["skipped"] == {}
    by_key = {_key(f): f for f in flows}
    # A B tuple and an E tuple of one flow: one record, the E tuple's counters.
    storage = by_key[("10.0.0.6", 23956, "52.239.184.180", 443, "TCP")]
    assert (storage["packets_to_server"], storage["bytes_to_server"],
            storage["packets_to_client"], storage["bytes_to_client"]) == (3, 767, 2, 1580)
    assert (storage["first_seen"], storage["last_seen"]) == (1663146003.599, 1663146003.606)
    assert (storage["direction"], storage["verdict"]) == ("reported", "forwarded")
    # Denied inbound tuples (D): the scanner is the client.
    ssh = by_key[("101.33.218.153", 55188, "10.0.0.6", 22, "TCP")]
    assert ssh["verdict"] == "dropped"
    assert sum(f["verdict"] == "dropped" for f in flows) == 9


@needs_corpus
def test_nsg_version_2_sample() -> None:
    _header, flows, _dns = records([CORPUS / "nsg-sample_logs-testdata.log"])
    assert len(flows) == 11
    by_key = {_key(f): f for f in flows}
    scan = by_key[("94.102.49.190", 28746, "10.5.16.4", 443, "UDP")]
    assert (scan["verdict"], scan["packets_to_server"]) == ("dropped", 0)
    busy = by_key[("10.5.16.4", 44931, "13.67.143.115", 443, "TCP")]
    assert (busy["packets_to_server"], busy["bytes_to_server"], busy["packets_to_client"],
            busy["bytes_to_client"], busy["verdict"]) == (30, 16978, 24, 14008, "forwarded")


@needs_corpus
@pytest.mark.parametrize(("name", "flows"), [("test-nsg.log", 1), ("test-vnet.log", 2)])
def test_bare_records(name: str, flows: int) -> None:
    _h, got, _d = records([CORPUS / name])
    assert len(got) == flows and all(f["sources"] == ["azure-flow"] for f in got)


@needs_corpus
@pytest.mark.parametrize("name", ["nsg-sample_logs-testdata.log", "test-nsg.log",
                                  "test-vnet.log", "vnet-sample_logs-testdata.log"])
def test_only_this_source_claims_the_corpus(name: str) -> None:
    head = (CORPUS / name).read_bytes()[:65536]
    assert [s.name for s in SOURCES if s.sniff(head)] == ["azure-flow"]


def test_both_interfaces_in_separate_blobs_count_once(tmp_path: Path) -> None:
    client_nic, server_nic = azure_vnet_records([API])
    a = write(tmp_path / "nic-a.json", _blob([client_nic]))
    b = write(tmp_path / "nic-b.json", _blob([server_nic]))
    _h, flows, _d = records([a, b])
    (flow,) = flows
    assert _key(flow) == (API.client, API.cport, API.server, API.sport, "TCP")
    assert (flow["packets_to_server"], flow["bytes_to_server"], flow["packets_to_client"],
            flow["bytes_to_client"]) == (9, 1200, 7, 8800)
    assert (flow["first_seen"], flow["last_seen"]) == (API.start, API.start + 20)


def test_continuing_tuples_add_up(tmp_path: Path) -> None:
    (rec, _other) = azure_vnet_records([API])
    tuples = rec["flowRecords"]["flows"][0]["flowGroups"][0]["flowTuples"]
    base = f"{API.client},{API.server},{API.cport},{API.sport},6,O"
    tuples[1:1] = [f"{API.start * 1000 + 5000},{base},C,NX,2,100,1,50"]
    _h, flows, _d = records([write(tmp_path / "PT1H.json", _blob([rec]))])
    (flow,) = flows
    assert (flow["packets_to_server"], flow["packets_to_client"]) == (9 + 2, 7 + 1)


def test_records_one_per_line(tmp_path: Path) -> None:
    recs = azure_vnet_records([API, Conn("UDP", "10.1.0.4", 40000, "168.63.129.16", 53)])
    text = "".join(json.dumps(r) + "\n" for r in recs)
    _h, flows, _d = records([write(tmp_path / "events.json", text)])
    assert sorted(f["server_port"] for f in flows) == [53, 443]


def test_nsg_version_1_tuples(tmp_path: Path) -> None:
    rec = {"time": "2017-02-16T22:00:32.8950000Z", "category": "NetworkSecurityGroupFlowEvent",
           "operationName": "NetworkSecurityGroupFlowEvents",
           "properties": {"Version": 1, "flows": [{"rule": "DefaultRule_DenyAllInBound",
                                                   "flows": [{"mac": "000D3AF8801A",
                                                              "flowTuples": [
                                                                  "1487282421,42.119.146.95,"
                                                                  "10.1.0.4,51529,5358,T,I,D"]}]}]}}
    _h, flows, _d = records([write(tmp_path / "v1.json", _blob([rec]))])
    (flow,) = flows
    assert (_key(flow), flow["verdict"]) == (("42.119.146.95", 51529, "10.1.0.4", 5358, "TCP"),
                                             "dropped")


def test_denied_tuples_are_dropped(tmp_path: Path) -> None:
    recs = azure_vnet_records([API], deny=True)
    _h, flows, _d = records([write(tmp_path / "PT1H.json", _blob(recs))])
    assert [(f["verdict"], f["packets_to_server"]) for f in flows] == [("dropped", 0)]


@pytest.mark.parametrize(("tuple_text", "expected"), [
    ("1700000000000,10.1.0.4,10.1.1.5,50123,443,6,O,E,NX,9,1200,7", "12 fields in flow tuple"),
    ("1700000000000,10.1.0.4,10.1.1.500,50123,443,6,O,E,NX,9,1200,7,8800",
     "'10.1.1.500' is not an IP address"),
    ("1700000000000,10.1.0.4,10.1.1.5,50123,443,6,X,E,NX,9,1200,7,8800",
     "direction 'X' is neither I nor O"),
    ("1700000000000,10.1.0.4,10.1.1.5,50123,443,6,O,Q,NX,9,1200,7,8800",
     "flow state 'Q' is none of B, C, E, D"),
    ("1700000000000,10.1.0.4,10.1.1.5,50123,443,6,O,E,NX,9,-1,7,8800",
     "counter '-1' is not a number"),
])
def test_bad_tuples_name_the_line_and_the_path(tmp_path: Path, tuple_text: str,
                                               expected: str) -> None:
    recs = azure_vnet_records([API])
    recs[1]["flowRecords"]["flows"][0]["flowGroups"][0]["flowTuples"].append(tuple_text)
    text = _blob(recs)
    message = _error(tmp_path, text)
    # The line where the second record starts, and the tuple's path inside it.
    starts = [n for n, line in enumerate(text.splitlines(), 1) if line == "    {"]
    assert len(starts) == 2 and f"(line {starts[1]}): " in message
    assert "flowRecords.flows[0].flowGroups[0].flowTuples[2]: " + expected in message


def test_unknown_versions_and_shapes_are_refused(tmp_path: Path) -> None:
    recs = azure_vnet_records([API])
    recs[0]["flowLogVersion"] = 5
    assert "flowLogVersion 5 is not read" in _error(tmp_path, _blob(recs))
    recs = azure_vnet_records([API])
    del recs[0]["flowRecords"]["flows"][0]["flowGroups"]
    assert "flowRecords.flows[0].flowGroups is missing or not a list" in _error(
        tmp_path, _blob(recs))
    assert "neither a VNet flow log record" in _error(
        tmp_path, _blob([*azure_vnet_records([API]), {"time": "x", "flowTuples": []}]))
    empty = [{**r, "flowRecords": {"flows": []}} for r in azure_vnet_records([API])]
    assert "no flow tuples in the file" in _error(tmp_path, _blob(empty))
