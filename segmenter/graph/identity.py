"""Flow ends as graph nodes when the record says who they are (flow file version 2).

Flow-log sources carry an identity for each end (``client_endpoint`` / ``server_endpoint``:
namespace, pod, labels, workload, a reserved entity such as ``world``; docs/flow-format.md).
:class:`FlowEnds` uses it in three ways:

* an end **with an address** is resolved by the address, through the time-aware
  :class:`~segmenter.graph.resolve.Resolver`, as for captures -- so that the graph, the policies
  and the replay of flows (:mod:`segmenter.analysis.verify`) all agree -- and, with an
  inventory, the record's identity is cross-checked against what the inventory says of the
  address at that time: every disagreement is counted and reported, never silently settled;
* an end **without an address** (Calico OSS Goldmane, aggregated Calico flow logs) is resolved
  by its identity against the inventory: a workload named in the record; a pod by name; a pod
  name prefix that Calico aggregated (``checkout-7d9f8c6b5-*``) by namespace, prefix and labels,
  and when no pod has it any more (a rollout since), a ReplicaSet-hash prefix to its Deployment;
  a host endpoint to its node; the API server. What matches no workload or several is
  reported, and the flow is left out of the graph: never guessed;
* without an inventory, :mod:`segmenter.graph.derive` builds one from the records, and the
  ends resolve against it the same way.
"""

from __future__ import annotations

import bisect
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from segmenter.graph.resolve import Resolved, Resolver
from segmenter.k8s import GENERATED_NAME_ALPHABET
from segmenter.model import (
    APISERVER_ID,
    EndpointIdentity,
    Flow,
    Inventory,
    Labels,
    NodeId,
    NodeKind,
    Pod,
    Resolution,
    WorkloadRef,
)

# Calico's endpoint kinds that are not pods (flow logs' source_type / dest_type hep and ns).
HOST_ENDPOINT: Final = "HostEndpoint"
NETWORK_SETS: Final = frozenset({"NetworkSet", "GlobalNetworkSet"})
# Cilium's reserved identities (cilium pkg/identity/numericidentity.go) as the sources write
# them in ``entity``, and the graph node kinds an address with that identity may resolve to.
ENTITY_KINDS: Final = {
    "world": frozenset({NodeKind.EXTERNAL}),
    "host": frozenset({NodeKind.NODE, NodeKind.APISERVER}),
    "remote-node": frozenset({NodeKind.NODE, NodeKind.APISERVER}),
    # The host running the API server carries both identities; its node address is a node.
    "kube-apiserver": frozenset({NodeKind.APISERVER, NodeKind.NODE}),
}
# The Deployment controller names a ReplicaSet ``<deployment>-<pod-template-hash>`` and its pods
# ``<replicaset>-<random>`` (kubernetes pkg/controller/deployment/sync.go).
_RS_PREFIX: Final = re.compile(
    rf"^(?P<deployment>.+)-(?P<hash>[{GENERATED_NAME_ALPHABET}]{{4,10}})-$")
EXAMPLES: Final = 5
# ``Inventory.sources`` of an inventory built from the records (:mod:`.derive`).
RECORDS_SOURCE: Final = "(flow records)"


def describe(endpoint: EndpointIdentity) -> str:
    """What a record says of an end, for people: ``shop/web-7d4f9c-* (pod)``, ``world``."""
    parts = []
    if endpoint.workload_kind and endpoint.workload_name:
        where = f"{endpoint.namespace}/" if endpoint.namespace else ""
        parts.append(f"{where}{endpoint.workload_kind}/{endpoint.workload_name}")
    if endpoint.pod:
        parts.append(f"{endpoint.namespace or '?'}/{endpoint.pod} (pod)")
    elif endpoint.namespace and not parts:
        parts.append(f"namespace {endpoint.namespace}")
    if endpoint.entity and not parts:
        parts.append(endpoint.entity)
    if endpoint.node and not parts:
        parts.append(f"node {endpoint.node}")
    return ", ".join(parts) or "an end with no name"


