"""The compliance evidence report: content, determinism, the command, and a real browser."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import matplotlib
import pytest

matplotlib.use("Agg")

import segmenter
from segmenter.cli import build_parser
from segmenter.errors import InputError
from segmenter.evaluate import load_manifests
from segmenter.graph.io import save_graph
from segmenter.notebook import synthetic_graph, synthetic_plan, write_policies
from segmenter.planner import Plan, plan_to_dict
from segmenter.views import report as rpt

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample"
CHROMIUM = Path("/usr/bin/chromium")
PLANTED_PAN = "4111111111111111"


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("sample")
    segmenter.ingest([str(SAMPLE / "shop.pcapng")], str(out / "flows.jsonl"))
    flows = segmenter.load_flows([str(out / "flows.jsonl")])
    inventory = segmenter.load_inventory([str(SAMPLE / "shop-inventory.json")])
    graph = segmenter.build_graph(flows, inventory)
    the_plan = segmenter.make_plan(graph, segmenter.load_config(str(SAMPLE / "segmenter.yaml")),
                                   inventory)
    folders = write_policies(segmenter.compile_policies(graph, the_plan, inventory), out)
    save_graph(graph, out / "graph.json")
    from segmenter.fileio import atomic_write_json

    atomic_write_json(out / "plan.json", plan_to_dict(the_plan))
    return {"flows": flows, "inventory": inventory, "graph": graph, "plan": the_plan,
            "folders": folders, "out": out}


@pytest.fixture(scope="module")
def sample_report(sample: dict[str, Any]) -> rpt.Report:
    return rpt.build_report(sample["graph"], sample["plan"], sample["folders"]["kubernetes"],
                            flows=sample["flows"].flows, inventory=sample["inventory"],
                            enforcement="kubernetes", generated_at="2026-12-01")


def unmarked(cell: str) -> str:
    """A table cell without the ✅ / ⚠️ / ❌ mark Markdown puts before a marked row."""
    for mark in ("✅ ", "⚠️ ", "❌ "):
        cell = cell.removeprefix(mark)
    return cell


def section(markdown: str, title: str) -> str:
    """The text of the ``## title`` section."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^<a id=\"[^\"]+\"></a>\n## |\Z)",
                      markdown,
                      re.MULTILINE | re.DOTALL)
    assert match, f"no section {title!r}"
    return match.group(1)


def table_rows(text: str, first_header: str) -> list[list[str]]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split(" | ")])
    return rows


def test_scope_statement_gives_each_member_and_why(sample_report: rpt.Report) -> None:
    md = rpt.render_markdown(sample_report)
    scope = section(md, "Scope statement")
    assert "| payments/StatefulSet/card-vault | store of pci data: PostgreSQL holding " in scope
    assert "**Connected-to (in scope)**: 2" in scope
    assert "payments/CronJob/settlement | connects to payments/StatefulSet/card-vault" in scope
    assert "**Out of scope**: 5" in scope
    for workload in ("catalog", "checkout", "frontend", "recommendations"):
        assert f"shop/Deployment/{workload} | no observed flow with the restricted zone" in scope
    assert "cluster DNS: name resolution is security-impacting" in scope
    assert "shop/StatefulSet/redis-cart | named or labelled like a data store" in scope


def test_register_lists_every_crossing_with_evidence_and_blank_justification(
        sample: dict[str, Any], sample_report: rpt.Report) -> None:
    md = rpt.render_markdown(sample_report)
    register = section(md, "Allowed-flow register: flows across zone boundaries")
    rows = table_rows(register, "Client (zone)")
    crossings = sample["plan"].classes[0].crossings
    assert len(rows) == len(crossings) == 14
    vault = [r for r in rows if unmarked(r[0]).startswith("payments/Deployment/payments-api")
             and r[1].startswith("payments/StatefulSet/card-vault")]
    assert len(vault) == 1
    client, server, port, tls, flows, seen, allowed_by, *register = vault[0]
    assert (client, server) == ("⚠️ payments/Deployment/payments-api (connected)",
                                "payments/StatefulSet/card-vault (restricted)")
    assert (port, tls, flows) == ("TCP/5432", "no", "2")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ – \d\d:\d\d:\d\dZ", seen)
    assert "`NetworkPolicy payments/allow-card-vault` ingress[0]" in allowed_by
    assert register == ["", "", "", "", ""]  # no segmenter.yaml given: no register entry
    html = rpt.render_html(sample_report)
    assert html.count('<td class="blank"></td>') >= 2 * 14


