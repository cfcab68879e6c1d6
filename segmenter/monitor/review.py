"""What a monitor writes for people to review (``--review-dir DIR``), never applies.

**Learning.** The drift of a window -- new edges outside the restricted zones, with one
record of each kept -- becomes a proposed change: the plan's graph with those edges added goes
through the pipeline's own stages (``compile_policies``, ``emit`` for the target in force,
``write_outputs``), and the result is compared with the policies in force (``pipeline.diff``).
Written to ``DIR/proposal-<start>-<end>/``: ``<target>/`` (the proposed policy folder),
``diff.txt`` (what changes, object by object), ``drift.json`` (the edges learned: sightings,
first and last time). Edges into or out of a restricted zone are never learned: they are
``unplanned-restricted`` alerts, for a person to decide.

**Rule hygiene.** PCI DSS v4.0 requirement 1.2.7 asks for a review of the network security
controls' configurations at least every six months. ``DIR/hygiene-<start>-<end>.json`` lists
the policies and rules in force that judged no flow during the window (the deciding rule of
either side, and the Calico Pass / Log rules matched on the way count as used), with the
window stated: a rule unused over a long window is a candidate for removal.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import networkx as nx

from segmenter import pipeline
from segmenter.analysis.diff.text import to_text
from segmenter.analysis.policies import PolicyDocs, from_manifests
from segmenter.cluster.watch import rfc3339
from segmenter.config import CompileOptions
from segmenter.fileio import atomic_write_json, atomic_write_text
from segmenter.flowfile import parse_record
from segmenter.graph.build import build_graph
from segmenter.model import DnsAnswer, Flow, Inventory, NodeId
from segmenter.planner import Plan
from segmenter.targets import Target


def _stamp(ts: float) -> str:
    return rfc3339(ts).replace(":", "").replace("-", "")


def merge_graphs(planned: nx.DiGraph, learned: nx.DiGraph) -> nx.DiGraph:
    """The planned graph with the learned one's nodes and edges added; an edge in both gets
    the learned ports it lacked."""
    merged = planned.copy()
    for node, attrs in learned.nodes(data=True):
        if node not in merged:
            merged.add_node(node, **attrs)
        elif attrs.get("observed"):
            merged.nodes[node]["observed"] = True
    for client, server, attrs in learned.edges(data=True):
        if not merged.has_edge(client, server):
            merged.add_edge(client, server, **attrs)
            continue
        data = merged.edges[client, server]
        have = {(p["protocol"], p["port"]) for p in data.get("ports", [])}
        ports = [*data.get("ports", []),
                 *(p for p in attrs.get("ports", []) if (p["protocol"], p["port"]) not in have)]
        ports.sort(key=lambda p: (p["protocol"], -1 if p["port"] is None else p["port"]))
        data["ports"] = ports
        data["flows"] = sum(int(p.get("flows", 0)) for p in ports)
    return merged


def write_proposal(folder: str, *, start: float, end: float,
                   drift: Mapping[tuple[str, str, str, int | None], dict[str, Any]],
                   graph: nx.DiGraph, plan: Plan, inventory: Inventory, in_force: PolicyDocs,
                   target: Target, dns: Sequence[DnsAnswer] = (),
                   options: CompileOptions | None = None) -> str:
    """Write the proposal for the drift of one window; returns its folder."""
    flows: list[Flow] = []
    for item in drift.values():
        parsed = parse_record(item["record"])
        if isinstance(parsed, Flow):
            flows.append(parsed)
    learned = build_graph(flows, inventory, dns)
    merged = merge_graphs(graph, learned)
    # Workloads deployed since the plan get policies like the others (planner: policed =
    # every workload outside the excluded namespaces and not on the host network).
    new = sorted(
        n for n, a in merged.nodes(data=True)
        if a.get("kind") == "workload" and n not in plan.policed
        and a.get("namespace") not in plan.excluded_namespaces and not a.get("host_network")
        and NodeId.parse(n).workload is not None)
    proposed_plan = dataclasses.replace(plan, policed=tuple(sorted({*plan.policed, *new})))
    policy_set = pipeline.compile_policies(merged, proposed_plan, inventory, options)
    outputs = pipeline.emit(policy_set, [target])
    out = Path(folder) / f"proposal-{_stamp(start)}-{_stamp(end)}"
    out.mkdir(parents=True, exist_ok=True)
    pipeline.write_outputs(outputs, {target.name: str(out / target.name)})
    output = outputs[target.name]
    proposed = from_manifests([m for _name, ms in sorted(output.files.items()) for m in ms],
                              label=f"proposal {out.name}")
    structural, _semantic = pipeline.diff(in_force, proposed)
    atomic_write_text(out / "diff.txt", to_text(structural, old_label=in_force.label,
                                                new_label=str(out / target.name)))
    atomic_write_json(out / "drift.json", {
        "window": {"start": rfc3339(start), "end": rfc3339(end), "seconds": end - start},
        "target": target.name,
        "applied": False,
        "edges": [
            {"client": c, "server": s, "protocol": p, "port": port,
             "sightings": item["count"], "first_seen": item["first"],
             "last_seen": item["last"]}
            for (c, s, p, port), item in sorted(drift.items(), key=lambda kv: str(kv[0]))],
    })
    return str(out)


def write_hygiene(folder: str, *, start: float, end: float,
                  in_force: Sequence[tuple[str, str | None]],
                  used: set[tuple[str, str | None]], enforcement: str, label: str) -> str:
    """Write the rule-hygiene report of one window; returns its file."""
    used_policies = {policy for policy, _rule in used}
    unused = [(p, r) for p, r in in_force if (p, r) not in used
              and not (r is None and p in used_policies)]
    policies = sorted({p for p, _r in in_force})
    idle = [p for p in policies if p not in used_policies]
    path = Path(folder) / f"hygiene-{_stamp(start)}-{_stamp(end)}.json"
    atomic_write_json(path, {
        "window": {"start": rfc3339(start), "end": rfc3339(end), "seconds": end - start},
        "policies": label,
        "enforcement": enforcement,
        "requirement": "PCI DSS v4.0 1.2.7: configurations of network security controls "
                       "reviewed at least once every six months",
        "rules_in_force": len(in_force),
        "unused_rules": [{"policy": p, "rule": r} for p, r in unused],
        "policies_that_judged_no_flow": idle,
    })
    return str(path)


def review_folder(path: str) -> str:
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        from segmenter.errors import InputError

        raise InputError(f"cannot write reviews: {exc.strerror or exc}", path=path) from None
    return path
