"""The stages as plain functions: the one composition of the pipeline.

sources -> graph -> plan -> policy IR -> targets -> files, and the checks on top. The CLI, the
facade (``import segmenter``) and the notebooks call these and nothing else for the stages, so
that every caller composes them the same way (cluster DNS found by the planner and the
compiler, targets from the registry, policies to judge through one loader).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx

from segmenter.analysis.diff.semantic import SemanticDiff, semantic_diff
from segmenter.analysis.diff.structural import StructuralDiff, diff_policies
from segmenter.analysis.policies import PolicyDocs, PolicySource, load_policies
from segmenter.analysis.verify import FlowVerdict, verify_flows
from segmenter.cluster.dump import load_inventory
from segmenter.config import CompileOptions, Config, load_config, parse_sensitive_arg
from segmenter.dialects.base import Output
from segmenter.errors import InputError, UnsupportedError
from segmenter.flowfile import Traffic, read_flow_files
from segmenter.graph.build import build_graph
from segmenter.graph.derive import DerivedInventory, derive_inventory
from segmenter.graph.identity import FlowEnds
from segmenter.graph.io import save_graph
from segmenter.model import Flow, Inventory
from segmenter.planner import Plan, plan
from segmenter.policy.ir import PolicySet
from segmenter.policy.lower import lower
from segmenter.render import write_tree
from segmenter.targets import TARGETS, Target, get_target


@dataclass(frozen=True)
class IngestResult:
    """What ``ingest`` read and wrote (capture's ``IngestStats``, in this package's words)."""

    packets: int
    skipped: dict[str, int]
    flows: int
    dns: int
    sources: tuple[str, ...]
    warnings: tuple[str, ...] = ()

    def line(self) -> str:
        """``N packets read, M skipped (reason n, ...), K flows written``."""
        skipped = sum(self.skipped.values())
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(self.skipped.items()))
        return (f"{self.packets} packets read, {skipped} skipped"
                + (f" ({reasons})" if reasons else "") + f", {self.flows} flows written")


def ingest(sources: Sequence[str], out: str, *, progress: bool = False) -> IngestResult:
    """Fold traffic files (captures, flow files, flow logs: any format of ``capture.sources``)
    into the flow file ``out``.

    Raises:
        InputError: a file that is missing or of no format read, or an unwritable ``out``.
    """
    from capture.errors import CaptureError
    from capture.ingest import ingest as capture_ingest

    try:
        stats = capture_ingest(list(sources), out, progress=progress)
    except CaptureError as exc:
        raise InputError(str(exc)) from exc
    except OSError as exc:
        raise InputError(f"{exc.strerror or exc}", path=getattr(exc, "filename", None)) from exc
    return IngestResult(stats.packets, dict(stats.skipped), stats.flows, stats.dns,
                        stats.sources, stats.warnings)


def read_traffic(paths: Sequence[str]) -> Traffic:
    """The flows and DNS answers of flow files written by ``ingest`` or the capture agent."""
    return read_flow_files(list(paths))


def read_inventory(paths: Sequence[str]) -> Inventory:
    """``kubectl get ... -o json|yaml`` dumps, or the inventory file ``segmenter inventory``
    writes."""
    if not paths:
        raise InputError("no inventory given: pass a kubectl dump or --live")
    return load_inventory(list(paths))


def live_inventory(*, context: str | None = None, kubeconfig: str | None = None) -> Inventory:
    """The cluster's inventory through its API."""
    from segmenter.cluster.live import live_inventory as read_live

    return read_live(context=context, kubeconfig=kubeconfig)


def inventory_from_records(traffic: Traffic) -> DerivedInventory:
    """The inventory the flow records describe (their ends' namespaces, pods, labels,
    workloads, nodes), with notes on what it lacks; for traffic whose every record carries
    identities (Hubble, Calico, GKE flow logs) when no inventory is given.

    Raises:
        InputError: a flow has an end its record does not identify.
    """
    return derive_inventory(traffic.flows)


