"""Live reads fail loudly (issue 12, item 3): a server that is not a Kubernetes API server is
exit 2 with one line naming it, never an empty inventory, "0 policy objects" or "61 of 61
allowed"; an enforcement whose API group the cluster does not serve likewise.

Through the real ``kubernetes`` client against loopback servers (``tests/fake_apiserver.py``):
one that answers 404 ``Status`` to every path (the reproduction), one that answers an HTML
login page, one that answers JSON that is no Kubernetes response, and the recorded clusters of
``tests/fixtures/inventory/live/`` and ``tests/fixtures/policies/live/`` with one path changed.
"""

from __future__ import annotations

from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from segmenter.cli import main
from segmenter.cluster.live import live_inventory
from segmenter.cluster.policies import read_live_policies
from segmenter.errors import InventoryError
from segmenter.targets import all_kinds
from tests.fake_apiserver import FakeApiServer, kubeconfig
from tests.test_inventory import LIVE as INVENTORY_LIVE
from tests.test_inventory import _FakeApiServer as InventoryServer
from tests.test_kube_policies import CALICO, FIXTURES
from tests.test_kube_policies import _FakeApiServer as PolicyServer


class _AnswersEverything(FakeApiServer):
    """Answers every GET, discovery included, with one status and body."""

    FIXTURES = INVENTORY_LIVE

    def __init__(self, status: int, body: str, content_type: str = "application/json") -> None:
        super().__init__()
        self.fixed = (status, body)
        self.content_type = content_type

    def answer(self, path: str, query: dict[str, list[str]]) -> tuple[int, str]:
        return self.fixed

    def respond(
        self, handler: BaseHTTPRequestHandler, path: str, query: dict[str, list[str]]
    ) -> None:
        status, body = self.answer(path, query)
        data = body.encode()
        handler.send_response(status)
        handler.send_header("Content-Type", self.content_type)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)


NOT_FOUND = (INVENTORY_LIVE / "status-404.json").read_text()
LOGIN_PAGE = "<!DOCTYPE html><html><body><form action=/login>Sign in</form></body></html>"


@pytest.fixture
def not_found() -> Iterator[_AnswersEverything]:
    with _AnswersEverything(404, NOT_FOUND) as server:
        yield server


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("segmenter: error: ")
    return lines[0].removeprefix("segmenter: error: ")


def test_404_everywhere_is_no_cluster_for_every_live_command(
    tmp_path: Path, not_found: _AnswersEverything, capsys: pytest.CaptureFixture[str]
) -> None:
    """The reproduction: today verify says "4 of 4 allowed", live-policies writes 0 objects and
    inventory --live 0 namespaces, all exit 0."""
    config = kubeconfig(tmp_path, not_found.url)
    expected = (f"the server at {not_found.url} is not a Kubernetes API server: it answered "
                "404 Not Found to /api/v1 (API discovery of v1); check the kubeconfig's "
                "server URL")
    code, out, err = _cli(["verify", "--cluster", "--kubeconfig", config,
                           "--flows", str(FIXTURES / "flows.jsonl"),
                           "--inventory", str(FIXTURES / "inventory.json")], capsys)
    assert (code, out) == (2, "")
    assert _one_error_line(err) == expected

    for argv, written in (
        (["live-policies", "--kubeconfig", config, "-o", str(tmp_path / "live.yaml")],
         tmp_path / "live.yaml"),
        (["inventory", "--live", "--kubeconfig", config, "-o", str(tmp_path / "inv.json")],
         tmp_path / "inv.json"),
        (["inventory-watch", "--kubeconfig", config, "--duration", "1",
          "-o", str(tmp_path / "rec")], tmp_path / "rec"),
    ):
        code, out, err = _cli(argv, capsys)
        assert (code, out) == (2, ""), argv
        assert _one_error_line(err) == expected, argv
        assert not written.exists(), argv
    # Nothing but discovery was asked: no list was read from a server that is not one.
    assert {path for path, _, _ in not_found.requests} == {"/api/v1/"}