def test_plaintext_flows_into_the_restricted_zone(sample_report: rpt.Report) -> None:
    md = rpt.render_markdown(sample_report)
    enc = section(md, "Encryption in transit")
    rows = table_rows(enc, "Client")
    assert {(r[0].replace("⚠️ ", ""), r[1], r[2]) for r in rows} == {
        ("payments/CronJob/settlement", "payments/StatefulSet/card-vault", "TCP/5432"),
        ("payments/Deployment/payments-api", "payments/StatefulSet/card-vault", "TCP/5432")}
    assert "2 plaintext flow(s) to or from the restricted zone" in [
        f.message for f in sample_report.findings]


def test_default_deny_per_namespace(sample_report: rpt.Report) -> None:
    md = rpt.render_markdown(sample_report)
    deny = section(md, "Default deny")
    rows = {r[0]: r for r in table_rows(deny, "Namespace")}
    assert rows["payments"][3] == "denied by `NetworkPolicy payments/default-deny`"
    assert rows["shop"][4] == "denied by `NetworkPolicy shop/default-deny`"
    assert rows["kube-system"][2].startswith("not policed")
    assert "Every policed workload is isolated" in deny


def test_segmentation_evidence_is_checked_by_the_evaluator(sample_report: rpt.Report) -> None:
    md = rpt.render_markdown(sample_report)
    seg = section(md, "Segmentation test evidence")
    rows = {(unmarked(r[1]), r[2]): r for r in table_rows(seg, "Class")}
    inward = rows[("payments/StatefulSet/card-vault", "in")]
    outward = rows[("payments/StatefulSet/card-vault", "out")]
    peers, probes, denied, planned, own_node, beyond = (int(v) for v in inward[3:])
    assert beyond == 0 and planned == 2  # payments-api and settlement on TCP/5432
    assert own_node > 0  # kube-proxy and worker-1: the vault's own node
    assert probes == denied + planned + own_node + beyond
    assert outward[3:] == [str(peers), str(probes), str(probes), "0", "0", "0"]
    assert "over TCP and UDP" in seg and "ports: 20, 21, 22, 23, 25, 53" in seg
    assert "10250, 10255, 11211, 27017, 51820; evaluated" in seg  # the documented set
    assert "No path into or out of the restricted zone is allowed beyond the plan." in seg
    assert "kube-system/DaemonSet/kube-proxy (infrastructure) | every port probed" in seg
    assert "shop/Deployment/checkout | payments/Deployment/payments-api" in seg  # indirect
    assert "![Reachability of the restricted zone, before and after](reachability.png)" in seg
    verify = section(md, "Observed flows replayed")
    assert "All 61 observed flows are allowed" in verify


def test_requirements_mapping(sample_report: rpt.Report) -> None:
    md = rpt.render_markdown(sample_report)
    mapping = section(md, "Mapping to PCI DSS v4.0.1 and HIPAA 164.312")
    reqs = [r[0].replace("⚠️ ", "") for r in table_rows(mapping, "Requirement")]
    reqs = [unmarked(r) for r in reqs]
    assert reqs == ["1.2.2", "1.2.4", "1.2.5", "1.3.1", "1.3.2", "1.4.1, 1.4.2", "1.4.4",
                    "10.2", "11.4.5", "11.4.6", "12.5.2"]
    assert "HIPAA Security Rule" not in mapping  # no phi class in the sample


