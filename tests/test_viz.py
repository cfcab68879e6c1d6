"""Pictures: properties of what is drawn (under Agg), not pixels."""

from __future__ import annotations

import csv
import subprocess
import sys
from itertools import pairwise
from pathlib import Path
from typing import Any

import matplotlib
import networkx as nx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.colors import to_hex

import segmenter
from segmenter.config import Config
from segmenter.graph.labels import drawn_nodes
from segmenter.planner import ZONE_FLOW_ORDER, Plan, Zone, node_zone, plan
from segmenter.synthetic import synthetic_graph, synthetic_plan
from segmenter.views import viz
from segmenter.views.viz.draw import diff_counts
from segmenter.views.viz.zonemap import BUNDLE_MIN, MAX_DIFF_EDGES, ZONE_COLOURS, truncate

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample"
CORPORA = ROOT.parent / "shared" / "corpora"


@pytest.fixture(autouse=True)
def _close_figures() -> Any:
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("sample")
    segmenter.ingest([str(SAMPLE / "shop.pcapng")], str(out / "flows.jsonl"))
    flows = segmenter.load_flows([str(out / "flows.jsonl")])
    inventory = segmenter.load_inventory([str(SAMPLE / "shop-inventory.json")])
    graph = segmenter.build_graph(flows, inventory)
    config = segmenter.load_config(str(SAMPLE / "segmenter.yaml"))
    the_plan = segmenter.make_plan(graph, config, inventory)
    policy_set = segmenter.compile_policies(graph, the_plan, inventory)
    from segmenter.notebook import write_policies

    folders = write_policies(policy_set, out)
    return {"flows": flows, "inventory": inventory, "graph": graph, "plan": the_plan,
            "folders": folders, "out": out}


def node_collections(ax: Any) -> list[Any]:
    return [c for c in ax.collections if str(c.get_gid() or "").startswith("nodes:")]


def drawn_node_count(ax: Any) -> int:
    return sum(len(c.get_offsets()) for c in node_collections(ax))


def label_boxes(ax: Any) -> list[Any]:
    """Window extents of the node labels (bold or normal, right of a marker)."""
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    model = ax.segmenter_zone_map
    labels = {truncate(n.label, model.zone_chars.get(n.zone, 24)) for n in
              model.nodes.values()}
    return [t.get_window_extent(renderer) for t in ax.texts if t.get_text() in labels]


# ---------------------------------------------------------------------------------------------
# The zone map


def test_sample_map_draws_every_node_in_its_zone_colour(sample: dict[str, Any]) -> None:
    graph, the_plan = sample["graph"], sample["plan"]
    ax = viz.draw_zones(graph, the_plan)
    model = ax.segmenter_zone_map
    assert model.level == "workloads"
    assert drawn_node_count(ax) == len(model.nodes) == len(drawn_nodes(graph))
    for collection in node_collections(ax):
        zone = collection.get_gid().split(":")[1]
        colours = {to_hex(c) for c in collection.get_facecolors()}
        assert colours == {to_hex(ZONE_COLOURS[zone])}
        for n in model.zone_nodes(zone):
            assert n.zone == zone
    # Every zone present is a visible region, in the column order.
    regions = [p.get_gid() for p in ax.patches if str(p.get_gid() or "").startswith("zone:")]
    assert regions == [f"zone:{z}" for z in ZONE_FLOW_ORDER if model.zone_nodes(z)]
    # The store is a star in the restricted zone.
    stars = [c for c in node_collections(ax) if c.get_gid() == "nodes:restricted:*"]
    assert stars and len(stars[0].get_offsets()) == 1
    assert model.nodes["payments/StatefulSet/card-vault"].role == "store"


def test_edges_are_styled_by_zone_crossing_and_verdict(sample: dict[str, Any]) -> None:
    graph, the_plan = sample["graph"], sample["plan"]
    model = viz.zone_map_model(graph, the_plan)
    styles = {(e.source, e.target): e.style for e in model.edges}
    assert styles[("payments/Deployment/payments-api", "payments/StatefulSet/card-vault")] == \
        "crossing"
    assert styles[("shop/Deployment/frontend", "shop/Deployment/catalog")] == "allowed"
    denied = {("payments/CronJob/settlement", "payments/StatefulSet/card-vault"): False}
    ax = viz.draw_zones(graph, the_plan, verdicts=denied)
    gids = [p.get_gid() for p in ax.patches if str(p.get_gid() or "").startswith("edge:")]
    assert gids.count("edge:denied") == 1
    legend = ax.figure.legends[0]
    assert "would be denied" in [t.get_text() for t in legend.get_texts()]


