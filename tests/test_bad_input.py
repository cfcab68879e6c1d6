"""Bad input and unwritable output, command by command: one line on stderr, exit 2, nothing of
the user's lost. Each test starts from a reproduction of issue 12's "Bad-input and real-capture
findings"; the damaged files are written by the tests themselves."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from segmenter.cli import main
from segmenter.documents import At, parse_json, parse_yaml, read_text
from segmenter.errors import InputError
from tests.conftest import REPO

SAMPLE = REPO / "sample"
INVENTORY = str(SAMPLE / "shop-inventory.json")
BOMB = "a: &a [lol, lol]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(9))


def cli(*args: str) -> tuple[int, str, str]:
    """Run the command in-process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def one_line_error(result: tuple[int, str, str], *needles: str) -> str:
    code, _, err = result
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("segmenter: error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run") / "out"
    code, _, err = cli("run", str(SAMPLE / "shop.pcapng"), "--inventory", INVENTORY,
                       "--config", str(SAMPLE / "segmenter.yaml"), "-o", str(out))
    assert code == 0, err
    return out


# --------------------------------------------------------------------------------------------
# The reading layer


def test_bytes_that_are_not_utf8_name_their_offset(tmp_path: Path) -> None:
    path = tmp_path / "segmenter.yaml"
    data = b"version: 1\nsensitive: []\n# caf\xe9\n"
    path.write_bytes(data)
    with pytest.raises(InputError, match=rf"not UTF-8 text: byte 0xe9 at offset "
                                         rf"{data.index(0xe9)}$"):
        read_text(path)
    path.write_bytes(b"\xff\xfev\x00")
    with pytest.raises(InputError, match="UTF-16 byte order mark"):
        read_text(path)


def test_json_nesting_and_number_bounds() -> None:
    for deep in ("[" * 150 + "]" * 150, "[" * 100_000 + "]" * 100_000,
                 '{"a":' * 150 + "1" + "}" * 150):
        with pytest.raises(InputError, match="nested deeper than 100 levels"):
            parse_json(deep, path="x.json")
    assert parse_json("[" * 100 + "]" * 100, path="x.json")
    with pytest.raises(InputError, match=r"x.json \(line 2 column 11\): an integer of more than "
                                         r"4,300 digits"):
        parse_json('{"a":\n  1, ' + '"b": ' + "7" * 4301 + "}", path="x.json")
    with pytest.raises(InputError, match="NaN is not a JSON number"):
        parse_json('{"a": NaN}', path="x.json")


def test_yaml_alias_bombs_are_refused_quickly() -> None:
    started = time.perf_counter()
    with pytest.raises(InputError, match="billion laughs"):
        parse_yaml(BOMB, path="p.yaml")
    smaller = "\n".join(BOMB.splitlines()[:7]) + "\n"  # 9**6 nodes: caught at the end
    with pytest.raises(InputError, match="billion laughs"):
        parse_yaml(smaller, path="p.yaml")
    assert time.perf_counter() - started < 2
    for looping in ("a: &a [*a]\n", "a: &a {b: *a}\n", "- &x [1, [2, *x]]\n"):
        with pytest.raises(InputError, match="refers to a node that contains it"):
            parse_yaml(looping, path="p.yaml")
    # Ordinary anchors are fine: a port list reused a few times.
    doc = parse_yaml("ports: &p [{port: 80}]\na: *p\nb: *p\n", path="p.yaml")[0]
    assert doc["a"] == doc["b"] == [{"port": 80}]


def test_yaml_holds_json_types_only() -> None:
    doc = parse_yaml("when: 2024-05-01T10:00:00Z\n80: http\ntrue: yes\nn: 0x1F\n", path="x")[0]
    assert doc == {"when": "2024-05-01T10:00:00Z", "80": "http", "true": True, "n": 31}
    merged = parse_yaml("b: &b {x: 1, y: 2}\no: &o {y: 3, z: 4}\nm: {<<: [*b, *o], z: 5}\n",
                        path="x")[0]["m"]
    assert merged == {"x": 1, "y": 2, "z": 5}  # earlier merged maps win, own keys win over all
    for text, message in (("a: !!binary aGk=", "!!binary is not supported"),
                          ("a: !!set {x}", "!!set is not supported"),
                          ("a: .nan", "not a finite number"),
                          ("a: 1.0e+999", "too large"),
                          ("a: 0x" + "f" * 4000, "more than 4,300 digits"),
                          ("a: " + "1" * 4301, "more than 4,300 digits"),
                          ("? [a]\n: b\n", "mapping key must be a scalar"),
                          ("a: *nowhere", "undefined alias"),
                          ("[" * 101 + "]" * 101, "nested deeper than 100 levels"),
                          ("a: [1\n", "malformed YAML")):
        with pytest.raises(InputError, match=message) as info:
            parse_yaml(text, path="x.yaml")
        assert "\n" not in str(info.value)


