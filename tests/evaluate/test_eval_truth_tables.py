"""Third-party truth tables: np-guard netpol-analyzer connlists, cyclonus probes and queries, and
the Kubernetes NetworkPolicy recipes (``../shared/corpora`` beside the repository; the tests skip
when it is absent)."""

from __future__ import annotations

import csv
import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from eval_helpers import TCP
from npguard import case_names, compare, load_scenario, npguard_dir, shared_dir

from segmenter.evaluate import EvalEndpoint, PolicyEngine, load_manifests
from segmenter.model import ContainerPort, Labels, Transport

logger = logging.getLogger(__name__)

# Agreement recorded when the engine was written (np-guard e54a3343): every applicable scenario
# agrees, under both enforcement modes. The test fails if agreement drops below this.
NPGUARD_APPLICABLE = 36
NPGUARD_AGREEING = 36
# Scenarios that disagree, with why (our bug not fixed, or a known upstream error). None today.
KNOWN_DISAGREEMENTS: dict[str, str] = {}

CYCLONUS = shared_dir() / "corpora" / "netpol-truth-tables" / "cyclonus"
RECIPES = shared_dir() / "corpora" / "netpol-recipes"


def _need(path: Path) -> None:
    if not path.is_dir():
        pytest.skip(f"shared corpus not found at {path} (expected beside the repository)")


# ------------------------------------------------------------------------------------------------
# np-guard


@pytest.mark.parametrize("enforcement", ["kubernetes", "calico"])
def test_npguard_connlists(enforcement: str) -> None:
    _need(npguard_dir())
    agree: list[str] = []
    disagree: dict[str, list[str]] = {}
    not_applicable: dict[str, str] = {}
    for case in case_names():
        scenario = load_scenario(case)
        if isinstance(scenario, str):
            not_applicable[case] = scenario
            continue
        # np-guard matches ipBlocks against external addresses only; pods get IPv6 addresses
        # that no IPv4 block can hold, so Calico's "ipBlock matches pods too" changes nothing.
        engine = PolicyEngine.from_manifests(scenario.manifests, namespaces=scenario.namespaces,
                                             enforcement=enforcement,
                                             ipblock_matches_pods=False)
        problems = compare(scenario, engine=engine)
        if problems:
            disagree[case] = problems
        else:
            agree.append(case)
    applicable = len(agree) + len(disagree)
    logger.info("np-guard (%s): %d of %d applicable scenarios agree; %d not applicable",
                enforcement, len(agree), applicable, len(not_applicable))
    unexplained = {c: p[:5] for c, p in disagree.items() if c not in KNOWN_DISAGREEMENTS}
    assert not unexplained, f"new disagreements with np-guard: {unexplained}"
    assert applicable == NPGUARD_APPLICABLE, (
        f"{applicable} applicable scenarios, expected {NPGUARD_APPLICABLE}: the corpus or the "
        f"applicability rules changed ({sorted(not_applicable.items())[:5]})")
    assert len(agree) >= NPGUARD_AGREEING, f"agreement dropped: {len(agree)} < {NPGUARD_AGREEING}"


def test_npguard_harness_detects_a_wrong_answer() -> None:
    _need(npguard_dir())
    scenario = load_scenario("minimal_test_in_ns")
    assert not isinstance(scenario, str)
    # Drop the policy: np-guard's restricted connections must now be reported.
    scenario.manifests = [d for d in scenario.manifests if d.get("kind") != "NetworkPolicy"]
    engine = PolicyEngine.from_manifests(scenario.manifests, namespaces=scenario.namespaces,
                                         ipblock_matches_pods=False)
    assert compare(scenario, engine=engine)


def test_npguard_applicability_rules() -> None:
    _need(npguard_dir())
    assert "AdminNetworkPolicy" in str(load_scenario("anp_demo"))
    assert "Ingress" in str(load_scenario("one_ingress_multiple_ports"))
    assert "no input folder" in str(load_scenario("anp_demo_udp-52"))