def make_graph(traffic: Traffic,
               inventory: Inventory | DerivedInventory | None = None) -> nx.DiGraph:
    """Resolve flows to workloads: one node per entity, one edge per client -> server.

    Without ``inventory``, one is built from the records (:func:`inventory_from_records`).
    """
    if inventory is None:
        inventory = inventory_from_records(traffic)
    if isinstance(inventory, DerivedInventory):
        return build_graph(traffic.flows, inventory.inventory, dns=traffic.dns,
                           ends=FlowEnds(inventory.inventory, notes=inventory.notes))
    return build_graph(traffic.flows, inventory, dns=traffic.dns)


def read_config(path: str | None = None, sensitive: Sequence[str] = ()) -> Config:
    """``segmenter.yaml`` plus ``CLASS=NAMESPACE/LABEL=VALUE`` declarations."""
    return load_config(path, tuple(parse_sensitive_arg(s) for s in sensitive))


def make_plan(graph: nx.DiGraph, config: Config) -> Plan:
    """Zones around the declared sensitive stores (cluster DNS from the graph)."""
    return plan(graph, config)


def compile_policies(graph: nx.DiGraph, result: Plan, inventory: Inventory,
                     options: CompileOptions | None = None) -> PolicySet:
    """The dialect-neutral policy IR for a plan (cluster DNS found in the inventory)."""
    return lower(graph, result, inventory, options=options)


def emit(policy_set: PolicySet, targets: Sequence[Target], *, best_effort: bool = False,
         staged: bool = False) -> dict[str, Output]:
    """Every target's manifests for one policy set.

    Raises:
        UnsupportedError: what any target cannot express, all targets' reasons at once (unless
            ``best_effort``: then they are each output's ``dropped``).
    """
    outputs: dict[str, Output] = {}
    problems: list[str] = []
    for target in targets:
        try:
            outputs[target.name] = target.dialect(best_effort=best_effort,
                                                  staged=staged).emit(policy_set)
        except UnsupportedError as exc:
            problems.extend(f"{target.name}: {r}" for r in exc.reasons)
    if problems:
        raise UnsupportedError(problems, dialect="/".join(t.name for t in targets))
    return outputs


def write_outputs(outputs: dict[str, Output], out_dirs: dict[str, str]) -> list[str]:
    """Write each target's folder atomically (with ``DROPPED.txt`` for what best effort left
    out); returns the notes of every target."""
    notes: list[str] = []
    for name, output in outputs.items():
        extra = {}
        if output.dropped:
            extra["DROPPED.txt"] = "".join(f"{d}\n" for d in output.dropped)
            notes.extend(f"{name}: best effort dropped: {d}" for d in output.dropped)
        write_tree(out_dirs[name], output.files, extra=extra)
        notes.extend(f"{name}: {n}" for n in output.notes)
    return notes


def policies_to_judge(paths: Sequence[str] = (), *, cluster: bool = False,
                      context: str | None = None, kubeconfig: str | None = None) -> PolicyDocs:
    """The policies a check judges: files and folders, or the policies in force."""
    from segmenter.analysis.policies import from_cluster, from_paths

    if cluster:
        return from_cluster(context=context, kubeconfig=kubeconfig)
    if not paths:
        raise InputError("give --policies DIR... or --cluster")
    return from_paths(list(paths))


def verify(traffic: Traffic, inventory: Inventory, policies: PolicyDocs,
           target: Target) -> list[FlowVerdict]:
    """Every observed flow replayed against the policies under ``target``'s enforcement (the
    traffic's DNS answers name external addresses, for targets that allow by name)."""
    return verify_flows(traffic.flows, inventory, policies.manifests, enforcement=target.name,
                        dns=traffic.dns)


def diff(old: PolicyDocs, new: PolicyDocs, *, inventory: Inventory | None = None,
         flows: Sequence[Flow] = (), target: Target | None = None,
         max_workloads: int = 200) -> tuple[StructuralDiff, SemanticDiff | None]:
    """Objects that change between two policy sets and, with an inventory, the connections and
    observed flows that change verdict under ``target``'s enforcement."""
    structural = diff_policies(old.manifests, new.manifests)
    semantic = None
    if inventory is not None:
        chosen = target or get_target("kubernetes")
        semantic = semantic_diff(list(old.manifests), list(new.manifests), inventory, flows,
                                 chosen.name, max_workloads=max_workloads,
                                 focus_namespaces=structural.touched_namespaces())
    return structural, semantic