@dataclass(frozen=True)
class _Verdict:
    """What the identity of an end says it is: a node id, or only a node kind, or a namespace."""

    node_id: str | None = None
    kinds: frozenset[NodeKind] = frozenset()
    namespace: str | None = None
    problem: str | None = None  # why it names no node (unresolved / ambiguous)
    claimed: str | None = None  # the workload the record names, known to the inventory or not


class IdentityIndex:
    """The inventory's pods and workloads by namespace and name, for identities without an
    address."""

    def __init__(self, inventory: Inventory, *, derived: bool = False):
        self.inventory = inventory
        # Records' labels must hold on the inventory's pods; an inventory made of the records
        # holds the labels all its records share, fewer than some of them carry.
        self.derived = derived
        pods: dict[str, list[tuple[str, Pod]]] = defaultdict(list)
        for pod in inventory.pods:
            pods[pod.namespace].append((pod.name, pod))
        self._pods = {ns: sorted(items, key=lambda item: item[0]) for ns, items in pods.items()}
        self._names = {ns: [name for name, _ in items] for ns, items in self._pods.items()}
        self._workloads: dict[tuple[str, str], list[WorkloadRef]] = defaultdict(list)
        self._known: set[WorkloadRef] = set()
        self._template: dict[WorkloadRef, Labels] = {}
        for wl in inventory.workloads:
            self._workloads[(wl.ref.namespace, wl.ref.name)].append(wl.ref)
            self._known.add(wl.ref)
            self._template[wl.ref] = wl.template_labels
        for pod in inventory.pods:
            if pod.owner not in self._known:
                self._known.add(pod.owner)
                self._workloads[(pod.owner.namespace, pod.owner.name)].append(pod.owner)
        # Workloads whose pods use the node's network: their address is their node's.
        self.host_network = {p.owner.id for p in inventory.pods if p.host_network} | {
            w.ref.id for w in inventory.workloads if w.host_network}
        self._cache: dict[EndpointIdentity, _Verdict] = {}

    def verdict(self, endpoint: EndpointIdentity) -> _Verdict:
        cached = self._cache.get(endpoint)
        if cached is None:
            cached = self._cache[endpoint] = self._verdict(endpoint)
        return cached

    def _verdict(self, ep: EndpointIdentity) -> _Verdict:
        kind = ep.workload_kind
        if kind in NETWORK_SETS:
            return _Verdict(kinds=ENTITY_KINDS["world"],
                            problem=f"a Calico {kind} ({ep.workload_name}) without an address: "
                                    "the inventory has no network sets")
        if kind == HOST_ENDPOINT or (ep.entity in ("host", "remote-node") and not ep.pod):
            if ep.node:
                return _Verdict(node_id=NodeId.of_node(ep.node),
                                kinds=frozenset({NodeKind.NODE, NodeKind.APISERVER}))
            what = f"host endpoint {ep.workload_name}" if ep.workload_name else (ep.entity or "")
            return _Verdict(kinds=ENTITY_KINDS["host"],
                            problem=f"{what} without an address or a node name")
        if ep.entity == "kube-apiserver" and not ep.pod:
            return _Verdict(node_id=APISERVER_ID, kinds=ENTITY_KINDS["kube-apiserver"])
        if not ep.namespace:
            if ep.entity in ENTITY_KINDS:
                return _Verdict(kinds=ENTITY_KINDS[ep.entity],
                                problem=f"{ep.entity} without an address")
            return _Verdict(problem="no namespace, no address")
        return self._workload(ep)

    def _workload(self, ep: EndpointIdentity) -> _Verdict:
        namespace = ep.namespace
        assert namespace is not None
        kinds = frozenset({NodeKind.WORKLOAD})
        if ep.workload_kind and ep.workload_name:
            ref = WorkloadRef(namespace, ep.workload_kind, ep.workload_name)
            if ref in self._known:
                return _Verdict(ref.id, kinds, namespace, claimed=ref.id)
            return _Verdict(None, kinds, namespace, f"{ref.id} is not in the inventory",
                            claimed=ref.id)
        if not ep.pod:
            return _Verdict(None, kinds, namespace, "no pod or workload name")
        prefix = ep.pod[:-1] if ep.pod.endswith("*") else None
        owners = self._owners(namespace, ep.pod if prefix is None else prefix,
                              exact=prefix is None,
                              labels=Labels() if self.derived else ep.labels)
        if owners is None and prefix is not None:
            owners = self._by_controller_name(namespace, prefix, ep)
        if not owners:
            if self.derived:
                return _Verdict(None, kinds, namespace, "its records name no workload")
            return _Verdict(None, kinds, namespace,
                            f"no pod of the inventory is {namespace}/{ep.pod}"
                            + (" with its labels" if ep.labels else ""))
        if len(owners) > 1:
            return _Verdict(None, kinds, namespace,
                            f"{namespace}/{ep.pod} matches several workloads: "
                            + ", ".join(sorted(o.id for o in owners)))
        return _Verdict(next(iter(owners)).id, kinds, namespace)

    def _owners(self, namespace: str, name: str, *, exact: bool,
                labels: Labels) -> set[WorkloadRef] | None:
        """Owners of the pods named ``name`` (or starting with it) whose labels hold the
        record's; None when no pod has the name at all."""
        names = self._names.get(namespace, [])
        pods = self._pods.get(namespace, [])
        i = bisect.bisect_left(names, name)
        found: list[Pod] = []
        while i < len(names) and (names[i] == name if exact else names[i].startswith(name)):
            found.append(pods[i][1])
            i += 1
        if not found:
            return None
        return {p.owner for p in found if p.labels.matches(labels)}

    def _by_controller_name(self, namespace: str, prefix: str,
                            ep: EndpointIdentity) -> set[WorkloadRef]:
        """A pod name prefix no pod has any more: the controller it names. ``<deployment>-
        <pod-template-hash>-`` is a Deployment's ReplicaSet; ``<name>-`` is the generateName of
        a StatefulSet's, DaemonSet's or Job's pods."""
        candidates: list[WorkloadRef] = []
        match = _RS_PREFIX.match(prefix)
        template_hash = ep.labels.get("pod-template-hash")
        if match is not None and template_hash in (None, match["hash"]):
            candidates = [r for r in self._workloads.get((namespace, match["deployment"]), [])
                          if r.kind == "Deployment"]
        if not candidates and prefix.endswith("-"):
            candidates = [r for r in self._workloads.get((namespace, prefix[:-1]), [])
                          if r.kind != "Deployment"]
        stable = ep.labels.stable()
        return {r for r in candidates
                if not self._template.get(r) or self._template[r].matches(stable)}