# ------------------------------------------------------------------------------------------------
# cyclonus


def _cyclonus_engine(namespaces: dict[str, Labels]) -> PolicyEngine:
    docs = load_manifests([str(CYCLONUS / "networkpolicies" / "simple-example")])
    return PolicyEngine.from_manifests(docs, namespaces=namespaces)


def _parse_probe_tables(text: str) -> list[dict[str, dict[tuple[str, str], bool]]]:
    """Blocks of {Ingress, Egress, Combined} → {(src, dst): allowed}.

    ``.`` is allowed and ``X`` denied; other marks (``N``: nothing listens on the port, ``?``:
    unknown) are not policy answers and are left out.
    """
    blocks: list[dict[str, dict[tuple[str, str], bool]]] = []
    current: dict[tuple[str, str], bool] | None = None
    columns: list[str] = []
    for line in text.splitlines():
        header = re.match(r"^(Ingress|Egress|Combined):$", line)
        if header:
            if header.group(1) == "Ingress":
                blocks.append({})
            current = blocks[-1].setdefault(header.group(1), {})
            columns = []
            continue
        if current is None or not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if not cells[0] and len(cells) > 1 and cells[1]:
            columns = [c.lower() for c in cells[1:]]
        elif cells[0] and columns:
            for col, mark in zip(columns, cells[1:], strict=True):
                if mark in (".", "X"):
                    current[(cells[0], col)] = mark == "."
    return blocks


def test_cyclonus_probe() -> None:
    _need(CYCLONUS)
    probe = json.loads((CYCLONUS / "examples" / "probe.json").read_text())
    namespaces = {ns: Labels.of(lbl) for ns, lbl in probe["Resources"]["Namespaces"].items()}
    pods: dict[str, EvalEndpoint] = {}
    for i, p in enumerate(probe["Resources"]["Pods"]):
        # cyclonus reuses IPs across namespaces; the engine treats equal IPs as the same pod
        # (a pod always reaches itself), so give every pod its own address.
        pods[f"{p['Namespace']}/{p['Name']}"] = EvalEndpoint(
            ip=f"192.168.2.{i + 1}", namespace=p["Namespace"], labels=Labels.of(p["Labels"]),
            ports=tuple(ContainerPort(c["Port"], Transport.parse(c["Protocol"]),
                                      c.get("PortName")) for c in p["Containers"]))
    blocks = _parse_probe_tables((CYCLONUS / "examples" / "analyze-probe-output.txt")
                                 .read_text())
    blocks = blocks[: len(probe["Probes"])]  # a trailing empty block
    assert len(blocks) == len(probe["Probes"]) == 3
    engine = _cyclonus_engine(namespaces)
    checked = 0
    for spec, tables in zip(probe["Probes"], blocks, strict=True):
        proto = Transport.parse(spec["Protocol"])
        for (src, dst), expected in tables["Combined"].items():
            if src == dst:
                continue  # cyclonus evaluates self-traffic by policy; a pod always reaches itself
            v = engine.check(pods[src], pods[dst], proto, spec["Port"])
            assert v.ingress.allowed == tables["Ingress"][(src, dst)], (src, dst, spec)
            assert v.egress.allowed == tables["Egress"][(src, dst)], (src, dst, spec)
            assert v.allowed == expected, (src, dst, spec)
            checked += 1
    assert checked == 2 * 9 * 8  # TCP 80 and 81; nothing listens on 82


def _endpoint(side: dict[str, Any], namespaces: dict[str, Labels], port: int,
              port_name: str | None) -> EvalEndpoint:
    internal = side.get("Internal")
    if not internal:
        return EvalEndpoint(ip=side["IP"])
    namespaces[internal["Namespace"]] = Labels.of(internal["NamespaceLabels"])
    ports = (ContainerPort(port, TCP, port_name),) if port_name else ()
    return EvalEndpoint(ip=side.get("IP") or "192.168.3.1", namespace=internal["Namespace"],
                        labels=Labels.of(internal["PodLabels"]), ports=ports)


