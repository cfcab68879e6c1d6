"""Inventory parsing, owner collapse, IP resolution and the live API client."""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

from segmenter.cluster.cache import inventory_from_dict, inventory_to_dict
from segmenter.cluster.dns import dns_service_ips, dns_workload
from segmenter.cluster.dump import load_inventory, parse_documents
from segmenter.errors import InputError, InventoryError
from segmenter.graph.resolve import Resolved, Resolver, is_private
from segmenter.model import (
    ContainerPort,
    Inventory,
    Labels,
    Pod,
    Service,
    ServicePort,
    Transport,
    Workload,
    WorkloadRef,
)
from tests.fake_apiserver import FakeApiServer, kubeconfig

FIXTURES = Path(__file__).parent / "fixtures" / "inventory"
DUMP = FIXTURES / "cluster-dump.json"
LIVE = FIXTURES / "live"
T0 = 1_700_000_000.0
TCP, UDP = Transport.TCP, Transport.UDP


@pytest.fixture(scope="module")
def inventory() -> Inventory:
    return load_inventory([str(DUMP)])


@pytest.fixture(scope="module")
def resolver(inventory: Inventory) -> Resolver:
    return Resolver(inventory)


def dump_items() -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(DUMP.read_text())["items"]
    return items


def write_list(path: Path, items: list[dict[str, Any]]) -> str:
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    return str(path)


def pod_named(inv: Inventory, namespace: str, name: str) -> Pod:
    (pod,) = [p for p in inv.pods if (p.namespace, p.name) == (namespace, name)]
    return pod


def service_named(inv: Inventory, namespace: str, name: str) -> Service:
    (svc,) = [s for s in inv.services if (s.namespace, s.name) == (namespace, name)]
    return svc


def workload(inv: Inventory, node_id: str) -> Workload:
    wl = inv.workload(WorkloadRef.parse(node_id))
    assert wl is not None, node_id
    return wl


# --------------------------------------------------------------------------------------------
# Parsing and owner collapse


def test_every_top_owner_becomes_one_workload(inventory: Inventory) -> None:
    assert [w.ref.id for w in inventory.workloads] == [
        "jobs/CronJob/report",
        "jobs/Job/migrate",
        "kube-system/DaemonSet/node-exporter",
        "kube-system/DaemonSet/node-local-dns",
        "kube-system/Deployment/coredns",
        "kube-system/Pod/kube-apiserver-node-a",
        "shop/Deployment/api",
        "shop/Deployment/web",
        "shop/Pod/debug",
        "shop/StatefulSet/db",
    ]


@pytest.mark.parametrize(
    ("namespace", "pod", "owner"),
    [
        # Pod -> ReplicaSet -> Deployment, all in the dump
        ("shop", "web-5d8f7c9b6-abcde", "shop/Deployment/web"),
        # ReplicaSet absent: Deployment name from the RS name minus the pod-template-hash
        ("shop", "api-7c9d4f8b5-xyz12", "shop/Deployment/api"),
        ("shop", "db-1", "shop/StatefulSet/db"),
        ("kube-system", "node-exporter-ax9k", "kube-system/DaemonSet/node-exporter"),
        # Pod -> Job -> CronJob, all in the dump
        ("jobs", "report-28333334-k2x4z", "jobs/CronJob/report"),
        # Job absent: its CronJob is in the dump and names it <cronjob>-<n>
        ("jobs", "report-28333338-p9q8r", "jobs/CronJob/report"),
        ("jobs", "migrate-abcde", "jobs/Job/migrate"),
        ("shop", "debug", "shop/Pod/debug"),
        # a static pod's mirror is owned by its Node: a bare pod
        ("kube-system", "kube-apiserver-node-a", "kube-system/Pod/kube-apiserver-node-a"),
    ],
)
def test_owner_chain_collapses_to_top_owner(
    inventory: Inventory, namespace: str, pod: str, owner: str
) -> None:
    assert pod_named(inventory, namespace, pod).owner.id == owner


def test_replicaset_name_without_matching_hash_stays_replicaset(tmp_path: Path) -> None:
    items = [i for i in dump_items() if i["metadata"]["name"] == "api-7c9d4f8b5-xyz12"]
    items[0]["metadata"]["labels"]["pod-template-hash"] = "somethingelse"
    inv = load_inventory([write_list(tmp_path / "d.json", items)])
    assert inv.pods[0].owner.id == "shop/ReplicaSet/api-7c9d4f8b5"


def test_job_and_cronjob_absent_collapse_by_the_run_name(tmp_path: Path) -> None:
    """Neither the Job nor its CronJob in the dump: the CronJob controller names a run's Job
    ``<cronjob>-<scheduled minute>``; 28333338 minutes is 2023-11-14T22:18Z, and the pod's
    creationTimestamp is 80 s from it (clocks may differ by up to 5 minutes)."""
    (pod,) = [i for i in dump_items() if i["metadata"]["name"] == "report-28333338-p9q8r"]
    inv = load_inventory([write_list(tmp_path / "d.json", [pod])])
    assert inv.pods[0].owner.id == "jobs/CronJob/report"
    assert [w.ref.id for w in inv.workloads] == ["jobs/CronJob/report"]


@pytest.mark.parametrize(
    ("job", "created", "owner"),
    [
        # created 30 days after the minute the name says: not a run of that schedule
        ("report-28333338", "2023-12-14T22:18:05Z", "jobs/Job/report-28333338"),
        # created 10 minutes before it: neither
        ("report-28333338", "2023-11-14T22:08:00Z", "jobs/Job/report-28333338"),
        # a date, not minutes since the epoch (2008-06-30 as minutes)
        ("backup-20240101", "2024-01-01T00:00:00Z", "jobs/Job/backup-20240101"),
        ("migrate-3", "2023-11-14T22:18:05Z", "jobs/Job/migrate-3"),
        # a run found later than its minute (retries): within a week
        ("report-28333338", "2023-11-16T09:00:00Z", "jobs/CronJob/report"),
        # no creation time: a minute between 2016 and 2100 is enough
        ("report-28333338", None, "jobs/CronJob/report"),
        ("report-1000", None, "jobs/Job/report-1000"),
    ],
)
def test_job_name_is_read_as_a_cronjob_run_only_when_plausible(
    tmp_path: Path, job: str, created: str | None, owner: str
) -> None:
    (pod,) = [i for i in dump_items() if i["metadata"]["name"] == "report-28333338-p9q8r"]
    pod = copy.deepcopy(pod)
    pod["metadata"]["ownerReferences"][0]["name"] = job
    if created is None:
        del pod["metadata"]["creationTimestamp"]
    else:
        pod["metadata"]["creationTimestamp"] = created
    inv = load_inventory([write_list(tmp_path / "d.json", [pod])])
    assert inv.pods[0].owner.id == owner


