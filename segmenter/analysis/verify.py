"""Replay observed flows against emitted policies with the project's own evaluator.

Each flow is evaluated as the CNI sees it: the server side after Service DNAT (the backend pod and
its ``targetPort``), every backend pod of a Service when the capture saw the ClusterIP. A flow is
allowed only when the client's egress and the server's ingress both allow it.
:class:`FlowChecker` is that evaluation for one flow at a time (``verify_flows`` over a file,
``segmenter monitor`` over a stream).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from segmenter.config import ClusterNetworks
from segmenter.evaluate import EvalEndpoint, PolicyEngine, Verdict
from segmenter.graph.identity import FlowEnds
from segmenter.graph.ranges import UnexplainedAddresses, check_inventory, cluster_ranges
from segmenter.graph.resolve import Resolved
from segmenter.model import (
    DnsAnswer,
    Flow,
    Inventory,
    Labels,
    NodeId,
    NodeKind,
    Pod,
    Resolution,
    Transport,
    WorkloadRef,
)


@dataclass(frozen=True)
class FlowVerdict:
    flow: Flow
    client: str  # graph node id
    server: str
    port: int | None  # as the server pod sees it
    verdict: Verdict

    @property
    def allowed(self) -> bool:
        return self.verdict.allowed

    @property
    def transport(self) -> Transport:
        return self.flow.transport

    @property
    def flows(self) -> int:
        """One flow (a group of replayed flows has more: :mod:`segmenter.analysis.replay`)."""
        return 1


class EndpointFinder:
    """Turns addresses at a time into evaluator endpoints (pods, or non-pod addresses).

    ``dns``: the DNS answers the traffic showed; an address outside the cluster is known by the
    names answered with it (what a DNS-aware dataplane, Cilium's ``toFQDNs``, matches).
    """

    def __init__(self, inventory: Inventory, dns: Iterable[DnsAnswer] = ()):
        self.inventory = inventory
        names: dict[str, set[str]] = {}
        for answer in dns:
            for address in answer.answers:
                names.setdefault(address, set()).add(answer.name)
        self.dns_names = {ip: tuple(sorted(n)) for ip, n in names.items()}
        self.by_ip: dict[str, list[Pod]] = {}
        for pod in inventory.pods:
            for ip in pod.ips:
                self.by_ip.setdefault(ip, []).append(pod)
        self.node_of_ip = {a: n.name for n in inventory.nodes for a in n.addresses}
        # The API server's real addresses: after DNAT of the kubernetes.default ClusterIP,
        # policies see these (policy-semantics.md §1.7, tricky case 19).
        self.apiserver = sorted({
            address
            for eps in inventory.endpoint_slices
            if (eps.namespace, eps.service) == ("default", "kubernetes")
            for endpoint in eps.endpoints
            for address in endpoint.addresses
        })
        self.by_owner: dict[WorkloadRef, list[Pod]] = {}
        for pod in inventory.pods:
            self.by_owner.setdefault(pod.owner, []).append(pod)

    def add_dns(self, answer: DnsAnswer) -> bool:
        """Learn the names of a DNS answer seen later (a stream); True when it named an
        address anew."""
        changed = False
        for address in answer.answers:
            known = self.dns_names.get(address, ())
            if answer.name not in known:
                self.dns_names[address] = tuple(sorted((*known, answer.name)))
                changed = True
        return changed

    def stable(self, ip: str, node_id: str) -> tuple[float, float] | None:
        """The times over which :meth:`endpoints` gives the same answer for ``ip`` as
        ``node_id``, whatever the time within them; None when it may change from one instant
        to the next (several pods held ``ip``; the workload's pods do not overlap)."""
        held = self.by_ip.get(ip, ())
        if len(held) > 1:
            return None
        if held and held[0].owner.id == node_id:
            return (-math.inf, math.inf)  # the one pod that ever held the address
        parsed = NodeId.parse(node_id) if node_id else None
        if parsed is not None and parsed.workload is not None:
            pods = self.by_owner.get(parsed.workload, [])
            if pods:
                lo = max((p.start for p in pods if p.start is not None), default=-math.inf)
                hi = min((p.end for p in pods if p.end is not None), default=math.inf)
                return (lo, hi) if lo <= hi else None
        return (-math.inf, math.inf)

    def pod_at(self, ip: str, ts: float) -> Pod | None:
        pods = self.by_ip.get(ip)
        if not pods:
            return None
        live = [p for p in pods if (p.start is None or p.start <= ts)
                and (p.end is None or ts <= p.end)]
        candidates = live or pods
        return min(candidates, key=lambda p: abs((p.start or 0.0) - ts))

    @staticmethod
    def of_pod(pod: Pod) -> EvalEndpoint:
        # A pod known only by name (a flow log that aggregates addresses away) gets a
        # placeholder that is no address, unique to it: two such pods are not one endpoint.
        return EvalEndpoint(ip=pod.ips[0] if pod.ips else f"pod:{pod.namespace}/{pod.name}",
                            namespace=pod.namespace,
                            labels=pod.labels, host_network=pod.host_network, node=pod.node,
                            ports=pod.ports, service_account=pod.service_account,
                            name=f"{pod.owner.id} ({pod.name})")

    def endpoints(self, ip: str | None, node_id: str, ts: float) -> list[EvalEndpoint]:
        """The endpoints to evaluate for a flow end; [] when an end without an address (a
        flow log that names it) has none the inventory knows."""
        pod = self.pod_at(ip, ts) if ip is not None else None
        if pod is not None and pod.owner.id == node_id:
            return [self.of_pod(pod)]
        parsed = NodeId.parse(node_id) if node_id else None
        if parsed is not None and parsed.workload is not None:
            pods = self.by_owner.get(parsed.workload, [])
            live = [p for p in pods if (p.start is None or p.start <= ts)
                    and (p.end is None or ts <= p.end)]
            if live or pods:
                return [self.of_pod(p) for p in (live or pods)]
        apiserver = parsed is not None and parsed.kind is NodeKind.APISERVER
        if apiserver and self.apiserver and ip not in self.apiserver:
            return [EvalEndpoint(ip=address, namespace=None, labels=Labels(), name=node_id,
                                 kube_apiserver=True)
                    for address in self.apiserver]
        if ip is None:
            node = parsed.node_name if parsed is not None else None
            return [EvalEndpoint(ip=address, namespace=None, labels=Labels(), node=node,
                                 name=node_id)
                    for n in self.inventory.nodes if n.name == node for address in n.addresses]
        return [EvalEndpoint(ip=ip, namespace=None, labels=Labels(),
                             node=self.node_of_ip.get(ip), name=node_id,
                             dns_names=self.dns_names.get(ip, ()), kube_apiserver=apiserver)]


@dataclass(frozen=True)
class Evaluation:
    """One connection judged at one time: the graph nodes of both ends, the port as the server
    pod sees it, the verdict, and the times over which the same addresses give the same answer
    (``stable``: (from, to); None when the answer depends on the exact time: an address that
    several pods held, a workload whose pods came and went)."""

    client: str
    server: str
    port: int | None
    verdict: Verdict
    stable: tuple[float, float] | None


class FlowChecker:
    """The per-flow evaluation of :func:`verify_flows`, kept for a stream of flows (``segmenter
    monitor``): both ends resolved at the flow's time (the server after Service DNAT), every
    (client pod, server pod) pair checked, the first denying pair deciding. ``ends`` places
    flow ends as the graph did (by address, or by the identities a flow record carries)."""

    def __init__(self, inventory: Inventory, engine: PolicyEngine,
                 dns: Iterable[DnsAnswer] = (), ends: FlowEnds | None = None):
        self.engine = engine
        self.ends = ends if ends is not None else FlowEnds(inventory)
        self.resolver = self.ends.resolver
        self.finder = EndpointFinder(inventory, dns)

    @classmethod
    def for_manifests(cls, inventory: Inventory, manifests: Sequence[Mapping[str, Any]], *,
                      enforcement: str = "kubernetes", dns: Iterable[DnsAnswer] = (),
                      ends: FlowEnds | None = None) -> FlowChecker:
        namespaces = {ns.name: ns.labels for ns in inventory.namespaces}
        engine = PolicyEngine.from_manifests(manifests, namespaces=namespaces,
                                             enforcement=enforcement)
        return cls(inventory, engine, dns, ends)

    def _targets(self, server_ip: str | None, server: Resolved,
                 ts: float) -> list[EvalEndpoint]:
        if server.how == "nodelocal-dns" and server_ip is not None:
            # NodeLocal DNSCache answers on the node itself, without DNAT to a DNS pod: the
            # CNI sees the link-local (or kube-dns ClusterIP) address (tricky case 18).
            return [EvalEndpoint(ip=server_ip, name=f"node-local DNS {server_ip}")]
        return self.finder.endpoints(server_ip, server.node_id, ts)

    def _decide(self, sources: Sequence[EvalEndpoint], targets: Sequence[EvalEndpoint],
                transport: Transport, port: int | None) -> Verdict:
        """The first denying (client pod, server pod) pair's verdict, else the last allowing."""
        verdict: Verdict | None = None
        for src in sources:
            for dst in targets:
                verdict = self.engine.check(src, dst, transport, port)
                if not verdict.allowed:
                    return verdict
        assert verdict is not None
        return verdict

    def evaluate(self, client_ip: str, server_ip: str, server_port: int | None,
                 transport: Transport, ts: float) -> Evaluation:
        """Judge a connection from ``client_ip`` to ``server_ip:server_port`` at ``ts``."""
        resolver, finder = self.resolver, self.finder
        client = resolver.resolve(client_ip, None, transport, ts)
        server = resolver.resolve(server_ip, server_port, transport, ts)
        sources = finder.endpoints(client_ip, client.node_id, ts)
        targets = self._targets(server_ip, server, ts)
        server_stable = ((-math.inf, math.inf) if server.how == "nodelocal-dns"
                         else finder.stable(server_ip, server.node_id))
        port = server.port if transport is not Transport.ICMP else None
        verdict = self._decide(sources, targets, transport, port)
        stable: tuple[float, float] | None = None
        client_stable = finder.stable(client_ip, client.node_id)
        if (client_stable is not None and server_stable is not None
                and not resolver.depends_on_time(client_ip, None, transport)
                and not resolver.depends_on_time(server_ip, server_port, transport)):
            lo = max(client_stable[0], server_stable[0])
            hi = min(client_stable[1], server_stable[1])
            stable = (lo, hi) if lo <= hi else None
        return Evaluation(client.node_id, server.node_id, port, verdict, stable)

    def judge(self, flow: Flow, client: Resolved, server: Resolved) -> FlowVerdict | None:
        """One observed flow whose ends are placed, evaluated at its first packet; None when an
        end has no endpoint the inventory can evaluate."""
        sources = self.finder.endpoints(flow.client, client.node_id, flow.first_seen)
        targets = self._targets(flow.server, server, flow.first_seen)
        if not sources or not targets:
            return None
        port = server.port if flow.transport is not Transport.ICMP else None
        verdict = self._decide(sources, targets, flow.transport, port)
        return FlowVerdict(flow, client.node_id, server.node_id, port, verdict)


def judged_flows(flows: Iterable[Flow], ends: FlowEnds, unexplained: UnexplainedAddresses
                 ) -> Iterator[tuple[Flow, Resolved, Resolved]]:
    """The flows a replay judges, with their placed ends: not those a flow log says did not go
    through, those with an end no workload matches, or those with a special address (see
    :func:`verify_flows`). Flows with an external end are noted in ``unexplained`` for
    :func:`~segmenter.graph.ranges.check_inventory`."""
    for flow in flows:
        if not flow.forwarded:
            continue
        pair = ends.resolve(flow)
        if pair is None:
            continue
        client, server = pair
        if Resolution.SPECIAL in (client.how, server.how):
            continue
        if Resolution.EXTERNAL in (client.how, server.how):
            unexplained.note(flow, client, server)
        yield flow, client, server


def verify_flows(flows: Iterable[Flow], inventory: Inventory,
                 manifests: Sequence[Mapping[str, Any]], *,
                 enforcement: str = "kubernetes",
                 dns: Iterable[DnsAnswer] = (),
                 networks: ClusterNetworks | None = None,
                 ends: FlowEnds | None = None) -> list[FlowVerdict]:
    """Evaluate every flow that went through; the first denying backend decides a Service
    flow's verdict. ``dns``: the traffic's DNS answers, by which external addresses are known
    (see :class:`EndpointFinder`). ``ends`` places flow ends as the graph did (by default over
    ``inventory``).

    Flows are replayed as the dataplane sees them, so the inventory must explain them first
    (:func:`segmenter.graph.ranges.check_inventory`, with ``networks`` declared in
    ``segmenter.yaml``): a flow to a ClusterIP the inventory cannot DNAT is an error, never
    an "external" address that an ipBlock of the ClusterIP would allow.

    Not replayed: flows a flow log says were dropped (or audited, or errors), which are
    evidence of what the policies in force block, not traffic to allow; flows with a loopback,
    link-local, multicast or broadcast end (no policy names such a peer); flows with an end
    that no workload matches (:class:`~segmenter.graph.identity.FlowEnds` reports them), or
    without an endpoint the inventory can evaluate. Callers count ``len(result)``.

    Raises:
        InventoryError: traffic to a Service's or pod's address that the inventory lacks.
    """
    answers = tuple(dns)
    if ends is None:
        ends = FlowEnds(inventory)
    unexplained = UnexplainedAddresses()
    placed = list(judged_flows(flows, ends, unexplained))
    check_inventory(unexplained.uses(), inventory, cluster_ranges(inventory, answers, networks),
                    answers)
    checker = FlowChecker.for_manifests(inventory, manifests, enforcement=enforcement,
                                        dns=answers, ends=ends)
    results = []
    for flow, client, server in placed:
        verdict = checker.judge(flow, client, server)
        if verdict is not None:
            results.append(verdict)
    return results


@dataclass(frozen=True)
class Permissiveness:
    """Per zone (or namespace): (workload pair, port) probes allowed vs observed."""

    group: str
    allowed: int
    observed: int
    extra: tuple[str, ...]  # allowed but never observed, e.g. "a -> b TCP/80" (a sample)


def over_permissiveness(inventory: Inventory, manifests: Sequence[Mapping[str, Any]],
                        verdicts: Iterable[Any], *, enforcement: str,
                        zone_of: Mapping[str, str] | None = None, max_workloads: int = 200,
                        sample: int = 10) -> tuple[list[Permissiveness], bool]:
    """How much more the policies allow than was observed, between workloads of the inventory.

    Probes every ordered pair of workloads (one pod each, capped at ``max_workloads``) on every
    (protocol, port) the policies mention or the flows used; servers in namespaces no policy
    isolates are left out (everything is open there by design). Returns the groups and whether
    the workload list was capped.
    """
    from segmenter.analysis.probes import probe_ports, representative_pods

    namespaces = {ns.name: ns.labels for ns in inventory.namespaces}
    engine = PolicyEngine.from_manifests(manifests, namespaces=namespaces,
                                         enforcement=enforcement)
    reps = representative_pods(inventory)
    owners = sorted(reps)[:max_workloads]
    capped = len(reps) > max_workloads
    verdicts = list(verdicts)  # FlowVerdicts, or groups of them (analysis.replay.Judged)
    observed = {(v.client, v.server, v.transport, v.port) for v in verdicts}
    probes = probe_ports(manifests, inventory,
                         extra=[(v.transport, v.port) for v in verdicts])
    policed_ns = {str(d.get("metadata", {}).get("namespace")) for d in manifests
                  if d.get("metadata", {}).get("namespace")}
    groups: dict[str, list[Any]] = {}
    for server in owners:
        if server.namespace not in policed_ns:
            continue
        dst = EndpointFinder.of_pod(reps[server])
        group = (zone_of or {}).get(server.id) or server.namespace
        slot = groups.setdefault(group, [0, 0, []])
        for client in owners:
            if client == server:
                continue
            src = EndpointFinder.of_pod(reps[client])
            for transport, port in probes:
                if not engine.check(src, dst, transport, port).allowed:
                    continue
                slot[0] += 1
                if (client.id, server.id, transport, port) in observed:
                    slot[1] += 1
                elif len(slot[2]) < sample:
                    slot[2].append(f"{client.id} -> {server.id} {transport}/{port}")
    return [Permissiveness(g, a, o, tuple(x)) for g, (a, o, x) in sorted(groups.items())], capped
