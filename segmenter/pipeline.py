"""The stages as plain functions: the one composition of the pipeline.

sources -> graph -> plan -> policy IR -> targets -> files, and the checks on top. The CLI, the
facade (``import segmenter``) and the notebooks call these and nothing else for the stages, so
that every caller composes them the same way (cluster DNS found by the planner and the
compiler, targets from the registry, policies to judge through one loader).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import networkx as nx

from segmenter.analysis.diff.semantic import SemanticDiff, semantic_diff
from segmenter.analysis.diff.structural import StructuralDiff, diff_policies
from segmenter.analysis.enforcement import Enforcement, resolve_enforcement
from segmenter.analysis.findings import Finding, FindingKind
from segmenter.analysis.isolation import IsolationCheck, check_from_flows
from segmenter.analysis.policies import PolicyDocs, PolicySource, load_policies
from segmenter.analysis.replay import Judged, Replay, ReplayFold, replay_engine
from segmenter.analysis.verify import EndpointFinder, FlowVerdict, verify_flows
from segmenter.cluster.dump import load_inventory
from segmenter.config import (
    ClusterNetworks,
    CompileOptions,
    Config,
    load_config,
    parse_sensitive_arg,
)
from segmenter.dialects.base import Output
from segmenter.errors import InputError, UnsupportedError
from segmenter.flowfile import FlowStream, Traffic, open_flow_stream, read_flow_files
from segmenter.gcpause import no_gc as _no_gc
from segmenter.graph.derive import DerivedInventory, derive_inventory
from segmenter.graph.identity import FlowEnds
from segmenter.graph.io import save_graph
from segmenter.model import Flow, Inventory
from segmenter.planner import Plan, plan
from segmenter.policy.ir import PolicySet
from segmenter.policy.lower import lower
from segmenter.render import write_tree
from segmenter.targets import TARGETS, Target, detect_targets, get_target, target_options

AUTO = "auto"  # --dialect auto: the targets the cluster enforces


@dataclass(frozen=True)
class IngestResult:
    """What ``ingest`` read and wrote (capture's ``IngestStats``, in this package's words)."""

    packets: int
    skipped: dict[str, int]
    flows: int
    dns: int
    sources: tuple[str, ...]
    warnings: tuple[str, ...] = ()
    records: int = 0  # flow-log and flow-file records read

    def line(self) -> str:
        """``N packets read, M skipped (reason n, ...), K flows written`` (``records`` for flow
        logs and flow files)."""
        from capture.ingest import read_counts

        skipped = sum(self.skipped.values())
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(self.skipped.items()))
        return (f"{read_counts(self.packets, self.records)} read, {skipped} skipped"
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
    except BrokenPipeError:
        raise  # the reader of standard output went away: the CLI ends quietly
    except OSError as exc:
        raise InputError(f"{exc.strerror or exc}", path=getattr(exc, "filename", None)) from exc
    return IngestResult(stats.packets, dict(stats.skipped), stats.flows, stats.dns,
                        stats.sources, stats.warnings, stats.records)


def read_traffic(paths: Sequence[str]) -> Traffic:
    """The flows and DNS answers of flow files written by ``ingest`` or the capture agent."""
    return read_flow_files(list(paths))


def read_traffic_files(paths: Sequence[str]) -> tuple[Traffic, list[tuple[str, Traffic]]]:
    """The flows of several flow files as one, and each file as read (the evidence report
    states what each covers)."""
    from segmenter.flowfile import merge_traffic, read_flow_file

    parts = [(path, read_flow_file(path)) for path in paths]
    return merge_traffic([t for _, t in parts]), parts


def open_traffic(paths: Sequence[str]) -> FlowStream:
    """The same flow files as a stream: header and DNS answers read, the flows read again on
    each pass and never held (every stage below gives the same results for either)."""
    return open_flow_stream(list(paths))


# Flow files in memory (read_traffic) or streamed (open_traffic).
TrafficSource = Traffic | FlowStream


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


def inventory_from_records(traffic: TrafficSource) -> DerivedInventory:
    """The inventory the flow records describe (their ends' namespaces, pods, labels,
    workloads, nodes), with notes on what it lacks; for traffic whose every record carries
    identities (Hubble, Calico, GKE flow logs) when no inventory is given.

    Raises:
        InputError: a flow has an end its record does not identify.
    """
    return derive_inventory(traffic.flows)


def make_graph(traffic: TrafficSource, inventory: Inventory | DerivedInventory | None = None,
               networks: ClusterNetworks | None = None) -> nx.DiGraph:
    """Resolve flows to workloads: one node per entity, one edge per client -> server.

    Without ``inventory``, one is built from the records (:func:`inventory_from_records`).

    Raises:
        InventoryError: traffic to Service or pod addresses the inventory does not explain
            (``networks``: the ranges ``segmenter.yaml`` declares).
    """
    return graph_and_replay(traffic, inventory, networks, replay=False).graph


@dataclass(frozen=True)
class TrafficPass:
    """One pass over the flows: the graph, the distinct connections to replay against each
    target's policies, and what the policy notes need to know of the flows."""

    graph: nx.DiGraph
    inventory: Inventory
    replay: ReplayFold | None
    flows: int
    node_local_dns: bool