@pytest.mark.parametrize(
    ("status", "body", "content_type", "problem"),
    [
        (200, LOGIN_PAGE, "text/html", "its answer to /api/v1 is not JSON (an HTML page: a "
                                       "proxy or a login page?)"),
        (200, '{"status": "ok", "version": "2.4.1"}', "application/json",
         "its answer to /api/v1 is JSON but not the APIResourceList of v1"),
        (200, '{"kind": "APIResourceList", "groupVersion": "apps/v1", "resources": []}',
         "application/json", "its answer to /api/v1 is JSON but not the APIResourceList of v1"),
    ],
)
def test_a_server_that_is_not_kubernetes_is_named(
    tmp_path: Path, status: int, body: str, content_type: str, problem: str
) -> None:
    with _AnswersEverything(status, body, content_type) as server:
        config = kubeconfig(tmp_path, server.url)
        for read in (lambda: live_inventory(kubeconfig=config),
                     lambda: read_live_policies(all_kinds(), kubeconfig=config)):
            with pytest.raises(InventoryError) as info:
                read()
            assert str(info.value) == (f"the server at {server.url} is not a Kubernetes API "
                                       f"server: {problem}")


def test_networking_api_must_be_served(tmp_path: Path) -> None:
    with InventoryServer() as server:
        server.overrides["/apis/networking.k8s.io/v1"] = (404, "status-404")
        with pytest.raises(InventoryError) as info:
            live_inventory(kubeconfig=kubeconfig(tmp_path, server.url))
    assert str(info.value) == (
        f"the server at {server.url} is not a Kubernetes API server: it answered 404 Not Found "
        "to /apis/networking.k8s.io/v1 (API discovery of networking.k8s.io/v1); check the "
        "kubeconfig's server URL")


def test_a_core_resource_answered_404_is_an_error_not_an_empty_list(tmp_path: Path) -> None:
    with InventoryServer() as server:
        server.overrides["/api/v1/services"] = (404, "status-404")
        with pytest.raises(InventoryError) as info:
            live_inventory(kubeconfig=kubeconfig(tmp_path, server.url))
    assert str(info.value) == (f"the API server at {server.url} answered 404 Not Found to list "
                               "services, which every cluster serves")


def test_a_list_of_another_kind_is_refused(tmp_path: Path) -> None:
    """A page must be the list asked for: a NodeList in answer to list pods is not pods."""

    class _Swapped(InventoryServer):
        def route(self, path: str, query: dict[str, list[str]]) -> tuple[int, str]:
            if path == "/api/v1/pods":
                return 200, self.read("nodes")
            return super().route(path, query)

    with _Swapped() as server, pytest.raises(InventoryError) as info:
        live_inventory(kubeconfig=kubeconfig(tmp_path, server.url))
    assert str(info.value) == (f"the API server at {server.url} sent an unexpected response to "
                               "list pods (a NodeList, not a PodList with an items list)")


def test_enforcement_needs_its_api_group_served(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Calico enforcement asked of a cluster without projectcalico.org/v3 is exit 2; under
    Kubernetes enforcement the same cluster is judged (one flow denied: exit 1)."""
    with PolicyServer() as server:
        server.overrides[CALICO] = (404, "status-404")
        config = kubeconfig(tmp_path, server.url)
        common = ["--kubeconfig", config, "--flows", str(FIXTURES / "flows.jsonl"),
                  "--inventory", str(FIXTURES / "inventory.json")]
        code, out, err = _cli(["verify", "--cluster", "--enforcement", "calico", *common],
                              capsys)
        assert (code, out) == (2, "")
        assert _one_error_line(err) == (f"calico enforcement asked of the cluster at "
                                        f"{server.url}, which does not serve projectcalico.org/v3")
        code, out, err = _cli(["verify", "--cluster", "--enforcement", "cilium", *common],
                              capsys)
        assert _one_error_line(err) == (f"cilium enforcement asked of the cluster at "
                                        f"{server.url}, which does not serve cilium.io/v2")
        code, out, _ = _cli(["verify", "--cluster", *common], capsys)
        assert code == 1
        assert "3 of 4 observed flows allowed under kubernetes enforcement" in out