def test_failures_are_reported(sample: dict[str, Any]) -> None:
    docs = load_manifests([str(sample["folders"]["kubernetes"])])
    broken = [d for d in docs if d["metadata"]["name"] not in {"allow-card-vault"}
              and not (d["metadata"]["name"] == "default-deny"
                       and d["metadata"]["namespace"] == "payments")]
    report = rpt.build_report(sample["graph"], sample["plan"], broken,
                              flows=sample["flows"].flows, inventory=sample["inventory"],
                              enforcement="kubernetes")
    findings = "\n".join(f.line() for f in report.findings)
    assert "[medium] no-default-deny: namespace payments has no default deny" in findings
    assert ("[critical] unisolated: payments/StatefulSet/card-vault (pci restricted) is not "
            "isolated for ingress and egress") in findings
    # End to end: the shop's own egress policies stop its workloads; nothing stops the
    # internet or the API server, in or out.
    for peer in ("the internet (8.8.8.8)", "the internet (2001:4860:4860::8888)",
                 "apiserver (172.18.0.1)"):
        for verb in ("is reachable from", "reaches out to"):
            assert (f"[high] segmentation: payments/StatefulSet/card-vault (pci restricted) "
                    f"{verb} {peer} beyond the plan on TCP/20, TCP/21, TCP/22") in findings
    assert "is reachable from shop/Deployment/frontend" not in findings
    md = rpt.render_markdown(report)
    assert "❌" in section(md, "Summary")
    mapping = section(md, "Mapping to PCI DSS v4.0.1 and HIPAA 164.312")
    assert "| ❌ 1.3.1 |" in mapping


def test_hipaa_mapping_and_policies_that_isolate_nothing() -> None:
    graph = synthetic_graph(40, seed=3)
    the_plan = synthetic_plan(graph)
    with pytest.raises(InputError, match="holds no policy document"):
        rpt.build_report(graph, the_plan, [], enforcement="kubernetes")
    # A policy that selects nothing in scope: in force, but isolating nothing.
    elsewhere = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                 "metadata": {"name": "deny", "namespace": "nowhere"},
                 "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}
    report = rpt.build_report(graph, the_plan, [elsewhere], enforcement="kubernetes")
    md = rpt.render_markdown(report)
    mapping = section(md, "Mapping to PCI DSS v4.0.1 and HIPAA 164.312")
    standards = [r[0].replace("❌ ", "").replace("⚠️ ", "")
                 for r in table_rows(mapping, "Standard")]
    assert standards == ["164.312(a)(1)", "164.312(b)", "164.312(e)(1)"]
    assert "| ❌ 164.312(a)(1) |" in mapping  # nothing isolates anything in scope
    assert any("no default deny" in f.message for f in report.findings)
    assert any(f.kind == "unisolated" and f.severity == "critical" for f in report.findings)


def test_a_plan_without_sensitive_stores_says_nothing_is_in_scope(
        sample: dict[str, Any]) -> None:
    empty = Plan((), sample["plan"].policed, sample["plan"].excluded_namespaces)
    report = rpt.build_report(sample["graph"], empty, sample["folders"]["kubernetes"],
                              enforcement="kubernetes")
    md = rpt.render_markdown(report)
    assert "**nothing is in scope**" in section(md, "Summary")
    assert "Nothing is in scope: no data class is declared" in section(md, "Scope statement")
    assert "not applicable: nothing is in scope" in md
    # What remains is about the evidence itself, not about a restricted zone.
    assert {f.kind for f in report.findings} == {"still-learning", "enforcement-unverified"}
    html = rpt.render_html(report)
    assert "<strong>nothing is in scope</strong>" in html


def test_output_is_deterministic_and_has_no_clock(sample: dict[str, Any],
                                                  tmp_path: Path) -> None:
    def build(generated_at: str | None = None) -> tuple[str, str]:
        report = rpt.build_report(sample["graph"], sample["plan"],
                                  sample["folders"]["calico"], generated_at=generated_at)
        return rpt.render_markdown(report), rpt.render_html(report)

    first, second = build("2026-01-31"), build("2026-01-31")
    assert first == second
    assert "at **2026-01-31T00:00:00Z** (UTC)" in first[0]
    md = first[0]
    assert "under **calico** enforcement" in md
    assert "denied by `Calico NetworkPolicy payments/default-deny`" in md


def test_command_writes_markdown_html_and_pictures(sample: dict[str, Any],
                                                   tmp_path: Path) -> None:
    out = sample["out"]
    args = build_parser().parse_args([
        "report", "--graph", str(out / "graph.json"), "--plan", str(out / "plan.json"),
        "--policies", str(sample["folders"]["kubernetes"]), "--flows", str(out / "flows.jsonl"),
        "--inventory", str(SAMPLE / "shop-inventory.json"), "--enforcement", "kubernetes",
        "-o", str(tmp_path / "r")])
    assert args.func(args) == 0
    files = sorted(p.name for p in (tmp_path / "r").iterdir())
    assert files == ["SHA256SUMS", "learning-curve.png", "reachability.png", "report.html",
                     "report.md", "zone-map.png"]
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=tmp_path / "r",
                           capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.count(": OK") == 5
    md = (tmp_path / "r" / "report.md").read_text(encoding="utf-8")
    for image in ("zone-map.png", "learning-curve.png", "reachability.png"):
        assert f"]({image})" in md
    html = (tmp_path / "r" / "report.html").read_text(encoding="utf-8")
    assert html.count('src="data:image/png;base64,') == 3
    assert not re.search(r'(src|href)="(?!data:|#)', html), "an external resource"
    assert "graph.json" in md and "SHA-256" in md
    for path in (tmp_path / "r").iterdir():
        assert PLANTED_PAN.encode() not in path.read_bytes()