@dataclass(frozen=True)
class RunResult:
    """What ``run`` wrote and found."""

    ingest: IngestResult
    graph: nx.DiGraph
    plan: Plan
    traffic: Traffic
    out_dirs: dict[str, str]
    files: dict[str, int]  # target -> policy files written
    notes: list[str]
    verdicts: dict[str, list[FlowVerdict]] = field(default_factory=dict)
    inventory: Inventory | None = None  # the inventory used (built from the records or not)

    @property
    def not_replayed(self) -> int:
        """Flows the self-check did not replay: not forwarded, or with an end no workload
        matches (see the graph's ``blocked`` and ``identity``)."""
        replayed = max((len(v) for v in self.verdicts.values()), default=0)
        return len(self.traffic.flows) - replayed


def run(sources: Sequence[str], inventory_paths: Sequence[str] | None,
        out: str | os.PathLike[str], *,
        config: str | None = None, sensitive: Sequence[str] = (), best_effort: bool = False,
        staged: bool = False, progress: bool = False,
        draw: Callable[[nx.DiGraph, Plan, Path, str], Any] | None = None) -> RunResult:
    """Every stage: traffic -> flow file -> graph -> plan -> every target's policies -> the
    self-check of every observed flow under every target's enforcement.

    Every input is read and checked before anything is written; a plan that a target cannot
    express leaves no new file beside the flow file. Without ``inventory_paths``, the inventory
    is built from the flow records (:func:`inventory_from_records`: every record must carry
    identities). ``draw(graph, plan, path, title)`` draws the zone map (the views layer
    supplies it).
    """
    from segmenter.fileio import atomic_write_json
    from segmenter.planner import plan_to_dict

    folder = Path(out)
    configuration = read_config(config, sensitive)
    given = read_inventory(inventory_paths) if inventory_paths else None
    folder.mkdir(parents=True, exist_ok=True)
    flows_path = str(folder / "flows.jsonl")
    ingested = ingest(sources, flows_path, progress=progress)
    traffic = read_traffic([flows_path])
    if given is None:
        derived = inventory_from_records(traffic)
        inventory = derived.inventory
        graph = make_graph(traffic, derived)
    else:
        inventory = given
        graph = make_graph(traffic, given)
    result = make_plan(graph, configuration)
    targets = list(TARGETS.values())
    out_dirs = {t.name: str(folder / t.name) for t in targets}
    policy_set = compile_policies(graph, result, inventory, configuration.compile)
    outputs = emit(policy_set, targets, best_effort=best_effort, staged=staged)
    notes = [*policy_set.notes, *write_outputs(outputs, out_dirs)]
    save_graph(graph, str(folder / "graph.json"))
    atomic_write_json(folder / "plan.json", plan_to_dict(result))
    if draw is not None:
        draw(graph, result, folder / "graph.png", f"{len(traffic.flows)} observed flows by zone")
    verdicts = {}
    files = {}
    for target in targets:
        written = load_policies([out_dirs[target.name]], target)
        verdicts[target.name] = verify(traffic, inventory, written, target)
        files[target.name] = sum(1 for f in Path(out_dirs[target.name]).rglob("*.yaml")
                                 if f.name != "kustomization.yaml")
    return RunResult(ingested, graph, result, traffic, out_dirs, files, notes, verdicts,
                     inventory)


__all__ = [
    "IngestResult",
    "PolicySource",
    "RunResult",
    "compile_policies",
    "diff",
    "emit",
    "ingest",
    "inventory_from_records",
    "live_inventory",
    "make_graph",
    "make_plan",
    "policies_to_judge",
    "read_config",
    "read_inventory",
    "read_traffic",
    "run",
    "verify",
    "write_outputs",
]
