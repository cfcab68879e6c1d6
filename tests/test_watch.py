"""``inventory --live --watch``: pod changes during a capture window, through the real client.

The loopback API server of tests/test_inventory.py serves the list fixtures, then watch streams
recorded in the API's form (tests/fixtures/inventory/live/watch/): chunked newline-delimited
``{"type": …, "object": …}`` events, a BOOKMARK, a stream cut off mid-way, an ``ERROR`` event
carrying a ``410 Expired`` Status, and the pods listed again after it.
"""

from __future__ import annotations

import argparse
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from segmenter.cli import build_parser
from segmenter.cluster.dump import load_inventory
from segmenter.cluster.watch import (
    EVENTS_FILE,
    WatchRecorder,
    parse_duration,
    rfc3339,
    snapshot_paths,
    summary,
    watch_inventory,
)
from segmenter.errors import InputError, InventoryError
from segmenter.graph.resolve import Resolver
from segmenter.model import Inventory, Pod, Transport
from tests.test_inventory import LIVE, _FakeApiServer, _kubeconfig

WATCH = LIVE / "watch"
W = 1_700_000_400.0  # 2023-11-14T22:20:00Z: the recorded events happen around this time
TCP = Transport.TCP


class _WatchApiServer(_FakeApiServer):
    """Adds ``GET /api/v1/pods?watch=true``: one scripted stream per watch request, in order.

    A script entry is (fixture, ending): ``end`` closes the chunked stream properly (the
    server's timeoutSeconds expired), ``abrupt`` drops the connection mid-stream. After the
    script, every watch is held open with no events until its timeoutSeconds.
    """

    def __init__(self, script: list[tuple[str, str]]) -> None:
        super().__init__()
        self.script = list(script)
        self.watches: list[dict[str, list[str]]] = []
        self.expired_served = False
        self.forbid_watch = False
        self.stopping = threading.Event()

    def respond(
        self, handler: BaseHTTPRequestHandler, path: str, query: dict[str, list[str]]
    ) -> None:
        if path != "/api/v1/pods":
            super().respond(handler, path, query)
            return
        if query.get("watch") != ["true"]:
            if self.expired_served:  # the re-list after the 410
                assert "continue" not in query
                body = (WATCH / "pods-relist.json").read_text().encode()
                handler.send_response(200)
                handler.send_header("Content-Type", "application/json")
                handler.send_header("Content-Length", str(len(body)))
                handler.end_headers()
                handler.wfile.write(body)
                return
            super().respond(handler, path, query)
            return
        self.watches.append(query)
        if self.forbid_watch:
            body = (WATCH / "status-403-watch-pods.json").read_text().encode()
            handler.send_response(403)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
            return
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()

        def chunk(data: bytes) -> None:
            handler.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            handler.wfile.flush()

        if self.script:
            name, ending = self.script.pop(0)
            lines = (WATCH / name).read_bytes().splitlines(keepends=True)
            for i, line in enumerate(lines):
                if i == 0 and len(line) > 100:  # one event split over two chunks
                    chunk(line[:100])
                    chunk(line[100:])
                else:
                    chunk(line)
            if name.endswith("expired.jsonl"):
                self.expired_served = True
            if ending == "abrupt":  # no terminating chunk: the connection just ends
                handler.close_connection = True
                return
        else:
            self.stopping.wait(float(query["timeoutSeconds"][0]))
        handler.wfile.write(b"0\r\n\r\n")

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        super().__exit__(*exc)


SCRIPT = [
    ("watch-1.jsonl", "end"),  # a rollout step and a deletion, then a BOOKMARK
    ("watch-2.jsonl", "abrupt"),  # a CronJob run takes the deleted pod's IP; connection lost
    ("watch-3-expired.jsonl", "end"),  # resuming: 410 Expired -> list the pods again
]


@pytest.fixture
def watch_server() -> Iterator[_WatchApiServer]:
    with _WatchApiServer(SCRIPT) as server:
        yield server


