"""Live policies through the REAL ``kubernetes`` client against a loopback API server.

There is no Kubernetes API server on the development machine (and none can be installed), so a
``http.server`` on 127.0.0.1 serves recorded responses in the API server's exact form
(``tests/fixtures/policies/live/``): a NetworkPolicyList in two pages joined by
``metadata.continue``, the projectcalico.org/v3 discovery document and lists, and ``Status``
bodies for 401, 403, 404 and 410.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from segmenter.analysis.diff.structural import diff_policies
from segmenter.cli import main
from segmenter.cluster.policies import read_live_policies
from segmenter.errors import InventoryError
from segmenter.evaluate import load_manifests
from segmenter.targets import KUBERNETES_KINDS, all_kinds, kind_of
from tests.fake_apiserver import FakeApiServer, kubeconfig

FIXTURES = Path(__file__).parent / "fixtures" / "policies"
LIVE = FIXTURES / "live"
NP_PATH = "/apis/networking.k8s.io/v1/networkpolicies"
CALICO = "/apis/projectcalico.org/v3"


class _FakeApiServer(FakeApiServer):
    """Answers like an API server from the recorded JSON files."""

    FIXTURES = LIVE

    def route(self, path: str, query: dict[str, list[str]]) -> tuple[int, str]:
        if path == NP_PATH:
            return self.paged("networkpolicies-page-1", "networkpolicies-page-2", query)
        if path == CALICO:
            return 200, self.read("calico-api-resources")
        if path.startswith(CALICO + "/"):
            name = f"calico-{path.rsplit('/', 1)[1]}"
            if (LIVE / f"{name}.json").is_file():
                return 200, self.read(name)
        return 404, self.read("status-404")


_kubeconfig = kubeconfig


@pytest.fixture
def api_server() -> Iterator[_FakeApiServer]:
    with _FakeApiServer() as server:
        yield server


def _ids(docs: list[dict[str, Any]]) -> list[str]:
    return [f"{d['apiVersion']} {d['kind']} {d['metadata'].get('namespace', '-')}/"
            f"{d['metadata']['name']}" for d in docs]


def test_reads_paged_networkpolicies_and_served_calico_kinds(
    tmp_path: Path, api_server: _FakeApiServer
) -> None:
    result = read_live_policies(all_kinds(), kubeconfig=_kubeconfig(tmp_path, api_server.url),
                                page_size=2)
    assert _ids(result.manifests) == [
        "networking.k8s.io/v1 NetworkPolicy shop/allow-db",
        "networking.k8s.io/v1 NetworkPolicy shop/allow-frontend",
        "networking.k8s.io/v1 NetworkPolicy shop/allow-web",
        "networking.k8s.io/v1 NetworkPolicy shop/default-deny",
        "projectcalico.org/v3 GlobalNetworkPolicy -/security.pci-guard",
        "projectcalico.org/v3 GlobalNetworkSet -/payment-gateway",
        # knp.default.allow-web (Calico's derived view of a Kubernetes policy) is left out
        "projectcalico.org/v3 NetworkPolicy shop/default.allow-dns",
        "projectcalico.org/v3 Tier -/default",
        "projectcalico.org/v3 Tier -/security",
    ]
    assert "projectcalico.org" in result.served_groups
    assert result.host == api_server.url
    # The list items carried no kind/apiVersion: they are filled in; the rest is the server's.
    first = result.manifests[0]
    assert first["metadata"]["uid"] == "5b1f0c3e-7a2d-4e8b-9c61-000000000001"
    assert first["spec"]["policyTypes"] == ["Ingress"]
    np_requests = [q for path, q, _ in api_server.requests if path == NP_PATH]
    assert len(np_requests) == 2
    assert np_requests[0]["limit"] == ["2"]
    assert "continue" not in np_requests[0]
    assert np_requests[1]["continue"][0].startswith("eyJ2Ijoi")
    assert {auth for _, _, auth in api_server.requests} == {"Bearer test-token"}
    # Kinds the discovery document does not list are not asked for, and are noted.
    paths = {path for path, _, _ in api_server.requests}
    assert f"{CALICO}/stagednetworkpolicies" not in paths
    assert any("stagednetworkpolicies.projectcalico.org" in n for n in result.notes)
    assert sorted(k.resource for k in result.kinds) == [
        "globalnetworkpolicies.projectcalico.org", "globalnetworksets.projectcalico.org",
        "networkpolicies.networking.k8s.io", "networkpolicies.projectcalico.org",
        "networksets.projectcalico.org", "tiers.projectcalico.org"]


def test_live_objects_equal_their_source_files_after_normalisation(
    tmp_path: Path, api_server: _FakeApiServer
) -> None:
    live = read_live_policies(all_kinds(),
                              kubeconfig=_kubeconfig(tmp_path, api_server.url)).manifests
    k8s_live = [d for d in live if d["apiVersion"].startswith("networking.k8s.io/")]
    files = load_manifests([str(FIXTURES / "k8s" / "old")])
    diff = diff_policies(k8s_live, files)
    assert not diff.has_changes, [c.unified for c in diff.changed]
    assert len(diff.unchanged) == 4
    # Calico: server labels, defaulted tier/types/defaultAction, empty selectors and entity
    # rules, and the old "default." name prefix all normalise away.
    calico_live = [d for d in live if d["apiVersion"].startswith("projectcalico.org/")
                   and d["metadata"]["name"] != "default"]
    diff = diff_policies(calico_live, load_manifests([str(FIXTURES / "calico")]))
    assert not diff.has_changes, [c.unified for c in diff.changed]
    assert len(diff.unchanged) == 4


def test_calico_group_not_served_is_skipped_with_a_note(
    tmp_path: Path, api_server: _FakeApiServer
) -> None:
    api_server.overrides[CALICO] = (404, "status-404")
    result = read_live_policies(all_kinds(), kubeconfig=_kubeconfig(tmp_path, api_server.url))
    assert [kind_of(d).kind for d in result.manifests] == ["NetworkPolicy"] * 4  # type: ignore[union-attr]
    assert "projectcalico.org" not in result.served_groups
    assert (
        f"the cluster at {api_server.url} does not serve projectcalico.org/v3: Tier, "
        "GlobalNetworkSet, NetworkSet, GlobalNetworkPolicy, NetworkPolicy, "
        "StagedGlobalNetworkPolicy, StagedNetworkPolicy, StagedKubernetesNetworkPolicy skipped"
    ) in result.notes


def test_calico_false_reads_kubernetes_kinds_only(
    tmp_path: Path, api_server: _FakeApiServer
) -> None:
    result = read_live_policies(KUBERNETES_KINDS, kubeconfig=_kubeconfig(tmp_path, api_server.url))
    assert len(result.manifests) == 4
    assert not any(path.startswith(CALICO) for path, _, _ in api_server.requests)


def test_expired_continue_token_restarts_the_list(
    tmp_path: Path, api_server: _FakeApiServer
) -> None:
    api_server.expire_continue_once = True
    result = read_live_policies(KUBERNETES_KINDS, kubeconfig=_kubeconfig(tmp_path, api_server.url))
    assert len(result.manifests) == 4  # no duplicates from the abandoned first pass
    assert len([p for p, _, _ in api_server.requests if p == NP_PATH]) == 4


def test_forbidden_is_one_line(tmp_path: Path, api_server: _FakeApiServer) -> None:
    api_server.overrides[NP_PATH] = (403, "status-403-networkpolicies")
    with pytest.raises(InventoryError) as info:
        read_live_policies(all_kinds(), kubeconfig=_kubeconfig(tmp_path, api_server.url))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"forbidden: needs list on networkpolicies.networking.k8s.io at "
                              f"{api_server.url} (see docs/rbac.yaml): ")
    assert 'cannot list resource "networkpolicies"' in message


def test_forbidden_on_calico_group_is_an_error_too(
    tmp_path: Path, api_server: _FakeApiServer
) -> None:
    api_server.overrides[f"{CALICO}/globalnetworkpolicies"] = (403, "status-403-networkpolicies")
    with pytest.raises(InventoryError, match=r"^forbidden: needs list on "
                                             r"globalnetworkpolicies\.projectcalico\.org"):
        read_live_policies(all_kinds(), kubeconfig=_kubeconfig(tmp_path, api_server.url))


def test_unauthorized(tmp_path: Path, api_server: _FakeApiServer) -> None:
    api_server.overrides[NP_PATH] = (401, "status-401")
    with pytest.raises(InventoryError) as info:
        read_live_policies(all_kinds(), kubeconfig=_kubeconfig(tmp_path, api_server.url))
    assert str(info.value) == (f"unauthorized: the cluster at {api_server.url} rejected the "
                               "credentials (expired token or certificate?)")


def test_unreachable_cluster(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with pytest.raises(InventoryError) as info:
        read_live_policies(all_kinds(), kubeconfig=_kubeconfig(tmp_path, url), request_timeout=5)
    assert str(info.value) == f"cannot reach the cluster at {url}: connection refused"


def test_bad_kubeconfig_and_context(tmp_path: Path, api_server: _FakeApiServer) -> None:
    with pytest.raises(InventoryError, match="no such kubeconfig file"):
        read_live_policies(all_kinds(), kubeconfig=str(tmp_path / "missing"))
    path = _kubeconfig(tmp_path, api_server.url, context="prod")
    assert read_live_policies(all_kinds(), kubeconfig=path, context="prod").manifests
    with pytest.raises(InventoryError, match="nope"):
        read_live_policies(all_kinds(), kubeconfig=path, context="nope")


def _run(argv: list[str]) -> int:
    return main(argv)


def test_live_policies_command_writes_normalised_yaml(
    tmp_path: Path, api_server: _FakeApiServer, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "live.yaml"
    kubeconfig = _kubeconfig(tmp_path, api_server.url)
    assert _run(["live-policies", "--kubeconfig", kubeconfig, "-o", str(out)]) == 0
    docs = list(yaml.safe_load_all(out.read_text()))
    assert len(docs) == 9
    assert all("uid" not in d["metadata"] for d in docs)
    assert "wrote" in capsys.readouterr().out
    first = out.read_bytes()
    assert _run(["live-policies", "--kubeconfig", kubeconfig, "-o", str(out)]) == 0
    assert out.read_bytes() == first  # deterministic
    assert _run(["live-policies", "--raw", "--no-calico", "--kubeconfig", kubeconfig,
                 "-o", str(out)]) == 0
    docs = list(yaml.safe_load_all(out.read_text()))
    assert len(docs) == 4
    assert all("uid" in d["metadata"] for d in docs)


def test_verify_reads_the_policies_in_force_from_the_cluster(
    tmp_path: Path, api_server: _FakeApiServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """`segmenter verify --cluster`: drift detection against the live policies (k8s/old in the
    fixture server), through the real kubernetes client."""
    code = main(["verify", "--cluster", "--kubeconfig", _kubeconfig(tmp_path, api_server.url),
                 "--flows", str(FIXTURES / "flows.jsonl"),
                 "--inventory", str(FIXTURES / "inventory.json")])
    out = capsys.readouterr().out
    # frontend -> db:5432 was observed but k8s/old only lets web reach db.
    assert code == 1
    assert "DENIED shop/Deployment/frontend -> shop/StatefulSet/db TCP/5432" in out
    assert "3 of 4 observed flows allowed" in out
    assert any(path.endswith("/networkpolicies") for path, _, _ in api_server.requests)