def test_workload_labels_annotations_and_template(inventory: Inventory) -> None:
    web = workload(inventory, "shop/Deployment/web")
    # the controller's own labels and annotations; last-applied-configuration dropped;
    # pod-template annotations merged in for keys the controller lacks
    assert web.labels.as_dict() == {"app": "web"}
    assert web.annotations.as_dict() == {
        "deployment.kubernetes.io/revision": "3",
        "prometheus.io/scrape": "true",
    }
    # stable template keys: no pod-template-hash
    assert web.template_labels.as_dict() == {
        "app": "web",
        "tier": "frontend",
        "app.kubernetes.io/version": "1.4.2",
    }
    assert not web.host_network
    # a data-class declared on the StatefulSet's pod template is visible on the workload
    db = workload(inventory, "shop/StatefulSet/db")
    assert db.annotations.get("segmenter.io/data-class") == "pci"
    assert db.template_labels.as_dict() == {"app": "db"}
    cron = workload(inventory, "jobs/CronJob/report")
    assert cron.annotations.as_dict() == {"segmenter.io/owner": "finance"}
    assert cron.template_labels.as_dict() == {"app": "report"}
    assert workload(inventory, "kube-system/DaemonSet/node-local-dns").host_network


def test_workload_without_controller_uses_shared_stable_pod_labels(inventory: Inventory) -> None:
    api = workload(inventory, "shop/Deployment/api")
    assert api.template_labels.as_dict() == {"app": "api"}
    assert api.labels.as_dict() == {"app": "api"}
    debug = workload(inventory, "shop/Pod/debug")
    assert debug.labels.as_dict() == {"run": "debug"}


def test_segmenter_declaration_on_pods_reaches_workload(tmp_path: Path) -> None:
    items = dump_items()
    for item in items:
        if item["metadata"]["name"] == "api-7c9d4f8b5-xyz12":
            item["metadata"]["annotations"] = {"segmenter.io/data-class": "phi"}
    inv = load_inventory([write_list(tmp_path / "d.json", items)])
    assert workload(inv, "shop/Deployment/api").annotations.get("segmenter.io/data-class") == (
        "phi"
    )


def test_pod_fields(inventory: Inventory) -> None:
    api = pod_named(inventory, "shop", "api-7c9d4f8b5-xyz12")
    assert api.ips == ("10.244.2.30",)
    assert api.node == "node-b"
    assert api.service_account == "api"
    assert api.ports == (
        ContainerPort(9100, TCP, "metrics"),
        ContainerPort(50051, TCP, "grpc"),
    )
    assert api.start == T0 + 20
    assert api.end is None
    assert api.labels.get("pod-template-hash") == "7c9d4f8b5"  # pods keep every label
    old = pod_named(inventory, "shop", "web-5d8f7c9b6-old01")
    assert (old.start, old.end) == (T0, T0 + 100)  # deletionTimestamp
    done = pod_named(inventory, "jobs", "report-28333334-k2x4z")
    assert done.end == T0 + 60  # Succeeded: the container's finishedAt
    exporter = pod_named(inventory, "kube-system", "node-exporter-ax9k")
    assert exporter.host_network
    assert exporter.ips == ("10.0.0.11",)


def test_service_fields(inventory: Inventory) -> None:
    web = service_named(inventory, "shop", "web")
    assert web.type == "LoadBalancer"
    assert web.cluster_ips == ("10.96.0.100",)
    assert web.load_balancer_ips == ("203.0.113.10",)
    assert web.selector.as_dict() == {"app": "web"}
    assert web.ports == (ServicePort(80, TCP, "http", "http", 30080),)
    alt = service_named(inventory, "shop", "web-alt")
    assert alt.external_ips == ("198.51.100.7",)
    assert alt.ports == (ServicePort(8000, TCP, 8080, None, None),)
    assert service_named(inventory, "shop", "db").cluster_ips == ()  # headless: "None" skipped


def test_endpoint_slices_nodes_namespaces(inventory: Inventory) -> None:
    (dns_slice,) = [s for s in inventory.endpoint_slices if s.service == "kube-dns"]
    assert dns_slice.namespace == "kube-system"
    assert [(e.addresses, e.pod, e.node) for e in dns_slice.endpoints] == [
        (("10.244.1.2",), "coredns-5dd5756b68-k8xq2", "node-a"),
        (("10.244.2.2",), "coredns-5dd5756b68-p7v4n", "node-b"),
    ]
    assert {(p.name, p.port, p.protocol) for p in dns_slice.ports} == {
        ("dns", 53, UDP),
        ("dns-tcp", 53, TCP),
        ("metrics", 9153, TCP),
    }
    assert [(n.name, n.addresses) for n in inventory.nodes] == [
        ("node-a", ("10.0.0.11", "34.1.1.1")),
        ("node-b", ("10.0.0.12",)),
    ]
    shop = inventory.namespace("shop")
    assert shop is not None
    assert shop.labels.as_dict() == {"kubernetes.io/metadata.name": "shop", "team": "shop"}