def fake_clock() -> Callable[[], float]:
    """Wall-clock time moved to the fixtures' epoch (real elapsed time, so ordering holds)."""
    start = time.monotonic()
    return lambda: W + (time.monotonic() - start)


def pods_named(inv: Inventory, name: str) -> list[Pod]:
    return [p for p in inv.pods if p.name == name]


def events(directory: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (directory / EVENTS_FILE).read_text().splitlines()]


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, _WatchApiServer, Any]:
    """One watch run over the scripted streams (about a second), shared by the tests below."""
    tmp = tmp_path_factory.mktemp("watch")
    with _WatchApiServer(SCRIPT) as server:
        result = watch_inventory(
            tmp / "rec",
            duration=1.0,
            kubeconfig=_kubeconfig(tmp, server.url),
            min_interval=0,
            clock=fake_clock(),
        )
    return tmp / "rec", server, result


def test_watch_resumes_from_the_last_resource_version_and_relists_on_410(
    recording: tuple[Path, _WatchApiServer, Any],
) -> None:
    _, server, result = recording
    versions = [q["resourceVersion"][0] for q in server.watches]
    # list at 48213; stream 1 ends after a BOOKMARK at 48230; stream 2 breaks after 48232;
    # resuming at 48232 gets 410; the re-list is at 48500
    assert versions[:4] == ["48213", "48230", "48232", "48500"]
    assert set(versions[4:]) <= {"48500"}
    assert all(q["allowWatchBookmarks"] == ["true"] for q in server.watches)
    assert all(int(q["timeoutSeconds"][0]) >= 1 for q in server.watches)
    pod_lists = [q for path, q, _ in server.requests if path == "/api/v1/pods" and "watch" not in q]
    assert len(pod_lists) == 3  # two pages at the start, one re-list
    # the other resources are listed again at the end of the window
    assert [p for p, _, _ in server.requests].count("/api/v1/services") == 2
    assert (result.relists, result.reconnects) == (1, 1)
    assert (result.ip_assignments, result.deletions) == (2, 2)
    assert not result.interrupted


def test_events_log(recording: tuple[Path, _WatchApiServer, Any]) -> None:
    directory, _, result = recording
    log = events(directory)
    assert [(e["type"], e.get("name"), e.get("source")) for e in log] == [
        ("START", None, None),
        ("ADDED", "web-7f6b8c4d2-new01", "watch"),
        ("MODIFIED", "web-7f6b8c4d2-new01", "watch"),
        ("MODIFIED", "web-5d8f7c9b6-fghij", "watch"),
        ("DELETED", "web-5d8f7c9b6-fghij", "watch"),
        ("ADDED", "report-28333342-a1b2c", "watch"),
        ("MODIFIED", "report-28333342-a1b2c", "watch"),
        ("RECONNECT", None, None),
        ("RELIST", None, None),
        ("ADDED", "web-7f6b8c4d2-new02", "relist"),  # created while the watch was lost
        ("MODIFIED", "report-28333342-a1b2c", "relist"),  # finished meanwhile
        ("DELETED", "web-5d8f7c9b6-abcde", "relist"),  # deleted meanwhile
        ("END", None, None),
    ]
    assert log[2]["podIP"] == "10.244.2.61"
    assert log[6]["podIPs"] == ["10.244.2.10"]
    assert log[4]["deletionTimestamp"] == "2023-11-14T22:20:31Z"
    assert "410" in log[8]["reason"]
    assert "too old resource version" in log[8]["reason"]
    assert log[8]["resourceVersion"] == "48500"
    times = [e["time"] for e in log]
    assert times == sorted(times)
    assert all(t.startswith("2023-11-14T22:20:0") and t.endswith("Z") for t in times)
    assert result.events == 9  # six from the watch, three from the re-list


