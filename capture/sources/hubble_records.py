"""Hubble connections as flow records: each connection of a :class:`HubbleFold` as one flow
record (client and server from the strongest evidence, the verdict, packet estimates, both ends'
identities merged from all events), and the DNS answers as DNS records.
"""

from __future__ import annotations

from typing import Any

from capture.sources.base import Record
from capture.sources.hubble_fold import (
    _AUDIT,
    _DIRECTION,
    _DROP,
    _ERROR,
    _MASK,
    _PASS,
    _PASS_FROM_A,
    _PASS_FROM_B,
    _SYN_A,
    _SYN_B,
    _SYNACK_A,
    _SYNACK_B,
    NAME,
    R_NONE,
    Conn,
    ConnKey,
    HubbleFold,
    Ident,
)
from capture.sources.recordfold import epoch_seconds


def records(fold: HubbleFold) -> list[Record]:
    """The flow records of every connection of ``fold``, then its DNS records."""
    idents = fold.ident_list
    shared: dict[tuple[Any, ...], dict[str, Any]] = {}
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    out = [_flow_record(key, conn, idents, shared, merged)
           for key, conn in fold.conns.items()]
    out.extend({"record": "dns", "client": client, "server": server, "name": name,
                "answers": list(answers), "cnames": list(cnames), "ts": epoch_seconds(t)}
               for (client, server, name, answers, cnames), t in fold.dns.items())
    return out


def _merge_endpoint(idents: set[Ident], nodes: set[str] | None, names: set[str] | None,
                    service: str | None) -> dict[str, Any]:
    """One end's identity object from everything its events said, independent of their order:
    a field given differently by two events takes the least value (in practice they agree)."""
    endpoint: dict[str, Any] = {}
    labels: dict[str, str] = {}
    for ident in sorted(idents, reverse=True):  # the least value is set last, and so wins
        for field in ("namespace", "pod", "workload_kind", "workload_name", "entity"):
            value = getattr(ident, field)
            if value:
                endpoint[field] = value
        labels.update(ident.labels)
    if labels:
        endpoint["labels"] = labels
    if endpoint.get("pod"):
        endpoint.pop("entity", None)
    if nodes:
        endpoint["node"] = min(nodes)
    if names:
        endpoint["names"] = sorted(names)
    if service:
        endpoint["service"] = service
    return endpoint


def _shared(endpoint: dict[str, Any], shared: dict[tuple[Any, ...], dict[str, Any]]
            ) -> dict[str, Any]:
    """One object for equal endpoints: a pod is the end of many flows (memory of the output)."""
    key = tuple((k, tuple(v.items()) if isinstance(v, dict) else
                 tuple(v) if isinstance(v, list) else v) for k, v in endpoint.items())
    return shared.setdefault(key, endpoint)


def _flow_record(key: ConnKey, conn: Conn, idents: list[Ident],
                 shared: dict[tuple[Any, ...], dict[str, Any]],
                 merged_ends: dict[tuple[Any, ...], dict[str, Any]]) -> Record:
    proto, a_addr, a_port, b_addr, b_port = key
    if conn.rank_a != conn.rank_b:
        a_client = conn.rank_a > conn.rank_b  # the strongest evidence decides
        rank = max(conn.rank_a, conn.rank_b)
    else:  # nothing tells, or events equally sure disagree: the lower port is the server's
        a_client = a_port is None or b_port is None or a_port >= b_port
        if a_port is not None and a_port == b_port:
            a_client = True
        rank = R_NONE
    c, s = (0, 1) if a_client else (1, 0)
    bits = conn.bits
    to_server = to_client = resets = 0
    for packed in conn.counts.values():
        per_end = (packed & _MASK, packed >> 32 & _MASK)
        to_server = max(to_server, per_end[c])
        to_client = max(to_client, per_end[s])
        resets = max(resets, packed >> 64)
    server_passed = bits & (_PASS_FROM_B if a_client else _PASS_FROM_A)
    verdict: str | None
    if bits & _DROP and not server_passed:
        verdict = "dropped"  # never answered: a drop on the way (policy or other)
    elif bits & _AUDIT:
        verdict = "audit"
    elif bits & _PASS:
        verdict = "forwarded"
    elif bits & _ERROR:
        verdict = "error"
    else:
        verdict = None
    syn = bits & (_SYN_A if a_client else _SYN_B)
    synack = bits & (_SYNACK_B if a_client else _SYNACK_A)
    names, services = conn.names, conn.services
    numbers: list[set[int]] = [set(), set()]
    for quick, (number, _local) in conn.seen.items():
        numbers[quick[0]].add(number)
    nodes: list[set[str]] = [set(), set()]
    for end, node in conn.nodes or ():
        nodes[end].add(node)
    ends = []
    for i in (0, 1):
        # The Service is the one the client addressed: the server end's.
        service = min(services[i]) if services and services[i] and i == s else None
        end_names = names[i] if names else None
        # Many connections share an end: merge its identities once (by what they are made of).
        memo_key = (frozenset(numbers[i]), frozenset(nodes[i]),
                    frozenset(end_names) if end_names else None, service)
        merged = merged_ends.get(memo_key)
        if merged is None:
            merged = merged_ends[memo_key] = _shared(_merge_endpoint(
                {idents[n] for n in numbers[i]}, nodes[i], end_names, service), shared)
        ends.append(merged)
    record: Record = {
        "record": "flow",
        "proto": proto,
        "client": a_addr if a_client else b_addr,
        "server": b_addr if a_client else a_addr,
        "client_port": a_port if a_client else b_port,
        "server_port": b_port if a_client else a_port,
        "first_seen": epoch_seconds(conn.first),
        "last_seen": epoch_seconds(conn.last),
        "packets_to_server": to_server,
        "bytes_to_server": 0,
        "packets_to_client": to_client,
        "bytes_to_client": 0,
        "direction": _DIRECTION[rank],
        "handshake": bool(syn and synack),
        "resets": resets,
        "tls": False,
        "sni": None,
        "outer": None,
        "sources": [NAME],
        "sampled": True,
    }
    if verdict is not None:
        record["verdict"] = verdict
    if ends[c]:
        record["client_endpoint"] = ends[c]
    if ends[s]:
        record["server_endpoint"] = ends[s]
    if conn.policies:
        record["policies"] = sorted(conn.policies)
    return record
