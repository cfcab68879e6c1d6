"""Replaying observed flows against policies without holding the flows.

:func:`segmenter.analysis.verify.verify_flows` judges each flow on its own: both ends resolved
at its time, every (client pod, server pod) pair checked, the first denying pair deciding. What
decides a flow's verdict is only what it is evaluated as: the endpoints of its client and of its
server at that time (the pod that held the address then; a Service's backend pods alive then),
the protocol and the port. :class:`ReplayFold` keeps, per distinct (client node, server node,
protocol, port, client endpoints, server endpoints), how many flows were evaluated as it -- the
time of a flow matters only through which endpoints it selects, so that is exactly where it
enters -- and :meth:`ReplayFold.replay` judges each distinct one once under a set of policies.
Memory grows with the distinct connections (pods x peers x the lifetimes that changed who
answered), not with the flows; the verdicts are those of ``verify_flows``, grouped
(:func:`group_verdicts` groups those the same way, and the property test of
``tests/test_stream.py`` compares them).
"""

from __future__ import annotations

import bisect
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from segmenter.analysis.verify import EndpointFinder, FlowVerdict, judged_flows
from segmenter.config import ClusterNetworks
from segmenter.evaluate import EvalEndpoint, PolicyEngine, Verdict
from segmenter.graph.identity import FlowEnds
from segmenter.graph.ranges import UnexplainedAddresses, check_inventory, cluster_ranges
from segmenter.graph.resolve import Resolved
from segmenter.model import (
    DnsAnswer,
    Flow,
    Inventory,
    NodeId,
    NodeKind,
    Pod,
    Resolution,
    Transport,
    WorkloadRef,
)


class Judged(Protocol):
    """A replayed flow, or a group of them: what the gates read of a verdict."""

    @property
    def client(self) -> str: ...
    @property
    def server(self) -> str: ...
    @property
    def transport(self) -> Transport: ...
    @property
    def port(self) -> int | None: ...
    @property
    def verdict(self) -> Verdict: ...
    @property
    def allowed(self) -> bool: ...
    @property
    def flows(self) -> int: ...


@dataclass(frozen=True)
class VerdictGroup:
    """The flows of one (client node, server node, protocol, port) that got one verdict."""

    client: str
    server: str
    transport: Transport
    port: int | None
    verdict: Verdict
    flows: int

    @property
    def allowed(self) -> bool:
        return self.verdict.allowed

    def sort_key(self) -> tuple[Any, ...]:
        return (self.client, self.server, self.transport.value,
                -1 if self.port is None else self.port, self.verdict.summary(),
                repr(self.verdict))


@dataclass(frozen=True)
class Replay:
    """Every replayed flow's verdict, in groups (sorted), and for each external node the least
    address a replayed flow reached it at (the isolation check probes from there)."""

    groups: tuple[VerdictGroup, ...]
    addresses: Mapping[str, str]

    def __iter__(self) -> Any:
        return iter(self.groups)

    @property
    def flows(self) -> int:
        """How many flows were replayed."""
        return sum(g.flows for g in self.groups)

    @property
    def denied(self) -> tuple[VerdictGroup, ...]:
        return tuple(g for g in self.groups if not g.allowed)

    @property
    def denied_flows(self) -> int:
        return sum(g.flows for g in self.groups if not g.allowed)


def _is_external(node_id: str) -> bool:
    try:
        return NodeId.parse(node_id).kind is NodeKind.EXTERNAL
    except ValueError:
        return False


def _least_address(addresses: dict[str, str], node_id: str, address: str | None) -> None:
    if address is not None:
        known = addresses.get(node_id)
        if known is None or address < known:
            addresses[node_id] = address


def group_verdicts(verdicts: Iterable[FlowVerdict]) -> Replay:
    """The verdicts of :func:`~segmenter.analysis.verify.verify_flows` in the groups of a
    :class:`Replay`."""
    counts: dict[tuple[str, str, Transport, int | None, Verdict], int] = {}
    addresses: dict[str, str] = {}
    external: dict[str, bool] = {}
    for v in verdicts:
        key = (v.client, v.server, v.flow.transport, v.port, v.verdict)
        counts[key] = counts.get(key, 0) + 1
        for node_id, address in ((v.client, v.flow.client), (v.server, v.flow.server)):
            if external.setdefault(node_id, _is_external(node_id)):
                _least_address(addresses, node_id, address)
    return _replay(counts, addresses)


def _replay(counts: Mapping[tuple[str, str, Transport, int | None, Verdict], int],
            addresses: Mapping[str, str]) -> Replay:
    groups = sorted((VerdictGroup(*key, flows=n) for key, n in counts.items()),
                    key=VerdictGroup.sort_key)
    return Replay(tuple(groups), dict(sorted(addresses.items())))


