"""Reading policy manifests from YAML/JSON files and folders.

Folders are walked recursively in sorted path order, taking ``*.yaml``, ``*.yml`` and ``*.json``
and skipping ``kustomization.yaml``. Files may hold several YAML documents. ``kind: List`` (and
typed lists such as ``NetworkPolicyList`` or ``PodList`` from ``kubectl get -o yaml``) are
expanded into their items; items of a typed list that lack ``kind``/``apiVersion`` get them from
the list. Errors name the file and the 1-based document number.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from segmenter.errors import InputError

__all__ = ["MANIFEST_SUFFIXES", "iter_manifests", "load_manifests"]

logger = logging.getLogger(__name__)

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
_SKIPPED_NAMES = ("kustomization.yaml", "kustomization.yml", "kustomization.json")

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _files(paths: Sequence[str]) -> list[Path]:
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(
                (f for f in path.rglob("*")
                 if f.is_file() and f.suffix.lower() in MANIFEST_SUFFIXES),
                key=lambda f: f.relative_to(path).as_posix(),
            )
            out.extend(f for f in found if f.name.lower() not in _SKIPPED_NAMES)
        elif path.is_file():
            if path.name.lower() in _SKIPPED_NAMES:
                logger.info("skipping %s: a kustomization is not a manifest", path)
                continue
            out.append(path)
        else:
            raise InputError("no such file or directory", path=str(path))
    return out


def _expand(doc: Mapping[str, Any], path: str, number: int) -> Iterator[dict[str, Any]]:
    kind = str(doc.get("kind") or "")
    items = doc.get("items")
    if kind.endswith("List") and isinstance(items, list):
        item_kind = kind[: -len("List")] if kind != "List" else None
        for i, raw in enumerate(items):
            if raw is None:
                continue
            if not isinstance(raw, Mapping):
                raise InputError(f"item {i} of the {kind} is not a mapping", path=path,
                                 record=f"document {number}")
            item = dict(raw)
            if item_kind and not item.get("kind"):
                item["kind"] = item_kind
            if item_kind and not item.get("apiVersion") and doc.get("apiVersion"):
                item["apiVersion"] = doc["apiVersion"]
            yield from _expand(item, path, number)
        return
    yield dict(doc)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text ({exc.reason})", path=str(path)) from exc
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", path=str(path)) from exc


def _documents(path: Path) -> Iterator[tuple[int, Any]]:
    text = _read(path)
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}",
                             path=str(path), record="document 1") from exc
        if isinstance(data, list):
            yield from ((i + 1, d) for i, d in enumerate(data))
        else:
            yield 1, data
        return
    number = 0
    try:
        for number, data in enumerate(yaml.load_all(text, Loader=_Loader), start=1):
            yield number, data
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(f"invalid YAML{where}: {problem}", path=str(path),
                         record=f"document {number + 1}") from exc


def iter_manifests(paths: Sequence[str]) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """Yield ``(file, document number, manifest)`` for every manifest under ``paths``.

    Raises:
        InputError: a path that does not exist, unreadable text, bad YAML/JSON, or a document
            that is not a mapping.
    """
    for path in _files(paths):
        for number, data in _documents(path):
            if data is None:
                continue
            if not isinstance(data, Mapping):
                raise InputError(f"not a manifest (a {type(data).__name__}, not a mapping)",
                                 path=str(path), record=f"document {number}")
            for doc in _expand(data, str(path), number):
                yield str(path), number, doc


def load_manifests(paths: Sequence[str]) -> list[dict[str, Any]]:
    """All manifests under ``paths`` (files or folders), in order.

    Raises:
        InputError: see :func:`iter_manifests`.
    """
    if isinstance(paths, str):
        paths = [paths]
    return [doc for _, _, doc in iter_manifests(paths)]