def _is_pod(endpoint: EndpointIdentity | None) -> bool:
    return endpoint is not None and bool(endpoint.pod) and bool(endpoint.namespace)


@dataclass
class _Tally:
    flows: int = 0
    first: float = 0.0


@dataclass
class IdentityTally:
    """What :class:`FlowEnds` counted, in a form that adds up: two tallies of separate flows
    merge into the tally of all of them, in any order (the graph summaries of several capture
    nodes, :mod:`segmenter.graph.fold`)."""

    identified: int = 0
    checked: int = 0
    unaddressed: int = 0
    # (side, address, record, node, kind) -> flows, first seen
    disagree: dict[tuple[str, str, str, str, str], _Tally] = field(default_factory=dict)
    # (side, record, reason) -> flows, first seen
    unresolved: dict[tuple[str, str, str], _Tally] = field(default_factory=dict)
    names: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))

    def merge(self, other: IdentityTally) -> None:
        self.identified += other.identified
        self.checked += other.checked
        self.unaddressed += other.unaddressed
        for mine, theirs in ((self.disagree, other.disagree),
                             (self.unresolved, other.unresolved)):
            for key, tally in theirs.items():
                add_tally(mine, key, tally.flows, tally.first)
        for node, names in other.names.items():
            self.names[node].update(names)


def add_tally(table: dict[Any, _Tally], key: Any, flows: int, first: float) -> None:
    """Count ``flows`` flows under ``key``, the first of them seen at ``first``."""
    tally = table.get(key)
    if tally is None:
        table[key] = _Tally(flows, first)
    else:
        tally.flows += flows
        tally.first = min(tally.first, first)


