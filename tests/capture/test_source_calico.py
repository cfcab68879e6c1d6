"""Calico flow logs as traffic sources: Enterprise / Cloud ``flows.log`` (capture.sources.calico)
and Calico OSS Goldmane / Whisker flows (capture.sources.goldmane).

No openly licensed real Calico flow log exists (corpora/flows/README.md): the two documented
examples are read in place from corpora/flows/calico (skipped when absent) -- the
datatypes.mdx example after removing its documented defect (a trailing comma), and the one
Goldmane flow of the exporter README -- and every other record is built by flowlog_build
from the documented field lists (datatypes.mdx, goldmane/proto/api.proto, Whisker's
flows.go).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import CORPORA
from flowlog_build import calico_record, goldmane_flow, write_lines

from capture.errors import CaptureError
from capture.flowfile import read_flow_file
from capture.ingest import ingest
from capture.sources import detect
from capture.sources.calico import policy_from_string

CALICO_DOCS = CORPORA / "flows" / "calico"
T = 1709294400


def _flows(tmp_path: Path, *files: Path, name: str = "flows.jsonl") -> list[dict[str, Any]]:
    out = tmp_path / name
    ingest([str(f) for f in files], str(out))
    return read_flow_file(str(out)).flows


def _log(tmp_path: Path, records: list[dict[str, Any]], name: str = "flows.log") -> Path:
    return write_lines(tmp_path / name, records)


# -- the documented examples -------------------------------------------------------------------


def test_enterprise_documented_example(tmp_path: Path) -> None:
    doc = CALICO_DOCS / "calico-enterprise-flow-datatypes.mdx"
    if not doc.exists():
        pytest.skip(f"corpus not present: {doc}")
    block = re.search(r"### Flow log example.*?```\n(.*?)```", doc.read_text(), re.S)
    assert block is not None
    with pytest.raises(ValueError, match="Expecting"):
        json.loads(block.group(1))  # as documented: a trailing comma in pending_policies
    record = json.loads(re.sub(r",\s*\]", "]", block.group(1)))
    path = _log(tmp_path, [record])
    assert detect(str(path))[1].name == "calico"
    (f,) = _flows(tmp_path, path)
    assert (f["client"], f["client_port"], f["server"], f["server_port"], f["proto"]) == (
        "192.168.47.9", 42106, "192.168.138.79", 80, "TCP")
    assert f["direction"] == "reported" and f["verdict"] == "forwarded"
    # Reported by the destination: "in" is what the client sent.
    assert (f["packets_to_server"], f["bytes_to_server"]) == (6, 388)
    assert (f["packets_to_client"], f["bytes_to_client"]) == (5, 1113)
    assert (f["first_seen"], f["last_seen"]) == (1597166083.0, 1597166383.0)
    assert f["client_endpoint"] == {"namespace": "policy-demo", "pod": "access-6b687c8dcb-zn5s2",
                                    "labels": {"app": "access",
                                               "pod-template-hash": "6b687c8dcb"}}
    assert f["server_endpoint"]["node"] == "bz-n8kf-kadm-node-1"  # the reporter's node
    # Enforced policies only (the staged one of all_policies is not): tier once, no prefix.
    assert f["policies"] == ["default/policy-demo/access-nginx allow", "tier1/ns1/policy1 pass"]


def test_goldmane_documented_example(tmp_path: Path) -> None:
    doc = CALICO_DOCS / "calico-flow-logs-otlphttp-exporter-README.md"
    if not doc.exists():
        pytest.skip(f"corpus not present: {doc}")
    block = re.search(r"```json\n(.*?)```", doc.read_text(), re.S)
    assert block is not None
    path = _log(tmp_path, [json.loads(block.group(1))])
    assert detect(str(path))[1].name == "goldmane"
    (f,) = _flows(tmp_path, path)
    assert f["client"] is None and f["server"] is None  # Goldmane keeps no addresses
    assert f["client_endpoint"]["namespace"] == "longhorn-system"
    assert f["client_endpoint"]["pod"] == "longhorn-manager-*"
    assert f["client_endpoint"]["labels"]["app"] == "longhorn-manager"
    assert f["server_endpoint"]["pod"] == "instance-manager-318f1eac2bc7c775b7a6d2e68e9e2800"
    assert (f["proto"], f["server_port"], f["client_port"]) == ("TCP", 8503, None)
    assert (f["packets_to_server"], f["packets_to_client"]) == (14, 11)  # reporter Src
    assert f["policies"] == ["default/longhorn-system/allow-same-namespace allow"]
    assert f["sources"] == ["goldmane"] and f["verdict"] == "forwarded"


# -- Calico Enterprise -------------------------------------------------------------------------


def test_both_reporters_fold_into_one_flow(tmp_path: Path) -> None:
    """The source's node and the destination's node each report the flow; counts are not
    added twice, each end gets its reporter's node."""
    src = calico_record("src", packets=(5, 4), byte_counts=(400, 900))
    dst = calico_record("dst", packets=(5, 4), byte_counts=(400, 900), start=T + 3)
    src_only = _flows(tmp_path, _log(tmp_path, [src], "a.log"), name="a.jsonl")
    (f,) = _flows(tmp_path, _log(tmp_path, [src], "node-a.log"),
                  _log(tmp_path, [dst], "node-b.log"))
    assert (f["packets_to_server"], f["packets_to_client"]) == (5, 4)
    assert (f["bytes_to_server"], f["bytes_to_client"]) == (400, 900)
    assert f["client_endpoint"]["node"] == "node-a" and f["server_endpoint"]["node"] == "node-b"
    assert f["first_seen"] == T and f["last_seen"] == T + 303
    assert (f["client"], f["server"], f["server_port"]) == ("10.0.1.10", "10.0.2.30", 5432)
    assert len(src_only) == 1 and "node" not in src_only[0]["server_endpoint"]