def graph_and_replay(traffic: TrafficSource,
                     inventory: Inventory | DerivedInventory | None = None,
                     networks: ClusterNetworks | None = None, *,
                     replay: bool = True) -> TrafficPass:
    """The graph of ``traffic`` and, with ``replay``, the replay of its flows folded in the
    same pass (:mod:`segmenter.analysis.replay`): a stream of flow files is read once (twice
    without an inventory: once to build it from the records).

    Raises:
        InputError: no inventory, and flows whose records do not identify their ends.
        InventoryError: traffic to Service or pod addresses the inventory does not explain.
    """
    from segmenter.analysis.clusterips import NodeLocalDns
    from segmenter.gcpause import no_gc
    from segmenter.graph.build import graph_from_summary
    from segmenter.graph.fold import GraphFold

    if inventory is None:
        inventory = inventory_from_records(traffic)
    ends = None
    if isinstance(inventory, DerivedInventory):
        ends = FlowEnds(inventory.inventory, notes=inventory.notes)
        inventory = inventory.inventory
    fold = GraphFold(inventory, traffic.dns, ends=ends)
    replayed = ReplayFold(inventory, traffic.dns) if replay else None
    node_local = NodeLocalDns(inventory, fold.resolver)
    observe = replayed.observe if replayed is not None else None
    # Nothing the passes allocate makes reference cycles, and they allocate per flow.
    with no_gc():
        if isinstance(traffic, FlowStream):
            for chunk in traffic.chunks():
                fold.add(chunk, observe)
                node_local.add(chunk)
        else:
            fold.add(traffic.flows, observe)
            node_local.add(traffic.flows)
    graph = graph_from_summary(fold.summary, inventory, traffic.dns, resolver=fold.resolver,
                               networks=networks, derived=fold.ends.derived,
                               notes=fold.ends.notes)
    return TrafficPass(graph, inventory, replayed, fold.summary.flows, node_local.seen)


# Summary files of at least this many bytes in all are added up by DuckDB when it is installed
# (``engine="auto"``): below it, reading them in this process is as fast and needs nothing more.
DUCKDB_FROM_BYTES: Final = 64 * 1024 * 1024
ENGINES: Final = ("auto", "duckdb", "python")


def summarize(flow_paths: Sequence[str], inventory: Inventory, out: str, *, node: str,
              window: int = 3600) -> tuple[int, int]:
    """Fold one capture node's flow files into its graph summary per ``window`` seconds, written
    as Parquet to ``out`` (:mod:`segmenter.graph.summaries`); returns (edge rows, flows).

    Raises:
        InputError: bad flow files, a window that is not a positive number of seconds, or
            pyarrow missing.
    """
    from segmenter.graph.fold import GraphFold
    from segmenter.graph.summaries import write_summary

    if window <= 0:
        raise InputError(f"--window must be a positive number of seconds, not {window}")
    traffic = open_traffic(flow_paths)
    fold = GraphFold(inventory, traffic.dns, window=window)
    with _no_gc():
        fold.add(traffic.flows)
    return write_summary(out, fold.summary, traffic.dns, node=node), fold.summary.flows