class FlowEnds:
    """Both ends of a flow as graph nodes (see the module's docstring), with a report of what
    the records and the inventory disagree on and what could not be placed.

    An inventory built from the records themselves (:mod:`.derive`, ``RECORDS_SOURCE`` in its
    ``sources``) is not cross-checked (it would agree with itself), and ``notes`` say what it
    lacks.
    """

    def __init__(self, inventory: Inventory, resolver: Resolver | None = None, *,
                 notes: Iterable[str] = ()):
        derived = RECORDS_SOURCE in inventory.sources
        self.resolver = resolver if resolver is not None else Resolver(inventory)
        self.index = IdentityIndex(inventory, derived=derived)
        self.derived = derived
        self.notes = tuple(notes)
        self.tally = IdentityTally()
        self._checks: dict[tuple[str, EndpointIdentity, str], str | None] = {}
        self._placed: dict[tuple[EndpointIdentity, str, int | None], Resolved | str] = {}

    # -- resolving ---------------------------------------------------------------------------

    def resolve(self, flow: Flow) -> tuple[Resolved, Resolved] | None:
        """Both ends; None when an end without an address cannot be placed (reported)."""
        transport, ts = flow.transport, flow.first_seen
        # Without an inventory of its own, a pod is known by the name its records give it,
        # whatever address it had (an inventory made of the records has no pod it could not
        # place: its address would otherwise look external).
        derived = self.derived
        if flow.client is not None and not (derived and _is_pod(flow.client_endpoint)):
            client = self.resolver.resolve(flow.client, None, transport, ts)
        else:
            found = self._by_identity(flow, "client", None)
            if found is None:
                return None
            client = found
        if flow.server is not None and not (derived and _is_pod(flow.server_endpoint)):
            server = self.resolver.resolve(flow.server, flow.server_port, transport, ts)
            named = flow.server_endpoint.service if flow.server_endpoint is not None else None
            if named and server.via_service is None:
                # The Service the client addressed, as the source saw it (Hubble's
                # destination_service): the flow went through it even if its address did not.
                server = Resolved(server.node_id, server.port, named, server.how)
        else:
            found = self._by_identity(flow, "server", flow.server_port)
            if found is None:
                return None
            server = found
        return client, server

    def _by_identity(self, flow: Flow, side: str, port: int | None) -> Resolved | None:
        if (flow.client if side == "client" else flow.server) is None:
            self.tally.unaddressed += 1
        endpoint = flow.client_endpoint if side == "client" else flow.server_endpoint
        assert endpoint is not None  # the reader refuses an address-less end without one
        key = (endpoint, side, port)
        found = self._placed.get(key)
        if found is None:
            found = self._placed[key] = self._place(endpoint, side, port)
        if isinstance(found, str):
            add_tally(self.tally.unresolved, (side, describe(endpoint), found), 1,
                      flow.first_seen)
            return None
        return found

    def _place(self, endpoint: EndpointIdentity, side: str, port: int | None) -> Resolved | str:
        """The node an identity names, or why none."""
        verdict = self.index.verdict(endpoint)
        if verdict.node_id is None:
            return verdict.problem or "no node"
        parsed = NodeId.parse(verdict.node_id)
        how = {NodeKind.WORKLOAD: Resolution.POD, NodeKind.NODE: Resolution.NODE,
               NodeKind.APISERVER: Resolution.APISERVER}.get(parsed.kind, Resolution.EXTERNAL)
        service = endpoint.service if side == "server" else None
        return Resolved(verdict.node_id, port, service, how)

    # -- cross-checking ----------------------------------------------------------------------

    def check(self, flow: Flow, client: Resolved, server: Resolved) -> None:
        """Compare what the record says of each addressed end with the node its address
        resolved to; keep the record's DNS names of external nodes."""
        tally = self.tally
        for side, address, endpoint, resolved in (
                ("client", flow.client, flow.client_endpoint, client),
                ("server", flow.server, flow.server_endpoint, server)):
            if endpoint is None or address is None:
                continue
            tally.identified += 1
            if endpoint.names and resolved.how is Resolution.EXTERNAL:
                tally.names[resolved.node_id].update(endpoint.names)
            if self.derived:
                continue
            key = (address, endpoint, resolved.node_id)
            if key in self._checks:
                problem = self._checks[key]
            else:
                problem = self._checks[key] = self._disagreement(endpoint, resolved)
            tally.checked += 1
            if problem is not None:
                add_tally(tally.disagree, (side, address, describe(endpoint), resolved.node_id,
                                           problem), 1, flow.first_seen)

    def _disagreement(self, endpoint: EndpointIdentity, resolved: Resolved) -> str | None:
        """The kind of disagreement between a record's identity and the resolved node."""
        verdict = self.index.verdict(endpoint)
        parsed = NodeId.parse(resolved.node_id)
        if resolved.how.dnat and endpoint.entity == "world" and not endpoint.pod:
            return None  # a Service address seen before translation has no identity of its own
        expected = verdict.node_id or verdict.claimed
        if parsed.kind is NodeKind.NODE and expected in self.index.host_network:
            return None  # a hostNetwork pod: the inventory gives its address to its node
        if verdict.kinds and parsed.kind not in verdict.kinds:
            if NodeKind.WORKLOAD not in verdict.kinds:
                if NodeKind.NODE in verdict.kinds and parsed.kind is NodeKind.EXTERNAL:
                    return "node address unknown to the inventory"
                return "entity"
            if parsed.kind is NodeKind.EXTERNAL:
                return "address unknown to the inventory"
            return "not a pod in the inventory"
        if verdict.namespace and parsed.workload is not None \
                and parsed.workload.namespace != verdict.namespace:
            return "namespace"
        if expected is not None and expected != resolved.node_id \
                and parsed.kind is NodeKind.WORKLOAD:
            return "workload"
        return None

    # -- reporting ---------------------------------------------------------------------------

    @property
    def names(self) -> dict[str, set[str]]:
        """External node -> the DNS names the records gave it."""
        return self.tally.names

    @property
    def used(self) -> bool:
        """Whether any record carried an identity (else there is nothing to report)."""
        return identity_used(self.tally, derived=self.derived)

    def report(self) -> dict[str, Any]:
        """The summary kept in the graph's ``identity`` attribute (docs/graph-format.md)."""
        return identity_report(self.tally, derived=self.derived, notes=self.notes)


