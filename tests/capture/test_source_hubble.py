"""Hubble flows as a traffic source (capture.sources.hubble).

Real records: corpora/flows/hubble-otel (GKE + Istio and kind + Cilium 1.10 exports) and the two
DROPPED lines of corpora/flows/hubble/export.rst, read in place (skipped when absent). Every
other record is built by flowlog_build from the documented format.
"""

from __future__ import annotations

import gzip
import json
import logging
import random
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import CORPORA
from flowlog_build import (
    API,
    APISERVER,
    DB,
    DNS,
    HOST_A,
    REMOTE_NODE,
    WEB,
    WORLD,
    Pod,
    dns_lookup,
    envelope,
    epoch,
    flow,
    tcp,
    tcp_connection,
    udp,
    write_lines,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from capture.errors import CaptureError
from capture.flowfile import read_flow_file
from capture.ingest import ingest
from capture.sources import detect

HUBBLE_OTEL = CORPORA / "flows" / "hubble-otel"
EXPORT_RST = CORPORA / "flows" / "hubble" / "export.rst"
# What an L7 HTTP record carries and a flow file must never: URLs, headers, methods, bodies.
L7_PAYLOAD = re.compile(r"https?://|\"url\"|\"headers\"|\"method\"|User-Agent|/metrics|"
                        r"X-Request-Id|\"http\"|\"protocol\"|latency_ns|drop_reason", re.I)


def _ingest(tmp_path: Path, *files: Path, name: str = "flows.jsonl") -> tuple[
        dict[str, Any], list[dict[str, Any]], str]:
    out = tmp_path / name
    ingest([str(f) for f in files], str(out))
    flow_file = read_flow_file(str(out))
    return flow_file.header, flow_file.records, out.read_text()


def _flows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r["record"] == "flow"]


def _one_flow(tmp_path: Path, events: list[dict[str, Any]], *, jsonpb: bool = True
              ) -> dict[str, Any]:
    path = write_lines(tmp_path / "hubble.log",
                       [envelope(e) for e in events] if jsonpb else events)
    flows = _flows(_ingest(tmp_path, path)[1])
    assert len(flows) == 1, flows
    return flows[0]


# -- real records ------------------------------------------------------------------------------


def _corpus_files() -> list[Path]:
    if not HUBBLE_OTEL.is_dir():
        pytest.skip(f"corpus not present: {HUBBLE_OTEL}")
    files = sorted(HUBBLE_OTEL.glob("*.json"))
    assert files
    return files


def _reply_of(event: dict[str, Any]) -> bool | None:
    if "is_reply" in event:
        return bool(event["is_reply"])
    return True if event.get("reply") else None


def _ports(event: dict[str, Any]) -> tuple[str, int | None, int | None]:
    l4 = event["l4"]
    for proto, name in (("TCP", "TCP"), ("UDP", "UDP")):
        if proto in l4:
            return name, l4[proto].get("source_port", 0), l4[proto].get("destination_port", 0)
    return ("ICMP" if "ICMPv4" in l4 else "ICMPv6"), None, None


def test_corpus_every_event_lands_in_its_connection_with_client_and_server_right(
        tmp_path: Path) -> None:
    """For every real event that says whether it is a reply, the flow of its 5-tuple has the
    client and server the event implies: a reply's destination port (the client's ephemeral
    port) is never a server port."""
    for path in _corpus_files():
        _header, records, _text = _ingest(tmp_path, path, name=path.stem + ".jsonl")
        by_tuple = {}
        for r in _flows(records):
            key = (r["proto"], frozenset({(r["client"], r["client_port"]),
                                          (r["server"], r["server_port"])}))
            assert key not in by_tuple, f"{path.name}: one connection, two flows: {r}"
            by_tuple[key] = r
        checked = 0
        for line in path.read_text().splitlines():
            event = json.loads(line)["flow"]
            reply = _reply_of(event)
            proto, sport, dport = _ports(event)
            src, dst = event["IP"]["source"], event["IP"]["destination"]
            r = by_tuple[(proto, frozenset({(src, sport), (dst, dport)}))]
            if reply is None:
                continue
            client, cport = (dst, dport) if reply else (src, sport)
            assert (r["client"], r["client_port"]) == (client, cport), (path.name, event, r)
            assert r["direction"] == "reported"
            checked += 1
        assert checked > 0


