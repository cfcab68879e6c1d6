"""``segmenter collect`` through the REAL ``kubernetes`` client against a loopback API server
that proxies to real agent file servers.

No Kubernetes API server runs here. ``tests/fake_apiserver.py`` answers like one; this subclass
adds what the collector uses: ``GET /api/v1/namespaces/NS/pods?labelSelector=...`` (paged with
``limit`` / ``continue``, pods built by the test in the API's JSON form) and the pod proxy
``GET /api/v1/namespaces/NS/pods/NAME:PORT/proxy/PATH``, which it forwards to the pod's IP and
port as the API server does (k8s.io/kubernetes pkg/registry/core/pod/strategy.go
``ResourceLocation``: the port is used as given) and answers 503 ``error trying to reach
service: ...`` when it cannot dial (k8s.io/apimachinery pkg/util/proxy/transport.go). The agents
are ``capture.agent.Agent`` writing real flow files and ``capture.serve.FlowFileServer`` serving
them on 127.0.0.1.

Every request the collector makes is checked against the Role in docs/rbac-collect.yaml, as
the API server's RBAC authorizer would: list pods, get pods/proxy, in the agents' namespace.
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
import yaml
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from capture.agent import Agent
from capture.flowfile import merge_flow_files, read_flow_file
from capture.serve import FlowFileServer
from segmenter.cli import main
from segmenter.cluster.collect import DEFAULT_NAMESPACE, collect
from segmenter.errors import InventoryError
from tests.fake_apiserver import FakeApiServer, kubeconfig

REPO = Path(__file__).resolve().parents[1]
NS = DEFAULT_NAMESPACE
LABELS = {"app.kubernetes.io/name": "segmenter-capture",
          "app.kubernetes.io/component": "capture-agent"}
T0 = 1_700_000_000


def status(code: int, reason: str, message: str) -> str:
    """A ``Status`` body as the API server sends with an error (metav1.Status)."""
    return json.dumps({"kind": "Status", "apiVersion": "v1", "metadata": {},
                       "status": "Failure", "message": message, "reason": reason,
                       "code": code})


def pod(name: str, node: str, port: int | None, *, phase: str = "Running",
        ip: str = "127.0.0.1", labels: dict[str, str] | None = None) -> dict[str, Any]:
    ports = [] if port is None else [{"name": "flow-files", "containerPort": port,
                                      "protocol": "TCP"}]
    return {
        "metadata": {"name": name, "namespace": NS, "labels": labels or LABELS},
        "spec": {"nodeName": node, "hostNetwork": True,
                 "containers": [{"name": "agent", "image": "segmenter-capture:0.1.0",
                                 "ports": ports}]},
        "status": {"phase": phase, **({"podIP": ip, "podIPs": [{"ip": ip}]} if ip else {})},
    }


class ProxyingApiServer(FakeApiServer):
    """Pods of one namespace, and the pod proxy to their (loopback) addresses."""

    FIXTURES = REPO / "tests" / "fixtures" / "inventory" / "live"

    def __init__(self) -> None:
        super().__init__()
        self.pods: list[dict[str, Any]] = []
        self.forbid_proxy = False
        self.cut_files = False  # the connection drops half-way through each file

    def respond(self, handler: Any, path: str, query: dict[str, list[str]]) -> None:
        parts = path.split("/")
        # /api/v1/namespaces/NS/pods/NAME/proxy/PATH
        if len(parts) >= 8 and parts[1:4] == ["api", "v1", "namespaces"] \
                and parts[5] == "pods" and parts[7] == "proxy":
            self.proxy(handler, unquote(parts[4]), unquote(parts[6]),
                       unquote("/".join(parts[8:])))
            return
        super().respond(handler, path, query)

    def route(self, path: str, query: dict[str, list[str]]) -> tuple[int, str]:
        if path == f"/api/v1/namespaces/{NS}/pods":
            wanted = dict(term.split("=", 1) for term in
                          (query.get("labelSelector", [""])[0].split(",")) if term)
            items = [p for p in self.pods
                     if all(p["metadata"]["labels"].get(k) == v for k, v in wanted.items())]
            start = int(query.get("continue", ["0"])[0])
            limit = int(query.get("limit", ["500"])[0])
            page = items[start:start + limit]
            meta: dict[str, Any] = {"resourceVersion": "42"}
            if start + limit < len(items):
                meta["continue"] = str(start + limit)
            return 200, json.dumps({"kind": "PodList", "apiVersion": "v1", "metadata": meta,
                                    "items": page})
        return 404, status(404, "NotFound", "the server could not find the requested resource")

    def proxy(self, handler: Any, namespace: str, name_port: str, path: str) -> None:
        name, _, port = name_port.partition(":")
        found = [p for p in self.pods if p["metadata"]["name"] == name
                 and namespace == NS]
        if self.forbid_proxy:
            self.send(handler, 403, status(
                403, "Forbidden", f'pods "{name}" is forbidden: User "reader" cannot get'
                f' resource "pods/proxy" in API group "" in the namespace "{namespace}"'))
            return
        if not found:
            self.send(handler, 404, status(404, "NotFound", f'pods "{name}" not found'))
            return
        ip = found[0]["status"].get("podIP")
        if not ip:
            self.send(handler, 400, status(400, "BadRequest", "address not allowed"))
            return
        try:
            conn = http.client.HTTPConnection(ip, int(port), timeout=5)
            conn.request("GET", "/" + path)
            upstream = conn.getresponse()
        except OSError as exc:
            self.send(handler, 503, status(
                503, "ServiceUnavailable",
                f"error trying to reach service: dial tcp {ip}:{port}: connect: {exc}"))
            return
        data = upstream.read()
        conn.close()
        handler.send_response(upstream.status)
        handler.send_header("Content-Type", upstream.getheader("Content-Type") or "text/plain")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        if self.cut_files and path != "index.json":
            handler.wfile.write(data[: len(data) // 2])
            handler.close_connection = True
            return
        handler.wfile.write(data)

    @staticmethod
    def send(handler: Any, code: int, body: str) -> None:
        data = body.encode()
        handler.send_response(code)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)


class NodeAgent:
    """A capture agent's output directory (real flow files) and its file server."""

    def __init__(self, root: Path, node: str) -> None:
        self.node = node
        self.dir = root / node
        self.port = 0
        self.server: FlowFileServer | None = None
        self.sport = 40000

    def write(self, conversations: int, *, active: int = 0) -> None:
        """One agent run: ``conversations`` UDP exchanges that end (a numbered file), then
        ``active`` TCP connections left open (a snapshot, which is not served)."""
        clock = [T0 * 10**9]
        agent = Agent(str(self.dir), host=self.node, clock=lambda: clock[0])
        agent.open()
        for _ in range(conversations):
            self.sport += 1
            for src, dst, sp, dp in (("10.1.0.5", "10.2.0.9", self.sport, 53),
                                     ("10.2.0.9", "10.1.0.5", 53, self.sport)):
                frame = bytes(Ether() / IP(src=src, dst=dst) / UDP(sport=sp, dport=dp) / b"x")
                agent.packet(frame, clock[0])
                clock[0] += 10**6
        agent.flush(final=True)
        if active:
            for _ in range(active):
                self.sport += 1
                frame = bytes(Ether() / IP(src="10.1.0.5", dst="10.3.0.1")
                              / TCP(sport=self.sport, dport=5432, flags="S"))
                agent.packet(frame, clock[0])
            agent.flush()  # the snapshot of the active flows, as a running agent leaves it
        agent.close()

    def start(self) -> None:
        self.server = FlowFileServer(str(self.dir), self.port, host=self.node,
                                     address="127.0.0.1")
        self.port = self.server.port
        self.server.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None

    def numbered(self) -> list[Path]:
        return sorted(p for p in self.dir.glob("flows-*-[0-9]*.jsonl"))


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[ProxyingApiServer, list[NodeAgent], str]]:
    agents = [NodeAgent(tmp_path / "nodes", n) for n in ("node-a", "node-b", "node-c")]
    agents[0].write(3)
    agents[0].write(2, active=2)  # a running agent also has a snapshot of its active flows
    agents[1].write(1)
    agents[2].write(1)
    for agent in agents:
        agent.start()
    with ProxyingApiServer() as api:
        api.pods = [pod(f"segmenter-capture-{a.node[-1]}x7k2", a.node, a.port) for a in agents]
        api.pods.append(pod("unrelated", "node-a", 80, labels={"app": "web"}))
        try:
            yield api, agents, kubeconfig(tmp_path, api.url)
        finally:
            for agent in agents:
                agent.stop()