def test_windows_of_one_pair_fold_and_add_up(tmp_path: Path) -> None:
    records = [calico_record("src", start=T + 300 * k, packets=(2, 1)) for k in range(3)]
    (f,) = _flows(tmp_path, _log(tmp_path, records))
    assert (f["first_seen"], f["last_seen"]) == (T, T + 900)
    assert (f["packets_to_server"], f["packets_to_client"]) == (6, 3)


def test_denied_at_the_destination_is_dropped_not_forwarded(tmp_path: Path) -> None:
    """The source's egress policy allowed it, the destination's ingress policy denied it: the
    connection never got through. Counts are kept as reported."""
    deny = "0|default|np:payments/db-ingress|deny|-1"
    records = [calico_record("src", policies={"enforced_policies": [
                   "0|default|np:shop/web-egress|allow|0"]}),
               calico_record("dst", action="deny", start=T + 5,
                             policies={"enforced_policies": [deny]})]
    (f,) = _flows(tmp_path, _log(tmp_path, records))
    assert f["verdict"] == "dropped"
    assert f["policies"] == ["default/payments/db-ingress deny", "default/shop/web-egress allow"]


def test_allowed_then_denied_later_are_two_flows(tmp_path: Path) -> None:
    records = [calico_record("src", start=T), calico_record("dst", start=T),
               calico_record("src", start=T + 3600),
               calico_record("dst", action="deny", start=T + 3600)]
    flows = _flows(tmp_path, _log(tmp_path, records))
    assert sorted((f["verdict"], f["first_seen"]) for f in flows) == [
        ("dropped", T + 3600), ("forwarded", T)]


def test_denied_at_the_source_is_dropped(tmp_path: Path) -> None:
    (f,) = _flows(tmp_path, _log(tmp_path, [calico_record("src", action="deny")]))
    assert f["verdict"] == "dropped"


def test_aggregated_ends_are_address_less_with_their_identity(tmp_path: Path) -> None:
    record = calico_record("src", source={"ip": None, "name": "-",
                                          "name_aggr": "frontend-7d4f9c-*"},
                           dest={"ip": "-", "name": "-", "name_aggr": "db-*"})
    (f,) = _flows(tmp_path, _log(tmp_path, [record]))
    assert f["client"] is None and f["server"] is None and f["client_port"] is None
    assert f["client_endpoint"] == {"namespace": "shop", "pod": "frontend-7d4f9c-*",
                                    "labels": {"app": "web", "tier": "front"},
                                    "node": "node-a"}
    assert f["server_endpoint"] == {"namespace": "payments", "pod": "db-*",
                                    "labels": {"app": "db"}}