def test_corpus_gke_reply_seen_first_folds_into_the_probe_connection(tmp_path: Path) -> None:
    """basic-sample-10-flows.json starts with a reply (``"reply": true``, Cilium before
    ``is_reply``): reviews:15020 -> host:42044. The connection is host:42044 -> reviews:15020."""
    path = HUBBLE_OTEL / "basic-sample-10-flows.json"
    if not path.exists():
        pytest.skip(f"corpus not present: {path}")
    flows = _flows(_ingest(tmp_path, path)[1])
    probe = [f for f in flows if f["server_port"] == 15020]
    assert len(probe) == 1
    f = probe[0]
    assert (f["client"], f["client_port"], f["server"]) == ("10.0.2.1", 42044, "10.0.2.16")
    assert f["client_endpoint"] == {"entity": "host",
                                    "node": "gke-ilya-otel-demo-1-ilya-otel-demo-1-6114bb84-zr1l"}
    server = f["server_endpoint"]
    assert server["pod"] == "reviews-v1-545db77b95-s6jb8" and server["namespace"] == "bookinfo"
    # Pod labels only: Cilium's own labels (namespace, service account, cluster, namespace
    # labels) are not the pod's.
    assert server["labels"] == {"app": "reviews", "security.istio.io/tlsMode": "istio",
                                "version": "v1"}
    assert f["verdict"] == "forwarded" and f["sampled"] is True and f["sources"] == ["hubble"]
    assert not any(f["server_port"] >= 32768 for f in flows)


def test_corpus_l7_records_keep_dns_names_and_nothing_of_http(tmp_path: Path) -> None:
    files = _corpus_files()
    answers = 0
    for path in files:
        _header, records, text = _ingest(tmp_path, path, name=path.stem + ".jsonl")
        assert not L7_PAYLOAD.search(text), f"{path.name}: L7 payload in the flow file"
        for r in records:
            if r["record"] == "dns":
                answers += 1
                assert r["name"] == r["name"].lower() and not r["name"].endswith(".")
                assert r["answers"] == sorted(r["answers"])
    assert answers > 0  # the DNS samples have answers with addresses
    raw = (HUBBLE_OTEL / "basic-sample-348-http-flows.json").read_text()
    assert "http://" in raw and '"headers"' in raw  # so the check above can fail


def test_corpus_icmp_echo_request_and_reply_are_one_flow(tmp_path: Path) -> None:
    path = HUBBLE_OTEL / "basic-sample-400-icmpv4-flows.json"
    if not path.exists():
        pytest.skip(f"corpus not present: {path}")
    flows = _flows(_ingest(tmp_path, path)[1])
    echo = [f for f in flows if f["client"] == "10.244.0.148" and f["server"] == "10.244.0.160"]
    assert len(echo) == 1
    assert echo[0]["proto"] == "ICMP" and echo[0]["server_port"] is None
    assert echo[0]["packets_to_server"] >= 1 and echo[0]["packets_to_client"] >= 1
    assert echo[0]["server_endpoint"] == {"entity": "health", "node": "kind-control-plane"}


