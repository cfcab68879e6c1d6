"""Judging one flow record: against the policies in force and against the plan.

The policies are judged by :class:`segmenter.analysis.verify.FlowChecker` -- the same per-flow
evaluation as ``segmenter verify`` --; the plan by the zones of ``plan.json`` and the edges of
the graph it was made from (every observed edge is planned: the compiler allows exactly those,
docs/design.md "What is allowed").

A stream repeats the same few connections between the same addresses, so the judgement of a
(protocol, client address, server address, server port) is kept and reused while the
inventory says the same about both addresses (:attr:`Evaluation.stable`); the cache is cleared
when the policies, the inventory or the DNS names of an address change, and when it holds
``cache_limit`` entries. What stays between changes is bounded by the number of edges.
"""

from __future__ import annotations

from typing import Any, Final

import networkx as nx

from segmenter.analysis.verify import Evaluation, FlowChecker
from segmenter.evaluate import Decision
from segmenter.model import DnsAnswer, NodeId, NodeKind, Transport
from segmenter.monitor.alerts import AlertKind, Edge, Severity
from segmenter.planner import Plan, Zone

CACHE_LIMIT: Final = 1 << 18
EXTERNAL_LIMIT: Final = 1 << 20  # outside addresses remembered as seen
DNS_LIMIT: Final = 1 << 18  # addresses whose DNS names the stream taught
_RANK: Final = {zone: i for i, zone in enumerate(Zone)}


class PlanView:
    """The plan as the monitor checks flows against it: zones per data class, and the planned
    edges with whether TLS was seen on them."""

    def __init__(self, plan: Plan, graph: nx.DiGraph) -> None:
        self.plan = plan
        self.classes = tuple(scope.data_class for scope in plan.classes)
        self.zone_index: tuple[dict[str, Zone], ...] = tuple(
            {m.node: zone for zone, members in scope.zones for m in members}
            for scope in plan.classes)
        self.excluded = frozenset(plan.excluded_namespaces)
        self.edges: dict[Edge, bool] = {}
        for client, server, data in graph.edges(data=True):
            for port in data.get("ports", ()):
                self.edges[(client, server, str(port.get("protocol")), port.get("port"))] = \
                    bool(port.get("tls"))
        self.named: dict[str, list[str]] = {}  # external address -> named sets holding it
        self.external_addresses: set[str] = set()
        self.dns: list[DnsAnswer] = []
        self.dns_nodes = frozenset(n for n, a in graph.nodes(data=True) if a.get("cluster_dns"))
        for node, attrs in graph.nodes(data=True):
            if attrs.get("kind") != "external":
                continue
            addresses = [str(a) for a in attrs.get("addresses") or ()]
            self.external_addresses.update(addresses)
            names = [str(n) for n in attrs.get("dns_names") or ()]
            for name in names:
                self.dns.append(DnsAnswer("", "", name, tuple(addresses)))
            if NodeId.parse(node).dns_name is not None:
                for address in addresses:
                    self.named.setdefault(address, []).append(node)

    def zones(self, node: str) -> tuple[Zone, ...]:
        """The node's zone in each data class; a node the plan does not list (a workload
        deployed since, a new outside address) by what it is."""
        out = []
        for index in self.zone_index:
            zone = index.get(node)
            out.append(zone if zone is not None else self.zone_by_kind(node))
        return tuple(out)

    def zone_by_kind(self, node: str) -> Zone:
        """The planner's zone rules for a node it did not see (planner._scope)."""
        parsed = NodeId.parse(node)
        if parsed.kind is NodeKind.EXTERNAL:
            return Zone.EXTERNAL
        if parsed.kind in (NodeKind.NODE, NodeKind.APISERVER) or node in self.dns_nodes:
            return Zone.INFRASTRUCTURE
        if parsed.workload is not None and parsed.workload.namespace in self.excluded:
            return Zone.INFRASTRUCTURE
        return Zone.GENERAL

    def overall(self, zones: tuple[Zone, ...], node: str) -> Zone:
        """The most restrictive zone over every class (the node's kind without classes)."""
        return min(zones, key=_RANK.__getitem__) if zones else self.zone_by_kind(node)


class Judgement:
    """What is known of one connection, whatever the record: both ends, the verdict, the plan's
    view of it, and what it has been used for (hygiene epoch)."""

    __slots__ = ("allowed", "boundary", "client", "client_zone", "decisions", "domain", "edge",
                 "epoch", "external", "planned", "planned_tls", "quiet", "restricted",
                 "server", "server_zone", "stable", "verdict", "watch_external", "zones")

    allowed: bool
    boundary: tuple[str, ...]  # the data classes whose restricted boundary it crosses
    client: str
    client_zone: Zone
    decisions: tuple[tuple[str, str | None], ...]
    domain: str | None
    edge: Edge
    epoch: int
    external: bool
    planned: bool
    planned_tls: bool | None
    quiet: bool  # planned, allowed, no TLS or novelty to check: no alert whatever the record
    restricted: bool
    server: str
    server_zone: Zone
    stable: tuple[float, float] | None
    verdict: dict[str, Any]
    watch_external: bool
    zones: dict[str, dict[str, str]]

    def __init__(self) -> None:
        self.epoch = -1


