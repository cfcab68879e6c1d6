"""Run np-guard netpol-analyzer scenarios through the policy engine and compare connlists.

np-guard's expected connection lists (``test_outputs/connlist/<case>_connlist_output.txt``) are
workload-level: ``ns/name[Kind] => ns/name[Kind] : <connections>``, with external addresses as
disjoint IPv4/IPv6 ranges (``0.0.0.0-9.255.255.255[External]``) cut at every ipBlock boundary.
``All Connections`` means every port of TCP, UDP and SCTP (np-guard models nothing else); other
sets read like ``SCTP 1-65535,TCP 1-79,81-65535,UDP 53``.

How the scenarios are modelled here, following np-guard's own model:

* a workload is a pod's controlling owner (``ownerReferences``; a missing owner kind reads as
  ``Pod``) or a Deployment/StatefulSet/DaemonSet/ReplicaSet/Job/CronJob/ReplicationController
  manifest (its pod template), or a bare pod; one representative pod per workload;
* ``hostNetwork`` is ignored (np-guard treats such pods as ordinary pods);
* ``ipBlock`` only matches external addresses (``ipblock_matches_pods=False``), so pods get
  synthetic IPv6 addresses that no external range can hold;
* external ranges are split into atoms at every ipBlock boundary and every expected range
  boundary; each atom is checked with its first address.

Connections are compared per (source, destination) pair as sets of (protocol, port) over TCP, UDP
and SCTP, with ports grouped into classes cut at every port number the policies and the pods'
container ports mention.
"""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segmenter.evaluate import EvalEndpoint, PolicyEngine, load_manifests
from segmenter.model import ContainerPort, Labels, Transport

PROTOCOLS = (Transport.TCP, Transport.UDP, Transport.SCTP)
MAX_PORT = 65535

# Kinds that put a scenario outside what the engine evaluates (admin policies, user-defined and
# secondary networks, virtual machines, ingress controllers).
NOT_APPLICABLE_KINDS = frozenset({
    "AdminNetworkPolicy",
    "BaselineAdminNetworkPolicy",
    "ClusterNetworkPolicy",
    "UserDefinedNetwork",
    "ClusterUserDefinedNetwork",
    "NetworkAttachmentDefinition",
    "MultiNetworkPolicy",
    "VirtualMachine",
    "VirtualMachineInstance",
    "Route",
    "Ingress",
})
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job",
                  "ReplicationController", "CronJob")


def repo_root() -> Path:
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").exists():
            return parent
    return here.parents[2]


def shared_dir() -> Path:
    return repo_root().parent / "shared"


def npguard_dir() -> Path:
    return shared_dir() / "corpora" / "netpol-truth-tables" / "np-guard-netpol-analyzer"


# ------------------------------------------------------------------------------------------------
# Connection sets

Intervals = tuple[tuple[int, int], ...]
ConnSet = dict[Transport, Intervals]


def merge(intervals: Iterable[tuple[int, int]]) -> Intervals:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(intervals):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return tuple(out)


ALL_CONNECTIONS: ConnSet = {p: ((1, MAX_PORT),) for p in PROTOCOLS}


def parse_conns(text: str) -> ConnSet:
    """``All Connections`` / ``TCP 80,8080-8090,UDP 53`` → per-protocol merged intervals."""
    text = text.strip()
    if text == "All Connections":
        return dict(ALL_CONNECTIONS)
    if text in ("", "No Connections"):
        return {}
    out: dict[Transport, list[tuple[int, int]]] = {}
    proto: Transport | None = None
    for raw in text.split(","):
        item = raw.strip()
        if " " in item:
            name, item = item.split(" ", 1)
            proto = Transport.parse(name)
        if proto is None:
            raise ValueError(f"no protocol before {item!r} in {text!r}")
        lo, _, hi = item.partition("-")
        out.setdefault(proto, []).append((int(lo), int(hi or lo)))
    return {p: merge(v) for p, v in out.items()}