def _export_rst_lines(tmp_path: Path) -> Path:
    if not EXPORT_RST.exists():
        pytest.skip(f"corpus not present: {EXPORT_RST}")
    lines = [line.strip() for line in EXPORT_RST.read_text().splitlines()
             if line.strip().startswith('{"flow"')]
    assert len(lines) == 2
    path = tmp_path / "events.log"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_corpus_export_dropped_lines_stay_dropped(tmp_path: Path) -> None:
    """The exporter's documented output (a field mask without labels, is_reply or ID): a
    router solicitation dropped for its source address, a SYN dropped by policy."""
    _header, records, text = _ingest(tmp_path, _export_rst_lines(tmp_path))
    flows = {f["proto"]: f for f in _flows(records)}
    assert set(flows) == {"TCP", "ICMPv6"}
    syn = flows["TCP"]
    assert (syn["client"], syn["server"], syn["server_port"]) == ("10.244.1.60", "10.244.1.5",
                                                                  80)
    assert syn["direction"] == "handshake"  # SYN without ACK: the sender opens
    assert syn["verdict"] == "dropped"
    assert syn["client_endpoint"] == {"namespace": "default", "pod": "xwing"}
    assert syn["server_endpoint"] == {"namespace": "default",
                                      "pod": "deathstar-7848d6c4d5-th9v2"}
    rs = flows["ICMPv6"]
    assert (rs["client"], rs["server"], rs["verdict"]) == ("fe80::64d8:8aff:fe72:fc14",
                                                           "ff02::2", "dropped")
    assert "POLICY_DENIED" not in text and "INVALID_SOURCE_IP" not in text


# -- folding -----------------------------------------------------------------------------------


def test_both_nodes_and_replies_fold_into_one_connection(tmp_path: Path) -> None:
    events = tcp_connection(WEB, API, 41234, 8080, t=1.0)
    assert len({e["node_name"] for e in events}) == 2 and any(e["is_reply"] for e in events)
    f = _one_flow(tmp_path, events)
    assert (f["client"], f["client_port"], f["server"], f["server_port"]) == (
        WEB.ip, 41234, API.ip, 8080)
    assert f["direction"] == "reported" and f["handshake"] is True
    assert f["first_seen"] == epoch(1.0) and f["last_seen"] == epoch(1.06)
    assert f["client_endpoint"] == {"namespace": "shop", "pod": WEB.name, "node": "node-a",
                                    "labels": {"app": "web", "tier": "front"},
                                    "workload_kind": "Deployment", "workload_name": "web"}
    assert f["server_endpoint"]["node"] == "node-b"
    # The busiest observation point saw 4 packets each way (SYN / SYN-ACK plus 3 more).
    assert (f["packets_to_server"], f["packets_to_client"]) == (4, 3)
    assert f["bytes_to_server"] == f["bytes_to_client"] == 0  # Hubble has no byte counts
    assert f["verdict"] == "forwarded" and f["sampled"] is True
    assert "policies" not in f


def test_reply_only_connection_never_takes_the_ephemeral_port_as_server_port(
        tmp_path: Path) -> None:
    """Only the reply packets were kept: the connection is still client:41234 -> server:5432,
    never a connection to port 41234."""
    events = [e for e in tcp_connection(WEB, DB, 41234, 5432) if e.get("is_reply")]
    assert events and all(e["l4"]["TCP"]["destination_port"] == 41234 for e in events)
    f = _one_flow(tmp_path, events)
    assert (f["client"], f["client_port"], f["server"], f["server_port"]) == (
        WEB.ip, 41234, DB.ip, 5432)
    assert f["direction"] == "reported"


def test_without_is_reply_the_tcp_flags_decide(tmp_path: Path) -> None:
    syn_ack = flow(0.0, "node-c", API, WEB, tcp(8080, 41000, SYN=True, ACK=True))
    syn = flow(0.1, "node-c", WEB, API, tcp(41000, 8080, SYN=True))
    for events in ([syn_ack], [syn], [syn_ack, syn]):
        f = _one_flow(tmp_path, events)
        assert (f["client"], f["server_port"], f["direction"]) == (WEB.ip, 8080, "handshake")
    assert _one_flow(tmp_path, [syn_ack, syn])["handshake"] is True