def graph_from_summaries(paths: Sequence[str], inventory: Inventory,
                         networks: ClusterNetworks | None = None, *, engine: str = "auto"
                         ) -> nx.DiGraph:
    """The graph of every node's summary files, added up by DuckDB or in this process
    (``auto``: DuckDB for :data:`DUCKDB_FROM_BYTES` and more, when installed); the same graph
    either way, and the graph of all their flows.

    Raises:
        InputError: a file that is not a graph summary, summaries of different windows, or
            the engine's package missing.
        InventoryError: traffic to Service or pod addresses the inventory does not explain.
    """
    import importlib.util

    from segmenter.graph.build import graph_from_summary
    from segmenter.graph.summaries import duckdb_summary, merge_summaries

    if engine not in ENGINES:
        raise InputError(f"unknown engine {engine!r} (one of {', '.join(ENGINES)})")
    if engine == "auto":
        size = sum(os.path.getsize(p) for p in paths if os.path.isfile(p))
        big = size >= DUCKDB_FROM_BYTES and importlib.util.find_spec("duckdb") is not None
        engine = "duckdb" if big else "python"
    if engine == "duckdb":
        merged, dns = duckdb_summary(paths)
    else:
        merged, dns = merge_summaries(paths, windows=False)
    return graph_from_summary(merged, inventory, dns, networks=networks)


def left_out_note(graph: nx.DiGraph) -> str | None:
    """What the graph left out for special addresses (loopback, link-local, multicast,
    broadcast), in words, or None."""
    from segmenter.graph.addresses import special_summary

    special = graph.graph.get("special_addresses")
    if not special:
        return None
    return ("left out of the graph and the policies, no policy names such a peer: "
            f"{special_summary(special)}")


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


def choose_targets(names: Sequence[str] = (), inventory: Inventory | None = None, *,
                   live: bool = False, context: str | None = None,
                   kubeconfig: str | None = None) -> tuple[list[Target], list[str]]:
    """The targets to write, and notes on how they were chosen: the ``names`` given (every
    registered target when none), or with ``auto`` the targets the cluster enforces, from the
    inventory's policy engines and, with ``live``, the API groups the cluster serves.

    Raises:
        InputError: ``auto`` with other names, or nothing recognisable for ``auto``.
        UnknownNameError: a name that is no target.
    """
    if not names:
        return list(TARGETS.values()), []
    if AUTO not in names:
        return [get_target(n) for n in dict.fromkeys(names)], []
    if set(names) != {AUTO}:
        raise InputError("--dialect auto picks the targets itself: do not name others with it")
    served = None
    if live:
        from segmenter.cluster.cni import served_api_groups

        served = served_api_groups(context=context, kubeconfig=kubeconfig)
    found = detect_targets(inventory, served)
    names_chosen = ", ".join(t.name for t in found.targets)
    return list(found.targets), [f"--dialect auto chose {names_chosen}: "
                                 + "; ".join(found.evidence)]


def writer_options(config: Config | None, flags: Mapping[str, Mapping[str, bool]] | None = None
                   ) -> dict[str, dict[str, bool]]:
    """Each target's writer options: ``compile.targets`` of segmenter.yaml, then ``flags``
    (the command line) over them.

    Raises:
        UnknownNameError: an unknown target or option in the config.
    """
    out = target_options(config.compile.targets, path=config.path) if config else {}
    for name, options in (flags or {}).items():
        out.setdefault(name, {}).update(options)
    return out


def emit(policy_set: PolicySet, targets: Sequence[Target], *, best_effort: bool = False,
         staged: bool = False, options: Mapping[str, Mapping[str, bool]] | None = None
         ) -> dict[str, Output]:
    """Every target's manifests for one policy set; ``options``: each target's writer options
    by target name (:func:`writer_options`).

    Raises:
        UnsupportedError: what any target cannot express, all targets' reasons at once (unless
            ``best_effort``: then they are each output's ``dropped``).
    """
    outputs: dict[str, Output] = {}
    problems: list[str] = []
    for target in targets:
        try:
            outputs[target.name] = target.dialect(
                best_effort=best_effort, staged=staged,
                **(options or {}).get(target.name, {})).emit(policy_set)
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
                      context: str | None = None, kubeconfig: str | None = None,
                      target: Target | None = None) -> PolicyDocs:
    """The policies a check judges: files and folders, or the policies in force (the cluster
    must then serve ``target``'s API groups, when the enforcement to judge under is known)."""
    from segmenter.analysis.policies import from_cluster, from_paths

    if cluster:
        return from_cluster(context=context, kubeconfig=kubeconfig, target=target)
    if not paths:
        raise InputError("give --policies DIR... or --cluster")
    return from_paths(list(paths))