def test_yaml_documents_and_single_objects_parse_like_json(
    tmp_path: Path, inventory: Inventory
) -> None:
    items = dump_items()
    multi = tmp_path / "dump.yaml"
    multi.write_text(yaml.safe_dump_all(items))
    assert load_inventory([str(multi)]) == inventory
    as_list = tmp_path / "list.yaml"
    as_list.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": items}))
    assert load_inventory([str(as_list)]) == inventory
    # one object per file, several files
    paths = []
    for i, item in enumerate(items):
        path = tmp_path / f"obj-{i:02d}.json"
        path.write_text(json.dumps(item))
        paths.append(str(path))
    assert load_inventory(paths) == inventory


def test_snapshots_merge_a_pod_seen_twice_into_one(tmp_path: Path) -> None:
    items = dump_items()
    (web_pod,) = [i for i in items if i["metadata"]["name"] == "web-5d8f7c9b6-abcde"]
    early = copy.deepcopy(web_pod)
    early["status"] = {"phase": "Pending"}  # no IP yet
    later = copy.deepcopy(web_pod)
    later["metadata"]["deletionTimestamp"] = "2023-11-14T23:00:00Z"
    first = write_list(tmp_path / "t1.json", [early])
    second = write_list(tmp_path / "t2.json", [*items, later])
    inv = load_inventory([first, second])
    pods = [p for p in inv.pods if p.name == "web-5d8f7c9b6-abcde"]
    assert len(pods) == 1
    assert pods[0].ips == ("10.244.1.10",)
    assert pods[0].end == T0 + 2800
    assert inv.sources == (first, second)
    # a pod name reused by a new pod (new uid) is a separate pod over time
    reborn = copy.deepcopy(web_pod)
    reborn["metadata"]["uid"] = "another-uid"
    reborn["status"]["podIP"] = "10.244.1.77"
    reborn["status"]["podIPs"] = [{"ip": "10.244.1.77"}]
    inv = load_inventory([str(DUMP), write_list(tmp_path / "t3.json", [reborn])])
    assert len([p for p in inv.pods if p.name == "web-5d8f7c9b6-abcde"]) == 2


def _rollout_items(*, deployment: bool, replicasets: bool) -> list[dict[str, Any]]:
    """shop/web rolled out from ReplicaSet web-5d8f7c9b6 (v1.4.2) to web-7f6b8c4d2 (v1.5.0)."""
    items = dump_items()
    (old_pod,) = [i for i in items if i["metadata"]["name"] == "web-5d8f7c9b6-abcde"]
    (old_rs,) = [i for i in items if i["metadata"]["name"] == "web-5d8f7c9b6"]
    (deploy,) = [i for i in items if i["kind"] == "Deployment" and i["metadata"]["name"] == "web"]
    new_rs = copy.deepcopy(old_rs)
    new_rs["metadata"].update(
        name="web-7f6b8c4d2", uid="rs-new", creationTimestamp="2023-11-14T22:20:00Z"
    )
    template_labels = new_rs["spec"]["template"]["metadata"]["labels"]
    template_labels.update({"app.kubernetes.io/version": "1.5.0", "pod-template-hash": "7f6b8c4d2"})
    new_pod = copy.deepcopy(old_pod)
    new_pod["metadata"].update(
        name="web-7f6b8c4d2-k9j8h",
        uid="pod-new",
        creationTimestamp="2023-11-14T22:20:00Z",
        labels={**old_pod["metadata"]["labels"], **template_labels},
    )
    new_pod["metadata"]["ownerReferences"][0].update(name="web-7f6b8c4d2", uid="rs-new")
    new_pod["status"].update(podIP="10.244.1.11", podIPs=[{"ip": "10.244.1.11"}])
    deploy = copy.deepcopy(deploy)
    deploy["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/version"] = "1.5.0"
    out = [
        i
        for i in items
        if i["kind"] not in ("Deployment", "ReplicaSet")
        or i["metadata"]["name"] == "coredns"
        or i["metadata"]["name"].startswith("coredns-")
    ]
    out.append(new_pod)
    if deployment:
        out.append(deploy)
    if replicasets:
        out.extend([old_rs, new_rs])
    return out


@pytest.mark.parametrize(
    ("deployment", "replicasets", "version"),
    [
        (True, True, "1.5.0"),  # the Deployment's own template
        (False, True, "1.5.0"),  # no Deployment: the newest ReplicaSet's template
        (False, False, None),  # pods only: the labels all its pods share
    ],
)
def test_rollout_keeps_one_workload_identity(
    tmp_path: Path, deployment: bool, replicasets: bool, version: str | None
) -> None:
    items = _rollout_items(deployment=deployment, replicasets=replicasets)
    inv = load_inventory([write_list(tmp_path / "d.json", items)])
    web_pods = [p for p in inv.pods if p.labels.get("app") == "web"]
    assert {p.labels.get("pod-template-hash") for p in web_pods} == {"5d8f7c9b6", "7f6b8c4d2"}
    assert {p.owner.id for p in web_pods} == {"shop/Deployment/web"}
    assert [w.ref.id for w in inv.workloads if w.ref.name.startswith("web")] == [
        "shop/Deployment/web"
    ]
    web = workload(inv, "shop/Deployment/web")
    assert web.template_labels.get("app.kubernetes.io/version") == version
    assert "pod-template-hash" not in web.template_labels.as_dict()
    resolver = Resolver(inv)
    assert resolver.resolve("10.244.1.10", None, TCP, T0).node_id == "shop/Deployment/web"
    assert resolver.resolve("10.244.1.11", None, TCP, T0 + 500).node_id == "shop/Deployment/web"
    # the Service keeps pointing at the workload across the rollout
    assert resolver.resolve("10.96.0.100", 80, TCP, T0 + 500).node_id == "shop/Deployment/web"