def test_without_is_reply_traffic_direction_of_the_local_endpoint_decides(
        tmp_path: Path) -> None:
    """A mid-connection packet from the server (no SYN, no is_reply) seen at the client's node:
    EGRESS means the local endpoint (the one with an ID) opened the connection."""
    # Server port 50000 above the client's 40000: the port heuristic would get it wrong.
    pkt = flow(0.0, "node-a", API, WEB, tcp(50000, 40000, ACK=True), direction="EGRESS")
    assert "ID" in pkt["destination"] and "ID" not in pkt["source"]
    f = _one_flow(tmp_path, [pkt])
    assert (f["client"], f["server_port"], f["direction"]) == (WEB.ip, 50000, "reported")


def test_nothing_tells_then_the_lower_port_is_the_server_marked_so(tmp_path: Path) -> None:
    pkt = flow(0.0, "node-c", API, WEB, tcp(8080, 41000, ACK=True))  # no node has an ID here
    f = _one_flow(tmp_path, [pkt])
    assert (f["client"], f["server_port"], f["direction"]) == (WEB.ip, 8080, "port-heuristic")


def test_json_and_jsonpb_give_the_same_records(tmp_path: Path) -> None:
    events = tcp_connection(WEB, API, 41234, 8080) + dns_lookup(WEB, DNS, 50001, "api.shop",
                                                                 ["10.0.2.20"])
    bare = write_lines(tmp_path / "observe.json", events)
    wrapped = write_lines(tmp_path / "export.log", [envelope(e) for e in events])
    assert detect(str(bare))[1].name == detect(str(wrapped))[1].name == "hubble"
    assert _ingest(tmp_path, bare, name="a.jsonl")[1] == _ingest(tmp_path, wrapped,
                                                                 name="b.jsonl")[1]


def test_rotated_and_gzipped_files_of_several_nodes_fold_across_files(tmp_path: Path) -> None:
    """Each node's exporter writes its own file, rotated and gzip-compressed: the connection
    is folded across them, in any order of the arguments."""
    events = [envelope(e) for e in tcp_connection(WEB, API, 41234, 8080)]
    node_a = [e for e in events if e["node_name"] == "node-a"]
    node_b = [e for e in events if e["node_name"] == "node-b"]
    files = [write_lines(tmp_path / "a-events-2024-03-01T12-00-00.000.log.gz", node_a[:3],
                         gz=True),
             write_lines(tmp_path / "a-events.log", node_a[3:]),
             write_lines(tmp_path / "b-events.log", node_b)]
    whole = write_lines(tmp_path / "all.log", events)
    _h, one, _t = _ingest(tmp_path, whole, name="one.jsonl")
    header, split, text = _ingest(tmp_path, *files, name="split.jsonl")
    _h, _back, text2 = _ingest(tmp_path, *reversed(files), name="back.jsonl")
    assert len(_flows(split)) == 1 and split == one
    assert text == text2
    assert header["sources"] == sorted(f.name for f in files)


def test_dropped_by_policy_stays_dropped_with_the_policy_named(tmp_path: Path) -> None:
    events = tcp_connection(WEB, DB, 41234, 5432, denied=True)
    f = _one_flow(tmp_path, events)
    assert f["verdict"] == "dropped"
    assert f["policies"] == ["-/payments/default-deny deny"]
    assert "drop_reason" not in json.dumps(f) and "POLICY_DENIED" not in json.dumps(f)


def test_a_drop_in_an_answered_connection_does_not_make_it_dropped(tmp_path: Path) -> None:
    events = tcp_connection(WEB, API, 41234, 8080)
    events.append(flow(0.02, "node-b", WEB, API, tcp(41234, 8080, ACK=True), verdict="DROPPED",
                       etype=1, reply=False, drop_reason_desc="CT_MAP_INSERTION_FAILED"))
    assert _one_flow(tmp_path, events)["verdict"] == "forwarded"