def _run(argv: Sequence[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_collects_every_agent_into_node_folders(
    tmp_path: Path, cluster: tuple[ProxyingApiServer, list[NodeAgent], str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    api, agents, config = cluster
    out = tmp_path / "collected"
    code, stdout, err = _run(["collect", "-o", str(out), "--kubeconfig", config], capsys)
    assert (code, err) == (0, ""), err
    for agent in agents:
        got = sorted(p.name for p in (out / agent.node).iterdir())
        assert got == [p.name for p in agent.numbered()], agent.node
        for p in agent.numbered():
            assert (out / agent.node / p.name).read_bytes() == p.read_bytes()
    # Only finished files: the snapshot of active flows, the lock, temporary files stay put.
    assert (agents[0].dir / "flows-node-a-active.jsonl").exists()
    assert not list(out.rglob("*active*")) and not list(out.rglob(".*"))
    assert "node-a (segmenter-capture-ax7k2): 2 new files" in stdout
    assert f"4 new files from 3 of 3 agents into {out}" in stdout
    # Through the pod proxy, with the kubeconfig's token, on the agents' named port.
    proxied = [p for p, _q, _a in api.requests if "/proxy/" in p]
    assert f"/api/v1/namespaces/{NS}/pods/segmenter-capture-ax7k2%3A{agents[0].port}" \
           "/proxy/index.json" in proxied
    assert all(auth == "Bearer test-token" for _p, _q, auth in api.requests)

    # Again: nothing new to fetch (same name, size and hash), only listings.
    before = len(api.requests)
    code, stdout, _ = _run(["collect", "-o", str(out), "--kubeconfig", config], capsys)
    assert code == 0 and "0 new files from 3 of 3 agents" in stdout
    assert "2 already collected, of 2 listed" in stdout
    assert all(p.endswith("/index.json") for p, _q, _a in api.requests[before:]
               if "/proxy/" in p)

    # The agent on node-b writes one more file: only that one is fetched.
    agents[1].write(2)
    code, stdout, _ = _run(["collect", "-o", str(out), "--kubeconfig", config], capsys)
    assert "node-b (segmenter-capture-bx7k2): 1 new files" in stdout
    assert sorted(p.name for p in (out / "node-b").iterdir()) == [
        "flows-node-b-000001.jsonl", "flows-node-b-000002.jsonl"]

    # The collected folder is what ingest reads: every flow of every agent, once.
    merged = tmp_path / "merged.jsonl"
    code, _stdout, err = _run(["ingest", str(out), "-o", str(merged)], capsys)
    assert code == 0, err
    direct = merge_flow_files([str(p) for a in agents for p in a.numbered()],
                              str(tmp_path / "direct.jsonl"))
    ingested = read_flow_file(str(merged))
    assert sorted(json.dumps(f, sort_keys=True) for f in ingested.flows) == sorted(
        json.dumps(f, sort_keys=True) for f in direct.flows)
    assert len(ingested.flows) == 3 + 2 + 1 + 2 + 1  # the active TCP flows not yet


def test_an_unreachable_agent_is_an_error_naming_it(
    tmp_path: Path, cluster: tuple[ProxyingApiServer, list[NodeAgent], str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    api, agents, config = cluster
    agents[2].stop()  # its node is down: the proxy cannot dial it
    api.pods.append(pod("segmenter-capture-dx7k2", "node-d", 9465, phase="Pending", ip=""))
    out = tmp_path / "collected"
    code, stdout, err = _run(["collect", "-o", str(out), "--kubeconfig", config], capsys)
    assert code == 2
    lines = err.splitlines()
    assert len(lines) == 2, err
    assert lines[0].startswith("segmenter: error: cannot collect from node-c"
                               " (segmenter-capture-cx7k2): the API server's pod proxy"
                               " answered 503: error trying to reach service: dial tcp")
    assert lines[1] == ("segmenter: error: cannot collect from node-d (segmenter-capture-dx7k2):"
                        " the pod is Pending, not Running")
    # The agents that could be reached were collected (every file whole).
    assert "2 of 4 agents" in stdout
    assert sorted(p.name for p in out.iterdir()) == ["node-a", "node-b"]
    code, stdout, err = _run(["collect", "-o", str(out), "--kubeconfig", config,
                              "--best-effort"], capsys)
    assert code == 0
    assert err.count("segmenter: warning: cannot collect from") == 2


def test_a_transfer_cut_short_leaves_no_file(
    tmp_path: Path, cluster: tuple[ProxyingApiServer, list[NodeAgent], str],
) -> None:
    api, _agents, config = cluster
    api.cut_files = True
    out = tmp_path / "collected"
    result = collect(str(out), kubeconfig=config)
    assert [a.error is not None and "the transfer broke off" in a.error
            for a in result.agents] == [True, True, True], result.agents
    assert [p for p in out.rglob("*") if p.is_file()] == []
    api.cut_files = False
    assert collect(str(out), kubeconfig=config).fetched == 4


def test_no_agent_forbidden_and_unreachable_cluster(
    tmp_path: Path, cluster: tuple[ProxyingApiServer, list[NodeAgent], str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    api, _agents, config = cluster
    out = tmp_path / "collected"
    code, _stdout, err = _run(["collect", "-o", str(out), "--kubeconfig", config,
                               "--selector", "app=nothing-here"], capsys)
    assert code == 2
    assert err == (f"segmenter: error: no capture agent pods in namespace '{NS}' match the"
                   " selector 'app=nothing-here' (is the DaemonSet deployed there?)\n")
    assert not out.exists()
    api.forbid_proxy = True
    code, _stdout, err = _run(["collect", "-o", str(out), "--kubeconfig", config], capsys)
    assert code == 2
    assert err == (f"segmenter: error: forbidden: needs get on pods/proxy in namespace {NS}"
                   " (see docs/rbac-collect.yaml)\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    (tmp_path / "dead").mkdir()
    config = kubeconfig(tmp_path / "dead", f"http://127.0.0.1:{dead}")
    code, _stdout, err = _run(["collect", "-o", str(out), "--kubeconfig", config,
                               "--timeout", "5"], capsys)
    assert code == 2 and "cannot reach the cluster at" in err and "connection refused" in err


def test_pages_of_pods_and_a_renumbered_agent(
    tmp_path: Path, cluster: tuple[ProxyingApiServer, list[NodeAgent], str],
) -> None:
    api, agents, config = cluster
    out = tmp_path / "collected"
    first = collect(str(out), kubeconfig=config, page_size=1)
    assert [a.node for a in first.agents] == ["node-a", "node-b", "node-c"]
    pages = [q for p, q, _a in api.requests if p.endswith("/pods")]
    assert [q.get("continue") for q in pages] == [None, ["1"], ["2"]]
    # node-c's directory is wiped (a new disk) and its agent numbers from 1 again: the new
    # flows-node-c-000001.jsonl is another file, kept beside the first, not over it.
    old = (out / "node-c" / "flows-node-c-000001.jsonl").read_bytes()
    for p in agents[2].dir.iterdir():
        p.unlink()
    agents[2].sport = 50000
    agents[2].write(4)
    again = collect(str(out), kubeconfig=config)
    report = again.agents[2]
    assert report.error is None and len(report.renamed) == 1
    assert (out / "node-c" / "flows-node-c-000001.jsonl").read_bytes() == old
    kept = out / "node-c" / report.renamed[0]
    assert kept.read_bytes() == agents[2].numbered()[0].read_bytes()
    assert kept.name.startswith("flows-node-c-000001.") and kept.name.endswith(".jsonl")
    assert len(read_flow_file(str(kept)).flows) == 4


class LyingAgent:
    """An HTTP server on the agent port that does not behave: a listing that names a path
    outside the folder, or a file that does not match its listing."""

    def __init__(self, listing: dict[str, Any], files: dict[str, bytes]) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = (json.dumps(outer.listing).encode() if self.path == "/index.json"
                        else outer.files.get(self.path[1:], b""))
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.listing = listing
        self.files = files
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_a_bad_listing_or_file_writes_nothing(tmp_path: Path) -> None:
    import hashlib

    body = b'{"format":"segmenter-flows","version":1}\n'
    good = {"name": "flows-x-000001.jsonl", "size": len(body),
            "sha256": hashlib.sha256(body).hexdigest(), "mtime": 1.0}
    cases = [
        ({"format": "segmenter-agent-files", "version": 1, "host": "x",
          "files": [{**good, "name": "../../escape.jsonl"}]}, {}, "malformed at files[0]"),
        ({"format": "segmenter-agent-files", "version": 1, "host": "x", "files": [good]},
         {good["name"]: body.replace(b"1", b"2")}, "do not match the listing"),
        ({"format": "something-else"}, {}, "does not answer like a segmenter capture agent"),
        ({"format": "segmenter-agent-files", "version": 1, "host": "x",
          "files": [{**good, "size": 4, "sha256": hashlib.sha256(b"nope").hexdigest()}]},
         {good["name"]: b"nope"}, "not a segmenter flow file"),
    ]
    for i, (listing, files, message) in enumerate(cases):
        liar = LyingAgent(listing, files)
        try:
            with ProxyingApiServer() as api:
                api.pods = [pod("segmenter-capture-zz", "node-z", liar.port)]
                out = tmp_path / f"out{i}"
                result = collect(str(out), kubeconfig=kubeconfig(tmp_path, api.url))
        finally:
            liar.close()
        (report,) = result.agents
        assert report.error is not None and message in report.error, report
        assert [p for p in out.rglob("*") if p.is_file()] == [], list(out.rglob("*"))
        assert not (tmp_path / "escape.jsonl").exists()


def test_the_role_grants_exactly_what_collect_uses(
    tmp_path: Path, cluster: tuple[ProxyingApiServer, list[NodeAgent], str],
) -> None:
    """docs/rbac-collect.yaml: valid objects; the Role allows every request the collector
    makes and nothing else: list pods and get pods/proxy in the agents' namespace."""
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    docs = [d for d in yaml.safe_load_all((REPO / "docs" / "rbac-collect.yaml").read_text())
            if d]
    for doc in docs:
        kubernetes_validate.validate(doc, "1.30.0", strict=True)
    kinds = {d["kind"]: d for d in docs}
    assert set(kinds) == {"ServiceAccount", "Role", "RoleBinding"}
    role = kinds["Role"]
    assert role["metadata"]["namespace"] == NS
    assert kinds["RoleBinding"]["roleRef"]["name"] == role["metadata"]["name"]
    granted = {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"]
               for r in rule["resources"] for v in rule["verbs"]}
    assert granted == {("", "pods", "list"), ("", "pods/proxy", "get")}
    assert not any("resourceNames" in rule for rule in role["rules"])

    api, _agents, config = cluster
    collect(str(tmp_path / "collected"), kubeconfig=config)
    used = set()
    for path, _query, _auth in api.requests:
        parts = path.split("/")
        assert parts[1:4] == ["api", "v1", "namespaces"] and parts[4] == NS, path
        if len(parts) == 6:
            used.add(("", parts[5], "list"))
        else:
            used.add(("", f"{parts[5]}/{parts[7]}", "get"))
    assert used == granted


def test_the_daemonset_is_what_collect_looks_for() -> None:
    """capture/deploy/daemonset.yaml: in the default namespace, labelled as the default
    selector asks, serving on a container port of the name collect looks for."""
    from segmenter.cluster.collect import DEFAULT_SELECTOR, PORT_NAME

    ds = yaml.safe_load((REPO / "capture" / "deploy" / "daemonset.yaml").read_text())
    assert ds["metadata"]["namespace"] == NS
    labels = ds["spec"]["template"]["metadata"]["labels"]
    assert all(labels[k] == v for k, v in (t.split("=") for t in DEFAULT_SELECTOR.split(",")))
    (agent,) = ds["spec"]["template"]["spec"]["containers"]
    (port,) = agent["ports"]
    assert port["name"] == PORT_NAME
    args = agent["args"]
    assert args[args.index("--serve") + 1] == str(port["containerPort"])


def test_collect_options(capsys: pytest.CaptureFixture[str]) -> None:
    from segmenter.cli import build_parser

    args = build_parser().parse_args(["collect", "-o", "d"])
    assert (args.namespace, args.port, args.best_effort) == (NS, None, False)
    assert args.selector == ("app.kubernetes.io/name=segmenter-capture,"
                             "app.kubernetes.io/component=capture-agent")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["collect"])
    assert "-o/--output" in capsys.readouterr().err


def test_unwritable_output_is_one_line(
    tmp_path: Path, cluster: tuple[ProxyingApiServer, list[NodeAgent], str],
) -> None:
    _api, _agents, config = cluster
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(Exception, match="cannot create the output folder") as exc:
        collect(str(blocker / "out"), kubeconfig=config)
    assert not isinstance(exc.value, InventoryError)