def test_typed_access_names_file_and_path() -> None:
    doc = At({"classes": {"pci": {"zones": {"restricted": [{"node": 5}]}}},
              "labels": {"app.kubernetes.io/name": 1}}, "plan.json")
    node = doc.need("classes").need("pci").need("zones").need("restricted").items()[0]
    with pytest.raises(InputError) as info:
        node.need("node").text()
    assert str(info.value) == ("plan.json (classes.pci.zones.restricted[0].node): must be a "
                               "string, not a number")
    with pytest.raises(InputError, match=r'\(labels\["app.kubernetes.io/name"\]\)'):
        doc.need("labels").text_map()
    with pytest.raises(InputError, match=r"plan.json \(classes.pci\): missing 'title'"):
        doc.need("classes").need("pci").need("title")


# --------------------------------------------------------------------------------------------
# Every loader, through its command


def test_plan_with_wrong_types_is_one_line(run_dir: Path, tmp_path: Path) -> None:
    plan = json.loads((run_dir / "plan.json").read_text())
    plan["classes"]["pci"]["zones"]["restricted"][0]["node"] = 5
    bad = tmp_path / "plan.json"
    bad.write_text(json.dumps(plan))
    out = tmp_path / "out"
    one_line_error(cli("compile", "--graph", str(run_dir / "graph.json"), "--plan", str(bad),
                       "--inventory", INVENTORY, "-o", str(out)),
                   "plan.json (classes.pci.zones.restricted[0].node): must be a string")
    assert not out.exists()
    for damage, where in ((lambda p: p["classes"]["pci"].pop("title"), "missing 'title'"),
                          (lambda p: p.__setitem__("policed", "x"), "(policed): must be a list"),
                          (lambda p: p["classes"]["pci"]["crossings"][0].__setitem__(
                              "client_zone", "moon"), "client_zone): must be one of"),
                          (lambda p: p["classes"]["pci"]["crossings"][0].__setitem__(
                              "port", 70000), "from 0 to 65535")):
        plan = json.loads((run_dir / "plan.json").read_text())
        damage(plan)
        bad.write_text(json.dumps(plan))
        one_line_error(cli("verify", "--policies", str(run_dir / "kubernetes"), "--enforcement",
                           "kubernetes", "--flows", str(run_dir / "flows.jsonl"), "--inventory",
                           INVENTORY, "--plan", str(bad)), where)


def test_plan_of_another_graph_is_refused(run_dir: Path, tmp_path: Path) -> None:
    plan = json.loads((run_dir / "plan.json").read_text())
    plan["policed"].append("shop/Deployment/not-in-the-graph")
    bad = tmp_path / "plan.json"
    bad.write_text(json.dumps(plan))
    one_line_error(cli("compile", "--graph", str(run_dir / "graph.json"), "--plan", str(bad),
                       "--inventory", INVENTORY, "-o", str(tmp_path / "out")),
                   "'shop/Deployment/not-in-the-graph' is not a node of the graph")


@pytest.mark.parametrize(("damage", "message"), [
    (lambda g: g["nodes"][-1].__setitem__("labels", 5), "labels): must be an object"),
    (lambda g: g["nodes"][-1].__setitem__("labels", {"app": ["x"]}), "must be a string"),
    (lambda g: g["nodes"][-1].__setitem__("namespace", "elsewhere"), "as the node id"),
    (lambda g: g["nodes"][0].__setitem__("addresses", ["not-an-ip"]), "is not an IP address"),
    (lambda g: g["edges"][0]["ports"][0].__setitem__("port", "http"), "must be an integer"),
    (lambda g: g["edges"][0]["ports"][0].__setitem__("port", None), "entry needs its port"),
    (lambda g: g["edges"][0]["ports"][0].__setitem__("first_seen", "yesterday"),
     "must be a number"),
    (lambda g: g["edges"][0]["ports"][0].__setitem__("protocol", "TCPX"), "must be one of"),
    (lambda g: g["edges"][0].__setitem__("flows", -1), "must be an integer from 0"),
    (lambda g: g["edges"][0]["ports"][0].__setitem__("last_seen", 1e300), "year from 1 to 9999"),
    (lambda g: g["edges"].append(dict(g["edges"][0])), "a second edge"),
])
def test_graph_with_wrong_attribute_types_fails_at_load(run_dir: Path, tmp_path: Path,
                                                        damage: Any, message: str) -> None:
    """A graph.json is user input: wrong attribute types are one line naming the node or edge,
    before anything reads them (not a traceback inside lowering)."""
    graph = json.loads((run_dir / "graph.json").read_text())
    damage(graph)
    bad = tmp_path / "graph.json"
    bad.write_text(json.dumps(graph))
    line = one_line_error(cli("compile", "--graph", str(bad), "--plan",
                              str(run_dir / "plan.json"), "--inventory", INVENTORY, "-o",
                              str(tmp_path / "out")), "graph.json (", message)
    assert "nodes[" in line or "edges[" in line
    assert not (tmp_path / "out").exists()


