"""The set-up the policy-judging benchmarks share (``isolation.py``, ``segmentation.py``): a
made-up cluster (:func:`segmenter.synthetic.synthetic_cluster`) of the size the command line
gives, planned and compiled for one target, with its endpoints for the engine."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

import networkx as nx

from segmenter.analysis.policies import PolicyDocs, from_policy_set
from segmenter.analysis.reachability import eval_endpoints
from segmenter.config import Config
from segmenter.model import Inventory
from segmenter.planner import Plan, plan
from segmenter.policy.dns import detect_dns
from segmenter.policy.lower import lower
from segmenter.synthetic import synthetic_cluster
from segmenter.targets import Target, get_target, target_names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workloads", type=int, default=2000)
    parser.add_argument("--namespaces", type=int, default=50)
    parser.add_argument("--edges", type=int, default=10_000)
    parser.add_argument("--enforcement", choices=target_names(), default=target_names()[0])


@dataclass(frozen=True)
class PlannedCluster:
    graph: nx.DiGraph
    inventory: Inventory
    result: Plan
    target: Target
    docs: PolicyDocs
    namespaces: dict[str, Any]
    endpoints: dict[str, Any]  # graph node -> its evaluator endpoint


def planned_cluster(args: argparse.Namespace) -> PlannedCluster:
    cluster = synthetic_cluster(args.workloads, args.namespaces, args.edges)
    graph, inventory = cluster.graph, cluster.inventory()
    result = plan(graph, Config(), dns_nodes=["kube-system/Deployment/coredns"])
    target = get_target(args.enforcement)
    docs = from_policy_set(lower(graph, result, inventory, dns=detect_dns(graph, inventory)),
                           target)
    return PlannedCluster(graph, inventory, result, target, docs,
                          {ns.name: ns.labels for ns in inventory.namespaces},
                          eval_endpoints(graph, inventory))