@pytest.mark.parametrize(("verdicts", "expected"), [
    (["AUDIT", "FORWARDED"], "audit"),
    (["ERROR"], "error"),
    (["REDIRECTED"], "forwarded"),
    (["TRACED"], "forwarded"),
    (["DROPPED", "FORWARDED"], "dropped"),  # only the client's packets went on
])
def test_verdicts(tmp_path: Path, verdicts: list[str], expected: str) -> None:
    events = [flow(k, "node-a", WEB, API, tcp(41234, 8080, SYN=True), verdict=v, reply=False)
              for k, v in enumerate(verdicts)]
    assert _one_flow(tmp_path, events)["verdict"] == expected


def test_policy_verdict_names_the_allowing_policies(tmp_path: Path) -> None:
    allowed = [{"name": "web-egress", "namespace": "shop", "kind": "CiliumNetworkPolicy"},
               {"name": "baseline", "kind": "CiliumClusterwideNetworkPolicy"}]
    events = tcp_connection(WEB, API, 41234, 8080, egress_allowed_by=allowed)
    assert _one_flow(tmp_path, events)["policies"] == ["-/-/baseline allow",
                                                       "-/shop/web-egress allow"]


@pytest.mark.parametrize(("peer", "entity"), [
    (WORLD, "world"),
    (REMOTE_NODE, "remote-node"),
    (APISERVER, "kube-apiserver"),  # reserved:kube-apiserver and reserved:host: the API server
])
def test_reserved_identities_become_entities(tmp_path: Path, peer: Any, entity: str) -> None:
    f = _one_flow(tmp_path, tcp_connection(WEB, peer, 41234, 443))
    assert f["server_endpoint"] == {"entity": entity}
    assert f["client_endpoint"]["pod"] == WEB.name


def test_the_local_host_is_an_entity_on_its_node(tmp_path: Path) -> None:
    f = _one_flow(tmp_path, tcp_connection(HOST_A, WEB, 38000, 8080))
    assert f["client_endpoint"] == {"entity": "host", "node": "node-a"}


def test_reserved_identity_without_labels_by_its_number(tmp_path: Path) -> None:
    """A field mask that keeps ``identity`` but not ``labels``."""
    pkt = flow(0.0, "node-a", WEB, WORLD, tcp(41234, 443, SYN=True), reply=False)
    pkt["destination"] = {"identity": 7}
    assert _one_flow(tmp_path, [pkt])["server_endpoint"] == {"entity": "kube-apiserver"}


def test_destination_names_and_service(tmp_path: Path) -> None:
    events = tcp_connection(WEB, WORLD, 41234, 443,
                            destination_names=["API.Stripe.com."],
                            destination_service={"namespace": "shop", "name": "payments-gw"})
    f = _one_flow(tmp_path, events)
    assert f["server_endpoint"] == {"entity": "world", "names": ["api.stripe.com"],
                                    "service": "shop/payments-gw"}
    assert "names" not in f["client_endpoint"] and "service" not in f["client_endpoint"]


def test_dns_answers_from_the_proxy_become_dns_records(tmp_path: Path) -> None:
    events = dns_lookup(WEB, DNS, 50001, "API.shop.svc.cluster.local", ["10.0.2.20", "10.0.2.9"])
    events += dns_lookup(WEB, DNS, 50001, "api.shop.svc.cluster.local", ["10.0.2.9", "10.0.2.20"],
                         t=5.0)  # the same answer again: one record, first time
    path = write_lines(tmp_path / "dns.log", [envelope(e) for e in events])
    header, records, text = _ingest(tmp_path, path)
    dns = [r for r in records if r["record"] == "dns"]
    assert dns == [{"record": "dns", "client": WEB.ip, "server": DNS.ip,
                    "name": "api.shop.svc.cluster.local", "answers": ["10.0.2.20", "10.0.2.9"],
                    "cnames": [], "ts": epoch(0.002)}]
    (f,) = _flows(records)
    assert (f["proto"], f["client"], f["server_port"]) == ("UDP", WEB.ip, 53)
    assert header["stats"]["dns"] == 1
    assert "latency" not in text and "qtypes" not in text and "ttl" not in text


