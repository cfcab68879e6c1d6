"""Which pods serve each Service, and on which port: EndpointSlices first, else the Service's
selector (``targetPort`` resolved by number or by the backend pods' port names)."""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

from segmenter.model import (
    EndpointSlice,
    Inventory,
    Labels,
    NodeId,
    Pod,
    Resolution,
    Service,
    ServicePort,
    SliceEndpoint,
    Transport,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServiceBackend:
    target: str  # graph node id
    how: Resolution
    pods: tuple[Pod, ...]
    # (transport, port name) -> numbers that EndpointSlices give for it
    slice_ports: Mapping[tuple[Transport, str | None], tuple[int, ...]] = field(
        default_factory=dict
    )


class ServiceBackends:
    """Which graph node serves each Service, from EndpointSlices, else from its selector."""

    def __init__(self, inventory: Inventory, pod_index: Mapping[str, list[Pod]] | None = None):
        self.inventory = inventory
        self.pods_by_name: dict[tuple[str, str], list[Pod]] = defaultdict(list)
        # (namespace, label key, label value) -> pods, in inventory order, for selectors
        self.postings: dict[tuple[str, str, str], list[Pod]] = defaultdict(list)
        for pod in inventory.pods:
            self.pods_by_name[(pod.namespace, pod.name)].append(pod)
            for k, v in pod.labels.items:
                self.postings[(pod.namespace, k, v)].append(pod)
        if pod_index is None:
            index: dict[str, list[Pod]] = defaultdict(list)
            for pod in inventory.pods:
                for ip in pod.ips:
                    index[ip].append(pod)
            pod_index = index
        self.pod_index = pod_index
        self.node_of_ip: dict[str, str] = {}
        for node in inventory.nodes:
            for ip in node.addresses:
                self.node_of_ip[ip] = node.name
        self.slices_of: dict[tuple[str, str], list[EndpointSlice]] = defaultdict(list)
        for es in inventory.endpoint_slices:
            if es.service is not None:
                self.slices_of[(es.namespace, es.service)].append(es)
        self._logged: set[str] = set()

    def backend_of(self, svc: Service) -> ServiceBackend | None:
        key = f"{svc.namespace}/{svc.name}"
        votes: Counter[str] = Counter()
        members: dict[str, list[Pod]] = defaultdict(list)
        hows: dict[str, Resolution] = {}
        slice_ports: dict[tuple[Transport, str | None], set[int]] = defaultdict(set)
        slices = self.slices_of.get((svc.namespace, svc.name), [])
        for es in slices:
            for sp in es.ports:
                slice_ports[(sp.protocol, sp.name)].add(sp.port)
            for ep in es.endpoints:
                target, how, pod = self._endpoint_target(svc.namespace, ep)
                if target is None:
                    continue
                votes[target] += 1
                hows[target] = how
                if pod is not None:
                    members[target].append(pod)
        if not slices and svc.selector:
            for pod in self.select(svc.namespace, svc.selector):
                target = (
                    pod.owner.id
                    if not pod.host_network
                    else NodeId.of_node(pod.node or (pod.ips[0] if pod.ips else pod.name))
                )
                votes[target] += 1
                hows[target] = Resolution.POD if not pod.host_network else Resolution.NODE
                members[target].append(pod)
        if not votes:
            return None
        chosen = min(votes, key=lambda t: (-votes[t], t))
        if len(votes) > 1 and key not in self._logged:
            self._logged.add(key)
            logger.info(
                "Service %s has backends in %d workloads (%s); its addresses are attributed "
                "to %s, the one with most endpoints",
                key,
                len(votes),
                ", ".join(sorted(votes)),
                chosen,
            )
        return ServiceBackend(
            target=chosen,
            how=hows[chosen],
            pods=tuple(members.get(chosen, ())),
            slice_ports={k: tuple(sorted(v)) for k, v in slice_ports.items()},
        )

    def select(self, namespace: str, selector: Labels) -> list[Pod]:
        """Pods of ``namespace`` whose labels match the (non-empty) equality ``selector``."""
        lists = [self.postings.get((namespace, k, v), []) for k, v in selector.items]
        if not lists or not all(lists):
            return []
        lists.sort(key=len)
        others = [{id(p) for p in posting} for posting in lists[1:]]
        return [p for p in lists[0] if all(id(p) in other for other in others)]

    def _endpoint_target(self, ns: str, ep: SliceEndpoint
                         ) -> tuple[str | None, Resolution, Pod | None]:
        if ep.pod is not None:
            candidates = self.pods_by_name.get((ns, ep.pod), [])
            if candidates:
                pod = next(
                    (p for p in candidates if set(p.ips) & set(ep.addresses)), candidates[-1]
                )
                if pod.host_network:
                    return NodeId.of_node(pod.node or ep.node or pod.name), Resolution.NODE, pod
                return pod.owner.id, Resolution.POD, pod
        for ip in ep.addresses:
            pods = [
                p for p in self.pod_index.get(ip, []) if p.namespace == ns
            ] or self.pod_index.get(ip, [])
            if pods:
                pod = pods[-1]
                if pod.host_network:
                    return NodeId.of_node(pod.node or ip), Resolution.NODE, pod
                return pod.owner.id, Resolution.POD, pod
            if ip in self.node_of_ip:
                return NodeId.of_node(self.node_of_ip[ip]), Resolution.NODE, None
            return NodeId.of_external(ip), Resolution.EXTERNAL, None
        return None, Resolution.EXTERNAL, None


def resolve_target_port(sp: ServicePort, backend: ServiceBackend | None, *,
                        service: str = "?") -> int:
    """The port a Service port forwards to, as the backend pods see it."""
    target = sp.target_port
    if target is None:
        return sp.port
    if isinstance(target, int):
        return target
    numbers: Counter[int] = Counter()
    if backend is not None:
        for pod in backend.pods:
            for cp in pod.ports:
                if cp.name == target and cp.protocol == sp.protocol:
                    numbers[cp.port] += 1
        if not numbers:
            for number in backend.slice_ports.get((sp.protocol, sp.name), ()):
                numbers[number] += 1
    if not numbers:
        logger.warning(
            "Service %s: target port %r (%s) is not declared by any backend pod; using port %d",
            service,
            target,
            sp.protocol.value,
            sp.port,
        )
        return sp.port
    chosen = min(numbers, key=lambda n: (-numbers[n], n))
    if len(numbers) > 1:
        logger.warning(
            "Service %s: target port %r means %s on different backend pods; using %d",
            service,
            target,
            ", ".join(str(n) for n in sorted(numbers)),
            chosen,
        )
    return chosen