def test_snapshots_merge_into_pods_with_ip_intervals(
    recording: tuple[Path, _WatchApiServer, Any],
) -> None:
    directory, _, result = recording
    paths = snapshot_paths(directory)
    assert paths == result.snapshots
    assert len(paths) >= 4  # start, change batches, end
    start, end = json.loads(Path(paths[0]).read_text()), json.loads(Path(paths[-1]).read_text())
    kinds = {item["kind"] for item in start["items"]}
    assert {"Pod", "Service", "EndpointSlice", "Deployment", "Node", "Namespace"} <= kinds
    assert {item["kind"] for item in end["items"]} == kinds
    changes = [json.loads(Path(p).read_text()) for p in paths[1:-1]]
    assert all(item["kind"] == "Pod" for doc in changes for item in doc["items"])
    assert all("managedFields" not in item["metadata"] for item in end["items"])

    inv = load_inventory(paths)
    (fghij,) = pods_named(inv, "web-5d8f7c9b6-fghij")
    (report,) = pods_named(inv, "report-28333342-a1b2c")
    assert fghij.ips == report.ips == ("10.244.2.10",)
    assert fghij.end is not None
    assert report.start is not None
    assert W < fghij.end <= report.start < W + 5  # seen deleted, then seen with its IP
    assert report.end == W + 20  # Succeeded: the container's finishedAt
    assert fghij.annotations.as_dict() == {}  # the watcher's annotations are not pod metadata
    resolver = Resolver(inv)
    assert resolver.resolve("10.244.2.10", 8080, TCP, W - 100).node_id == "shop/Deployment/web"
    assert resolver.resolve("10.244.2.10", None, TCP, W + 5).node_id == "jobs/CronJob/report"
    # a rollout: the new ReplicaSet's pods (not in any list) are the same Deployment
    for name in ("web-7f6b8c4d2-new01", "web-7f6b8c4d2-new02", "web-5d8f7c9b6-abcde"):
        (pod,) = pods_named(inv, name)
        assert pod.owner.id == "shop/Deployment/web"
    (abcde,) = pods_named(inv, "web-5d8f7c9b6-abcde")
    (new02,) = pods_named(inv, "web-7f6b8c4d2-new02")
    assert abcde.end is not None
    assert new02.start == W + 1  # appeared in the re-list: its creation time
    assert resolver.resolve("10.244.2.61", 8080, TCP, W + 5).node_id == "shop/Deployment/web"
    # the end snapshot alone holds the same pods
    assert load_inventory([paths[-1]]).pods == inv.pods