@pytest.mark.parametrize(("dest", "expected"), [
    ({"ip": None, "name": "-", "name_aggr": "pub", "namespace": "-", "type": "net",
      "labels": "-"}, {"entity": "world"}),
    ({"ip": "172.16.5.4", "name": "-", "name_aggr": "pvt", "namespace": "-", "type": "net",
      "labels": None}, {"entity": "world"}),
    ({"ip": None, "name": "-", "name_aggr": "corp-dbs", "namespace": "-", "type": "ns",
      "labels": {"labels": ["zone=corp"]}},
     {"workload_kind": "GlobalNetworkSet", "workload_name": "corp-dbs",
      "labels": {"zone": "corp"}}),
    ({"ip": "192.168.0.5", "name": "node-b-eth0", "name_aggr": "node-b-eth0", "namespace": "-",
      "type": "hep", "labels": None},
     {"entity": "host", "workload_kind": "HostEndpoint", "workload_name": "node-b-eth0"}),
])
def test_other_endpoint_types(tmp_path: Path, dest: dict[str, Any],
                              expected: dict[str, Any]) -> None:
    # A network or a network set never reports: the record is the source's.
    (f,) = _flows(tmp_path, _log(tmp_path, [calico_record("src", dest=dest, host="node-b")]))
    assert f["server_endpoint"] == expected
    (g,) = _flows(tmp_path, _log(tmp_path, [calico_record("dst", dest=dest)], "dst.log"),
                  name="dst.jsonl")
    assert g["server_endpoint"] == {**expected, "node": "node-b"} if dest["type"] == "hep" \
        else expected


def test_service_names_and_calico_meta_labels(tmp_path: Path) -> None:
    record = calico_record("src", dest_service_namespace="payments", dest_service_name="db",
                           dest_service_port="postgres", dest_domains=["DB.example.com."],
                           dest={"labels": {"labels": ["app=db",
                                                       "projectcalico.org/namespace=payments",
                                                       "projectcalico.org/orchestrator=k8s"]}})
    (f,) = _flows(tmp_path, _log(tmp_path, [record]))
    assert f["server_endpoint"]["service"] == "payments/db"
    assert f["server_endpoint"]["names"] == ["db.example.com"]
    assert f["server_endpoint"]["labels"] == {"app": "db"}


def test_protocols(tmp_path: Path) -> None:
    records = [calico_record("src", proto="udp", dest_port=53),
               calico_record("src", proto="17", dest_port=5353),
               calico_record("src", proto="icmp", dest_port=None),
               calico_record("src", proto="gre", dest_port=None)]
    out = tmp_path / "flows.jsonl"
    stats = ingest([str(_log(tmp_path, records))], str(out))
    flows = read_flow_file(str(out)).flows
    assert sorted((f["proto"], f["server_port"]) for f in flows) == [
        ("ICMP", None), ("UDP", 53), ("UDP", 5353)]
    assert stats.skipped == {"unsupported-protocol": 1}


# -- policies ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("hit", "entry"), [
    # Before 3.32 (datatypes.mdx): the name carries its kind and tier.
    ("0|default|policy-demo/default.access-nginx|allow|2",
     "default/policy-demo/access-nginx allow"),
    ("3|tier1|ns1/tier1.policy1|pass|3", "tier1/ns1/policy1 pass"),
    ("1|default|shop/knp.default.allow-web|allow|0", "default/shop/allow-web allow"),
    ("2|security|security.block-bad|deny|1", "security/-/block-bad deny"),
    ("4|__PROFILE__|__PROFILE__.kns.shop|allow|0", "__PROFILE__/-/kns.shop allow"),
    ("5|default|shop/default.deny-all|deny|-1", "default/shop/deny-all deny"),
    ("1|tier2|ns2/staged:tier1.policy1|deny|1", None),
    ("0|tier1|namespace1/tier1.staged:policy1|allow|0", None),
    # 3.32: the kind before the name, no prefixes (projectcalico/calico c088014).
    ("0|default|np:shop/allow-web|allow|0", "default/shop/allow-web allow"),
    ("0|default|knp:shop/allow-web|allow|0", "default/shop/allow-web allow"),
    ("1|security|gnp:block-bad|deny|-2", "security/-/block-bad deny"),
    ("2|kube-admin|kcnp:baseline|pass|0", "kube-admin/-/baseline pass"),
    ("3|__PROFILE__|pro:kns.shop|allow|0", "__PROFILE__/-/kns.shop allow"),
    ("0|tier1|snp:namespace1/policy1|allow|0", None),
    ("0|tier1|sgnp:policy1|allow|0", None),
    ("0|default|sknp:shop/x|deny|0", None),
])
def test_policy_hit_strings(hit: str, entry: str | None) -> None:
    assert policy_from_string(hit) == entry