def test_config_errors(tmp_path: Path, run_dir: Path) -> None:
    config = tmp_path / "segmenter.yaml"
    for content, message in (
            (b"sensitive:\n- class: pci\n  selector: {app: caf\xe9}\n",
             "not UTF-8 text: byte 0xe9 at offset 45"),
            (b"classes: [pci]\n", "(classes): must be an object, not a list"),
            (b"sensitive:\n- class: pci\n  namespace: 5\n  selector: {app: db}\n",
             "(sensitive[0].namespace): must be a string"),
            (b"compile:\n  external_cidrs: 203.0.113.0/24\n", "must be a list"),
            (b"compile:\n  external_cidrs:\n  - {cidr: 10.0.0.0/8, except: 10.1.0.0/16}\n",
             "except): must be a list"),
            (b"version: " + b"9" * 5000 + b"\n", "more than 4,300 digits"),
            (b"sensitive: &s [*s]\n", "refers to a node that contains it"),
            (b"a: 1\n---\nb: 2\n", "expected one YAML document")):
        config.write_bytes(content)
        one_line_error(cli("plan", "--graph", str(run_dir / "graph.json"), "--config",
                           str(config), "-o", str(tmp_path / "plan.json")), message)
        assert not (tmp_path / "plan.json").exists()


def test_inventory_errors(tmp_path: Path) -> None:
    dump = tmp_path / "dump.yaml"
    out = tmp_path / "inventory.json"
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "namespace": "x"},
           "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80}]}]},
           "status": {"podIP": "10.0.0.1"}}
    for content, message in (
            (b"kind: Pod\nmetadata: {name: caf\xc3}\n", "byte 0xc3 at offset 30"),
            (BOMB.encode(), "billion laughs"),
            (b"items: &i [*i]\nkind: List\n", "refers to a node that contains it"),
            (("[" * 5000 + "]" * 5000).encode(), "nested deeper than 100 levels"),
            (yaml.safe_dump({**pod, "metadata": {"name": "a", "creationTimestamp": 10**400}})
             .encode(), "not epoch seconds"),
            (yaml.safe_dump({**pod, "spec": {"containers": [
                {"name": "c", "ports": [{"containerPort": 99999}]}]}}).encode(),
             "containerPort must be from 0 to 65535"),
            (json.dumps({**pod, "spec": {"containers": [
                {"name": "c", "ports": [{"containerPort": "80"}]}]}}).encode(),
             "must be an integer")):
        dump.write_bytes(content)
        one_line_error(cli("inventory", str(dump), "-o", str(out)), "dump.yaml", message)
        assert not out.exists()


def test_inventory_cache_is_checked(tmp_path: Path) -> None:
    cache = tmp_path / "inventory.json"
    assert cli("inventory", INVENTORY, "-o", str(cache))[0] == 0
    data = json.loads(cache.read_text())
    for damage, message in (
            (lambda d: d["pods"][0].__setitem__("start", "today"), "(pods[0].start): must be a"),
            (lambda d: d["pods"][0].__setitem__("ips", ["10.0.0.300"]), "not an IP address"),
            (lambda d: d["services"][0]["ports"][0].__setitem__("port", None),
             "(services[0].ports[0]): missing 'port'"),
            (lambda d: d["workloads"][0]["ref"].__setitem__("kind", ["Deployment"]),
             "(workloads[0].ref.kind): must be a string")):
        damaged = json.loads(json.dumps(data))
        damage(damaged)
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps(damaged))
        one_line_error(cli("inventory", str(bad), "-o", str(tmp_path / "again.json")), message)