def cluster_facts(*, context: str | None = None, kubeconfig: str | None = None) -> Any:
    """What the evidence report records of a live cluster besides its policies: the policy
    API groups it serves, its RBAC objects and the policy engines it runs
    (:class:`segmenter.views.report.cluster.ClusterFacts`)."""
    from segmenter.cluster.cni import live_engines, served_api_groups
    from segmenter.cluster.rbac import read_rbac
    from segmenter.views.report.cluster import ClusterFacts, served_policy_groups

    rbac = read_rbac(context=context, kubeconfig=kubeconfig)
    groups = served_api_groups(context=context, kubeconfig=kubeconfig)
    engines = live_engines(context=context, kubeconfig=kubeconfig)
    return ClusterFacts(rbac.host, served_policy_groups(groups), rbac, engines)


def verify(traffic: Traffic, inventory: Inventory, policies: PolicyDocs,
           target: Target, networks: ClusterNetworks | None = None) -> list[FlowVerdict]:
    """Every observed flow replayed against the policies under ``target``'s enforcement (the
    traffic's DNS answers name external addresses, for targets that allow by name), one
    verdict per flow (:func:`replay` groups them without holding the flows).

    Raises:
        InventoryError: traffic to Service or pod addresses the inventory does not explain.
    """
    return verify_flows(traffic.flows, inventory, policies.manifests, enforcement=target.name,
                        dns=traffic.dns, networks=networks)


def replay(traffic: TrafficSource, inventory: Inventory, policies: PolicyDocs, target: Target,
           networks: ClusterNetworks | None = None) -> Replay:
    """:func:`verify`, grouped per (client, server, protocol, port, verdict), in one pass over
    the flows that holds none of them.

    Raises:
        InventoryError: traffic to Service or pod addresses the inventory does not explain.
    """
    fold, _ = _replay_pass(traffic, inventory, networks)
    return fold.replay(replay_engine(inventory, policies.manifests, enforcement=target.name))


def _replay_pass(traffic: TrafficSource, inventory: Inventory,
                 networks: ClusterNetworks | None) -> tuple[ReplayFold, bool]:
    """The flows folded for replay, and whether they went to NodeLocal DNSCache."""
    from segmenter.analysis.clusterips import NodeLocalDns

    fold = ReplayFold(inventory, traffic.dns)
    node_local = NodeLocalDns(inventory)
    with _no_gc():
        chunks = traffic.chunks() if isinstance(traffic, FlowStream) else [traffic.flows]
        for chunk in chunks:
            fold.add(chunk)
            node_local.add(chunk)
    fold.check_inventory(networks)
    return fold, node_local.seen


def policy_notes(traffic: TrafficSource, inventory: Inventory, policies: PolicyDocs,
                 networks: ClusterNetworks | None = None, *,
                 node_local_dns: bool | None = None) -> list[str]:
    """What a check says about the policies besides the verdicts: CIDRs inside the Service
    range, which never match (:mod:`segmenter.analysis.clusterips`). ``node_local_dns``:
    whether the flows went to NodeLocal DNSCache, when a pass over them already found out."""
    from segmenter.analysis.clusterips import cluster_ip_notes, shows_node_local_dns
    from segmenter.graph.ranges import cluster_ranges

    ranges = cluster_ranges(inventory, traffic.dns, networks)
    if node_local_dns is None:
        node_local_dns = shows_node_local_dns(traffic.flows, inventory)
    return cluster_ip_notes(policies.manifests, inventory, ranges, node_local_dns=node_local_dns)


def enforcement_for(policies: PolicyDocs | Sequence[PolicyDocs], named: str | None = None, *,
                    sides: bool = False) -> Enforcement:
    """The enforcement that judges ``policies`` (one set, or the ``sides`` of a diff): the
    target the documents are written for, else ``named``, else what the cluster they were read
    from serves.

    Raises:
        InputError: an empty set, a set without a policy, objects of two targets, a conflict
            with ``named``, or Kubernetes NetworkPolicies alone with nothing to tell.
    """
    return resolve_enforcement(policies, named, allow_empty_sides=sides)