def format_conns(conns: ConnSet) -> str:
    if conns == ALL_CONNECTIONS:
        return "All Connections"
    if not conns:
        return "No Connections"
    parts = []
    for p in sorted(conns):
        ranges = ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in conns[p])
        parts.append(f"{p.value} {ranges}")
    return ",".join(parts)


# ------------------------------------------------------------------------------------------------
# Scenario


@dataclass
class Workload:
    id: str  # ns/name[Kind]
    pod: EvalEndpoint


@dataclass
class Scenario:
    name: str
    manifests: list[dict[str, Any]]
    namespaces: dict[str, Labels]
    workloads: list[Workload]
    expected: dict[tuple[str, str], ConnSet]
    external_ranges: list[tuple[int, int, int]]  # (version, first, last) in the expected output
    policies: list[dict[str, Any]] = field(default_factory=list)


def case_names() -> list[str]:
    """Every case with an expected connlist (``<case>_connlist_output.txt``)."""
    out = npguard_dir() / "test_outputs" / "connlist"
    return sorted(p.name[: -len("_connlist_output.txt")]
                  for p in out.glob("*_connlist_output.txt"))


def _container_ports(pod_spec: Mapping[str, Any]) -> tuple[ContainerPort, ...]:
    ports = []
    for container in pod_spec.get("containers") or ():
        for p in container.get("ports") or ():
            number = p.get("containerPort")
            if not isinstance(number, int):
                continue
            try:
                proto = Transport.parse(str(p.get("protocol") or "TCP"))
            except ValueError:
                continue
            ports.append(ContainerPort(number, proto, p.get("name")))
    return tuple(ports)


def _owner(meta: Mapping[str, Any]) -> tuple[str, str] | None:
    refs = meta.get("ownerReferences") or []
    chosen = next((r for r in refs if r.get("controller")), refs[0] if refs else None)
    if not chosen or chosen.get("kind") == "Node":  # static (mirror) pods stand for themselves
        return None
    return str(chosen.get("kind") or "Pod"), str(chosen.get("name"))


