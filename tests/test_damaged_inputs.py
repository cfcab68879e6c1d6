"""Every loader of a structured file, fed damaged documents through the command that reads it
(Hypothesis): truncations, type swaps and removals at any path, deep nesting, huge integers,
bytes that are not UTF-8, YAML alias bombs and self-referencing aliases.

Whatever the damage, the command never shows a traceback: it either still accepts the
document (a truncation at a line end, a swap in a field nothing reads) or exits 2 with exactly
one line on stderr and writes nothing. Damage that no valid document survives (bad UTF-8, deep
nesting, huge integers, alias bombs) must be refused.

Damage kinds: truncate, swap (a value at a random path replaced by a value of another type),
drop (a key or an element removed), deep, huge-int, bad-utf8, alias-bomb and self-alias (YAML).
The valid documents come from ``segmenter run`` on the bundled sample, the sample's inventory
and ``segmenter.yaml``, and a backup manifest written here in the format ``apply`` writes.
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segmenter.cli import main
from tests.conftest import REPO

SAMPLE = REPO / "sample"
INVENTORY = str(SAMPLE / "shop-inventory.json")
MARK = "__SEGMENTER_DAMAGE__"
SWAPS: tuple[Any, ...] = (5, -1, 1.5, 1e308, "x", "", "TCP", None, True, [], {}, [None],
                          {"a": [1]}, "10.0.0.300", 70000, 2**64)
# Damage no valid document survives: the command must refuse it.
MUST_FAIL = frozenset({"bad-utf8", "deep", "huge-int", "alias-bomb", "self-alias"})


@dataclass(frozen=True)
class Loader:
    """One structured input: its valid file, its format and the command that reads it."""

    name: str
    source: Path
    fmt: str  # json, jsonl or yaml
    command: Callable[[Path, Path], list[str]]  # (damaged file, output) -> argv


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("valid")
    run = root / "run"
    assert main(["run", str(SAMPLE / "shop.pcapng"), "--inventory", INVENTORY, "--config",
                 str(SAMPLE / "segmenter.yaml"), "-o", str(run)]) == 0
    as_yaml = root / "inventory.yaml"
    as_yaml.write_text(yaml.safe_dump(json.loads(Path(INVENTORY).read_text())))
    cache = root / "cache.json"
    assert main(["inventory", INVENTORY, "-o", str(cache)]) == 0
    backup = root / "backup"
    (backup / "restore").mkdir(parents=True)
    (backup / "restore" / "01-networkpolicies-shop.yaml").write_text("kind: List\nitems: []\n")
    (backup / "manifest.json").write_text(json.dumps({
        "format": "segmenter-apply-backup", "version": 1, "context": "kind-shop",
        "kubeconfig": None, "staged": False, "calico_via": "kubectl", "status": "applied",
        "saved": [{"file": "saved/01-networkpolicies-shop.yaml",
                   "restore": "restore/01-networkpolicies-shop.yaml",
                   "resource": "networkpolicies", "apiVersion": "networking.k8s.io/v1",
                   "kind": "NetworkPolicy", "namespace": "shop", "tool": "kubectl",
                   "objects": [], "overwritten": []}],
        "created_by_apply": [{"group": "networking.k8s.io", "kind": "NetworkPolicy",
                              "namespace": "shop", "name": "allow-frontend",
                              "id": "networking.k8s.io/NetworkPolicy shop/allow-frontend",
                              "apiVersion": "networking.k8s.io/v1",
                              "resource": "networkpolicies", "tool": "kubectl",
                              "namespaced": True}]}))
    return {"run": run, "inventory.yaml": as_yaml, "cache": cache, "backup": backup}


def loaders(base: dict[str, Path]) -> list[Loader]:
    run = base["run"]
    graph, plan, flows = run / "graph.json", run / "plan.json", run / "flows.jsonl"
    policy = run / "kubernetes" / "payments" / "allow-card-vault.yaml"

    def policy_folder(damaged: Path) -> Path:
        return damaged.parent

    return [
        Loader("flows", flows, "jsonl",
               lambda f, o: ["graph", "--flows", str(f), "--inventory", INVENTORY, "-o",
                             str(o / "graph.json")]),
        Loader("dump-json", Path(INVENTORY), "json",
               lambda f, o: ["inventory", str(f), "-o", str(o / "inventory.json")]),
        Loader("dump-yaml", base["inventory.yaml"], "yaml",
               lambda f, o: ["inventory", str(f), "-o", str(o / "inventory.json")]),
        Loader("inventory-cache", base["cache"], "json",
               lambda f, o: ["inventory", str(f), "-o", str(o / "inventory.json")]),
        Loader("config", SAMPLE / "segmenter.yaml", "yaml",
               lambda f, o: ["plan", "--graph", str(graph), "--config", str(f), "-o",
                             str(o / "plan.json")]),
        Loader("graph", graph, "json",
               lambda f, o: ["compile", "--graph", str(f), "--plan", str(plan), "--inventory",
                             INVENTORY, "--dialect", "kubernetes", "-o", str(o / "policies")]),
        Loader("plan", plan, "json",
               lambda f, o: ["compile", "--graph", str(graph), "--plan", str(f), "--inventory",
                             INVENTORY, "--dialect", "kubernetes", "-o", str(o / "policies")]),
        Loader("policy", policy, "yaml",
               lambda f, o: ["diff", str(run / "kubernetes"), str(policy_folder(f)),
                             "--inventory", INVENTORY]),
        Loader("backup-manifest", base["backup"] / "manifest.json", "json",
               lambda f, o: ["rollback", str(f.parent), "--dry-run"]),
    ]


# --------------------------------------------------------------------------------------------
# Damage


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            out.extend(_paths(item, (*prefix, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            out.extend(_paths(item, (*prefix, index)))
    return out


def _replace(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    node = doc
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return doc


def _drop(doc: Any, path: tuple[Any, ...]) -> Any:
    if not path:
        return None
    node = doc
    for step in path[:-1]:
        node = node[step]
    del node[path[-1]]
    return doc


def _load(text: str, fmt: str) -> Any:
    if fmt == "yaml":
        return yaml.load(text, Loader=yaml.CSafeLoader)
    return json.loads(text)


def _dump(doc: Any, fmt: str) -> str:
    if fmt == "yaml":
        return yaml.dump(doc, Dumper=yaml.CSafeDumper, sort_keys=False)
    return json.dumps(doc, indent=1)


def damage_document(text: str, fmt: str, kind: str, rng: random.Random) -> bytes:
    """One damage of a whole JSON or YAML document (``fmt``), at a place ``rng`` picks."""
    if kind == "truncate":
        data = text.encode()
        return data[:rng.randrange(len(data))]
    if kind == "bad-utf8":
        data = text.encode()
        at = rng.randrange(len(data) + 1)
        return data[:at] + rng.choice([b"\xff", b"\xc3(", b"\xed\xa0\x80", b"\xe2\x82"]) + \
            data[at:]
    if kind in ("alias-bomb", "self-alias"):
        if kind == "self-alias":
            return (text + "zz_self: &zz_s [1, *zz_s]\n").encode()
        lines = ["zz_0: &zz_0 [lol, lol, lol]"] + [
            f"zz_{i}: &zz_{i} [{', '.join([f'*zz_{i - 1}'] * 9)}]" for i in range(1, 9)]
        return (text + "\n".join(lines) + "\n").encode()
    doc = _load(text, fmt)
    path = rng.choice(_paths(doc))
    if kind == "swap":
        return _dump(_replace(doc, path, rng.choice(SWAPS)), fmt).encode()
    if kind == "drop":  # a key or an element missing
        return _dump(_drop(doc, path), fmt).encode()
    if kind == "deep":
        depth = rng.choice([150, 3000])
        payload = "[" * depth + "]" * depth
    else:  # huge-int
        payload = rng.choice(["7", "-3"]) + "1" * 5000
    marked = _dump(_replace(doc, path, MARK), fmt)
    quoted = f'"{MARK}"' if fmt != "yaml" else MARK
    return marked.replace(quoted, payload, 1).encode()


def damage(loader: Loader, kind: str, seed: int) -> bytes:
    rng = random.Random(seed)
    text = loader.source.read_text()
    if loader.fmt != "jsonl":
        return damage_document(text, loader.fmt, kind, rng)
    lines = text.splitlines(keepends=True)
    if kind == "truncate":
        return text.encode()[:rng.randrange(len(text.encode()))]
    at = rng.randrange(len(lines))
    damaged = damage_document(lines[at], "json", kind, rng).replace(b"\n", b" ")
    return b"".join(x.encode() for x in lines[:at]) + damaged + b"\n" + \
        b"".join(x.encode() for x in lines[at + 1:])


def kinds(fmt: str) -> list[str]:
    every = ["truncate", "swap", "drop", "deep", "huge-int", "bad-utf8"]
    return [*every, "alias-bomb", "self-alias"] if fmt == "yaml" else every


# --------------------------------------------------------------------------------------------
# The property


def run_cli(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, err.getvalue()


LOADER_FORMATS = {"flows": "jsonl", "dump-json": "json", "dump-yaml": "yaml",
                  "inventory-cache": "json", "config": "yaml", "graph": "json", "plan": "json",
                  "policy": "yaml", "backup-manifest": "json"}
# How many places to damage, per kind: where the damage lands matters for swaps and cuts.
EXAMPLES = {"truncate": 3, "swap": 5, "drop": 3, "deep": 1, "huge-int": 1, "bad-utf8": 1,
            "alias-bomb": 1, "self-alias": 1}


@pytest.mark.parametrize(("name", "kind"), [
    (name, kind) for name, fmt in LOADER_FORMATS.items() for kind in kinds(fmt)])
def test_damaged_documents_are_one_line_and_write_nothing(
        name: str, kind: str, base: dict[str, Path], tmp_path_factory: pytest.TempPathFactory,
        monkeypatch: pytest.MonkeyPatch) -> None:
    loader = next(x for x in loaders(base) if x.name == name)
    monkeypatch.setenv("PATH", str(tmp_path_factory.mktemp("no-tools")))  # rollback runs no
    # kubectl, whatever it reads

    @settings(max_examples=EXAMPLES[kind], deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(seed=st.integers(0, 2**32 - 1))
    def check(seed: int) -> None:
        work = tmp_path_factory.mktemp("case")
        if name == "policy":  # a folder of policies with one damaged file
            folder = work / "policies"
            shutil.copytree(loader.source.parent.parent, folder)
            target = folder / loader.source.parent.name / loader.source.name
        elif name == "backup-manifest":
            shutil.copytree(loader.source.parent, work / "backup")
            target = work / "backup" / loader.source.name
        else:
            target = work / loader.source.name
        target.write_bytes(damage(loader, kind, seed))
        out = work / "out"
        out.mkdir()
        code, err = run_cli(loader.command(target, out))
        assert "Traceback" not in err, err
        if code == 2:
            lines = err.splitlines()
            assert len(lines) == 1, err
            assert lines[0].startswith("segmenter: error: "), lines[0]
            assert list(out.iterdir()) == [], err  # nothing written, no leftovers
        else:
            assert code in (0, 1), (code, err)
            assert kind not in MUST_FAIL, f"damage accepted (seed {seed})"

    check()