def test_flow_file_errors(tmp_path: Path, run_dir: Path) -> None:
    lines = (run_dir / "flows.jsonl").read_bytes().splitlines(keepends=True)
    flows = tmp_path / "flows.jsonl"
    out = tmp_path / "graph.json"
    second = json.loads(lines[1])
    for line, message in (
            (b'{"record": "flow", "x": ' + b"[" * 3000 + b"]" * 3000 + b"}\n",
             "(line 2): nested deeper than 100 levels"),
            (json.dumps({**second, "packets_to_server": 1}).encode()[:-1]
             + b', "resets": ' + b"1" * 5000 + b"}\n", "(line 2): an integer of more than"),
            (json.dumps({**second, "first_seen": 1e300, "last_seen": 1e300}).encode() + b"\n",
             "of a year from 1 to 9999"),
            (b'{"record": "flow", "client": "10.0.0.1\xff"}\n', "at offset")):
        flows.write_bytes(lines[0] + line + b"".join(lines[2:]))
        one_line_error(cli("graph", "--flows", str(flows), "--inventory", INVENTORY, "-o",
                           str(out)), "flows.jsonl", message)
        assert not out.exists()
    offset = len(lines[0]) + len(b'{"record": "flow", "client": "10.0.0.1')
    assert f"at offset {offset}" in cli("graph", "--flows", str(flows), "--inventory",
                                        INVENTORY)[2]


# --------------------------------------------------------------------------------------------
# Policies: diff and verify


def policy_folder(run_dir: Path, tmp_path: Path, target: str = "kubernetes") -> Path:
    folder = tmp_path / target
    shutil.copytree(run_dir / target, folder)
    return folder


def test_diff_on_a_yaml_alias_bomb_is_quick_and_one_line(run_dir: Path, tmp_path: Path) -> None:
    folder = policy_folder(run_dir, tmp_path)
    (folder / "bomb.yaml").write_text(BOMB)
    started = time.perf_counter()
    one_line_error(cli("diff", str(run_dir / "kubernetes"), str(folder)), "bomb.yaml",
                   "billion laughs")
    (folder / "bomb.yaml").write_text("a: &a [*a]\n")
    one_line_error(cli("diff", str(run_dir / "kubernetes"), str(folder)), "bomb.yaml",
                   "refers to a node that contains it")
    assert time.perf_counter() - started < 20


def _holds(doc: Any, path: tuple[str | int, ...]) -> bool:
    """Whether ``doc`` has a value at ``path`` (keys and list indexes)."""
    try:
        for step in path:
            doc = doc[step]
    except (KeyError, IndexError, TypeError):
        return False
    return True


def test_wrong_typed_policy_fields(run_dir: Path, tmp_path: Path) -> None:
    """spec.ingress: 5 (Kubernetes) and destination.ports: 5 (Calico): verify leaves them out
    with a reason, and diff compares without crashing."""
    for target, path in (("kubernetes", ("spec", "ingress")),
                         ("calico", ("spec", "egress", 0, "destination", "ports"))):
        folder = policy_folder(run_dir, tmp_path, target)
        victim = next(p for p in sorted(folder.rglob("*.yaml")) if p.name.startswith("allow-")
                      and _holds(yaml.safe_load(p.read_text()), path[:-1]))
        doc = yaml.safe_load(victim.read_text())
        node = doc
        for step in path[:-1]:
            node = node[step]
        node[path[-1]] = 5
        victim.write_text(yaml.safe_dump(doc))
        code, out, err = cli("verify", "--policies", str(folder), "--flows",
                             str(run_dir / "flows.jsonl"), "--inventory", INVENTORY,
                             "--enforcement", target)
        assert "Traceback" not in err
        assert f"rejected {victim}" in err and "must be a list" in err
        code, out, err = cli("diff", str(run_dir / target), str(folder), "--inventory",
                             INVENTORY, "--enforcement", target)
        assert code == 1, err
        assert "left out (invalid)" in out and victim.name in out


@pytest.mark.parametrize("command", ["verify", "diff"])
def test_broken_and_looping_policy_links_are_errors(run_dir: Path, tmp_path: Path,
                                                    command: str) -> None:
    folder = policy_folder(run_dir, tmp_path)

    def run() -> tuple[int, str, str]:
        if command == "diff":
            return cli("diff", str(run_dir / "kubernetes"), str(folder))
        return cli("verify", "--policies", str(folder), "--flows",
                   str(run_dir / "flows.jsonl"), "--inventory", INVENTORY)

    (folder / "gone.yaml").symlink_to(tmp_path / "nowhere.yaml")
    one_line_error(run(), "gone.yaml", "broken symbolic link")
    (folder / "gone.yaml").unlink()
    (folder / "loop.yaml").symlink_to(folder / "loop.yaml")
    one_line_error(run(), "loop.yaml", "symbolic link loop")
    (folder / "loop.yaml").unlink()
    os.mkfifo(folder / "pipe.yaml")
    one_line_error(run(), "pipe.yaml", "not a regular file")