def test_rate_limited_run_through_the_command(
    tmp_path: Path,
    watch_server: _WatchApiServer,
    recording: tuple[Path, _WatchApiServer, Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    parser = build_parser()
    out = tmp_path / "rec"
    args = parser.parse_args(
        [
            "inventory-watch",
            "-o",
            str(out),
            "--duration",
            "1s",
            "--min-interval",
            "3600",
            "--kubeconfig",
            _kubeconfig(tmp_path, watch_server.url),
        ]
    )
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"wrote {out}: 2 snapshots and events.jsonl")
    assert "9 pod events: 20 pods seen, 2 IPs assigned, 2 pods deleted; 1 re-lists" in printed
    paths = snapshot_paths(out)
    assert len(paths) == 2  # the changes waited for the end snapshot
    merged = load_inventory(paths)

    def identities(inv: Inventory) -> set[tuple[str, str, tuple[str, ...], str]]:
        return {(p.namespace, p.name, p.ips, p.owner.id) for p in inv.pods}

    assert identities(merged) == identities(load_inventory(snapshot_paths(recording[0])))


def test_inventory_command_flags(tmp_path: Path) -> None:
    from segmenter.cli.stages import cmd_watch

    command = build_parser()

    def parse(argv: list[str]) -> argparse.Namespace:
        return command.parse_args(["inventory", *argv])

    args = parse(["--live", "--watch", "--duration", "15m", "-o", "d"])
    assert (args.watch, args.duration, args.min_interval) == (True, 900.0, 10.0)
    with pytest.raises(InputError, match="needs --live"):
        cmd_watch(parse(["--watch", "--duration", "5", "-o", "d"]))
    with pytest.raises(InputError, match="needs --duration"):
        cmd_watch(parse(["--live", "--watch", "-o", "d"]))
    with pytest.raises(InputError, match="do not give dump files"):
        cmd_watch(parse(["x.json", "--live", "--watch", "--duration", "5", "-o", "d"]))
    with pytest.raises(SystemExit):
        parse(["--live", "--watch", "--duration", "soon", "-o", "d"])


def test_ctrl_c_ends_the_window_early_with_an_end_snapshot(
    tmp_path: Path, watch_server: _WatchApiServer
) -> None:
    calls = 0
    tick = fake_clock()

    def clock() -> float:
        nonlocal calls
        calls += 1
        if calls == 4:  # while the first stream's events arrive
            raise KeyboardInterrupt
        return tick()

    result = watch_inventory(
        tmp_path / "rec",
        duration=30,
        kubeconfig=_kubeconfig(tmp_path, watch_server.url),
        min_interval=0,
        clock=clock,
    )
    assert result.interrupted
    assert len(watch_server.watches) == 1  # no 30 s wait, no re-list at the end
    log = events(tmp_path / "rec")
    assert log[-1]["type"] == "END"
    assert log[-1]["interrupted"] is True
    end = json.loads(Path(snapshot_paths(tmp_path / "rec")[-1]).read_text())
    assert any(i["kind"] == "Service" for i in end["items"])
    assert "interrupted" in summary(result)


def test_watch_forbidden(tmp_path: Path, watch_server: _WatchApiServer) -> None:
    watch_server.forbid_watch = True
    with pytest.raises(InventoryError) as info:
        watch_inventory(
            tmp_path / "rec", duration=5, kubeconfig=_kubeconfig(tmp_path, watch_server.url)
        )
    assert str(info.value).startswith(
        f"forbidden: needs watch on pods at {watch_server.url} (see docs/rbac.yaml): "
    )
    assert 'cannot watch resource "pods"' in str(info.value)
    # what was recorded before the failure stays: the start snapshot and the log
    assert len(snapshot_paths(tmp_path / "rec")) == 1
    assert [e["type"] for e in events(tmp_path / "rec")] == ["START"]


def test_watch_unreachable_cluster_creates_nothing(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with pytest.raises(
        InventoryError, match=r"^cannot reach the cluster at .*: connection refused"
    ):
        watch_inventory(
            tmp_path / "rec",
            duration=5,
            kubeconfig=_kubeconfig(tmp_path, url),
            request_timeout=5,
        )
    assert not (tmp_path / "rec").exists()  # a retry is not refused as "already recorded"


def test_watch_refuses_a_directory_with_a_recording(tmp_path: Path) -> None:
    (tmp_path / "rec").mkdir()
    (tmp_path / "rec" / "inventory-2023-11-14T22:20:00.000Z.json").write_text("{}")
    with pytest.raises(InputError, match="already holds a watch recording"):
        watch_inventory(tmp_path / "rec", duration=5)
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match="not a directory"):
        watch_inventory(tmp_path / "file", duration=5)
    with pytest.raises(ValueError, match="positive"):
        watch_inventory(tmp_path / "new", duration=0)


# --------------------------------------------------------------------------------------------
# The recorder alone, under a fake clock


def _pod(name: str, uid: str, ip: str | None, rv: str, **meta: Any) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": "Running" if ip else "Pending"}
    if ip:
        status.update(podIP=ip, podIPs=[{"ip": ip}])
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": uid,
            "resourceVersion": rv,
            "creationTimestamp": "2023-11-14T22:13:20Z",
            "labels": {"app": name.split("-", maxsplit=1)[0]},
            **meta,
        },
        "spec": {"containers": [{"name": "c"}], "nodeName": "n1"},
        "status": status,
    }