def test_cyclonus_query_traffic() -> None:
    _need(CYCLONUS)
    traffic = json.loads((CYCLONUS / "examples" / "traffic.json").read_text())
    text = (CYCLONUS / "examples" / "analyze-query-traffic-output.txt").read_text()
    answers = re.findall(r"IS ALLOWED\? \|\s+(TRUE|FALSE)", text)
    assert len(answers) == len(traffic) == 4
    for item, answer in zip(traffic, answers, strict=True):
        namespaces: dict[str, Labels] = {}
        port, name = item["ResolvedPort"], item.get("ResolvedPortName")
        src = _endpoint(item["Source"], namespaces, port, None)
        dst = _endpoint(item["Destination"], namespaces, port, name)
        verdict = _cyclonus_engine(namespaces).check(src, dst, item["Protocol"], port)
        assert verdict.allowed == (answer == "TRUE"), item


# ------------------------------------------------------------------------------------------------
# Kubernetes network policy recipes

# Rows whose claimed outcome (the recipe text) is wrong by the NetworkPolicy spec (see the corpus
# README): recipe, client labels, server → the outcome the spec gives.
RECIPE_TEXT_ERRORS = {("14", "app=foo", "web.default"): "deny"}


def _labels(text: str) -> Labels:
    if text.startswith("("):
        return Labels()
    return Labels.of(dict(kv.split("=", 1) for kv in text.split(";")))


def _recipe_docs(row: dict[str, str]) -> list[dict[str, Any]]:
    name, _, which = row["policy_file"].partition(" (")
    docs = load_manifests([str(RECIPES / "policies" / name)])
    if which:
        docs = [docs[0 if which.startswith("1st") else 1]]
    if row["recipe"] == "02a":  # stacked on top of recipe 01
        docs = load_manifests([str(RECIPES / "policies" /
                                   "01-deny-all-traffic-to-an-application.yaml")]) + docs
    return docs


def _recipe_rows() -> list[dict[str, str]]:
    if not RECIPES.is_dir():
        return []
    with (RECIPES / "expectations.csv").open() as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("row", _recipe_rows() or [None],
                         ids=lambda r: f"{r['recipe']}-{r['client_labels']}-{r['port']}"
                         if r else "absent")
def test_recipes(row: dict[str, str] | None) -> None:
    _need(RECIPES)
    assert row is not None
    namespaces: dict[str, Labels] = {}
    client_ns = row["client_namespace"]
    if client_ns == "(external)":
        client = EvalEndpoint(ip="198.51.100.77")
    else:
        ns, _, ns_labels = client_ns.partition(" (")
        namespaces[ns] = _labels(ns_labels.rstrip(")")) if ns_labels else Labels()
        client = EvalEndpoint(ip="10.244.0.10", namespace=ns, labels=_labels(row["client_labels"]),
                              node="node-1")
    server_name = row["server"].split(" ", 1)[0]
    if row["server_labels"] == "(external)":
        server = EvalEndpoint(ip="93.184.215.14")
    else:
        server = EvalEndpoint(ip="10.244.1.20", namespace=server_name.split(".", 1)[1],
                              labels=_labels(row["server_labels"]), node="node-2")
    engine = PolicyEngine.from_manifests(_recipe_docs(row), namespaces=namespaces)
    allowed = engine.check(client, server, TCP, int(row["port"])).allowed
    claimed = row["expected_per_recipe_text"].split(" ", 1)[0]
    key = (row["recipe"], row["client_labels"], server_name)
    expected = RECIPE_TEXT_ERRORS.get(key, claimed)
    assert allowed == (expected == "allow"), row
    if key in RECIPE_TEXT_ERRORS:
        assert claimed != expected  # the recipe text really claims the opposite
