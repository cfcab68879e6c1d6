"""The YAML emitter: everything it writes loads back equal, and a folder swap is atomic."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from segmenter.render import to_yaml, write_tree

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.sampled_from(["yes", "No", "on", "off", "null", "~", "1.0", "0x1f", "1e3", "2026-11-26",
                     "app == 'x'", "!has(a)", "- x", "a: b", "#c", "a #b", "line\nnext\n",
                     "trailing \nspace", "\n\nlead", "tab\tin", "é", "\u2028", " lead", "*",
                     "&a", "@x", "`x", "%x", "{a}", "[a]", "|", ">", "'q'", '"q"', "", "-"]),
)
keys = st.one_of(st.text(min_size=1, max_size=20),
                 st.sampled_from(["kubernetes.io/metadata.name", "on", "yes", "1", "a b"]))
values = st.recursive(scalars, lambda children: st.one_of(
    st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=4)), max_leaves=20)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(st.dictionaries(keys, values, max_size=5), min_size=1, max_size=3))
def test_round_trip(docs: list[dict[str, object]]) -> None:
    text = to_yaml(docs)
    assert list(yaml.safe_load_all(text)) == docs


def test_write_tree_replaces_whole_folder(tmp_path: Path) -> None:
    target = tmp_path / "kubernetes"
    write_tree(target, {"a/one.yaml": [{"kind": "A"}], "two.yaml": [{"kind": "B"}]})
    assert (target / "a/one.yaml").is_file()
    write_tree(target, {"three.yaml": [{"kind": "C"}]})
    files = sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file())
    assert files == ["kustomization.yaml", "three.yaml"]


def test_failed_write_keeps_previous_folder(tmp_path: Path) -> None:
    target = tmp_path / "out"
    write_tree(target, {"keep.yaml": [{"kind": "A"}]})

    class Boom(dict):  # type: ignore[type-arg]
        def items(self):  # type: ignore[no-untyped-def]
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_tree(target, {"new.yaml": [Boom(kind="B")]})
    assert (target / "keep.yaml").read_text() == "kind: A\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_atomic_write_to_a_device_leaves_the_device_alone() -> None:
    import os
    import stat

    from segmenter.fileio import atomic_write_text

    atomic_write_text(os.devnull, "x")
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)