def test_recorder_rate_limits_change_snapshots(tmp_path: Path) -> None:
    T = 1_700_000_000.0
    recorder = WatchRecorder(tmp_path / "rec", min_interval=10)
    first = {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "5"}}
    recorder.start([{**first, "items": [_pod("a-1", "u1", "10.1.0.5", "4")]}], T)
    assert recorder.resource_version == "5"
    recorder.event("ADDED", _pod("b-1", "u2", None, "6"), T + 1)
    assert recorder.maybe_flush(T + 1) is None  # 1 s after the start snapshot
    recorder.event("DELETED", _pod("a-1", "u1", "10.1.0.5", "7"), T + 2)
    recorder.event("MODIFIED", _pod("b-1", "u2", "10.1.0.5", "8"), T + 3)
    # a status-only update changes nothing the inventory reads: not a change
    noise = _pod("b-1", "u2", "10.1.0.5", "9")
    noise["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    recorder.event("MODIFIED", noise, T + 4)
    assert recorder.resource_version == "9"
    written = recorder.maybe_flush(T + 12)
    assert written is not None
    assert Path(written).name == "inventory-2023-11-14T22:13:32.000Z.json"
    batch = json.loads(Path(written).read_text())
    assert batch["metadata"] == {"resourceVersion": "9"}
    assert [i["metadata"]["name"] for i in batch["items"]] == ["a-1", "b-1"]
    assert batch["items"][0]["metadata"]["annotations"] == {
        "watch.segmenter.io/deleted-at": "2023-11-14T22:13:22.000Z"
    }
    assert batch["items"][1]["metadata"]["annotations"] == {
        "watch.segmenter.io/ip-assigned-at": "2023-11-14T22:13:23.000Z"
    }
    assert recorder.maybe_flush(T + 30) is None  # nothing new
    recorder.bookmark({"metadata": {"resourceVersion": "12"}})
    end = recorder.finish(T + 40, None)
    recorder.close()
    assert recorder.resource_version == "12"
    assert (recorder.result.ip_assignments, recorder.result.deletions) == (1, 1)
    inv = load_inventory(snapshot_paths(tmp_path / "rec"))
    assert [(p.name, p.start, p.end) for p in inv.pods] == [
        ("a-1", T, T + 2),
        ("b-1", T + 3, None),
    ]
    resolver = Resolver(inv)
    assert resolver.resolve("10.1.0.5", None, TCP, T + 1).node_id == "ns/Pod/a-1"
    assert resolver.resolve("10.1.0.5", None, TCP, T + 5).node_id == "ns/Pod/b-1"
    assert load_inventory([end]).pods == inv.pods
    # start, one change, end
    assert summary(recorder.result).startswith(f"wrote {tmp_path / 'rec'}: 3 snapshots")


def test_snapshot_names_increase_within_one_millisecond(tmp_path: Path) -> None:
    T = 1_700_000_000.0
    recorder = WatchRecorder(tmp_path / "rec", min_interval=0)
    recorder.start([], T)
    recorder.event("ADDED", _pod("a-1", "u1", "10.1.0.5", "4"), T)
    recorder.maybe_flush(T)
    recorder.finish(T, None)
    recorder.close()
    names = [Path(p).name for p in snapshot_paths(tmp_path / "rec")]
    assert names == [
        "inventory-2023-11-14T22:13:20.000Z.json",
        "inventory-2023-11-14T22:13:20.001Z.json",
        "inventory-2023-11-14T22:13:20.002Z.json",
    ]


def test_durations_and_times() -> None:
    assert [parse_duration(t) for t in ("600", "90s", "15m", "2h", "1h30m", "0.5")] == [
        600.0,
        90.0,
        900.0,
        7200.0,
        5400.0,
        0.5,
    ]
    for bad in ("", "soon", "-5", "0", "5d", "nan"):
        with pytest.raises(ValueError, match="duration"):
            parse_duration(bad)
    assert rfc3339(1_700_000_000.001) == "2023-11-14T22:13:20.001Z"
    assert rfc3339(1_700_000_000.9999) == "2023-11-14T22:13:20.999Z"


def test_rbac_grants_watch_on_pods() -> None:
    import yaml

    rbac = Path(__file__).resolve().parents[1] / "docs" / "rbac.yaml"
    rules = [
        rule
        for doc in yaml.safe_load_all(rbac.read_text())
        if doc["kind"] == "ClusterRole"
        for rule in doc["rules"]
    ]
    assert any(
        "" in r["apiGroups"] and "pods" in r["resources"] and "watch" in r["verbs"] for r in rules
    )
