"""The connectivity map (segmenter.analysis.connectivity): every pair's allowed protocols and
ports agree with the evaluator's check on any port, and the map equals network-config-analyzer's
(``nca --connectivity``) on a small cluster when nca is installed (tests/nca.py says how).

The cluster is ``synthetic_cluster`` with the Kubernetes policies segmenter compiles for it,
plus hand-written policies with a port range, a named port and a protocol without a port
(documented shapes: networking.k8s.io/v1 NetworkPolicyPort ``port``/``endPort``, a named
container port, ``protocol`` alone).
"""

from __future__ import annotations

import random
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segmenter import pipeline
from segmenter.analysis.connectivity import (
    PROTOCOLS,
    connectivity_map,
    intersect_ranges,
    merge_ranges,
    port_intervals,
)
from segmenter.analysis.policies import from_policy_set
from segmenter.analysis.verify import EndpointFinder
from segmenter.config import Config
from segmenter.evaluate import PolicyEngine
from segmenter.model import Inventory, Transport
from segmenter.synthetic import synthetic_cluster
from segmenter.targets import get_target
from tests.nca import find_nca, run_connectivity, write_inputs

EXTRA = {
    "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
    "metadata": {"name": "ranges", "namespace": "ns001"},
    "spec": {"podSelector": {"matchLabels": {"tier": "t1"}}, "policyTypes": ["Ingress"],
             "ingress": [{"from": [{"namespaceSelector": {}}],
                          "ports": [{"protocol": "TCP", "port": 8000, "endPort": 8100},
                                    {"protocol": "UDP", "port": "http"},
                                    {"protocol": "SCTP"}]}]},
}
EXTRA_EGRESS = {
    "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
    "metadata": {"name": "ranges-out", "namespace": "ns000"},
    "spec": {"podSelector": {}, "policyTypes": ["Egress"],
             "egress": [{"to": [{"namespaceSelector": {},
                                 "podSelector": {"matchLabels": {"tier": "t1"}}}],
                         "ports": [{"protocol": "TCP", "port": 8050, "endPort": 8200}]}]},
}


@cache
def _case(workloads: int = 12) -> tuple[Inventory, tuple[dict[str, Any], ...]]:
    builder = synthetic_cluster(workloads, 3, workloads * 3, seed=5)
    inventory = builder.inventory()
    plan = pipeline.make_plan(builder.graph, Config())
    docs = from_policy_set(pipeline.compile_policies(builder.graph, plan, inventory),
                           get_target("kubernetes"))
    return inventory, (*docs.manifests, EXTRA, EXTRA_EGRESS)


def test_ranges_helpers() -> None:
    assert port_intervals([]) == [(1, 65535)]
    assert port_intervals([1, 65535]) == [(1, 1), (2, 65534), (65535, 65535)]
    assert merge_ranges([(5, 6), (1, 2), (3, 4), (8, 9)]) == ((1, 6), (8, 9))
    assert intersect_ranges(((1, 10),), ((11, 20),)) == ()


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_the_map_agrees_with_the_evaluator_on_any_port(seed: int) -> None:
    inventory, manifests = _case()
    found = connectivity_map(inventory, manifests)
    engine = PolicyEngine.from_manifests(
        manifests, namespaces={ns.name: ns.labels for ns in inventory.namespaces})
    rng = random.Random(seed)
    pods = list(inventory.pods)
    checked = 0
    for _ in range(60):
        src, dst = rng.sample(pods, 2)
        transport = rng.choice(PROTOCOLS)
        port = rng.choice([rng.randint(1, 65535), 53, 80, 443, 5432, 8080, 8000, 8100, 8101,
                           7999, 8050, 8049, 8200])
        verdict = engine.check(EndpointFinder.of_pod(src), EndpointFinder.of_pod(dst),
                               transport, port).allowed
        ranges = found.get((f"{src.namespace}/{src.name}", f"{dst.namespace}/{dst.name}"),
                           {}).get(transport, ())
        assert verdict == any(a <= port <= b for a, b in ranges), (src.name, dst.name,
                                                                   transport, port)
        checked += 1
    assert checked == 60


def test_the_map_has_both_allowed_and_denied_pairs_and_the_range() -> None:
    inventory, manifests = _case()
    found = connectivity_map(inventory, manifests)
    n = len(inventory.pods)
    assert 0 < len(found) < n * (n - 1)
    # the extra policies' ranges intersected: egress 8050-8200, ingress 8000-8100
    ranged = [c for c in found.values() if (8050, 8100) in c.get(Transport.TCP, ())]
    assert ranged, "the intersection of the extra policies' ranges shows in the map"


def test_the_map_equals_network_config_analyzers(tmp_path: Path) -> None:
    nca = find_nca()
    if nca is None:
        pytest.skip("nca (network-config-analyzer) not installed: it pins its dependencies, so "
                    "install it in its own venv (python3 -m venv /tmp/nca-venv && "
                    "/tmp/nca-venv/bin/pip install network-config-analyzer) or set SEGMENTER_NCA")
    inventory, manifests = _case(8)
    ours = connectivity_map(inventory, manifests)
    theirs, _ = run_connectivity(nca, write_inputs(tmp_path, inventory, manifests))
    assert theirs, "nca reported pod-to-pod connections"
    assert ours == theirs