def test_http_l7_records_evidence_the_connection_and_nothing_else(tmp_path: Path) -> None:
    http = {"method": "POST", "url": "http://api.shop:8080/cards?number=4111111111111111",
            "protocol": "HTTP/1.1", "code": 200,
            "headers": [{"key": "Authorization", "value": "Bearer secret"}]}
    events = [flow(0.0, "node-a", WEB, API, tcp(41234, 8080), etype=129, reply=False,
                   direction="EGRESS", l7={"type": "REQUEST", "http": http}),
              flow(0.1, "node-a", API, WEB, tcp(8080, 41234), etype=129, reply=True,
                   direction="EGRESS", l7={"type": "RESPONSE", "http": http})]
    path = write_lines(tmp_path / "l7.log", [envelope(e) for e in events])
    _header, records, text = _ingest(tmp_path, path)
    (f,) = _flows(records)
    assert (f["client"], f["server_port"], f["verdict"]) == (WEB.ip, 8080, "forwarded")
    assert not L7_PAYLOAD.search(text)
    assert "4111111111111111" not in text and "secret" not in text and "cards" not in text


def test_other_events_and_unusable_flows_are_counted_not_folded(tmp_path: Path) -> None:
    lines = [
        {"node_status": {"state_change": "NODE_CONNECTED", "node_names": ["node-a"]},
         "node_name": "node-a", "time": "2024-03-01T12:00:00Z"},
        envelope(flow(0.0, "node-a", WEB, API, tcp(41234, 8080, SYN=True), reply=False)),
        {"flow": {"time": "2024-03-01T12:00:01Z", "verdict": "DROPPED", "ethernet": {},
                  "event_type": {"type": 1}, "Summary": "ARP"}},  # no IP: not an IP packet
        envelope(flow(2.0, "node-a", WEB, API, {"IGMP": {"type": 34}}, reply=False)),
        {"lost_events": {"source": "PERF_EVENT_RING_BUFFER", "num_events_lost": "12"},
         "node_name": "node-a", "time": "2024-03-01T12:00:03Z"},
    ]
    path = write_lines(tmp_path / "mixed.log", lines)
    out = tmp_path / "flows.jsonl"
    stats = ingest([str(path)], str(out))
    assert stats.flows == 1
    assert stats.skipped == {"non-flow-event": 2, "non-ip": 1, "unsupported-protocol": 1}
    assert any("12 events lost" in w for w in stats.warnings)


# -- bad input ---------------------------------------------------------------------------------


def _write(tmp_path: Path, text: str | bytes, name: str = "bad.log") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def _good_line(t: float = 0.0) -> str:
    return json.dumps(envelope(flow(t, "node-a", WEB, API, tcp(41234, 8080, SYN=True),
                                    reply=False)), separators=(",", ":"))


@pytest.mark.parametrize(("body", "line", "says"), [
    (_good_line() + "\nthis is not JSON\n" + _good_line(1) + "\n", 2, "not JSON"),
    (_good_line() + "\n[1, 2, 3]\n", 2, "not an object"),
    (_good_line() + '\n{"hello": "world"}\n', 2, "no \"flow\" object"),
    (_good_line() + '\n{"flow": "x"}\n', 2, "\"flow\" is not an object"),
    (_good_line().replace('"10.0.2.20"', '"10.0.2.300"') + "\n", 1, "malformed"),
    (_good_line().replace('"2024-03-01T12:00:00.000000000Z"', '"yesterday"') + "\n", 1,
     "time stamp"),
    (_good_line().replace('"destination_port":8080', '"destination_port":"http"') + "\n", 1,
     "port"),
    (_good_line().replace('"is_reply":false', '"is_reply":"no"') + "\n", 1, "is_reply"),
])
def test_a_bad_record_is_one_line_naming_the_file_and_line(tmp_path: Path, body: str,
                                                            line: int, says: str) -> None:
    path = _write(tmp_path, body)
    out = tmp_path / "flows.jsonl"
    with pytest.raises(CaptureError) as err:
        ingest([str(path)], str(out))
    message = str(err.value)
    assert message.startswith(f"{path} (line {line}): ") and "\n" not in message
    assert says in message
    assert not out.exists()  # nothing written


