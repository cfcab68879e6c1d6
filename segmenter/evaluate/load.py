"""Reading policy manifests from YAML/JSON files and folders.

Folders are walked recursively in sorted path order, taking ``*.yaml``, ``*.yml`` and ``*.json``
and skipping ``kustomization.yaml``. Files may hold several YAML documents. ``kind: List`` (and
typed lists such as ``NetworkPolicyList`` or ``PodList`` from ``kubectl get -o yaml``) are
expanded into their items; items of a typed list that lack ``kind``/``apiVersion`` get them from
the list. Errors name the file and the 1-based document number.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from segmenter.documents import iter_yaml, parse_json, read_text
from segmenter.errors import InputError

__all__ = ["MANIFEST_SUFFIXES", "iter_manifests", "load_manifests"]

logger = logging.getLogger(__name__)

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
_SKIPPED_NAMES = ("kustomization.yaml", "kustomization.yml", "kustomization.json")

def _files(paths: Sequence[str]) -> list[Path]:
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(
                (f for f in path.rglob("*") if f.suffix.lower() in MANIFEST_SUFFIXES
                 and f.name.lower() not in _SKIPPED_NAMES and _is_manifest_file(f)),
                key=lambda f: f.relative_to(path).as_posix(),
            )
            out.extend(found)
        elif path.exists():
            if path.name.lower() in _SKIPPED_NAMES:
                logger.info("skipping %s: a kustomization is not a manifest", path)
                continue
            out.append(path)  # a file, or a pipe given by name (/dev/stdin)
        else:
            _check_link(path)
            raise InputError("no such file or directory", path=str(path))
    return out


def _is_manifest_file(path: Path) -> bool:
    """True for a regular file (or a link to one) in a folder; a folder named ``*.yaml`` is
    walked, not read. A broken or looping link, or a pipe or device, is an error: a policy
    the folder was meant to hold would be left out without a word."""
    if path.is_dir():
        return False
    _check_link(path)
    if not path.is_file():
        raise InputError("not a regular file (a pipe, socket or device in a policy folder)",
                         path=str(path))
    return True


def _check_link(path: Path) -> None:
    if not path.is_symlink():
        return
    try:
        path.stat()
    except FileNotFoundError:
        raise InputError(f"broken symbolic link (to {os.readlink(path)})", path=str(path)) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InputError("symbolic link loop", path=str(path)) from None
        raise InputError(f"cannot read: {exc.strerror or exc}", path=str(path)) from None


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


def _documents(path: Path) -> Iterator[tuple[int, Any]]:
    text = read_text(path)
    if path.suffix.lower() == ".json":
        try:
            data = parse_json(text, path=str(path))
        except InputError as exc:
            raise _in_document(exc, 1) from None
        if isinstance(data, list):
            yield from ((i + 1, d) for i, d in enumerate(data))
        else:
            yield 1, data
        return
    number = 0
    try:
        for number, data in enumerate(iter_yaml(text, path=str(path)), start=1):
            yield number, data
    except InputError as exc:
        raise _in_document(exc, number + 1) from None


def _in_document(exc: InputError, number: int) -> InputError:
    where = f"document {number}" + (f", {exc.record}" if exc.record else "")
    return InputError(exc.message, path=exc.path, record=where)


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