# ---------------------------------------------------------------------------------------------
# A real browser


def _chromium(args: list[str], user_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", f"--user-data-dir={user_dir}", *args],
        capture_output=True, text=True, timeout=120, check=False)


_CHECK_SCRIPT = """<script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; });
  var sizes = ok.map(function (i) { return i.naturalWidth + "x" + i.naturalHeight; });
  var marker = document.createElement("div");
  marker.id = "segmenter-check";
  marker.textContent = "images-loaded=" + ok.length + "/" + imgs.length + " sizes=" +
      sizes.join(",") + " tables=" + document.querySelectorAll("table").length;
  document.body.appendChild(marker);
});
</script>"""


@pytest.mark.skipif(not CHROMIUM.exists(),
                    reason="headless Chromium not installed (/usr/bin/chromium; "
                           "apt-get install -y chromium)")
@pytest.mark.parametrize("with_stores", [True, False], ids=["sample", "nothing-in-scope"])
def test_report_renders_in_chromium_with_its_pictures(sample: dict[str, Any], tmp_path: Path,
                                                      with_stores: bool) -> None:
    the_plan = sample["plan"] if with_stores else Plan((), sample["plan"].policed, ())
    report = rpt.build_report(sample["graph"], the_plan, sample["folders"]["kubernetes"],
                              flows=sample["flows"].flows, inventory=sample["inventory"],
                              enforcement="kubernetes")
    written = rpt.write_report(report, tmp_path / "r")
    page = written["report.html"].read_text(encoding="utf-8")
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", _CHECK_SCRIPT + "</body>"), encoding="utf-8")
    dom = _chromium(["--virtual-time-budget=10000", "--dump-dom", probe.as_uri()],
                    tmp_path / "profile-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    match = re.search(r"images-loaded=(\d+)/(\d+) sizes=(\S*) tables=(\d+)", dom.stdout)
    assert match, "the check script did not run: " + dom.stdout[-500:]
    loaded, total = int(match.group(1)), int(match.group(2))
    expected = len(report.images())
    assert loaded == total == expected and expected >= 1
    for size in match.group(3).split(","):
        width, height = (int(v) for v in size.split("x"))
        assert width > 200 and height > 100
    assert int(match.group(4)) >= 3
    if not with_stores:
        assert "nothing is in scope" in dom.stdout
    shot = tmp_path / "shot.png"
    result = _chromium(["--window-size=1280,2000", f"--screenshot={shot}",
                        written["report.html"].as_uri()], tmp_path / "profile-shot")
    assert result.returncode == 0 and shot.exists(), result.stderr[-2000:]
    from PIL import Image

    with Image.open(shot) as image:
        pixels = image.convert("L")
        histogram = pixels.histogram()
        total_px = sum(histogram)
        white = sum(histogram[245:])
        assert white < total_px * 0.97, "the screenshot is blank"
        assert len([h for h in histogram if h]) > 20, "too few shades: not a rendered page"
    shutil.rmtree(tmp_path / "profile-dom", ignore_errors=True)
    shutil.rmtree(tmp_path / "profile-shot", ignore_errors=True)


def test_html_escapes_what_it_shows() -> None:
    report = rpt.Report("a <b> & c", [rpt.Para("x < y and `code <z>` and **bold**"),
                                        rpt.Table(("h",), (("<script>",),))])
    page = rpt.render_html(report)
    assert "<script>" not in page.split("<style>")[0] + page.split("</style>")[1]
    assert "&lt;script&gt;" in page and "<code>code &lt;z&gt;</code>" in page
    assert "<strong>bold</strong>" in page and "<title>a &lt;b&gt; &amp; c</title>" in page
    copy.deepcopy(report)  # plain data