@dataclass(frozen=True)
class Verification:
    """What ``verify`` found: every observed flow's verdict (grouped), with a plan the isolation
    of the in-scope workloads, and the findings the gate exits on."""

    enforcement: Enforcement
    verdicts: Replay
    isolation: IsolationCheck | None
    findings: list[Finding]
    node_local_dns: bool = False  # the flows went to NodeLocal DNSCache (policy_notes)


def flow_findings(verdicts: Iterable[Judged]) -> list[Finding]:
    """One ``denied-flow`` finding per denied (client, server, protocol, port): replayed flows
    one by one or in groups give the same findings (the reason named is the least, in words,
    of the group's denials)."""
    groups: dict[tuple[str, str, str, int | None], list[Judged]] = {}
    for v in verdicts:
        if not v.allowed:
            groups.setdefault((v.client, v.server, str(v.transport), v.port), []).append(v)
    out = []
    for (client, server, protocol, port), found in groups.items():
        what = protocol if port is None else f"{protocol}/{port}"
        flows = sum(v.flows for v in found)
        reason = min(v.verdict.summary() for v in found)
        out.append(Finding.of(FindingKind.DENIED_FLOW, f"{client} -> {server} {what}",
                              f"observed flow {client} -> {server} {what} ({flows} "
                              f"flow{'s' if flows != 1 else ''}) is {reason}"))
    return sorted(out)


def rejected_findings(policies: PolicyDocs) -> list[Finding]:
    """One ``invalid-policy`` finding per document left out as the API server would."""
    return [Finding.of(FindingKind.INVALID_POLICY, r.split(":", 1)[0],
                       f"invalid policy left out (not in force): {r}")
            for r in policies.rejected]


def verify_gate(traffic: TrafficSource, inventory: Inventory, policies: PolicyDocs,
                enforcement: Enforcement, plan_: Plan | None = None) -> Verification:
    """Replay every observed flow and, with a plan, probe the isolation of every restricted and
    connected workload (:mod:`segmenter.analysis.isolation`)."""
    fold, node_local = _replay_pass(traffic, inventory, None)
    verdicts = fold.replay(replay_engine(inventory, policies.manifests,
                                         enforcement=enforcement.target.name))
    findings = [*flow_findings(verdicts), *rejected_findings(policies)]
    isolation = None
    if plan_ is not None:
        isolation = check_from_flows(plan_, inventory, policies.manifests, verdicts,
                                     enforcement=enforcement.name,
                                     finder=EndpointFinder(inventory, traffic.dns))
        findings.extend(isolation.findings())
    return Verification(enforcement, verdicts, isolation, sorted(set(findings)), node_local)


def diff(old: PolicyDocs, new: PolicyDocs, *, inventory: Inventory | None = None,
         flows: Sequence[Flow] = (), target: Target | None = None,
         max_workloads: int = 200) -> tuple[StructuralDiff, SemanticDiff | None]:
    """Objects that change between two policy sets and, with an inventory, the connections and
    observed flows that change verdict under ``target``'s enforcement (by default the one the
    sides are written for: :func:`enforcement_for`, which refuses to guess).

    Raises:
        InputError: no ``target`` and none the sides tell (Kubernetes NetworkPolicies alone).
    """
    structural = diff_policies(old.manifests, new.manifests)
    semantic = None
    if inventory is not None:
        chosen = target or enforcement_for([old, new], sides=True).target
        semantic = semantic_diff(list(old.manifests), list(new.manifests), inventory, flows,
                                 chosen.name, max_workloads=max_workloads,
                                 focus_namespaces=structural.touched_namespaces())
    return structural, semantic