def test_verdicts_from_the_verifier(sample: dict[str, Any]) -> None:
    from segmenter.analysis.verify import verify_flows
    from segmenter.evaluate import load_manifests

    docs = [d for d in load_manifests([str(sample["folders"]["kubernetes"])])
            if d["metadata"]["name"] != "allow-settlement"]
    verdicts = verify_flows(sample["flows"].flows, sample["inventory"], docs)
    model = viz.zone_map_model(sample["graph"], sample["plan"], verdicts=verdicts)
    denied = {(e.source, e.target) for e in model.edges if e.style == "denied"}
    assert ("payments/CronJob/settlement", "payments/StatefulSet/card-vault") in denied
    assert all(src == "payments/CronJob/settlement" for src, _ in denied)


def test_plan_without_classes_still_has_external_and_infrastructure(
        sample: dict[str, Any]) -> None:
    graph = sample["graph"]
    empty = Plan((), (), ("kube-system",))
    model = viz.zone_map_model(graph, empty)
    zones = {n.zone for n in model.nodes.values()}
    assert zones == {"external", "general", "infrastructure"}
    ax = viz.draw_zones(graph, None)
    assert drawn_node_count(ax) == len(drawn_nodes(graph))


def test_labels_do_not_overlap_and_stay_in_the_figure(sample: dict[str, Any]) -> None:
    big = synthetic_graph(300)
    for graph, the_plan in ((sample["graph"], sample["plan"]), (big, synthetic_plan(big))):
        ax = viz.draw_zones(graph, the_plan)
        boxes = label_boxes(ax)
        assert len(boxes) >= len(ax.segmenter_zone_map.nodes) * 0.95
        fig_box = ax.figure.bbox
        for box in boxes:
            assert fig_box.x0 <= box.x0 and box.x1 <= fig_box.x1
            assert fig_box.y0 <= box.y0 and box.y1 <= fig_box.y1
        ordered = sorted(boxes, key=lambda b: (round(b.x0), b.y0))
        for a, b in pairwise(ordered):
            if round(a.x0) == round(b.x0):  # one column: stacked, not overlapping
                assert a.y1 <= b.y0 + 0.5 or b.y1 <= a.y0 + 0.5
        # Labels of neighbouring columns do not run into each other.
        rows: dict[int, list[Any]] = {}
        for box in boxes:
            rows.setdefault(round((box.y0 + box.y1) / 2), []).append(box)
        for row in rows.values():
            row.sort(key=lambda b: b.x0)
            for a, b in pairwise(row):
                assert a.x1 <= b.x0 + 0.5


def test_above_the_threshold_the_map_collapses_and_says_so() -> None:
    graph = synthetic_graph(420)
    ax = viz.draw_zones(graph, synthetic_plan(graph))
    model = ax.segmenter_zone_map
    assert model.level == "namespaces"
    title = ax.figure._suptitle.get_text()
    assert "collapsed to namespaces" in title and "420 workloads" in title
    assert drawn_node_count(ax) == len(model.nodes) < 120
    # The restricted stores stay individual.
    assert {n.id for n in model.zone_nodes(Zone.RESTRICTED)} == {
        "payments/StatefulSet/card-vault", "records/StatefulSet/patient-db"}
    # Every workload is in exactly one drawn node.
    members = [m for n in model.nodes.values() for m in n.members]
    assert len(members) == len(set(members)) == len(drawn_nodes(graph))


def test_too_many_namespaces_collapses_to_zones() -> None:
    graph = synthetic_graph(120)
    model = viz.zone_map_model(graph, synthetic_plan(graph), max_workloads=5)
    assert model.level == "zones"
    assert "collapsed to zones" in model.note
    general = model.zone_nodes("general")
    assert len(general) == 1 and general[0].count > 100