def test_cronjob_runs_are_one_workload(tmp_path: Path) -> None:
    items = dump_items()
    (job,) = [i for i in items if i["kind"] == "Job" and i["metadata"]["name"] == "report-28333334"]
    second = copy.deepcopy(job)
    second["metadata"].update(name="report-28333338", uid="job-2")
    inv = load_inventory([write_list(tmp_path / "d.json", [*items, second])])
    runs = [p for p in inv.pods if p.namespace == "jobs" and p.name.startswith("report-")]
    assert sorted(p.name for p in runs) == ["report-28333334-k2x4z", "report-28333338-p9q8r"]
    assert {p.owner.id for p in runs} == {"jobs/CronJob/report"}
    assert not [w for w in inv.workloads if w.ref.kind == "Job" and w.ref.name != "migrate"]
    assert workload(inv, "jobs/CronJob/report").template_labels.as_dict() == {"app": "report"}


def test_unknown_kind_is_skipped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="segmenter.cluster.dump"):
        load_inventory([str(DUMP)])
    assert any(
        r.name == "segmenter.cluster.dump" and "ConfigMap" in r.getMessage() for r in caplog.records
    )


def test_manifest_without_namespace_lands_in_default(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: solo, creationTimestamp: 2024-01-01T00:00:00Z}"
        "\nspec: {containers: [{name: c, ports: [{containerPort: 80}]}]}\n"
    )
    inv = load_inventory([str(path)])
    assert inv.pods[0].namespace == "default"
    assert inv.pods[0].start == 1704067200.0  # YAML's own timestamp type is handled


# --------------------------------------------------------------------------------------------
# Bad input: one line naming the file and the record


def _error(paths: list[str]) -> InputError:
    with pytest.raises(InputError) as info:
        load_inventory(paths)
    assert "\n" not in str(info.value)
    return info.value


def test_malformed_json(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"kind": "List", "items": [\n  {"kind": "Pod",}\n]}')
    err = _error([str(path)])
    assert err.path == str(path)
    assert err.record == "line 2 column 18"
    assert str(err).startswith(f"{path} (line 2 column 18): malformed JSON")