class _Ends:
    """Evaluator endpoints of flow ends, interned: each distinct endpoint list a flow end is
    evaluated as gets a small number. The time of a flow selects which list (the pod that held
    an address then; a workload's pods alive then); lists are found by intervals between the
    pods' start and end times, within which the choice cannot change."""

    def __init__(self, finder: EndpointFinder) -> None:
        self.finder = finder
        self.lists: list[tuple[EvalEndpoint, ...]] = []
        self._ids: dict[Hashable, int] = {}
        self._node: dict[str, WorkloadRef | None] = {}
        # ip or workload -> sorted start and end times of its pods; interval -> live pods
        self._breaks: dict[Any, list[float]] = {}
        self._live: dict[tuple[Any, int, bool], tuple[Pod, ...]] = {}

    def _intern(self, key: Hashable, ip: str | None, node_id: str, ts: float) -> int:
        found = self._ids.get(key)
        if found is None:
            found = self._ids[key] = len(self.lists)
            self.lists.append(tuple(self.finder.endpoints(ip, node_id, ts)))
        return found

    def _alive(self, owner: Any, pods: Sequence[Pod], ts: float) -> tuple[Pod, ...]:
        """``pods`` alive at ``ts`` (start and end inclusive), as ``EndpointFinder`` sees it:
        constant between two consecutive start or end times, and at each of them."""
        breaks = self._breaks.get(owner)
        if breaks is None:
            times = {t for p in pods for t in (p.start, p.end) if t is not None}
            breaks = self._breaks[owner] = sorted(times)
        i = bisect.bisect_left(breaks, ts)
        key = (owner, i, i < len(breaks) and breaks[i] == ts)
        live = self._live.get(key)
        if live is None:
            live = self._live[key] = tuple(
                p for p in pods if (p.start is None or p.start <= ts)
                and (p.end is None or ts <= p.end))
        return live

    def _pod_at(self, ip: str, ts: float) -> Pod | None:
        """:meth:`EndpointFinder.pod_at`, through the intervals when one pod is alive."""
        pods = self.finder.by_ip.get(ip)
        if not pods:
            return None
        if len(pods) == 1:
            return pods[0]
        live = self._alive(("ip", ip), pods, ts)
        if len(live) == 1:
            return live[0]
        return self.finder.pod_at(ip, ts)  # none or several alive: the nearest start decides

    def workload(self, node_id: str) -> WorkloadRef | None:
        if node_id in self._node:
            return self._node[node_id]
        try:
            ref = NodeId.parse(node_id).workload if node_id else None
        except ValueError:
            ref = None
        self._node[node_id] = ref
        return ref

    def of(self, ip: str | None, node_id: str, ts: float) -> int:
        """The number of ``EndpointFinder.endpoints(ip, node_id, ts)``."""
        pod = self._pod_at(ip, ts) if ip is not None else None
        if pod is not None and pod.owner.id == node_id:
            return self._intern(("pod", id(pod)), ip, node_id, ts)
        ref = self.workload(node_id)
        if ref is not None:
            pods = self.finder.by_owner.get(ref)
            if pods:
                live = self._alive(ref, pods, ts)
                return self._intern(("pods", tuple(id(p) for p in (live or pods))), ip,
                                    node_id, ts)
        # Not a pod and no workload's pods: the same whenever.
        return self._intern(("other", ip, node_id), ip, node_id, ts)

    def node_local_dns(self, ip: str) -> int:
        key = ("node-local-dns", ip)
        found = self._ids.get(key)
        if found is None:
            found = self._ids[key] = len(self.lists)
            self.lists.append((EvalEndpoint(ip=ip, name=f"node-local DNS {ip}"),))
        return found


# (client node, server node, protocol, port as the server pod sees it, client endpoints,
# server endpoints) -> flows
_Key = tuple[str, str, Transport, int | None, int, int]


