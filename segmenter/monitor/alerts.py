"""Alerts: their kinds and severities, their JSON Lines form, and deduplication per edge.

One alert is one JSON object on one line (``docs/monitor.md`` lists every field). Field names
follow the Elastic Common Schema where ECS has one (``@timestamp``, ``event.*``, ``client.*`` and
``server.*`` -- ECS's initiator and responder of a connection, which is exactly segmenter's
client and server --, ``source.*``, ``destination.*``, ``network.transport``, ``rule.name``), and
the fields the issue asks every consumer to rely on are at the top: ``kind``, ``severity``,
``client``, ``server``, ``port``, ``protocol``. Keys are sorted and nothing depends on the wall
clock, so the same input gives byte-identical alerts. No payload is ever in an alert: flow
records hold L3/L4 metadata, DNS names and TLS presence only.

Deduplication: the first sighting of an (edge, kind) -- edge = client workload, server
workload, protocol, port -- is an alert at once; further sightings within ``window`` seconds
of it (flow time) are counted, and when the window closes a summary alert (``summary: true``)
gives their number, first and last time and sources. A sighting after the window opens a new
one.
"""

from __future__ import annotations

import copy
import enum
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from segmenter.cluster.watch import rfc3339

ECS_VERSION: Final = "8.11.0"
DATASET: Final = "segmenter.monitor"
MAX_SOURCES: Final = 16  # sources listed per alert (the count is exact, the list a sample)
# ECS network.transport: the IANA keyword, lower case (ECS "network" field set).
ECS_TRANSPORT: Final = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp", "ICMP": "icmp",
                        "ICMPv6": "ipv6-icmp"}
IANA_NUMBER: Final = {"TCP": "6", "UDP": "17", "SCTP": "132", "ICMP": "1", "ICMPv6": "58"}


class AlertKind(enum.StrEnum):
    """What an alert says about a connection (docs/monitor.md, "Alert kinds")."""

    UNPLANNED_RESTRICTED = "unplanned-restricted"  # into or out of a restricted zone, unplanned
    POLICY_DENIED = "policy-denied"  # the policies in force deny it
    DRIFT = "drift"  # a new edge outside the restricted zones, not in the plan
    PLAINTEXT_RESTRICTED = "plaintext-restricted"  # across the restricted boundary, no TLS
    NEW_EXTERNAL = "new-external"  # a restricted or connected workload, a new outside address