def test_a_file_of_mixed_garbage_is_an_error_not_an_empty_success(tmp_path: Path) -> None:
    path = _write(tmp_path, _good_line() + "\n" + "\n".join(
        f"garbage {i} {{]" for i in range(50)) + "\n")
    with pytest.raises(CaptureError, match=r"\(line 2\)"):
        ingest([str(path)], str(tmp_path / "flows.jsonl"))


@pytest.mark.parametrize("body", [b"", b"\n\n  \n"])
def test_an_empty_file_is_an_error(tmp_path: Path, body: bytes) -> None:
    path = _write(tmp_path, body, "empty.log")
    with pytest.raises(CaptureError):
        ingest([str(path)], str(tmp_path / "flows.jsonl"))


def test_a_file_with_no_flow_is_an_error(tmp_path: Path) -> None:
    status = json.dumps({"node_status": {"state_change": "NODE_CONNECTED"},
                         "node_name": "node-a", "time": "2024-03-01T12:00:00Z"})
    path = _write(tmp_path, (status + "\n") * 3 + _good_line() + "\n")
    ingest([str(path)], str(tmp_path / "ok.jsonl"))  # detected, flows read
    only = _write(tmp_path, (status + "\n") * 3, "status.log")
    with pytest.raises(CaptureError):
        ingest([str(only)], str(tmp_path / "flows.jsonl"))