def test_fan_into_dns_is_bundled() -> None:
    graph = synthetic_graph(120)
    model = viz.zone_map_model(graph, synthetic_plan(graph))
    bundles = [e for e in model.edges if e.source.startswith("region:")]
    assert any(e.target == "kube-system/Deployment/coredns" and e.count >= BUNDLE_MIN
               for e in bundles)
    direct = [e for e in model.edges if e.target == "kube-system/Deployment/coredns"
              and not e.source.startswith("region:")]
    assert all(model.nodes[e.source].zone != "general" for e in direct)


def test_the_layout_is_deterministic_and_files_are_byte_identical(
        sample: dict[str, Any], tmp_path: Path) -> None:
    graph, the_plan = sample["graph"], sample["plan"]
    first = viz.layout_zone_map(viz.zone_map_model(graph, the_plan)).positions
    second = viz.layout_zone_map(viz.zone_map_model(graph, the_plan)).positions
    assert first == second
    for suffix in ("png", "svg"):
        a, b = tmp_path / f"a.{suffix}", tmp_path / f"b.{suffix}"
        viz.save_zone_map(graph, the_plan, a, title="t")
        viz.save_zone_map(graph, the_plan, b, title="t")
        assert a.read_bytes() == b.read_bytes()
    assert (tmp_path / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = (tmp_path / "a.svg").read_text(encoding="utf-8")
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg and "dc:date" not in svg


def test_drawing_on_a_given_axes(sample: dict[str, Any]) -> None:
    fig, ax = plt.subplots(figsize=(8, 5))
    out = viz.draw_zones(sample["graph"], sample["plan"], ax, title="mine")
    assert out is ax
    assert ax.get_title().startswith("mine")
    assert drawn_node_count(ax) == len(ax.segmenter_zone_map.nodes)
    # The legend sits below the axes, over no data.
    legend = ax.get_legend()
    fig.canvas.draw()
    assert legend.get_window_extent().y1 <= ax.get_window_extent().y0 + 1


def test_empty_graph() -> None:
    ax = viz.draw_zones(nx.DiGraph(), None)
    assert "nothing to draw" in ax.texts[0].get_text()


def test_one_class_of_several() -> None:
    graph = synthetic_graph(40, seed=2)
    the_plan = synthetic_plan(graph)
    assert {s.data_class for s in the_plan.classes} == {"pci", "phi"}
    pci = viz.zone_map_model(graph, the_plan, data_class="pci")
    stores = {n.id for n in pci.zone_nodes(Zone.RESTRICTED)}
    assert stores == {"payments/StatefulSet/card-vault"}
    with pytest.raises(ValueError, match="no class"):
        viz.zone_map_model(graph, the_plan, data_class="nope")


def _random_graph(data: Any) -> nx.DiGraph:
    graph = nx.DiGraph()
    n = data.draw(st.integers(1, 25))
    spaces = data.draw(st.integers(1, 4))
    nodes = []
    for i in range(n):
        ns = f"ns{i % spaces}"
        node = f"{ns}/Deployment/w{i}"
        labels = {"app": f"w{i}"}
        if i == 0:
            labels["segmenter.io/data-class"] = "pci"
        graph.add_node(node, kind="workload", namespace=ns, name=f"w{i}",
                       workload_kind="Deployment", labels=labels, annotations={},
                       host_network=False, pod_count=1, label=f"w{i}")
        nodes.append(node)
    if data.draw(st.booleans()):
        graph.add_node("external:203.0.113.9", kind="external", addresses=["203.0.113.9"],
                       dns_names=[], private=False, label="203.0.113.9")
        nodes.append("external:203.0.113.9")
    pairs = data.draw(st.lists(st.tuples(st.sampled_from(nodes), st.sampled_from(nodes)),
                               max_size=40))
    for u, v in pairs:
        port = {"protocol": "TCP", "port": 8080, "flows": 1, "first_seen": 1.0,
                "last_seen": 2.0, "tls": False}
        graph.add_edge(u, v, ports=[port], flows=1, first_seen=1.0, last_seen=2.0)
    return graph


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_property_every_node_drawn_once_in_its_zone(data: Any) -> None:
    graph = _random_graph(data)
    the_plan = plan(graph, Config())
    model = viz.layout_zone_map(viz.zone_map_model(graph, the_plan))
    drawn = drawn_nodes(graph)
    members = [m for n in model.nodes.values() for m in n.members]
    assert sorted(members) == sorted(drawn)
    for n in model.nodes.values():
        for m in n.members:
            assert node_zone(graph, the_plan, m) == n.zone
    # Positions are distinct and inside their zone's region.
    assert len(set(model.positions.values())) == len(model.positions)
    regions = {z: (x0, y0, x1, y1) for z, x0, y0, x1, y1 in model.regions}
    for node_id, (x, y) in model.positions.items():
        x0, y0, x1, y1 = regions[model.nodes[node_id].zone]
        assert x0 < x < x1 and y0 < y < y1
    ax = viz.draw_zones(graph, the_plan)
    assert drawn_node_count(ax) == len(model.nodes)
    plt.close("all")


def test_matplotlib_is_not_imported_at_module_import() -> None:
    code = ("import sys, segmenter.views.viz, segmenter.views.report, segmenter.notebook; "
            "print('matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def _callgraph(path: Path, namespace: str, stores: set[str]) -> nx.DiGraph:
    graph = nx.DiGraph()

    def node(raw: str) -> str:
        name = raw.split(" ", maxsplit=1)[0].strip()
        if name.startswith("client"):
            graph.add_node("external:198.51.100.7", kind="external", label="198.51.100.7",
                           addresses=["198.51.100.7"], dns_names=[], private=False)
            return "external:198.51.100.7"
        node_id = f"{namespace}/Deployment/{name}"
        labels = {"app": name}
        if name in stores:
            labels["segmenter.io/data-class"] = "pci"
        graph.add_node(node_id, kind="workload", namespace=namespace, name=name,
                       workload_kind="Deployment", labels=labels, annotations={},
                       host_network=False, pod_count=1, label=name)
        return node_id

    with path.open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            raw_port = str(row.get("callee_pod_port") or row.get("port") or "")
            try:
                port = int(raw_port.rsplit("->", maxsplit=1)[-1].split(maxsplit=1)[0])
            except (ValueError, IndexError):
                continue
            entry = {"protocol": "TCP", "port": port, "flows": 3, "first_seen": 1.0,
                     "last_seen": 2.0, "tls": False}
            graph.add_edge(node(row["caller"]), node(row["callee"]), ports=[entry], flows=3)
    return graph


@pytest.mark.parametrize(("app", "stores"), [
    ("bank-of-anthos", {"ledger-db", "accounts-db"}),
    ("deathstarbench/social-network", {"user-mongodb"}),
])
def test_corpus_call_graphs_draw_legibly(app: str, stores: set[str]) -> None:
    path = CORPORA / app / "callgraph.csv"
    if not path.exists():
        pytest.skip(f"corpus {path} not present (shared corpora live beside the checkout)")
    graph = _callgraph(path, app.rsplit("/", 1)[-1], stores)
    the_plan = plan(graph, Config())
    ax = viz.draw_zones(graph, the_plan, title=app)
    model = ax.segmenter_zone_map
    assert {n.id.rsplit("/", 1)[-1] for n in model.zone_nodes(Zone.RESTRICTED)} == stores
    boxes = label_boxes(ax)
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not a.overlaps(b), "two labels overlap"


# ---------------------------------------------------------------------------------------------
# Diff, reachability, learning curve


def test_diff_view_counts_and_styles(sample: dict[str, Any]) -> None:
    from segmenter.analysis.diff.semantic import ReachChange

    changes = [
        ReachChange("shop/Deployment/frontend", "payments/StatefulSet/card-vault", "TCP", 5432,
                    False, True, "denied", "allowed"),
        ReachChange("payments/CronJob/settlement", "payments/StatefulSet/card-vault", "TCP",
                    5432, True, False, "allowed", "denied"),
        ReachChange("payments/CronJob/settlement", "payments/StatefulSet/card-vault", "TCP",
                    22, True, False, "allowed", "denied"),
    ]
    assert diff_counts(changes) == (1, 2)
    ax = viz.draw_diff(sample["graph"], sample["plan"], changes)
    model = ax.segmenter_zone_map
    styles = {(e.source, e.target): e for e in model.edges if e.style in {"opened", "closed"}}
    opened = styles[("shop/Deployment/frontend", "payments/StatefulSet/card-vault")]
    closed = styles[("payments/CronJob/settlement", "payments/StatefulSet/card-vault")]
    assert (opened.style, closed.style, closed.count) == ("opened", "closed", 2)
    assert closed.text == "TCP/22, TCP/5432"
    assert "1 connection open, 2 close" in ax.figure._suptitle.get_text()


def test_big_diffs_are_drawn_by_namespace() -> None:
    graph = synthetic_graph(200)
    workloads = sorted(n for n, a in graph.nodes(data=True) if a["kind"] == "workload")
    changes = [(s, t) for s in workloads[:40] for t in workloads[100:110]]
    from segmenter.analysis.diff.semantic import ReachChange

    items = [ReachChange(s, t, "TCP", 80, True, False, "allowed", "denied") for s, t in changes]
    ax = viz.draw_diff(graph, synthetic_plan(graph), items)
    model = ax.segmenter_zone_map
    assert model.level in {"namespaces", "zones"}
    assert len([e for e in model.edges if e.style == "closed"]) <= MAX_DIFF_EDGES
    assert "drawn by" in ax.figure._suptitle.get_text()


def test_reachability_before_and_after(sample: dict[str, Any]) -> None:
    graph, the_plan = sample["graph"], sample["plan"]
    reach = viz.reachability(graph, the_plan, sample["folders"]["kubernetes"],
                             inventory=sample["inventory"])
    vault = "payments/StatefulSet/card-vault"
    assert reach.targets == (vault, vault)  # in and out
    assert reach.directions == ("ingress", "egress")
    assert reach.before_label == "no policies"
    rows = dict(zip(reach.sources, range(len(reach.sources)), strict=True))
    own_node = {"kube-system/DaemonSet/kube-proxy", "node:worker-1"}
    # Today every peer reaches the vault beyond what was observed, but from its own node,
    # which no policy governs.
    for source, i in rows.items():
        assert reach.before[i][0] == (viz.NODE_LOCAL if source in own_node else viz.UNPLANNED)
        assert reach.before[i][1] == viz.UNPLANNED
    after = {s: reach.after[i] for s, i in rows.items()}
    assert after["payments/Deployment/payments-api"] == (viz.PLANNED, viz.DENIED)
    assert after["payments/CronJob/settlement"] == (viz.PLANNED, viz.DENIED)
    for source in ("shop/Deployment/frontend", "external:198.51.100.20",
                   "external:8.8.8.8", "external:2001:4860:4860::8888"):
        assert after[source] == (viz.DENIED, viz.DENIED)
    for source in own_node:
        assert after[source] == (viz.NODE_LOCAL, viz.DENIED)
    ax1, ax2 = viz.draw_reachability(reach)
    assert len(ax1.images) == len(ax2.images) == 1
    assert ax1.get_images()[0].get_array().shape == (len(reach.sources), 2)


def test_reachability_with_calico_and_grouping(sample: dict[str, Any]) -> None:
    reach = viz.reachability(sample["graph"], sample["plan"], sample["folders"]["calico"],
                             inventory=sample["inventory"], enforcement="calico", max_rows=3)
    assert reach.grouped == "namespace"
    assert len(reach.sources) < 13
    assert reach.count("after", viz.UNPLANNED) <= reach.count("before", viz.UNPLANNED)


def test_reachability_with_nothing_in_scope(sample: dict[str, Any]) -> None:
    reach = viz.reachability(sample["graph"], Plan((), (), ()), None)
    assert reach.targets == ()
    ax1, _ = viz.draw_reachability(reach)
    assert "nothing in scope" in ax1.texts[0].get_text()


def test_learning_curve_from_graph_and_flows(sample: dict[str, Any]) -> None:
    graph = sample["graph"]
    curve = viz.learning_curve(graph, sample["plan"])
    assert curve.total == sum(len(d["ports"]) for _, _, d in graph.edges(data=True))
    assert list(curve.times) == sorted(curve.times)
    assert curve.start <= curve.times[0] and curve.times[-1] <= curve.end
    assert sum(curve.restricted) == 2
    assert 0.0 <= curve.quiet_fraction() <= 1.0
    by_flows = viz.learning_curve(sample["flows"].flows)
    assert by_flows.total >= curve.total - 5  # address level: at least as fine-grained
    ax = viz.draw_learning_curve(graph, plan=sample["plan"])
    gids = {line.get_gid() for line in ax.get_lines()}
    assert {"curve:all", "curve:restricted"} <= gids
    top = ax.get_lines()[0].get_ydata()
    assert list(top) == sorted(top)
