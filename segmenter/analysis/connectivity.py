"""The full connectivity map of a set of policies: for every ordered pair of pods, every
(protocol, destination port) the policies let a new connection through on, from the project's
evaluator (:class:`~segmenter.evaluate.PolicyEngine`).

Exact without trying 65,535 ports: the verdict for a pair can only change at a port some rule
mentions (a port, both ends of a range, a named port's numbers in the inventory:
:func:`~segmenter.analysis.probes.probe_ports`), so the ports of a protocol split into
intervals within which it is constant, and one port of each interval is probed. Pods the
evaluator cannot tell apart (same namespace, labels, service account, container ports,
hostNetwork, and for each CIDR the policies name whether it holds the pod's address; the node
too under Cilium enforcement) are judged once per pair of such groups.

This is the map ``nca --connectivity`` (network-config-analyzer) computes; the benchmark
``benchmarks/connectivity_nca.py`` and ``tests/test_connectivity.py`` compare the two.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from segmenter.analysis.probes import probe_ports
from segmenter.analysis.verify import EndpointFinder
from segmenter.evaluate import Direction, EvalEndpoint, PolicyEngine
from segmenter.model import Inventory, Pod, Transport

# Kubernetes NetworkPolicy ports (a port is 1-65535) and protocols (core/v1 Protocol).
PORTS: Final = (1, 65535)
PROTOCOLS: Final = (Transport.TCP, Transport.UDP, Transport.SCTP)

# A protocol's allowed destination ports: sorted, disjoint, non-adjacent (first, last) ranges.
Ranges = tuple[tuple[int, int], ...]
# Allowed connections of a pair: protocol -> ranges (protocols with none left out).
Connections = Mapping[Transport, Ranges]


def port_intervals(cuts: Iterable[int]) -> list[tuple[int, int]]:
    """The ports 1-65535 split at every ``cut`` (a port that starts a new interval) and right
    after it: each mentioned port its own interval, the ports between them the rest.

    >>> port_intervals([80, 443])
    [(1, 79), (80, 80), (81, 442), (443, 443), (444, 65535)]
    """
    lo, hi = PORTS
    starts = {lo}
    for port in cuts:
        if lo <= port <= hi:
            starts.add(port)
            if port < hi:
                starts.add(port + 1)
    ordered = sorted(starts)
    return [(a, (ordered[i + 1] - 1) if i + 1 < len(ordered) else hi)
            for i, a in enumerate(ordered)]


def merge_ranges(ranges: Iterable[tuple[int, int]]) -> Ranges:
    out: list[tuple[int, int]] = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return tuple(out)


def _group_key(pod: Pod, networks: Sequence[Any], by_node: bool) -> tuple[Any, ...]:
    import ipaddress

    address = ipaddress.ip_address(pod.ips[0]) if pod.ips else None
    inside = tuple(address is not None and address.version == net.version and address in net
                   for net in networks)
    return (pod.namespace, pod.labels, pod.service_account, pod.ports, pod.host_network, inside,
            pod.node if by_node else None)


def intersect_ranges(a: Ranges, b: Ranges) -> Ranges:
    """The ports in both ``a`` and ``b``.

    >>> intersect_ranges(((1, 100), (200, 300)), ((50, 250),))
    ((50, 100), (200, 250))
    """
    out = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo <= hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return tuple(out)


# A port range a rule mentions: (protocol, first, last).
Mentioned = tuple[Transport, int, int]
# An interval of ports and what tells it apart for one side: the mentioned ranges holding it,
# or the interval itself when a policy's ports are not known as ranges.
Probe = tuple[tuple[int, int], Any]


def _k8s_ranges(doc: Mapping[str, Any], inventory: Inventory) -> set[Mentioned] | None:
    """Every port range the rules of a networking.k8s.io NetworkPolicy mention (a port, a
    ``port``-``endPort`` range, each number a named port has in the inventory); None for other
    kinds (their ports are then told apart interval by interval)."""
    if doc.get("kind") != "NetworkPolicy" or not str(doc.get("apiVersion", "")).startswith(
            "networking.k8s.io/"):
        return None
    spec = doc.get("spec")
    if not isinstance(spec, Mapping):
        return set()
    named = {(t, n) for t, n in probe_ports([doc], inventory) if n is not None}
    found: set[Mentioned] = set()
    for direction in ("ingress", "egress"):
        rules = spec.get(direction)
        for rule in rules if isinstance(rules, list) else ():
            ports = rule.get("ports") if isinstance(rule, Mapping) else None
            for port in ports if isinstance(ports, list) else ():
                if not isinstance(port, Mapping):
                    return None
                try:
                    transport = Transport.parse(str(port.get("protocol") or "TCP"))
                except ValueError:
                    return None
                value, end = port.get("port"), port.get("endPort")
                if isinstance(value, bool) or value is None:
                    # every port of the protocol: no cut, but it tells the protocol apart
                    found.add((transport, PORTS[0], PORTS[1]))
                    continue
                if isinstance(value, int):
                    found.add((transport, value, end if isinstance(end, int) else value))
                else:  # named: each number it has (all of the protocol's: a finer split)
                    found.update((t, n, n) for t, n in named if t is transport)
    return found


class _Cuts:
    """The ports where a side's decision can change: those the rules of the policies applying
    to that side mention (all policies' when one cannot be told apart); and which intervals
    between them a side cannot tell apart (held by the same mentioned ranges of NetworkPolicy
    rules), so that one of them is decided for all."""

    def __init__(self, engine: PolicyEngine, manifests: Sequence[Mapping[str, Any]],
                 inventory: Inventory) -> None:
        self.engine = engine
        every = probe_ports(manifests, inventory)
        by_name: dict[tuple[Any, Any], set[tuple[Transport, int | None]]] = {}
        ranges: dict[tuple[Any, Any], set[Mentioned] | None] = {}
        for doc in manifests:
            meta = doc.get("metadata")
            meta = meta if isinstance(meta, Mapping) else {}
            key = (meta.get("namespace"), meta.get("name"))
            by_name.setdefault(key, set()).update(probe_ports([doc], inventory))
            mine = _k8s_ranges(doc, inventory)
            known = ranges.get(key, set()) if key in ranges else set()
            ranges[key] = None if mine is None or known is None else known | mine
        self.of_policy: dict[str, set[tuple[Transport, int | None]]] = {}
        self.ranges: dict[str, set[Mentioned] | None] = {}
        for policy in engine.policies:
            key = (policy.namespace, policy.name)
            found = by_name.get(key)
            self.of_policy.setdefault(policy.display, set()).update(
                found if found is not None else every)
            mine = ranges.get(key) if key in ranges else None
            known = self.ranges.get(policy.display, set())
            self.ranges[policy.display] = None if mine is None or known is None \
                else known | mine
        self._probes: dict[Any, list[Probe]] = {}

    def intervals(self, ep: EvalEndpoint, direction: Direction) -> dict[Transport, list[Probe]]:
        cuts: dict[Transport, set[int]] = {p: set() for p in PROTOCOLS}
        mentioned: set[Mentioned] | None = set()
        for display in self.engine.policies_for(ep, direction):
            for transport, port in self.of_policy.get(display, ()):
                if transport in cuts and port is not None:
                    cuts[transport].add(port)
            mine = self.ranges.get(display)
            mentioned = None if mine is None or mentioned is None else mentioned | mine
        out = {}
        for transport, ports in cuts.items():
            held = None if mentioned is None else frozenset(
                r for r in mentioned if r[0] is transport)
            key = (transport, frozenset(ports), held)
            found = self._probes.get(key)
            if found is None:
                found = self._probes[key] = [
                    (iv, (transport, iv) if held is None else frozenset(
                        r for r in held if r[1] <= iv[0] and iv[1] <= r[2]))
                    for iv in port_intervals(ports)]
            out[transport] = found
        return out


def _allowed_ranges(probes: list[Probe], engine: PolicyEngine, direction: Direction,
                    ends: tuple[EvalEndpoint, EvalEndpoint], transport: Transport, *,
                    decided: dict[Any, bool]) -> Ranges:
    """The intervals of ``probes`` where ``direction``'s side allows a connection, deciding one
    interval of each kind the side cannot tell apart (``decided``: the kinds decided so far)."""
    out = []
    for interval, kind in probes:
        verdict = decided.get(kind)
        if verdict is None:
            verdict = decided[kind] = engine.decide(direction, ends[0], ends[1], transport,
                                                    interval[0]).allowed
        if verdict:
            out.append(interval)
    return merge_ranges(out)


def connectivity_map(inventory: Inventory, manifests: Sequence[Mapping[str, Any]], *,
                     enforcement: str = "kubernetes", pods: Sequence[Pod] | None = None
                     ) -> dict[tuple[str, str], Connections]:
    """``{("ns/pod", "ns/pod"): {protocol: allowed port ranges}}`` for every ordered pair of
    distinct pods (of ``pods``, by default the inventory's) with any connection allowed.

    A connection is allowed when the egress side at its source and the ingress side at its
    destination both allow it (``PolicyEngine.check``); each side is decided on its own ports'
    intervals, the ingress side only where the egress side allows something.
    """
    namespaces = {ns.name: ns.labels for ns in inventory.namespaces}
    engine = PolicyEngine.from_manifests(manifests, namespaces=namespaces,
                                         enforcement=enforcement)
    chosen = list(inventory.pods if pods is None else pods)
    cuts = _Cuts(engine, manifests, inventory)
    networks = list(engine.networks())
    groups: dict[tuple[Any, ...], list[Pod]] = {}
    for pod in chosen:
        groups.setdefault(_group_key(pod, networks, enforcement == "cilium"), []).append(pod)
    members = list(groups.values())
    ends = [[EndpointFinder.of_pod(p) for p in group[:2]] for group in members]
    egress_at = [cuts.intervals(e[0], Direction.EGRESS) for e in ends]
    ingress_at = [cuts.intervals(e[0], Direction.INGRESS) for e in ends]

    def allowed(i: int, j: int, src: EvalEndpoint, dst: EvalEndpoint
                ) -> dict[Transport, Ranges]:
        found: dict[Transport, Ranges] = {}
        # Under Kubernetes enforcement of NetworkPolicies, ports no range of a side's rules
        # holds (in any protocol, a protocol-only entry counting as holding all its ports) are
        # decided by the rules without ports alone: the same in every protocol
        # (policy-semantics.md, NetworkPolicyPort). A kind is then shared across protocols.
        shared = enforcement == "kubernetes"
        egress_seen: dict[Any, bool] = {}
        ingress_seen: dict[Any, bool] = {}
        for transport in PROTOCOLS:
            if not shared:
                egress_seen, ingress_seen = {}, {}
            out = _allowed_ranges(egress_at[i][transport], engine, Direction.EGRESS,
                                  (src, dst), transport, decided=egress_seen)
            if not out:
                continue
            into = _allowed_ranges(ingress_at[j][transport], engine, Direction.INGRESS,
                                   (src, dst), transport, decided=ingress_seen)
            both = intersect_ranges(out, into)
            if both:
                found[transport] = both
        return found

    result: dict[tuple[str, str], Connections] = {}
    for i, sources in enumerate(members):
        for j, targets in enumerate(members):
            if i == j:
                if len(sources) < 2:
                    continue  # a pod to itself is not judged by policy
                conns = allowed(i, i, ends[i][0], ends[i][1])
            else:
                conns = allowed(i, j, ends[i][0], ends[j][0])
            if not conns:
                continue
            for src in sources:
                name = f"{src.namespace}/{src.name}"
                for dst in targets:
                    if dst is not src:
                        result[(name, f"{dst.namespace}/{dst.name}")] = conns
    return result


def format_connections(conns: Connections) -> str:
    """One line's text: ``TCP 80,443-445; UDP 53`` (``all`` for the whole range)."""
    parts = []
    for transport in sorted(conns, key=lambda t: t.value):
        ranges = conns[transport]
        ports = "all" if ranges == (PORTS,) else ",".join(
            str(a) if a == b else f"{a}-{b}" for a, b in ranges)
        parts.append(f"{transport.value} {ports}")
    return "; ".join(parts)


__all__ = ["PORTS", "PROTOCOLS", "connectivity_map", "format_connections",
           "intersect_ranges", "merge_ranges", "port_intervals"]