# --------------------------------------------------------------------------------------------
# Clean errors


def test_bad_arguments_are_one_line() -> None:
    line = one_line_error(cli("run", str(SAMPLE / "shop.pcapng"), "--inventory", INVENTORY,
                              "-o", "x", "--sensitive"), "argument --sensitive")
    assert "segmenter run -h" in line
    one_line_error(cli("verify", "--inventory", INVENTORY, "--enforcement", "nope"),
                   "invalid choice")
    one_line_error(cli(), "COMMAND")
    one_line_error(cli("run", str(SAMPLE / "shop.pcapng"), "--inventory", INVENTORY, "-o", "x",
                       "--sensitive", "pci"), "--sensitive pci: expected CLASS=")


def test_an_error_is_the_last_and_only_line(run_dir: Path, tmp_path: Path) -> None:
    """A dump without its final newline warns; the bad flow file read after it is the error,
    alone on stderr. Without the error, the warning shows."""
    dump = tmp_path / "dump.yaml"
    dump.write_text(yaml.safe_dump(json.loads(Path(INVENTORY).read_text())).rstrip("\n"))
    bad_flows = tmp_path / "flows.jsonl"
    bad_flows.write_text("{}\n")
    one_line_error(cli("graph", "--flows", str(bad_flows), "--inventory", str(dump)),
                   "flows.jsonl")
    code, _, err = cli("graph", "--flows", str(run_dir / "flows.jsonl"), "--inventory",
                       str(dump), "--stats")
    assert code == 0
    assert "does not end with a newline" in err


def test_ingest_to_stdout_writes_only_the_flow_file(capfd: pytest.CaptureFixture[str]) -> None:
    assert main(["ingest", str(SAMPLE / "shop.pcapng"), "-o", "-"]) == 0
    out, err = capfd.readouterr()
    records = [json.loads(line) for line in out.splitlines()]
    assert records[0]["format"] == "segmenter-flows"
    assert all("record" in r for r in records[1:])
    assert "wrote -:" in err


# --------------------------------------------------------------------------------------------
# Output that cannot be written


@pytest.fixture
def outputs(run_dir: Path, tmp_path: Path) -> dict[str, list[str]]:
    """Every command that writes, with its -o left for the test to give."""
    graph, plan = str(run_dir / "graph.json"), str(run_dir / "plan.json")
    return {
        "inventory": ["inventory", INVENTORY],
        "graph": ["graph", "--flows", str(run_dir / "flows.jsonl"), "--inventory", INVENTORY],
        "plan": ["plan", "--graph", graph, "--config", str(SAMPLE / "segmenter.yaml")],
        "compile": ["compile", "--graph", graph, "--plan", plan, "--inventory", INVENTORY,
                    "--dialect", "kubernetes"],
        "draw": ["draw", "--graph", graph, "--plan", plan],
        "report": ["report", "--graph", graph, "--plan", plan, "--policies",
                   str(run_dir / "kubernetes"), "--enforcement", "kubernetes", "--flows",
                   str(run_dir / "flows.jsonl"), "--inventory", INVENTORY],
        "run": ["run", str(SAMPLE / "shop.pcapng"), "--inventory", INVENTORY],
    }


FILE_OUTPUTS = ("inventory", "graph", "plan", "draw")
FOLDER_OUTPUTS = ("compile", "report", "run")


@pytest.mark.parametrize("command", [*FILE_OUTPUTS, *FOLDER_OUTPUTS])
def test_unwritable_output_is_one_line(command: str, outputs: dict[str, list[str]],
                                       tmp_path: Path) -> None:
    args = outputs[command]
    a_file = tmp_path / "a-file"
    a_file.write_text("keep me\n")
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "missing")
    if command in FILE_OUTPUTS:
        one_line_error(cli(*args, "-o", str(tmp_path)), str(tmp_path), "is a folder")
        one_line_error(cli(*args, "-o", "/dev/full"), "/dev/full", "no space left on device")
        one_line_error(cli(*args, "-o", str(a_file / "x.json")), "a-file",
                       "exists and is not a folder")
    else:
        one_line_error(cli(*args, "-o", str(a_file)), "a-file", "exists and is not a folder")
        one_line_error(cli(*args, "-o", str(dangling)), "dangling", "which does not exist")
        one_line_error(cli(*args, "-o", str(a_file / "sub")), "a-file")
    assert a_file.read_text() == "keep me\n"
    assert dangling.is_symlink() and not dangling.exists()


