"""Manifests to deterministic YAML, and whole output folders written atomically.

Key order is the order the dialect built (``apiVersion, kind, metadata, spec``), never sorted
alphabetically; no YAML anchors or aliases; documents separated by ``---``. The same manifests
always give the same bytes.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml

from segmenter.dialects.base import Manifest

# libyaml's emitter when PyYAML was built with it (about 10x faster); same output.
_BaseDumper: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _Dumper(_BaseDumper):  # type: ignore[valid-type,misc]
    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str_representer(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str_representer)


def to_yaml(manifests: list[Manifest]) -> str:
    docs = [
        yaml.dump(m, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=100,
                  allow_unicode=True)
        for m in manifests
    ]
    return "---\n".join(docs)


def kustomization(resources: list[str]) -> Manifest:
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": sorted(resources),
    }


def write_tree(folder: str | os.PathLike[str], files: dict[str, list[Manifest]], *,
               with_kustomization: bool = True, extra: dict[str, str] | None = None) -> list[str]:
    """Replace ``folder`` with exactly ``files`` (rendered), atomically as a whole.

    The tree is built in a temporary sibling folder and swapped in with renames, so a failure
    leaves the previous folder untouched and no stale policy files survive a new run.
    """
    target = Path(folder)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    written = []
    try:
        for rel, manifests in sorted(files.items()):
            path = staging / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(to_yaml(manifests), encoding="utf-8")
            written.append(rel)
        if with_kustomization:
            (staging / "kustomization.yaml").write_text(to_yaml([kustomization(written)]),
                                                        encoding="utf-8")
        for rel, text in sorted((extra or {}).items()):
            (staging / rel).write_text(text, encoding="utf-8")
        for path in [staging, *staging.rglob("*")]:
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        old = None
        if target.exists():
            old = target.parent / f".{target.name}.old-{os.getpid()}"
            if old.exists():
                shutil.rmtree(old)
            target.rename(old)
        staging.rename(target)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return written
