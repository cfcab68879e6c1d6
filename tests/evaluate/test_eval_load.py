"""load_manifests: files and folders, multi-document YAML, lists, kustomization, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from segmenter.errors import InputError
from segmenter.evaluate import iter_manifests, load_manifests

POLICY = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: %s, namespace: shop}
spec: {podSelector: {}}
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_folders_are_walked_recursively_in_sorted_order(tmp_path: Path) -> None:
    write(tmp_path / "b.yaml", POLICY % "b1" + "---\n" + POLICY % "b2")
    write(tmp_path / "a" / "z.yml", POLICY % "az")
    write(tmp_path / "c.json", json.dumps([{"kind": "Namespace", "apiVersion": "v1",
                                            "metadata": {"name": "shop"}}]))
    write(tmp_path / "kustomization.yaml", "resources: [b.yaml]\n")
    write(tmp_path / "notes.txt", "not yaml: [")
    write(tmp_path / "empty.yaml", "---\n# only a comment\n---\n")
    names = [d["metadata"]["name"] for d in load_manifests([str(tmp_path)])]
    assert names == ["az", "b1", "b2", "shop"]


def test_lists_are_expanded_and_typed_lists_fill_in_kind(tmp_path: Path) -> None:
    write(tmp_path / "list.yaml", """\
apiVersion: v1
kind: List
items:
- apiVersion: networking.k8s.io/v1
  kind: NetworkPolicy
  metadata: {name: one}
  spec: {}
- apiVersion: v1
  kind: PodList
  items:
  - metadata: {name: p1}
""")
    docs = load_manifests([str(tmp_path / "list.yaml")])
    assert [(d["kind"], d["metadata"]["name"], d.get("apiVersion")) for d in docs] == [
        ("NetworkPolicy", "one", "networking.k8s.io/v1"), ("Pod", "p1", "v1")]


def test_sources_are_reported(tmp_path: Path) -> None:
    f = write(tmp_path / "p.yaml", POLICY % "x" + "---\n" + POLICY % "y")
    assert [(src, n) for src, n, _ in iter_manifests([str(f)])] == [(str(f), 1), (str(f), 2)]


def test_explicit_kustomization_file_is_skipped(tmp_path: Path) -> None:
    f = write(tmp_path / "kustomization.yaml", "resources: []\n")
    assert load_manifests([str(f)]) == []


def test_bad_yaml_names_file_and_document(tmp_path: Path) -> None:
    f = write(tmp_path / "bad.yaml", POLICY % "ok" + "---\nkind: [unclosed\n")
    with pytest.raises(InputError) as info:
        load_manifests([str(f)])
    assert info.value.path == str(f)
    assert info.value.record == "document 2, line 7 column 1"
    assert "malformed YAML" in str(info.value)


def test_bad_json(tmp_path: Path) -> None:
    f = write(tmp_path / "bad.json", "{nope}")
    with pytest.raises(InputError, match=r"\(document 1, line 1 column 2\): malformed JSON"):
        load_manifests([str(f)])


def test_missing_path_and_non_mapping_documents(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file or directory"):
        load_manifests([str(tmp_path / "absent")])
    f = write(tmp_path / "scalar.yaml", POLICY % "ok" + "---\n- just\n- a list\n")
    with pytest.raises(InputError) as info:
        load_manifests([str(f)])
    assert info.value.record == "document 2"
    assert "not a manifest" in str(info.value)


def test_a_single_string_path_is_accepted(tmp_path: Path) -> None:
    f = write(tmp_path / "p.yaml", POLICY % "x")
    assert len(load_manifests(str(f))) == 1  # type: ignore[arg-type]