def identity_used(tally: IdentityTally, *, derived: bool) -> bool:
    """Whether any record carried an identity (else the graph has no ``identity``)."""
    return bool(tally.identified or tally.unaddressed or derived)


def identity_report(tally: IdentityTally, *, derived: bool,
                    notes: Iterable[str] = ()) -> dict[str, Any]:
    """The graph's ``identity`` attribute (docs/graph-format.md) from what was counted."""
    kinds: Counter[str] = Counter()
    for (*_, kind), found in tally.disagree.items():
        kinds[kind] += found.flows
    reasons: Counter[str] = Counter()
    for (*_, reason), found in tally.unresolved.items():
        reasons[reason] += found.flows
    disagreements = sorted(tally.disagree.items(), key=lambda kv: (-kv[1].flows, kv[0]))
    unresolved = sorted(tally.unresolved.items(), key=lambda kv: (-kv[1].flows, kv[0]))
    return {
        "inventory": "records" if derived else "given",
        "identified_ends": tally.identified,
        "checked_ends": tally.checked,
        "addressless_ends": tally.unaddressed,
        "disagreements": {
            "ends": sum(kinds.values()),
            "by_kind": dict(sorted(kinds.items())),
            "examples": [
                {"side": side, "address": address, "record": record, "inventory": node,
                 "kind": kind, "flows": found.flows, "first_seen": found.first}
                for (side, address, record, node, kind), found in disagreements[:EXAMPLES]
            ],
        },
        "unresolved": {
            "flows": sum(reasons.values()),
            "by_reason": dict(sorted(reasons.items())),
            "examples": [
                {"side": side, "record": record, "reason": reason, "flows": found.flows,
                 "first_seen": found.first}
                for (side, record, reason), found in unresolved[:EXAMPLES]
            ],
        },
        "notes": list(notes),
    }