@pytest.mark.parametrize("bad", ["allow", "0|default|x|maybe|0", "0|default|x|allow|first",
                                 "0|a|b|allow"])
def test_bad_policy_hit_is_an_error_naming_the_line(tmp_path: Path, bad: str) -> None:
    records = [calico_record("src"), calico_record("dst", policies={"enforced_policies": [bad]})]
    path = _log(tmp_path, records)
    with pytest.raises(CaptureError, match=rf"^{re.escape(str(path))} \(line 2\): .*policy"):
        ingest([str(path)], str(tmp_path / "flows.jsonl"))


def test_all_policies_only_without_enforced_policies_and_without_staged(tmp_path: Path) -> None:
    record = calico_record("src", policies={"all_policies": [
        "0|tier1|ns1/staged:tier1.p|deny|0", "1|default|shop/default.web|allow|0"]})
    (f,) = _flows(tmp_path, _log(tmp_path, [record]))
    assert f["policies"] == ["default/shop/web allow"]


# -- Goldmane / Whisker ------------------------------------------------------------------------


def test_goldmane_both_reporters_fold_and_enums_may_be_numbers(tmp_path: Path) -> None:
    src = goldmane_flow("Src", enforced=[{"kind": "CalicoNetworkPolicy", "namespace": "shop",
                                          "name": "web-egress", "tier": "default",
                                          "action": "Allow", "policyIndex": "0",
                                          "ruleIndex": "0"}])
    dst = goldmane_flow("Dst", enforced=[{"kind": 10, "tier": "security", "action": 2,
                                          "trigger": {"kind": 2, "name": "db-lockdown",
                                                      "tier": "security"}},
                                         {"kind": "StagedNetworkPolicy", "namespace": "x",
                                          "name": "y", "tier": "default", "action": "Deny"}],
                        action="Deny")
    dst["Key"]["reporter"] = 2
    dst["Key"]["sourceType"] = 1
    dst["Key"]["destType"] = 1
    (f,) = _flows(tmp_path, _log(tmp_path, [src, {"id": "7", "flow": dst}]))
    assert f["verdict"] == "dropped"
    assert f["policies"] == ["default/shop/web-egress allow", "security/-/db-lockdown deny"]
    assert (f["packets_to_server"], f["packets_to_client"]) == (14, 11)


def test_whisker_flow_response(tmp_path: Path) -> None:
    """Whisker's FlowResponse: flat, RFC 3339 times, labels joined with " | ", networks named."""
    record = {"start_time": "2024-03-01T12:00:00Z", "end_time": "2024-03-01T12:00:15Z",
              "action": "Allow", "source_name": "web-7d4f9c-*", "source_namespace": "shop",
              "source_labels": "app=web | tier=front", "dest_name": "PUBLIC NETWORK",
              "dest_namespace": "Global", "dest_labels": "", "protocol": "tcp",
              "dest_port": 443, "reporter": "Src",
              "policies": {"enforced": [{"kind": "GlobalNetworkPolicy", "name": "egress-web",
                                         "namespace": "", "tier": "default", "action": "Allow",
                                         "policy_index": 0, "rule_index": 1, "trigger": None}],
                           "pending": []},
              "packets_in": 3, "packets_out": 4, "bytes_in": 300, "bytes_out": 400}
    events = tmp_path / "whisker.log"
    events.write_text("data: " + json.dumps(record) + "\n\n")  # Whisker's event stream
    listing = tmp_path / "whisker-list.json"
    listing.write_text(json.dumps({"total": {"totalPages": 1}, "items": [record]}))
    for path in (events, listing):
        assert detect(str(path))[1].name == "goldmane"
        (f,) = _flows(tmp_path, path, name=path.stem + ".jsonl")
        assert f["client_endpoint"] == {"namespace": "shop", "pod": "web-7d4f9c-*",
                                        "labels": {"app": "web", "tier": "front"}}
        assert f["server_endpoint"] == {"entity": "world"}
        assert (f["first_seen"], f["last_seen"]) == (T, T + 15)
        assert (f["packets_to_server"], f["bytes_to_client"]) == (4, 300)
        assert f["policies"] == ["default/-/egress-web allow"]