RUN_MANIFEST: Final = ".segmenter-run.json"
RUN_FILES: Final = ("flows.jsonl", "graph.json", "plan.json", "graph.png")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_run_manifest(folder: Path) -> dict[str, str]:
    """The files a previous ``run`` wrote into ``folder`` (relative path -> SHA-256)."""
    import json

    path = folder / RUN_MANIFEST
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"unreadable record of a previous run ({exc}); remove it or pass "
                         "--force", path=str(path)) from None
    files = data.get("files") if isinstance(data, dict) else None
    if data.get("format") != "segmenter-run" or not isinstance(files, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        raise InputError("not a record of a previous run (format segmenter-run, files: "
                         "{path: sha256}); remove it or pass --force", path=str(path))
    return dict(files)


def check_run_folder(folder: str | os.PathLike[str], targets: Sequence[Target]) -> None:
    """Refuse to replace what ``run`` did not write: every file at one of the paths ``run``
    writes (its four files and every target's folder, which is replaced whole) must be listed
    in the folder's run manifest with the same SHA-256. Other files are never touched, so they
    are left alone (a README, a report folder, apply's backups).

    Raises:
        InputError: naming the first file ``run`` did not write, or that changed since.
    """
    root = Path(folder)
    if not root.is_dir():
        return
    recorded = _read_run_manifest(root)
    candidates: list[Path] = []
    for name in (*RUN_FILES, *(t.name for t in targets)):
        path = root / name
        if path.is_dir() and not path.is_symlink():
            candidates.extend(sorted(p for p in path.rglob("*") if not p.is_dir()
                                     or p.is_symlink()))
        elif path.exists() or path.is_symlink():
            candidates.append(path)
    for path in candidates:
        rel = path.relative_to(root).as_posix()
        if rel not in recorded:
            raise InputError("was not written by segmenter run, which would replace or delete "
                             "it: move it out of the output folder, choose another -o, or "
                             "pass --force", path=str(path))
        if path.is_symlink() or not path.is_file() or _sha256(path) != recorded[rel]:
            raise InputError("changed since segmenter run wrote it, which would replace or "
                             "delete it: move it out of the output folder, or pass --force",
                             path=str(path))


def _record_run(folder: Path, recorded: dict[str, str], paths: Sequence[Path]) -> None:
    """Add ``paths`` (files, or folders of files) to the folder's run manifest."""
    from segmenter.fileio import atomic_write_json

    for path in paths:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        prefix = f"{path.relative_to(folder).as_posix()}/"
        if path.is_dir():
            for rel in [r for r in recorded if r.startswith(prefix)]:
                del recorded[rel]  # the folder was replaced whole
        for file in files:
            recorded[file.relative_to(folder).as_posix()] = _sha256(file)
    atomic_write_json(folder / RUN_MANIFEST, {"format": "segmenter-run", "version": 1,
                                              "files": dict(sorted(recorded.items()))})


@dataclass(frozen=True)
class RunResult:
    """What ``run`` wrote and found."""

    ingest: IngestResult
    graph: nx.DiGraph
    plan: Plan
    traffic: TrafficSource  # the flow file written, as a stream
    out_dirs: dict[str, str]
    files: dict[str, int]  # target -> policy files written
    notes: list[str]
    verdicts: dict[str, Replay] = field(default_factory=dict)
    inventory: Inventory | None = None  # the inventory used (built from the records or not)
    flows: int = 0  # flows in the flow file

    @property
    def not_replayed(self) -> int:
        """Flows the self-check did not replay: not forwarded, or with an end no workload
        matches (see the graph's ``blocked`` and ``identity``)."""
        replayed = max((v.flows for v in self.verdicts.values()), default=0)
        return self.flows - replayed


def run(sources: Sequence[str], inventory_paths: Sequence[str] | None,
        out: str | os.PathLike[str], *,
        config: str | None = None, sensitive: Sequence[str] = (), best_effort: bool = False,
        staged: bool = False, progress: bool = False, force: bool = False,
        draw: Callable[[nx.DiGraph, Plan, Path, str], Any] | None = None,
        dialects: Sequence[str] = (), detect_live: bool = False, context: str | None = None,
        kubeconfig: str | None = None,
        options: Mapping[str, Mapping[str, bool]] | None = None) -> RunResult:
    """Every stage: traffic -> flow file -> graph -> plan -> the targets' policies -> the
    self-check of every observed flow under each target's enforcement.

    ``dialects``: the targets to write (:func:`choose_targets`: every one by default, ``auto``
    for those the cluster enforces); ``options``: writer options over the config's.
    Every input is read and checked before anything is written; a plan that a target cannot
    express leaves no new file beside the flow file. Without ``inventory_paths``, the inventory
    is built from the flow records (:func:`inventory_from_records`: every record must carry
    identities). ``draw(graph, plan, path, title)`` draws the zone map (the views layer
    supplies it). The flow file is streamed: the graph and the distinct connections the
    self-check replays come from one pass over it (:func:`graph_and_replay`), and memory does
    not grow with the flows.

    What it writes is recorded in ``out``/.segmenter-run.json (paths and SHA-256); a file at
    one of its paths that it did not write, or that changed since, is refused before anything
    is written (:func:`check_run_folder`), unless ``force``.
    """
    from segmenter.fileio import atomic_write_json, ensure_folder
    from segmenter.planner import plan_to_dict

    folder = Path(out)
    configuration = read_config(config, sensitive)
    given = read_inventory(inventory_paths) if inventory_paths else None
    # --dialect auto reads the CNI from the inventory given (an inventory built from the
    # records shows none: auto then needs the cluster, or fails).
    targets, chosen = choose_targets(dialects, given or Inventory(), live=detect_live,
                                     context=context, kubeconfig=kubeconfig)
    writers = writer_options(configuration, options)
    recorded: dict[str, str] = {}
    if not force:
        check_run_folder(folder, targets)
        recorded = _read_run_manifest(folder) if folder.is_dir() else {}
    ensure_folder(folder)
    flows_path = str(folder / "flows.jsonl")
    ingested = ingest(sources, flows_path, progress=progress)
    _record_run(folder, recorded, [Path(flows_path)])
    traffic = open_traffic([flows_path])
    passed = graph_and_replay(traffic, given, configuration.cluster)
    graph, inventory = passed.graph, passed.inventory
    result = make_plan(graph, configuration)
    out_dirs = {t.name: str(folder / t.name) for t in targets}
    policy_set = compile_policies(graph, result, inventory, configuration.compile)
    outputs = emit(policy_set, targets, best_effort=best_effort, staged=staged, options=writers)
    notes = [*chosen, *policy_set.notes, *write_outputs(outputs, out_dirs)]
    left_out = left_out_note(graph)
    if left_out is not None:
        notes.append(left_out)
    _record_run(folder, recorded, [Path(d) for d in out_dirs.values()])
    save_graph(graph, str(folder / "graph.json"))
    atomic_write_json(folder / "plan.json", plan_to_dict(result))
    files_written = [folder / "graph.json", folder / "plan.json"]
    if draw is not None:
        draw(graph, result, folder / "graph.png", f"{passed.flows} observed flows by zone")
        files_written.append(folder / "graph.png")
    _record_run(folder, recorded, files_written)
    verdicts = {}
    files = {}
    assert passed.replay is not None
    for target in targets:
        written = load_policies([out_dirs[target.name]], target)
        verdicts[target.name] = passed.replay.replay(
            replay_engine(inventory, written.manifests, enforcement=target.name))
        notes.extend(f"{target.name}: {n}"
                     for n in policy_notes(traffic, inventory, written, configuration.cluster,
                                           node_local_dns=passed.node_local_dns))
        files[target.name] = sum(1 for f in Path(out_dirs[target.name]).rglob("*.yaml")
                                 if f.name != "kustomization.yaml")
    return RunResult(ingested, graph, result, traffic, out_dirs, files, notes, verdicts,
                     inventory, passed.flows)


__all__ = [
    "AUTO",
    "RUN_MANIFEST",
    "IngestResult",
    "PolicySource",
    "RunResult",
    "Verification",
    "check_run_folder",
    "choose_targets",
    "compile_policies",
    "diff",
    "emit",
    "enforcement_for",
    "flow_findings",
    "graph_and_replay",
    "graph_from_summaries",
    "ingest",
    "inventory_from_records",
    "left_out_note",
    "live_inventory",
    "make_graph",
    "make_plan",
    "open_traffic",
    "policies_to_judge",
    "policy_notes",
    "read_config",
    "read_inventory",
    "read_traffic",
    "rejected_findings",
    "replay",
    "run",
    "summarize",
    "verify",
    "verify_gate",
    "write_outputs",
    "writer_options",
]