def _side(decision: Decision) -> dict[str, Any]:
    return {"allowed": decision.allowed, "policy": decision.policy, "reason": decision.reason,
            "rule": decision.rule}


def verdict_json(evaluation: Evaluation, enforcement: str) -> dict[str, Any]:
    """The verdict as alerts carry it: each side, and the deciding side's policy and rule."""
    v = evaluation.verdict
    if not v.allowed:
        side = "egress" if not v.egress.allowed else "ingress"
    elif v.ingress.policy is not None:
        side = "ingress"
    elif v.egress.policy is not None:
        side = "egress"
    else:
        side = None
    decider = v.ingress if side == "ingress" else v.egress
    return {"allowed": v.allowed, "egress": _side(v.egress), "enforcement": enforcement,
            "ingress": _side(v.ingress), "policy": decider.policy if side else None,
            "reason": decider.reason if side else v.ingress.reason,
            "rule": decider.rule if side else None, "side": side}


class Judge:
    """Judges flow records against the policies in force (a :class:`FlowChecker`) and the
    plan (a :class:`PlanView`)."""

    def __init__(self, view: PlanView, checker: FlowChecker, enforcement: str, *,
                 cache_limit: int = CACHE_LIMIT) -> None:
        self.view = view
        self.cache_limit = cache_limit
        self.cache: dict[tuple[Any, ...], Judgement] = {}
        self.names: dict[str, tuple[str, ...]] = {}  # DNS names the stream gave an address
        self.known_external: set[str] = set(view.external_addresses)
        self.epoch = 0
        self.used: set[tuple[str, str | None]] = set()  # (policy, rule) that judged a flow
        self.checker = checker
        self.enforcement = enforcement

    def set_checker(self, checker: FlowChecker, enforcement: str) -> None:
        """New policies or a new inventory: judgements start over."""
        for address, names in self.names.items():
            checker.finder.add_dns(DnsAnswer("", "", names[0], (address,)))
            for name in names[1:]:
                checker.finder.add_dns(DnsAnswer("", "", name, (address,)))
        self.checker = checker
        self.enforcement = enforcement
        self.cache.clear()

    def learn_dns(self, answer: DnsAnswer) -> None:
        """A DNS answer of the stream: names outside addresses (alerts, named sets, Cilium's
        ``toFQDNs``)."""
        changed = False
        for address in answer.answers:
            known = self.names.get(address, ())
            if answer.name not in known and (known or len(self.names) < DNS_LIMIT):
                self.names[address] = tuple(sorted((*known, answer.name)))
                changed = True
        if changed:
            self.checker.finder.add_dns(answer)
            self.cache.clear()

    def judge(self, transport: Transport, client_ip: str, server_ip: str,
              server_port: int | None, ts: float) -> Judgement:
        key = (transport.value, client_ip, server_ip, server_port)
        j = self.cache.get(key)
        if j is not None and j.stable is not None and j.stable[0] <= ts <= j.stable[1]:
            return j
        j = self._judge(transport, client_ip, server_ip, server_port, ts)
        if j.stable is not None:
            if len(self.cache) >= self.cache_limit:
                self.cache.clear()
            self.cache[key] = j
        return j

    def _judge(self, transport: Transport, client_ip: str, server_ip: str,
               server_port: int | None, ts: float) -> Judgement:
        view = self.view
        e = self.checker.evaluate(client_ip, server_ip, server_port, transport, ts)
        j = Judgement()
        j.client = e.client
        server = e.server
        protocol = transport.value
        names = self.names.get(server_ip, ()) or self.checker.finder.dns_names.get(server_ip, ())
        j.external = NodeId.parse(server).kind is NodeKind.EXTERNAL
        j.domain = names[0] if j.external and names else None
        planned_tls = view.edges.get((e.client, server, protocol, e.port))
        if planned_tls is None and j.external:
            # A named set of the plan that holds the address, or whose name the stream's DNS
            # gave the address: the edge to that set.
            candidates = [*view.named.get(server_ip, ()),
                          *(NodeId.of_named_set(n) for n in names)]
            for named in candidates:
                hit = view.edges.get((e.client, named, protocol, e.port))
                if hit is not None:
                    server, planned_tls = named, hit
                    break
        j.server = server
        j.edge = (e.client, server, protocol, e.port)
        j.planned = planned_tls is not None
        j.planned_tls = planned_tls
        client_zones = view.zones(e.client)
        server_zones = view.zones(server)
        j.zones = {c: {"client": a.value, "server": b.value}
                   for c, a, b in zip(view.classes, client_zones, server_zones, strict=True)}
        j.client_zone = view.overall(client_zones, e.client)
        j.server_zone = view.overall(server_zones, server)
        restricted = [(a is Zone.RESTRICTED, b is Zone.RESTRICTED)
                      for a, b in zip(client_zones, server_zones, strict=True)]
        j.restricted = any(a or b for a, b in restricted)
        j.boundary = tuple(c for c, (a, b) in zip(view.classes, restricted, strict=True)
                           if a != b)
        j.watch_external = j.external and any(
            z in (Zone.RESTRICTED, Zone.CONNECTED) for z in client_zones)
        j.verdict = verdict_json(e, self.enforcement)
        j.allowed = e.verdict.allowed
        j.decisions = _decisions(e)
        j.stable = e.stable
        j.quiet = (j.planned and j.allowed and not j.watch_external
                   and (not j.boundary or j.planned_tls is False))
        return j

    def use(self, j: Judgement) -> None:
        """Record that ``j``'s deciding rules judged a flow in this hygiene epoch."""
        if j.epoch != self.epoch:
            j.epoch = self.epoch
            self.used.update(j.decisions)

    def new_hygiene_window(self) -> None:
        self.epoch += 1
        self.used = set()

    def novel_external(self, address: str) -> bool:
        """True the first time an outside address is reached (the plan's graph counts as
        seen)."""
        if address in self.known_external:
            return False
        if len(self.known_external) < EXTERNAL_LIMIT:
            self.known_external.add(address)
        return True

    def kinds(self, j: Judgement, *, tls: bool, tls_known: bool,
              novel: bool) -> list[tuple[AlertKind, Severity, str]]:
        """The alerts a record of connection ``j`` gives, with their severity and reason."""
        out: list[tuple[AlertKind, Severity, str]] = []
        client, server, protocol, port = j.edge
        what = f"{client} -> {server} {protocol}/{port if port is not None else '-'}"
        verdict = "allowed" if j.allowed else "denied"
        by = f"under {self.enforcement} enforcement"
        if not j.planned:
            if j.restricted:
                into = "into" if j.server_zone is Zone.RESTRICTED else "out of"
                out.append((AlertKind.UNPLANNED_RESTRICTED,
                            Severity.CRITICAL if j.allowed else Severity.HIGH,
                            f"{what}: a connection {into} the restricted zone that the plan "
                            f"does not contain ({verdict} {by})"))
            else:
                out.append((AlertKind.DRIFT, Severity.MEDIUM if j.allowed else Severity.LOW,
                            f"{what}: a new connection outside the restricted zones, not in the "
                            f"plan ({verdict} {by})"))
        if not j.allowed:
            v = j.verdict
            detail = f"{v['policy'] or '-'} {v['rule'] or ''}".strip()
            if j.restricted:
                severity = Severity.HIGH
            elif j.planned:
                severity = Severity.MEDIUM
            else:
                severity = Severity.LOW
            why = "a planned connection the policies break" if j.planned else \
                "an unplanned connection the policies block"
            out.append((AlertKind.POLICY_DENIED, severity,
                        f"{what}: {why}: denied at {v['side']} by {detail} ({v['reason']})"))
        if j.boundary and tls_known and not tls and j.planned_tls is not False:
            classes = ", ".join(j.boundary)
            out.append((AlertKind.PLAINTEXT_RESTRICTED, Severity.HIGH,
                        f"{what}: crosses the restricted {classes} boundary without TLS"
                        + (" (TLS when planned)" if j.planned_tls else "")))
        if novel and j.watch_external:
            out.append((AlertKind.NEW_EXTERNAL, Severity.HIGH if j.allowed else Severity.MEDIUM,
                        f"{what}: a {j.client_zone} workload reached an address outside the "
                        f"cluster not seen before ({verdict} {by})"))
        return out


def _decisions(e: Evaluation) -> tuple[tuple[str, str | None], ...]:
    """The (policy, rule) pairs that took part in a verdict: each side's decider and the
    Pass / Log rules matched on the way."""
    out: list[tuple[str, str | None]] = []
    for d in (e.verdict.egress, e.verdict.ingress):
        if d.policy is not None:
            out.append((d.policy, d.rule))
        for item in d.matched:
            policy, _, rule = item.rpartition(" ")
            out.append((policy, rule))
    return tuple(out)