def test_a_last_line_cut_short_is_a_warning(tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    path = _write(tmp_path, _good_line() + "\n" + _good_line(1)[:70])
    with caplog.at_level(logging.WARNING, logger="capture"):
        stats = ingest([str(path)], str(tmp_path / "flows.jsonl"))
    assert stats.flows == 1
    assert any("(line 2)" in w and "cut short" in w for w in stats.warnings)


def test_a_truncated_gzip_is_a_warning_and_the_lines_before_it_are_used(
        tmp_path: Path) -> None:
    """(Damage within the first 64 KiB is found when the file's format is detected: an error,
    as for a capture.)"""
    events = [envelope(e) for port in range(40000, 40300)
              for e in tcp_connection(WEB, API, port, 8080, t=port - 40000)]
    text = "".join(json.dumps(e) + "\n" for e in events).encode()
    assert len(text) > 4 * 65536
    whole = gzip.compress(text)
    path = _write(tmp_path, whole[: len(whole) // 2], "cut.log.gz")
    stats = ingest([str(path)], str(tmp_path / "flows.jsonl"))
    assert 0 < stats.flows < 300
    assert any("gzip" in w and "using the" in w for w in stats.warnings)


def test_gzip_is_seen_through_when_detecting(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "events.log.gz", [envelope(e) for e in
                                                    tcp_connection(WEB, API, 1, 2)], gz=True)
    opened, source = detect(str(path))
    assert source.name == "hubble" and opened.gzipped


# -- the fold does not depend on the order of the events ---------------------------------------

_PODS = [WEB, API, DB, Pod("shop", "cart-1", "10.0.1.11", "node-a", 20004, 104, {"app": "cart"})]


@st.composite
def _connections(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Events of 1-4 connections between the test pods (same or different nodes, allowed or
    denied, TCP or a DNS-style UDP exchange), replies included."""
    events: list[dict[str, Any]] = []
    used: set[int] = set()
    for _ in range(draw(st.integers(1, 4))):
        client, server = draw(st.permutations(_PODS))[:2]
        sport = draw(st.integers(32768, 60999).filter(lambda p: p not in used))
        used.add(sport)
        t = draw(st.integers(0, 100)) / 10
        if draw(st.booleans()):
            events += tcp_connection(client, server, sport, draw(st.sampled_from([80, 5432])),
                                     t=t, denied=draw(st.integers(0, 4)) == 0)
        else:
            events += [flow(t, client.node, client, server, udp(sport, 53), reply=False,
                            direction="EGRESS"),
                       flow(t + 0.5, client.node, server, client, udp(53, sport), reply=True,
                            direction="EGRESS")]
    return events


def _fold_text(tmp_path: Path, events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    path = write_lines(tmp_path / f"{name}.log", [envelope(e) for e in events])
    out = tmp_path / f"{name}.jsonl"
    ingest([str(path)], str(out))
    return read_flow_file(str(out)).records


@settings(max_examples=40, deadline=None)
@given(events=_connections(), seed=st.integers(0, 2**32 - 1))
def test_any_order_and_duplication_fold_to_the_same_records(
        tmp_path_factory: pytest.TempPathFactory, events: list[dict[str, Any]],
        seed: int) -> None:
    tmp_path = tmp_path_factory.mktemp("order")
    rng = random.Random(seed)
    reference = _fold_text(tmp_path, events, "reference")
    shuffled = events[:]
    rng.shuffle(shuffled)
    assert _fold_text(tmp_path, shuffled, "shuffled") == reference
    # Events written twice (two overlapping exports): the same connections, clients, servers,
    # verdicts and identities; only the packet estimates may grow.
    doubled = shuffled + rng.sample(events, rng.randint(1, len(events)))
    rng.shuffle(doubled)
    counts = ("packets_to_server", "packets_to_client", "resets")

    def without_counts(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in r.items() if k not in counts} for r in records]

    again = _fold_text(tmp_path, doubled, "doubled")
    assert without_counts(again) == without_counts(reference)
    for a, b in zip(again, reference, strict=True):
        assert all(a.get(k, 0) >= b.get(k, 0) for k in counts)
    # And no flow ever has a client's ephemeral port as its server port.
    assert all(r["server_port"] < 32768 for r in reference if r["record"] == "flow")


@pytest.mark.parametrize(("text", "ns"), [
    ("2021-11-10T10:40:56.465597700Z", 1636540856465597700),
    ("2021-11-10T10:40:57Z", 1636540857000000000),
    ("2021-11-10T10:40:58.1Z", 1636540858100000000),
    ("2021-11-10T12:40:56.4655977+02:00", 1636540856465597700),
    ("2021-11-10t10:40:56.5z", 1636540856500000000),
])
def test_time_stamps(text: str, ns: int) -> None:
    from capture.sources.recordfold import rfc3339_ns

    assert rfc3339_ns(text) == ns
    assert rfc3339_ns(text) == ns  # again: the minute is cached now


@pytest.mark.parametrize("text", [
    "2021-11-10T10:40:56.4655977001Z",  # more than nanoseconds
    "2021-11-10T10:40:5x.1Z", "2021-11-10T10:40:56.Z", "2021-11-10T10:40:56.1_0Z",
    "2021-11-10T10:40:56.\u0661Z",  # an Arabic-Indic digit, which int() would take
    "2021-02-30T10:40:56Z", "2021-11-10 10:40:56", 1636540856, None,
])
def test_bad_time_stamps(text: Any) -> None:
    from capture.sources.recordfold import rfc3339_ns

    rfc3339_ns("2021-11-10T10:40:00Z")  # the fast path knows this minute
    with pytest.raises(ValueError, match="time stamp"):
        rfc3339_ns(text)