class ReplayFold:
    """Folds flows into the distinct connections to judge (see the module docstring).

    Feed it with :meth:`observe` from the graph's fold (:class:`~segmenter.graph.fold.
    GraphFold`, whose ends it shares), or with :meth:`add`, which places the flows' ends itself
    (with ``ends``, as :func:`~segmenter.analysis.verify.verify_flows` does) and keeps the
    addresses to explain for :meth:`check_inventory`.
    """

    def __init__(self, inventory: Inventory, dns: Iterable[DnsAnswer] = (), *,
                 ends: FlowEnds | None = None) -> None:
        self.inventory = inventory
        self.dns = tuple(dns)
        self.ends = ends
        self.finder = EndpointFinder(inventory, self.dns)
        self._ends = _Ends(self.finder)
        self.counts: dict[_Key, int] = {}
        self.addresses: dict[str, str] = {}
        self._external: dict[str, bool] = {}
        self.unexplained = UnexplainedAddresses()
        self.placed = 0  # flows observed
        self.unevaluated = 0  # of them, with an end the inventory has no endpoint for

    def observe(self, flow: Flow, client: Resolved, server: Resolved) -> None:
        """One forwarded flow whose ends are placed and not special."""
        self.placed += 1
        ts = flow.first_seen
        ends = self._ends
        src = ends.of(flow.client, client.node_id, ts)
        if server.how is Resolution.NODELOCAL_DNS and flow.server is not None:
            dst = ends.node_local_dns(flow.server)
        else:
            dst = ends.of(flow.server, server.node_id, ts)
        if not ends.lists[src] or not ends.lists[dst]:
            self.unevaluated += 1
            return
        transport = flow.transport
        key = (client.node_id, server.node_id, transport,
               server.port if transport is not Transport.ICMP else None, src, dst)
        counts = self.counts
        counts[key] = counts.get(key, 0) + 1
        external = self._external
        for node_id, address in ((client.node_id, flow.client), (server.node_id, flow.server)):
            known = external.get(node_id)
            if known is None:
                known = external[node_id] = _is_external(node_id)
            if known:
                _least_address(self.addresses, node_id, address)

    def add(self, flows: Iterable[Flow]) -> None:
        """Place each flow's ends and observe it, leaving out what ``verify_flows`` leaves
        out: flows not forwarded, ends no workload matches, special addresses."""
        if self.ends is None:
            self.ends = FlowEnds(self.inventory)
        observe = self.observe
        for flow, client, server in judged_flows(flows, self.ends, self.unexplained):
            observe(flow, client, server)

    def check_inventory(self, networks: ClusterNetworks | None = None) -> None:
        """What ``verify_flows`` checks before replaying (flows fed through :meth:`add`).

        Raises:
            InventoryError: traffic to a Service's or pod's address that the inventory lacks.
        """
        check_inventory(self.unexplained.uses(), self.inventory,
                        cluster_ranges(self.inventory, self.dns, networks), self.dns)

    def replay(self, engine: PolicyEngine) -> Replay:
        """Every observed flow's verdict under ``engine``'s policies and enforcement: the first
        denying (client pod, server pod) pair's verdict, else the last allowing one."""
        lists = self._ends.lists
        decided: dict[tuple[int, int, Transport, int | None], Verdict] = {}
        check = engine.check
        counts: dict[tuple[str, str, Transport, int | None, Verdict], int] = {}
        for (client, server, transport, port, src, dst), n in self.counts.items():
            verdict = decided.get((src, dst, transport, port))
            if verdict is None:
                found: Verdict | None = None
                for source in lists[src]:
                    for target in lists[dst]:
                        found = check(source, target, transport, port)
                        if not found.allowed:
                            break
                    else:
                        continue
                    break
                assert found is not None
                verdict = decided[(src, dst, transport, port)] = found
            key = (client, server, transport, port, verdict)
            counts[key] = counts.get(key, 0) + n
        return _replay(counts, self.addresses)


def replay_engine(inventory: Inventory, manifests: Sequence[Mapping[str, Any]], *,
                  enforcement: str) -> PolicyEngine:
    """The engine a replay judges with (as ``verify_flows`` builds it)."""
    namespaces = {ns.name: ns.labels for ns in inventory.namespaces}
    return PolicyEngine.from_manifests(manifests, namespaces=namespaces,
                                       enforcement=enforcement)


def replay_flows(flows: Iterable[Flow], inventory: Inventory,
                 manifests: Sequence[Mapping[str, Any]], *, enforcement: str = "kubernetes",
                 dns: Iterable[DnsAnswer] = (), networks: ClusterNetworks | None = None
                 ) -> Replay:
    """:func:`~segmenter.analysis.verify.verify_flows`, grouped, without holding the flows.

    Raises:
        InventoryError: traffic to a Service's or pod's address that the inventory lacks.
    """
    fold = ReplayFold(inventory, dns)
    fold.add(flows)
    fold.check_inventory(networks)
    return fold.replay(replay_engine(inventory, manifests, enforcement=enforcement))


__all__ = ["Judged", "Replay", "ReplayFold", "VerdictGroup", "group_verdicts", "replay_engine",
           "replay_flows"]