def test_malformed_yaml(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("kind: Pod\nmetadata:\n  name: [unclosed\n")
    err = _error([str(path)])
    assert err.path == str(path)
    assert err.message.startswith("malformed YAML")
    assert err.record is not None
    assert err.record.startswith("line ")


@pytest.mark.parametrize(
    ("item", "record", "message"),
    [
        ({"metadata": {"name": "x"}}, "item 3 (x)", "object has no kind"),
        ({"kind": "Pod", "metadata": {"namespace": "shop"}}, "item 3 (Pod shop/?)", "no metadata"),
        ({"kind": "Pod"}, "item 3 (Pod)", "Pod has no metadata"),
        ("just a string", "item 3", "expected a Kubernetes object, got a string"),
        (
            {
                "kind": "Pod",
                "metadata": {"name": "x", "namespace": "shop"},
                "spec": {"containers": [{"name": "c", "ports": [{"containerPort": "80"}]}]},
            },
            "item 3 (Pod shop/x)",
            "containerPort must be an integer",
        ),
        (
            {
                "kind": "Pod",
                "metadata": {"name": "x", "namespace": "shop"},
                "status": {"podIP": "10.1.2.300"},
            },
            "item 3 (Pod shop/x)",
            "'10.1.2.300' is not an IP address",
        ),
    ],
)
def test_bad_item_names_file_and_record(
    tmp_path: Path, item: Any, record: str, message: str
) -> None:
    good = dump_items()[:2]
    path = write_list(tmp_path / "d.json", [*good, item])
    err = _error([path])
    assert err.path == path
    assert err.record == record
    assert message in err.message


def test_non_object_document(tmp_path: Path) -> None:
    path = tmp_path / "d.yaml"
    path.write_text("kind: Namespace\nmetadata: {name: a}\n---\n42\n")
    err = _error([str(path)])
    assert err.record == "document 2"
    assert err.message == "expected a Kubernetes object or List, got a number"
    # a bare array is read as a list of objects, each of which must be one
    path.write_text("kind: Namespace\nmetadata: {name: a}\n---\n- 1\n- 2\n")
    err = _error([str(path)])
    assert (err.record, err.message) == ("item 2", "expected a Kubernetes object, got a number")


def test_missing_and_empty_files(tmp_path: Path) -> None:
    assert _error([str(tmp_path / "nope.json")]).message == "no such file"
    empty = tmp_path / "empty.json"
    empty.write_text("  \n")
    assert "empty file" in _error([str(empty)]).message
    with pytest.raises(InputError):
        load_inventory([])


def test_truncated_dumps(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    text = json.dumps({"apiVersion": "v1", "kind": "List", "items": dump_items()}, indent=1)
    cut = tmp_path / "cut.json"
    cut.write_text(text[: len(text) // 2])
    err = _error([str(cut)])
    assert err.message.startswith("malformed JSON")
    assert err.record is not None
    assert err.record.startswith("line ")
    # a YAML stream cut between two keys still parses: warn that its last object may be partial
    docs = yaml.safe_dump_all(dump_items())
    partial = tmp_path / "cut.yaml"
    partial.write_text(docs[: docs.index("\n", len(docs) // 2)])
    with (
        caplog.at_level(logging.WARNING, logger="segmenter.cluster.dump"),
        contextlib.suppress(InputError),  # or an error, depending on where it was cut
    ):
        load_inventory([str(partial)])
    assert any("does not end with a newline" in r.getMessage() for r in caplog.records)


def test_lists_with_null_or_no_items(tmp_path: Path) -> None:
    path = tmp_path / "empty.json"
    path.write_text('{"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": null}')
    assert load_inventory([str(path)]).pods == ()
    path.write_text('{"apiVersion": "v1", "kind": "List", "items": []}')
    assert load_inventory([str(path)]) == Inventory()


def test_unknown_kinds_are_counted_per_kind(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    extra: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": f"s{i}", "namespace": "shop"}}
        for i in range(3)
    ]
    extra.append(
        {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": 1}
    )
    with caplog.at_level(logging.WARNING, logger="segmenter.cluster.dump"):
        inv = load_inventory([write_list(tmp_path / "d.json", [*dump_items(), *extra])])
    assert len(inv.pods) == 17
    messages = sorted(r.getMessage() for r in caplog.records)
    assert messages == [
        "skipped 1 object(s) of kind ConfigMap (not used by segmenter)",
        "skipped 1 object(s) of kind Widget (not used by segmenter)",
        "skipped 3 object(s) of kind Secret (not used by segmenter)",
    ]


def test_watch_annotations_bound_the_pod_ip_interval(tmp_path: Path) -> None:
    items = [i for i in dump_items() if i["metadata"]["name"] == "web-5d8f7c9b6-fghij"]
    watched = copy.deepcopy(items[0])
    watched["metadata"]["annotations"] = {
        "watch.segmenter.io/ip-assigned-at": "2023-11-14T22:14:00.500Z",
        "watch.segmenter.io/deleted-at": "2023-11-14T22:20:00.250Z",
        "prometheus.io/scrape": "true",
    }
    watched["metadata"]["deletionTimestamp"] = "2023-11-14T22:20:30Z"  # grace period
    first = write_list(tmp_path / "a.json", items)
    second = write_list(tmp_path / "b.json", [watched])
    pod = pod_named(load_inventory([first, second]), "shop", "web-5d8f7c9b6-fghij")
    assert (pod.start, pod.end) == (T0 + 40.5, T0 + 400.25)
    assert pod.annotations.as_dict() == {"prometheus.io/scrape": "true"}
    # a watcher clock behind the API server's never starts a pod before its creation
    watched["metadata"]["annotations"]["watch.segmenter.io/ip-assigned-at"] = "2023-11-14T22:13:00Z"
    pod = pod_named(
        load_inventory([write_list(tmp_path / "c.json", [watched])]), "shop", "web-5d8f7c9b6-fghij"
    )
    assert pod.start == T0 + 10
    watched["metadata"]["annotations"]["watch.segmenter.io/deleted-at"] = "yesterday"
    err = _error([write_list(tmp_path / "d.json", [watched])])
    assert "watch.segmenter.io/deleted-at" in err.message


def test_finished_pod_later_deleted_ends_when_it_finished(tmp_path: Path) -> None:
    items = [i for i in dump_items() if i["metadata"]["name"] == "report-28333334-k2x4z"]
    items[0]["metadata"]["deletionTimestamp"] = "2023-11-14T23:00:00Z"
    pod = load_inventory([write_list(tmp_path / "d.json", items)]).pods[0]
    assert pod.end == T0 + 60


# --------------------------------------------------------------------------------------------
# The JSON cache


def test_cache_round_trip_is_exact_and_deterministic(tmp_path: Path, inventory: Inventory) -> None:
    data = inventory_to_dict(inventory)
    text = json.dumps(data, sort_keys=True)
    again = inventory_from_dict(json.loads(text))
    assert again == inventory
    assert again.sources == inventory.sources
    assert json.dumps(inventory_to_dict(again), sort_keys=True) == text
    cache = tmp_path / "inventory.json"
    cache.write_text(text)
    assert load_inventory([str(cache)]) == inventory
    with pytest.raises(InputError, match="cannot be merged"):
        load_inventory([str(cache), str(DUMP)])


def test_bad_cache(tmp_path: Path) -> None:
    data = inventory_to_dict(load_inventory([str(DUMP)]))
    del data["pods"][3]["owner"]
    with pytest.raises(InputError) as info:
        inventory_from_dict(data, path="cache.json")
    assert info.value.record == "pods[3]"
    data["version"] = 9
    with pytest.raises(InputError, match="version 9"):
        inventory_from_dict(data)


# --------------------------------------------------------------------------------------------
# Resolution


@pytest.mark.parametrize(
    ("ip", "port", "transport", "ts", "expected"),
    [
        # a pod IP -> its workload, port unchanged
        ("10.244.1.20", 5432, TCP, T0, Resolved("shop/StatefulSet/db", 5432, None, "pod")),
        # ClusterIP + named targetPort (resolved against the pods: http -> 8080)
        ("10.96.0.100", 80, TCP, T0, Resolved("shop/Deployment/web", 8080, "shop/web", "service")),
        # Service without EndpointSlices: backends by selector; named port grpc -> 50051
        (
            "10.96.0.101",
            9090,
            TCP,
            T0,
            Resolved("shop/Deployment/api", 50051, "shop/api", "service"),
        ),
        # numeric targetPort, on the ClusterIP and on an externalIP
        (
            "10.96.0.102",
            8000,
            TCP,
            T0,
            Resolved("shop/Deployment/web", 8080, "shop/web-alt", "service"),
        ),
        (
            "198.51.100.7",
            8000,
            TCP,
            T0,
            Resolved("shop/Deployment/web", 8080, "shop/web-alt", "service"),
        ),
        # load-balancer IP
        ("203.0.113.10", 80, TCP, T0, Resolved("shop/Deployment/web", 8080, "shop/web", "service")),
        # NodePort on any node address
        (
            "10.0.0.12",
            30080,
            TCP,
            T0,
            Resolved("shop/Deployment/web", 8080, "shop/web", "nodeport"),
        ),
        ("34.1.1.1", 30080, TCP, T0, Resolved("shop/Deployment/web", 8080, "shop/web", "nodeport")),
        # a node address on another port, and a hostNetwork pod's address -> the node
        ("10.0.0.12", 10250, TCP, T0, Resolved("node:node-b", 10250, None, "node")),
        ("10.0.0.11", 9100, TCP, T0, Resolved("node:node-a", 9100, None, "node")),
        # the API server: the kubernetes Service (443 -> the endpoint's 6443) and its endpoint
        ("10.96.0.1", 443, TCP, T0, Resolved("apiserver", 6443, "default/kubernetes", "service")),
        ("10.0.0.5", 6443, TCP, T0, Resolved("apiserver", 6443, None, "apiserver")),
        # cluster DNS through the Service, and NodeLocal DNSCache's link-local address
        (
            "10.96.0.10",
            53,
            UDP,
            T0,
            Resolved("kube-system/Deployment/coredns", 53, "kube-system/kube-dns", "service"),
        ),
        (
            "169.254.20.10",
            53,
            UDP,
            T0,
            Resolved("kube-system/Deployment/coredns", 53, None, "nodelocal-dns"),
        ),
        (
            "169.254.20.10",
            53,
            TCP,
            T0,
            Resolved("kube-system/Deployment/coredns", 53, None, "nodelocal-dns"),
        ),
        # a link-local address on another port: no peer (segmenter.graph.addresses)
        (
            "169.254.20.10",
            8080,
            TCP,
            T0,
            Resolved("external:169.254.20.10", 8080, None, "special"),
        ),
        # well-known link-local services are named, not dropped
        (
            "169.254.169.254",
            80,
            TCP,
            T0,
            Resolved("external:169.254.169.254", 80, None, "link-local-service"),
        ),
        (
            "fd00:ec2:0::254",
            80,
            TCP,
            T0,
            Resolved("external:fd00:ec2::254", 80, None, "link-local-service"),
        ),
        ("ff02::2", None, Transport.ICMPV6, T0, Resolved("external:ff02::2", None, None,
                                                          "special")),
        # a selector-less Service whose EndpointSlice points outside the cluster
        (
            "10.96.0.103",
            5432,
            TCP,
            T0,
            Resolved("external:192.168.50.5", 5432, "shop/legacy-db", "service"),
        ),
        # anything else
        ("8.8.8.8", 443, TCP, T0, Resolved("external:8.8.8.8", 443, None, "external")),
        ("2001:db8::1", 443, TCP, T0, Resolved("external:2001:db8::1", 443, None, "external")),
    ],
)
def test_resolve(  # noqa: PLR0917 - pytest passes parameters positionally
    resolver: Resolver, ip: str, port: int, transport: Transport, ts: float, expected: Resolved
) -> None:
    assert resolver.resolve(ip, port, transport, ts) == expected
    assert resolver.resolve(ip, port, transport, ts) == expected  # cached path


def test_ip_reuse_is_resolved_by_time(resolver: Resolver) -> None:
    # 10.244.1.50: a web pod until T0+100, then a report job pod from T0+200
    web, report = "shop/Deployment/web", "jobs/CronJob/report"
    assert resolver.resolve("10.244.1.50", 8080, TCP, T0 + 50).node_id == web
    assert resolver.resolve("10.244.1.50", 8080, TCP, T0 + 300).node_id == report
    # between the two: the nearest in time
    assert resolver.resolve("10.244.1.50", 8080, TCP, T0 + 120).node_id == web
    assert resolver.resolve("10.244.1.50", 8080, TCP, T0 + 190).node_id == report
    # before anything: the first pod
    assert resolver.resolve("10.244.1.50", None, TCP, T0 - 5000).node_id == web
    # 10.244.1.40: a finished CronJob pod (until T0+60), then a Job's pod (from T0+100)
    assert resolver.resolve("10.244.1.40", None, TCP, T0 + 45).node_id == report
    assert resolver.resolve("10.244.1.40", None, TCP, T0 + 500).node_id == "jobs/Job/migrate"
    result = resolver.resolve("10.244.1.50", 8080, TCP, T0 + 300)
    assert result == Resolved(report, 8080, None, "pod")


def test_client_side_resolution_ignores_ports(resolver: Resolver) -> None:
    # a client's ephemeral port that equals a NodePort must not turn the node into the Service
    assert resolver.resolve("10.0.0.12", None, TCP, T0).node_id == "node:node-b"
    assert resolver.resolve("10.0.0.5", None, TCP, T0).node_id == "apiserver"


def test_ipv6_addresses_are_compared_in_canonical_form(tmp_path: Path) -> None:
    items = [i for i in dump_items() if i["metadata"]["name"] == "debug"]
    items[0]["status"]["podIPs"].append({"ip": "fd00:10:244::99"})
    inv = load_inventory([write_list(tmp_path / "d.json", items)])
    resolver = Resolver(inv)
    for form in ("fd00:10:244::99", "fd00:10:244:0:0:0:0:99", "FD00:10:244::0099"):
        assert resolver.resolve(form, 80, TCP, T0).node_id == "shop/Pod/debug"


def test_apiserver_endpoint_on_a_node_address(tmp_path: Path) -> None:
    """kind/kubeadm: the API server endpoint is a control-plane node's own address."""
    items = dump_items()
    for item in items:
        if item["kind"] == "EndpointSlice" and item["metadata"]["name"] == "kubernetes":
            item["endpoints"][0]["addresses"] = ["10.0.0.11"]
    resolver = Resolver(load_inventory([write_list(tmp_path / "d.json", items)]))
    assert resolver.resolve("10.0.0.11", 6443, TCP, T0).node_id == "apiserver"
    assert resolver.resolve("10.0.0.11", 10250, TCP, T0).node_id == "node:node-a"
    assert resolver.resolve("10.0.0.11", None, TCP, T0).node_id == "node:node-a"


def test_service_with_backends_in_several_workloads(caplog: pytest.LogCaptureFixture) -> None:
    def pod(name: str, owner: str, ip: str) -> Pod:
        return Pod(
            "ns",
            name,
            Labels.of({"tier": "be"}),
            (ip,),
            WorkloadRef("ns", "Deployment", owner),
            ports=(ContainerPort(8080, TCP, "http"),),
        )

    inv = Inventory(
        pods=(
            pod("a-1", "alpha", "10.0.0.1"),
            pod("b-1", "beta", "10.0.0.2"),
            pod("b-2", "beta", "10.0.0.3"),
        ),
        services=(
            Service(
                "ns",
                "be",
                cluster_ips=("10.96.5.5",),
                selector=Labels.of({"tier": "be"}),
                ports=(ServicePort(80, TCP, "http"),),
            ),
        ),
    )
    with caplog.at_level(logging.INFO, logger="segmenter.cluster.services"):
        result = Resolver(inv).resolve("10.96.5.5", 80, TCP, T0)
    assert result == Resolved("ns/Deployment/beta", 8080, "ns/be", "service")
    assert any("ns/Deployment/alpha" in r.getMessage() for r in caplog.records)


def test_headless_service_pods_resolve_directly(resolver: Resolver) -> None:
    assert resolver.resolve("10.244.2.20", 5432, TCP, T0) == Resolved(
        "shop/StatefulSet/db", 5432, None, "pod"
    )


def test_cluster_dns(inventory: Inventory) -> None:
    assert dns_workload(inventory) == WorkloadRef("kube-system", "Deployment", "coredns")
    assert dns_service_ips(inventory) == ("10.96.0.10",)


def test_cluster_dns_by_labels_without_service() -> None:
    coredns = Pod(
        "kube-system",
        "c-1",
        Labels.of({"k8s-app": "kube-dns"}),
        ("10.1.0.2",),
        WorkloadRef("kube-system", "Deployment", "coredns"),
    )
    openshift = Pod(
        "openshift-dns",
        "dns-default-x",
        Labels.of({"dns.operator.openshift.io/daemonset-dns": "default"}),
        ("10.1.0.3",),
        WorkloadRef("openshift-dns", "DaemonSet", "dns-default"),
    )
    assert dns_workload(Inventory(pods=(coredns, openshift))) == coredns.owner
    assert dns_workload(Inventory(pods=(openshift,))) == openshift.owner
    assert dns_workload(Inventory()) is None
    assert dns_service_ips(Inventory()) == ()


def test_private_ranges() -> None:
    assert [
        is_private(ip)
        for ip in (
            "10.1.2.3",
            "172.20.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "169.254.169.254",
            "fd12::1",
            "fe80::1",
            "8.8.8.8",
            "172.32.0.1",
            "2001:4860::8888",
        )
    ] == [True] * 7 + [False] * 3


# --------------------------------------------------------------------------------------------
# The live client, through the real kubernetes package, against a loopback API server


class _FakeApiServer(FakeApiServer):
    """Serves the recorded list responses in tests/fixtures/inventory/live/ like an API server."""

    FIXTURES = LIVE
    ROUTES: ClassVar[dict[str, str]] = {
        "/api/v1/namespaces": "namespaces",
        "/api/v1/nodes": "nodes",
        "/api/v1/services": "services",
        "/api/v1/endpoints": "endpoints",
        "/apis/discovery.k8s.io/v1/endpointslices": "endpointslices",
        "/apis/apps/v1/deployments": "deployments",
        "/apis/apps/v1/replicasets": "replicasets",
        "/apis/apps/v1/statefulsets": "statefulsets",
        "/apis/apps/v1/daemonsets": "daemonsets",
        "/apis/batch/v1/jobs": "jobs",
        "/apis/batch/v1/cronjobs": "cronjobs",
    }

    def route(self, path: str, query: dict[str, list[str]]) -> tuple[int, str]:
        if path == "/api/v1/pods":
            return self.paged("pods-page-1", "pods-page-2", query)
        route = self.ROUTES.get(path)
        if route is None:
            return 404, self.read("status-404")
        return 200, self.read(route)


_kubeconfig = kubeconfig


@pytest.fixture
def api_server() -> Iterator[_FakeApiServer]:
    with _FakeApiServer() as server:
        yield server


def test_live_inventory_pages_and_parses_like_a_dump(
    tmp_path: Path, api_server: _FakeApiServer, inventory: Inventory
) -> None:
    from segmenter.cluster.live import live_inventory

    live = live_inventory(kubeconfig=_kubeconfig(tmp_path, api_server.url), page_size=10)
    assert live == inventory  # the same cluster, read through the API instead of a dump
    assert live.sources == (f"cluster {api_server.url}",)
    pod_requests = [q for path, q, _ in api_server.requests if path == "/api/v1/pods"]
    assert len(pod_requests) == 2
    assert pod_requests[0]["limit"] == ["10"]
    assert "continue" not in pod_requests[0]
    assert pod_requests[1]["continue"][0].startswith("eyJ2Ijoi")
    assert {auth for _, _, auth in api_server.requests} == {"Bearer test-token"}


def test_live_inventory_with_named_context(tmp_path: Path, api_server: _FakeApiServer) -> None:
    from segmenter.cluster.live import live_inventory

    path = _kubeconfig(tmp_path, api_server.url, context="prod")
    assert live_inventory(kubeconfig=path, context="prod").pods
    with pytest.raises(InventoryError) as info:
        live_inventory(kubeconfig=path, context="nope")
    assert "nope" in str(info.value)
    assert "\n" not in str(info.value)


def test_live_inventory_restarts_after_an_expired_continue_token(
    tmp_path: Path, api_server: _FakeApiServer, inventory: Inventory
) -> None:
    from segmenter.cluster.live import live_inventory

    api_server.expire_continue_once = True
    live = live_inventory(kubeconfig=_kubeconfig(tmp_path, api_server.url))
    assert live.pods == inventory.pods
    pod_requests = [q for path, q, _ in api_server.requests if path == "/api/v1/pods"]
    assert len(pod_requests) == 4  # page 1, 410, page 1 again, page 2


def test_live_forbidden_names_the_missing_permission(
    tmp_path: Path, api_server: _FakeApiServer
) -> None:
    from segmenter.cluster.live import live_inventory

    api_server.overrides["/apis/discovery.k8s.io/v1/endpointslices"] = (
        403,
        "status-403-endpointslices",
    )
    with pytest.raises(InventoryError) as info:
        live_inventory(kubeconfig=_kubeconfig(tmp_path, api_server.url))
    assert str(info.value) == (
        f"forbidden: needs list on endpointslices.discovery.k8s.io at {api_server.url} (see "
        'docs/rbac.yaml): endpointslices.discovery.k8s.io is forbidden: User "system:'
        'serviceaccount:segmenter:segmenter" cannot list resource "endpointslices" in API group '
        '"discovery.k8s.io" at the cluster scope'
    )
    api_server.overrides = {"/api/v1/pods": (403, "status-403-endpointslices")}
    with pytest.raises(InventoryError, match=r"^forbidden: needs list on pods at http://127"):
        live_inventory(kubeconfig=_kubeconfig(tmp_path, api_server.url))


def test_live_unauthorized(tmp_path: Path, api_server: _FakeApiServer) -> None:
    from segmenter.cluster.live import live_inventory

    api_server.overrides["/api/v1/namespaces"] = (401, "status-401")
    with pytest.raises(InventoryError, match=r"^unauthorized: the cluster at http://127\.0\.0\.1"):
        live_inventory(kubeconfig=_kubeconfig(tmp_path, api_server.url))


def test_live_falls_back_to_endpoints_without_endpointslices(
    tmp_path: Path, api_server: _FakeApiServer
) -> None:
    from segmenter.cluster.live import live_inventory

    api_server.overrides["/apis/discovery.k8s.io/v1/endpointslices"] = (404, "status-404")
    live = live_inventory(kubeconfig=_kubeconfig(tmp_path, api_server.url))
    assert {(s.namespace, s.service) for s in live.endpoint_slices} == {
        ("default", "kubernetes"),
        ("kube-system", "kube-dns"),
    }
    resolver = Resolver(live)
    assert resolver.resolve("10.96.0.1", 443, TCP, T0).port == 6443
    assert resolver.resolve("10.96.0.10", 53, UDP, T0).node_id == "kube-system/Deployment/coredns"


def test_live_connection_refused(tmp_path: Path) -> None:
    from segmenter.cluster.live import live_inventory

    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with pytest.raises(InventoryError) as info:
        live_inventory(kubeconfig=_kubeconfig(tmp_path, url), request_timeout=5)
    assert str(info.value) == f"cannot reach the cluster at {url}: connection refused"


class _BrokenApiServer(_FakeApiServer):
    """Answers one path with a given status and body (a proxy page, a 500 from etcd, …)."""

    def __init__(self, path: str, status: int, body: str) -> None:
        super().__init__()
        self.broken = (path, status, body)

    def answer(self, path: str, query: dict[str, list[str]]) -> tuple[int, str]:
        if path == self.broken[0]:
            return self.broken[1], self.broken[2]
        return super().answer(path, query)


def test_live_malformed_and_failing_responses(tmp_path: Path) -> None:
    from segmenter.cluster.live import live_inventory

    with _BrokenApiServer("/api/v1/nodes", 200, "<html>proxy login</html>") as server:
        with pytest.raises(InventoryError) as info:
            live_inventory(kubeconfig=_kubeconfig(tmp_path, server.url))
        assert str(info.value) == (
            f"the API server at {server.url} sent a malformed response to list nodes (not JSON)"
        )
    with (
        _BrokenApiServer("/api/v1/services", 200, '{"kind": "Status"}') as server,
        pytest.raises(InventoryError, match=r"unexpected response to list services"),
    ):
        live_inventory(kubeconfig=_kubeconfig(tmp_path, server.url))
    with _BrokenApiServer(
        "/api/v1/services", 200, '{"kind": "ServiceList", "items": null}'
    ) as server:
        assert live_inventory(kubeconfig=_kubeconfig(tmp_path, server.url)).services == ()
    status = json.dumps({"kind": "Status", "code": 500, "message": "etcdserver: request timed out"})
    with _BrokenApiServer("/apis/apps/v1/deployments", 500, status) as server:
        with pytest.raises(InventoryError) as info:
            live_inventory(kubeconfig=_kubeconfig(tmp_path, server.url))
        assert str(info.value).startswith(f"the API server at {server.url} answered 500")
        assert str(info.value).endswith("to list deployments.apps: etcdserver: request timed out")


def test_live_skips_a_resource_the_cluster_does_not_serve(
    tmp_path: Path, api_server: _FakeApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    from segmenter.cluster.live import live_inventory

    api_server.overrides["/apis/batch/v1/cronjobs"] = (404, "status-404")
    with caplog.at_level(logging.WARNING, logger="segmenter.cluster.live"):
        live = live_inventory(kubeconfig=_kubeconfig(tmp_path, api_server.url))
    assert any("does not serve cronjobs.batch; skipped" in r.getMessage() for r in caplog.records)
    # the Job's own ownerReference still names the CronJob
    assert pod_named(live, "jobs", "report-28333334-k2x4z").owner.id == "jobs/CronJob/report"


def test_live_hanging_server_times_out(tmp_path: Path) -> None:
    from segmenter.cluster.live import live_inventory

    with socket.socket() as listener:  # accepts connections, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        with pytest.raises(InventoryError) as info:
            live_inventory(kubeconfig=_kubeconfig(tmp_path, url), request_timeout=0.3)
    assert str(info.value) == f"cannot reach the cluster at {url}: timed out"


def test_live_without_any_kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from segmenter.cluster.live import live_inventory

    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(InventoryError, match=r"no kubeconfig found .* not running in a cluster"):
        live_inventory()
    with pytest.raises(InventoryError, match="no such kubeconfig file"):
        live_inventory(kubeconfig=str(tmp_path / "missing"))


def test_live_parse_errors_name_the_cluster_and_item() -> None:
    page = {"kind": "PodList", "apiVersion": "v1", "items": [{"metadata": {"namespace": "a"}}]}
    with pytest.raises(InputError) as info:
        parse_documents([page], source="cluster https://k8s:6443")
    assert (
        str(info.value) == "cluster https://k8s:6443 (item 1 (Pod a/?)): Pod has no metadata.name"
    )


def test_rbac_grants_list_on_every_resource_the_live_client_reads() -> None:
    from segmenter.cluster.live import _LEGACY_ENDPOINTS, RESOURCES

    rbac = Path(__file__).resolve().parents[1] / "docs" / "rbac.yaml"
    granted = {
        (group, resource)
        for doc in yaml.safe_load_all(rbac.read_text())
        if doc["kind"] == "ClusterRole"
        for rule in doc["rules"]
        if "list" in rule["verbs"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    needed = {(r.group, r.plural) for r in (*RESOURCES, _LEGACY_ENDPOINTS)}
    assert needed <= granted