def _template(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = doc.get("spec") or {}
    if doc.get("kind") == "CronJob":
        spec = ((spec.get("jobTemplate") or {}).get("spec")) or {}
    return spec.get("template") or {}


def load_scenario(case: str) -> Scenario | str:
    """The scenario, or why it does not apply."""
    base = npguard_dir()
    folder = base / "tests" / case
    if not folder.is_dir():
        return "no input folder (an output variant of another case)"
    try:
        manifests = load_manifests([str(folder)])
    except Exception as exc:
        return f"inputs unreadable: {exc}"
    kinds = {str(d.get("kind")) for d in manifests}
    bad = sorted(kinds & NOT_APPLICABLE_KINDS)
    if bad:
        return "uses " + ", ".join(bad)
    text = (base / "test_outputs" / "connlist" / f"{case}_connlist_output.txt").read_text()
    if "{ingress-controller}" in text:
        return "uses an ingress controller"
    namespaces: dict[str, Labels] = {}
    for d in manifests:
        if d.get("kind") == "Namespace":
            meta = d.get("metadata") or {}
            namespaces[str(meta.get("name"))] = Labels.of(meta.get("labels") or {})
    workloads: dict[str, Workload] = {}
    counter = 0

    def add(wid: str, ns: str, labels: Mapping[str, Any], ports: tuple[ContainerPort, ...],
            name: str) -> None:
        nonlocal counter
        if wid in workloads:
            return
        counter += 1
        pod = EvalEndpoint(ip=f"fd00::{counter:x}", namespace=ns,
                           labels=Labels.of({str(k): str(v) for k, v in labels.items()}),
                           ports=ports, name=name)
        workloads[wid] = Workload(wid, pod)

    for d in manifests:
        kind = d.get("kind")
        meta = d.get("metadata") or {}
        ns = str(meta.get("namespace") or "default")
        if kind == "Pod":
            owner = _owner(meta)
            okind, oname = owner if owner else ("Pod", str(meta.get("name")))
            add(f"{ns}/{oname}[{okind}]", ns, meta.get("labels") or {},
                _container_ports(d.get("spec") or {}), str(meta.get("name")))
        elif kind in WORKLOAD_KINDS:
            template = _template(d)
            tmeta = template.get("metadata") or {}
            add(f"{ns}/{meta.get('name')}[{kind}]", ns, tmeta.get("labels") or {},
                _container_ports(template.get("spec") or {}), str(meta.get("name")))
    expected: dict[tuple[str, str], ConnSet] = {}
    ranges: list[tuple[int, int, int]] = []
    for line in text.splitlines():
        if " => " not in line:
            continue
        pair, _, conns = line.partition(" : ")
        src, _, dst = pair.partition(" => ")
        for end in (src, dst):
            if end.endswith("[External]"):
                first, _, last = end[: -len("[External]")].partition("-")
                a, b = ipaddress.ip_address(first), ipaddress.ip_address(last)
                ranges.append((a.version, int(a), int(b)))
        expected[(src.strip(), dst.strip())] = parse_conns(conns)
    policies = [d for d in manifests if d.get("kind") == "NetworkPolicy"]
    return Scenario(case, manifests, namespaces, list(workloads.values()), expected, ranges,
                    policies)


# ------------------------------------------------------------------------------------------------
# Evaluation


def _ip_blocks(policies: Iterable[Mapping[str, Any]]) -> list[tuple[int, int, int]]:
    out = []
    for pol in policies:
        spec = pol.get("spec") or {}
        for key, peer_key in (("ingress", "from"), ("egress", "to")):
            for rule in spec.get(key) or ():
                for peer in (rule or {}).get(peer_key) or ():
                    block = (peer or {}).get("ipBlock")
                    if not block:
                        continue
                    for cidr in [block.get("cidr"), *(block.get("except") or ())]:
                        try:
                            net = ipaddress.ip_network(str(cidr), strict=False)
                        except ValueError:
                            continue
                        out.append((net.version, int(net.network_address),
                                    int(net.broadcast_address)))
    return out


def external_atoms(scenario: Scenario) -> list[tuple[int, int, int]]:
    """Disjoint (version, first, last) ranges covering IPv4 (and IPv6 when mentioned)."""
    cuts: dict[int, set[int]] = {4: {0, 2**32}}
    spans = _ip_blocks(scenario.policies) + scenario.external_ranges
    for version, first, last in spans:
        top = 2**32 if version == 4 else 2**128
        cuts.setdefault(version, {0, top}).update({first, last + 1})
    atoms = []
    for version, points in cuts.items():
        ordered = sorted(points)
        atoms.extend((version, a, b - 1) for a, b in itertools.pairwise(ordered))
    return atoms


def _port_classes(scenario: Scenario) -> list[tuple[int, int]]:
    cuts = {1, MAX_PORT + 1}
    names: set[str] = set()
    for pol in scenario.policies:
        spec = pol.get("spec") or {}
        for key in ("ingress", "egress"):
            for rule in spec.get(key) or ():
                for entry in (rule or {}).get("ports") or ():
                    port = (entry or {}).get("port")
                    if isinstance(port, int):
                        end = entry.get("endPort") or port
                        cuts.update({port, int(end) + 1})
                    elif port is not None:
                        names.add(str(port))
    for wl in scenario.workloads:
        for cp in wl.pod.ports:
            if cp.name in names:
                cuts.update({cp.port, cp.port + 1})
    ordered = sorted(c for c in cuts if 1 <= c <= MAX_PORT + 1)
    return list(zip(ordered, [c - 1 for c in ordered[1:]], strict=False))


def _external(version: int, first: int) -> EvalEndpoint:
    ip = ipaddress.ip_address(first) if version == 4 else ipaddress.IPv6Address(first)
    return EvalEndpoint(ip=str(ip))


def _conns(engine: PolicyEngine, src: EvalEndpoint, dst: EvalEndpoint,
           classes: list[tuple[int, int]]) -> ConnSet:
    if (not src.namespace or not engine.policies_for(src, "egress")) and (
        not dst.namespace or not engine.policies_for(dst, "ingress")
    ):
        return dict(ALL_CONNECTIONS)
    out: ConnSet = {}
    for proto in PROTOCOLS:
        allowed = [c for c in classes if engine.check(src, dst, proto, c[0]).allowed]
        if allowed:
            out[proto] = merge(allowed)
    return out


def _range_name(version: int, first: int, last: int) -> str:
    make = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    return f"{make(first)}-{make(last)}[External]"


def compare(scenario: Scenario, *, engine: PolicyEngine | None = None) -> list[str]:
    """Every disagreement between the engine and np-guard's connlist (empty: full agreement)."""
    if engine is None:
        engine = PolicyEngine.from_manifests(scenario.manifests, namespaces=scenario.namespaces,
                                             ipblock_matches_pods=False)
    classes = _port_classes(scenario)
    problems: list[str] = []
    # np-guard prints, per workload and direction, the widest ranges with equal connections.
    by_workload: dict[tuple[str, str], list[tuple[int, int, int, str]]] = {}
    for src, dst in scenario.expected:
        for ext, wl, direction in ((src, dst, "in"), (dst, src, "out")):
            if ext.endswith("[External]") and not wl.endswith("[External]"):
                first, _, last = ext[: -len("[External]")].partition("-")
                a, b = ipaddress.ip_address(first), ipaddress.ip_address(last)
                by_workload.setdefault((direction, wl), []).append(
                    (a.version, int(a), int(b), ext))

    def expected_for(src: str, dst: str) -> ConnSet:
        return scenario.expected.get((src, dst), {})

    def report(src: str, dst: str, ours: ConnSet, theirs: ConnSet) -> None:
        if ours != theirs:
            problems.append(f"{src} => {dst}: engine {format_conns(ours)}, "
                            f"np-guard {format_conns(theirs)}")

    wls = scenario.workloads
    for a in wls:
        for b in wls:
            if a is b:
                continue
            report(a.id, b.id, _conns(engine, a.pod, b.pod, classes), expected_for(a.id, b.id))
    for version, first, last in external_atoms(scenario):
        ext = _external(version, first)
        atom = _range_name(version, first, last)
        for wl in wls:
            for direction in ("in", "out"):
                listed = [name for v, lo, hi, name in by_workload.get((direction, wl.id), ())
                          if v == version and lo <= first and last <= hi]
                label = listed[0] if listed else atom
                if direction == "in":
                    ours = _conns(engine, ext, wl.pod, classes)
                    theirs = expected_for(label, wl.id) if listed else {}
                    where = f"{label} => {wl.id}"
                else:
                    ours = _conns(engine, wl.pod, ext, classes)
                    theirs = expected_for(wl.id, label) if listed else {}
                    where = f"{wl.id} => {label}"
                if ours != theirs:
                    if label != atom:
                        where += f" (atom {atom})"
                    problems.append(f"{where}: engine {format_conns(ours)}, "
                                    f"np-guard {format_conns(theirs)}")
    # Lines naming workloads we did not model at all.
    known = {w.id for w in wls}
    for src, dst in scenario.expected:
        for end in (src, dst):
            if not end.endswith("[External]") and end not in known:
                problems.append(f"{end}: listed by np-guard but not modelled")
    return sorted(set(problems))


def _main() -> None:  # pragma: no cover - a development aid: python tests/evaluate/npguard.py
    import sys

    agree = 0
    applicable = 0
    for case in sys.argv[1:] or case_names():
        scenario = load_scenario(case)
        if isinstance(scenario, str):
            print(f"SKIP {case}: {scenario}")
            continue
        applicable += 1
        problems = compare(scenario)
        if problems:
            print(f"DIFF {case}: {len(problems)}")
            for p in problems[:15]:
                print("   ", p)
        else:
            agree += 1
            print(f"OK   {case}")
    print(f"{agree}/{applicable} applicable cases agree")


if __name__ == "__main__":  # pragma: no cover
    _main()