@pytest.mark.parametrize(("command", "failure"), [  # the report: in the next test
    ("plan", errno.ENOSPC), ("plan", errno.EACCES), ("compile", errno.ENOSPC),
    ("compile", errno.EROFS)])
def test_a_failed_write_keeps_the_previous_output(command: str, failure: int,
                                                  outputs: dict[str, list[str]], tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk, a read-only folder (simulated: the tests run as root) part-way: one line,
    and the previous output as it was."""
    target = tmp_path / ("plan.json" if command == "plan" else "out")
    assert cli(*outputs[command], "-o", str(target))[0] == 0
    before = snapshot(tmp_path)

    def fail(*_: Any, **__: Any) -> None:
        raise OSError(failure, os.strerror(failure))

    if command == "plan":
        monkeypatch.setattr("segmenter.fileio.os.fsync", fail)
    else:  # the second file written into the new folder
        calls = iter(range(10**6))
        real = Path.write_text

        def write_text(self: Path, *args: Any, **kwargs: Any) -> int:
            if next(calls) == 1:
                fail()
            return real(self, *args, **kwargs)
        monkeypatch.setattr(Path, "write_text", write_text)
    line = one_line_error(cli(*outputs[command], "-o", str(target)), str(target))
    assert os.strerror(failure).lower() in line.lower() or "no space" in line
    monkeypatch.undo()
    assert snapshot(tmp_path) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no leftovers


def test_a_failed_report_leaves_the_previous_report_whole(outputs: dict[str, list[str]],
                                                          tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "report"
    assert cli(*outputs["report"], "-o", str(out))[0] == 0
    before = snapshot(out)
    assert "report.html" in before and any(name.endswith(".png") for name in before)

    def broken(*_: Any) -> str:
        raise OSError(errno.ENOSPC, "No space left on device")

    # The pictures are written first, the HTML last: the failure comes after them.
    monkeypatch.setattr("segmenter.views.report.build.render_html", broken)
    one_line_error(cli(*outputs["report"], "--title", "second", "-o", str(out)), "report")
    assert snapshot(out) == before


def test_report_refuses_a_folder_holding_other_files(outputs: dict[str, list[str]],
                                                      tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine\n")
    one_line_error(cli(*outputs["report"], "-o", str(tmp_path)), "holds notes.txt")
    assert (tmp_path / "notes.txt").read_text() == "mine\n"


# --------------------------------------------------------------------------------------------
# apply's backup manifest


@contextlib.contextmanager
def no_tools(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    empty = tmp_path / "no-tools"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    yield


def test_rollback_checks_its_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    backup = tmp_path / "backup"
    backup.mkdir()
    good: dict[str, Any] = {
        "format": "segmenter-apply-backup", "version": 1, "context": None, "kubeconfig": None,
        "saved": [], "created_by_apply": [{"group": "networking.k8s.io",
                                           "kind": "NetworkPolicy", "namespace": "shop",
                                           "name": "allow-x", "resource": "networkpolicies",
                                           "tool": "kubectl"}]}
    with no_tools(monkeypatch, tmp_path):
        for damage, message in (
                (lambda m: m.__setitem__("saved", 5), "(saved): must be a list"),
                (lambda m: m["created_by_apply"][0].__setitem__("kind", ""), "must not be empty"),
                (lambda m: m["created_by_apply"][0].__setitem__("tool", "sh"),
                 "(created_by_apply[0].tool): must be one of calicoctl, kubectl"),
                (lambda m: m.__setitem__("saved", [{"restore": "../../etc/passwd",
                                                    "resource": "x", "tool": "kubectl"}]),
                 "must be a path inside the backup folder")):
            manifest = json.loads(json.dumps(good))
            damage(manifest)
            (backup / "manifest.json").write_text(json.dumps(manifest))
            one_line_error(cli("rollback", str(backup), "--dry-run"), "manifest.json", message)
        (backup / "manifest.json").write_bytes(b'{"format": "segmenter-apply-backup", \xff}')
        one_line_error(cli("rollback", str(backup)), "not UTF-8")