def test_goldmane_pass_as_final_action_is_an_error(tmp_path: Path) -> None:
    path = _log(tmp_path, [goldmane_flow(), goldmane_flow(action="Pass")])
    with pytest.raises(CaptureError, match=r"\(line 2\): .*Pass"):
        ingest([str(path)], str(tmp_path / "flows.jsonl"))


# -- bad input, both formats -------------------------------------------------------------------


@pytest.mark.parametrize(("record", "says"), [
    ({"reporter": "both"}, "reporter"),
    ({"action": "maybe"}, "action"),
    ({"start_time": "noon"}, "start_time"),
    ({"end_time": T - 1}, "before start_time"),
    ({"dest_port": None}, "dest_port"),
    ({"source_ip": "10.0.1.999"}, "10.0.1.999"),
    ({"packets_in": -1.5}, "packets_in"),
    ({"bytes_out": -3}, "bytes_out"),
    ({"start_time": None}, "start_time"),
    ({"source_labels": 12}, "labels"),
])
def test_bad_enterprise_record_names_file_and_line(tmp_path: Path, record: dict[str, Any],
                                                   says: str) -> None:
    path = _log(tmp_path, [calico_record("src"), {**calico_record("dst"), **record}])
    out = tmp_path / "flows.jsonl"
    with pytest.raises(CaptureError) as err:
        ingest([str(path)], str(out))
    message = str(err.value)
    assert message.startswith(f"{path} (line 2): ") and says in message and "\n" not in message
    assert not out.exists()


def test_missing_field_is_named(tmp_path: Path) -> None:
    record = calico_record("src")
    del record["start_time"]
    path = _log(tmp_path, [calico_record("src"), record])
    with pytest.raises(CaptureError, match=r"\(line 2\): .*'start_time'"):
        ingest([str(path)], str(tmp_path / "flows.jsonl"))


def test_garbage_after_good_records_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "flows.log"
    path.write_text(json.dumps(calico_record("src")) + "\n" + "not json at all\n" * 10)
    with pytest.raises(CaptureError, match=r"\(line 2\): .*not JSON"):
        ingest([str(path)], str(tmp_path / "flows.jsonl"))


@pytest.mark.parametrize("body", ["", "\n\n"])
def test_empty_files_are_errors(tmp_path: Path, body: str) -> None:
    path = tmp_path / "flows.log"
    path.write_text(body)
    with pytest.raises(CaptureError):
        ingest([str(path)], str(tmp_path / "flows.jsonl"))


def test_formats_are_told_apart(tmp_path: Path) -> None:
    paths = {"calico": _log(tmp_path, [calico_record("src")], "a.log"),
             "goldmane": _log(tmp_path, [goldmane_flow()], "b.log")}
    for name, path in paths.items():
        assert detect(str(path))[1].name == name


def test_same_input_any_order_same_bytes(tmp_path: Path) -> None:
    records = [calico_record("src", start=T + 300 * k) for k in range(4)]
    records += [calico_record("dst", start=T + 300 * k + 2, action="deny" if k == 3 else "allow")
                for k in range(4)]
    a = _log(tmp_path, records, "a.log")
    b = _log(tmp_path, records[::-1], "b.log")
    ingest([str(a)], str(tmp_path / "a.jsonl"))
    ingest([str(b)], str(tmp_path / "b.jsonl"))
    lines_a = (tmp_path / "a.jsonl").read_text().splitlines()[1:]
    lines_b = (tmp_path / "b.jsonl").read_text().splitlines()[1:]
    assert lines_a == lines_b and len(lines_a) == 2