class Severity(enum.StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def number(self) -> int:
        """ECS ``event.severity``: the top of Elastic Security's risk-score band for the
        severity (low 0-21, medium 22-47, high 48-73, critical 74-100)."""
        return {"low": 21, "medium": 47, "high": 73, "critical": 99}[self.value]


Edge = tuple[str, str, str, int | None]  # client node, server node, protocol, port (post-DNAT)


@dataclass(frozen=True)
class Side:
    """One end of a connection as an alert names it."""

    workload: str  # graph node id: ns/Kind/name, node:<name>, apiserver, external:<ip>
    ip: str
    port: int | None  # as on the wire (the server's before Service DNAT)
    zone: str  # the most restrictive zone over every data class
    domain: str | None = None  # a DNS name of an external address, when the traffic gave one

    def as_json(self) -> dict[str, Any]:
        return {"address": self.ip, "domain": self.domain, "ip": self.ip, "port": self.port,
                "workload": self.workload, "zone": self.zone}


@dataclass(frozen=True)
class Sighting:
    """One flow record that gives an alert: when, and which file it was read from."""

    first_seen: float
    last_seen: float
    source: str


def alert_document(*, kind: AlertKind, severity: Severity, client: Side, server: Side,
                   protocol: str, port: int | None, zones: dict[str, dict[str, str]],
                   verdict: dict[str, Any], planned: bool, tls: bool | None, reason: str,
                   sighting: Sighting, observed: str | None) -> dict[str, Any]:
    """The JSON object of an alert's first sighting (see docs/monitor.md)."""
    allowed = bool(verdict["allowed"])
    network_type = "ipv6" if ":" in server.ip else "ipv4"
    rule_name = verdict.get("policy")
    if rule_name and verdict.get("rule"):
        rule_name = f"{rule_name} {verdict['rule']}"
    return {
        "@timestamp": rfc3339(sighting.first_seen),
        "client": client.as_json(),
        "count": 1,
        "destination": {"ip": server.ip, "port": server.port},
        "ecs": {"version": ECS_VERSION},
        "event": {
            "action": kind.value,
            "category": ["network"],
            "dataset": DATASET,
            "end": rfc3339(sighting.last_seen),
            "kind": "alert",
            "reason": reason,
            "severity": severity.number,
            "start": rfc3339(sighting.first_seen),
            "type": ["connection", "allowed" if allowed else "denied"],
        },
        "first_seen": sighting.first_seen,
        "kind": kind.value,
        "last_seen": sighting.last_seen,
        "network": {"iana_number": IANA_NUMBER.get(protocol), "transport":
                    ECS_TRANSPORT.get(protocol, protocol.lower()), "type": network_type},
        "observed_verdict": observed,
        "planned": planned,
        "port": port,
        "protocol": protocol,
        "rule": {"name": rule_name, "ruleset": verdict.get("enforcement")},
        "server": server.as_json(),
        "severity": severity.value,
        "source": {"ip": client.ip, "port": client.port},
        "sources": [sighting.source],
        "summary": False,
        "tls": tls,
        "verdict": verdict,
        "zones": zones,
    }


def dumps(document: dict[str, Any]) -> str:
    """One alert line: keys sorted, compact, UTF-8."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class _Group:
    """The sightings of one (edge, kind) within one window."""

    __slots__ = ("count", "doc", "first", "last", "sources", "start")

    def __init__(self, doc: dict[str, Any], start: float, first: float, last: float,  # noqa: PLR0917
                 sources: list[str], count: int = 1) -> None:
        self.doc = doc  # the window's first alert
        self.start = start
        self.first = first
        self.last = last
        self.sources = sources
        self.count = count


class Windows:
    """Deduplication of alerts per (edge, kind) within ``window`` seconds of flow time."""

    def __init__(self, window: float) -> None:
        if window <= 0:
            raise ValueError("the deduplication window must be positive")
        self.window = window
        self.groups: dict[tuple[str, Edge], _Group] = {}

    def sight(self, kind: AlertKind, edge: Edge, sighting: Sighting,
              make: Any) -> list[dict[str, Any]]:
        """Count one sighting; the alerts it gives: the first of a window (``make()`` builds
        it), after the summary of the window it closes."""
        key = (kind.value, edge)
        group = self.groups.get(key)
        ts = sighting.first_seen
        if group is not None:
            if ts < group.start + self.window:
                group.count += 1
                group.first = min(group.first, ts)
                group.last = max(group.last, sighting.last_seen)
                if sighting.source not in group.sources and len(group.sources) < MAX_SOURCES:
                    group.sources.append(sighting.source)
                return []
            out = self._close(key)
        else:
            out = []
        doc = make()
        self.groups[key] = _Group(doc, ts, ts, sighting.last_seen, [sighting.source])
        out.append(doc)
        return out

    def close_before(self, watermark: float) -> list[dict[str, Any]]:
        """Summaries of the windows that ended before ``watermark`` (the latest flow time
        read), in a stable order."""
        ended = sorted((g.start, key) for key, g in self.groups.items()
                       if g.start + self.window <= watermark)
        out: list[dict[str, Any]] = []
        for _start, key in ended:
            out.extend(self._close(key))
        return out

    def close_all(self) -> list[dict[str, Any]]:
        """Summaries of every open window (the end of a ``--once`` run without a state)."""
        return self.close_before(float("inf"))

    def _close(self, key: tuple[str, Edge]) -> list[dict[str, Any]]:
        group = self.groups.pop(key)
        if group.count <= 1:
            return []
        return [summary(group.doc, group.first, group.last, group.count, group.sources)]

    # -- checkpoint --------------------------------------------------------------------------

    def to_state(self) -> list[dict[str, Any]]:
        return [{"kind": key[0], "edge": list(key[1]), "doc": g.doc, "start": g.start,
                 "first": g.first, "last": g.last, "count": g.count, "sources": g.sources}
                for key, g in sorted(self.groups.items(), key=lambda kv: (kv[0][0],
                                                                          str(kv[0][1])))]

    def restore(self, groups: Iterable[dict[str, Any]]) -> None:
        for g in groups:
            client, server, protocol, port = g["edge"]
            key = (str(g["kind"]), (str(client), str(server), str(protocol), port))
            self.groups[key] = _Group(dict(g["doc"]), float(g["start"]), float(g["first"]),
                                      float(g["last"]), list(g["sources"]), int(g["count"]))


def summary(doc: dict[str, Any], first: float, last: float, count: int,
            sources: list[str]) -> dict[str, Any]:
    """The closing alert of a window: the first one's fields, with the window's count, times
    and sources."""
    out = copy.deepcopy(doc)
    out["@timestamp"] = rfc3339(last)
    out["count"] = count
    out["first_seen"] = first
    out["last_seen"] = last
    out["event"]["start"] = rfc3339(first)
    out["event"]["end"] = rfc3339(last)
    out["sources"] = sorted(sources)
    out["summary"] = True
    return out
