"""Manifests to deterministic YAML, and whole output folders written atomically.

Key order is the order the dialect built (``apiVersion, kind, metadata, spec``), never sorted
alphabetically; no YAML anchors or aliases; documents separated by ``---``. The same manifests
always give the same bytes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from segmenter.fileio import replace_folder

# One Kubernetes object as plain data: what dialects emit and YAML holds.
Manifest = dict[str, Any]

# Plain (unquoted) scalars only where no YAML 1.1 or 1.2 reader can take them for anything but a
# string: a letter, '/' or '_' first, then letters, digits and . _ / - only, and not a word that
# YAML 1.1 reads as a boolean or null. Everything else is a JSON string, which is also a valid YAML
# double-quoted scalar.
_PLAIN = re.compile(r"^[A-Za-z_/][A-Za-z0-9_./-]*$")
_RESERVED = frozenset({"y", "n", "yes", "no", "true", "false", "on", "off", "null", "nan", "inf",
                       "none", "~"})
_BLOCK_SAFE = re.compile(r"^[\x20-\x7e\n]*$")


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        # YAML 1.1 floats need a '.' and a signed exponent: 1e+16 -> 1.0e+16.
        text = repr(value)
        if "e" in text and "." not in text:
            text = text.replace("e", ".0e")
        return text
    text = str(value)
    if _PLAIN.fullmatch(text) and text.lower() not in _RESERVED:
        return text
    return _quoted(text)


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t"}


def _quoted(text: str) -> str:
    """A YAML double-quoted scalar; everything outside printable ASCII is escaped, with YAML's
    own \\x, \\u and \\U forms (JSON's surrogate pairs would not read back in YAML)."""
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'
    out = []
    for char in text:
        code = ord(char)
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif 0x20 <= code < 0x7F:
            out.append(char)
        elif code < 0x100:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return '"' + "".join(out) + '"'



def _block(text: str, indent: str) -> str | None:
    """A literal block scalar (``|``) for multi-line text, or None where it would not
    round-trip exactly (leading space, trailing spaces, several trailing newlines...)."""
    if "\n" not in text or not _BLOCK_SAFE.fullmatch(text) or text.startswith((" ", "\n")):
        return None
    body = text[:-1] if text.endswith("\n") else text
    lines = body.split("\n")
    if body.endswith("\n") or any(line != line.rstrip(" ") for line in lines):
        return None
    head = "|" if text.endswith("\n") else "|-"
    return head + "".join(f"\n{indent}{line}" if line else "\n" for line in lines)


def _mapping(data: dict[str, Any], indent: str, out: list[str]) -> None:
    for key, value in data.items():
        name = _scalar(key)
        if isinstance(value, dict):
            if value:
                out.append(f"{indent}{name}:")
                _mapping(value, indent + "  ", out)
            else:
                out.append(f"{indent}{name}: {{}}")
        elif isinstance(value, list | tuple):
            if value:
                out.append(f"{indent}{name}:")
                _sequence(value, indent, out)
            else:
                out.append(f"{indent}{name}: []")
        elif isinstance(value, str) and "\n" in value and (block := _block(
                value, indent + "  ")) is not None:
            out.append(f"{indent}{name}: {block}")
        else:
            out.append(f"{indent}{name}: {_scalar(value)}")


def _sequence(items: list[Any] | tuple[Any, ...], indent: str, out: list[str]) -> None:
    for item in items:
        if isinstance(item, dict) and item:
            nested: list[str] = []
            _mapping(item, indent + "  ", nested)
            nested[0] = f"{indent}- {nested[0][len(indent) + 2:]}"
            out.extend(nested)
        elif isinstance(item, list | tuple) and item:
            out.append(f"{indent}-")
            _sequence(item, indent + "  ", out)
        elif isinstance(item, dict):
            out.append(f"{indent}- {{}}")
        elif isinstance(item, list | tuple):
            out.append(f"{indent}- []")
        else:
            out.append(f"{indent}- {_scalar(item)}")


def to_yaml(manifests: list[Manifest]) -> str:
    """Block-style YAML, documents separated by ``---``; key order as given.

    A small emitter for the shapes manifests have (maps, lists, strings, numbers, booleans):
    PyYAML's representer was most of the compile time on large clusters. Its output is checked
    to load back equal with ``yaml.safe_load`` in the tests.

    >>> print(to_yaml([{"kind": "NetworkPolicy", "spec": {"podSelector": {}, "ports": [
    ...     {"protocol": "TCP", "port": 5432}]}, "note": "yes"}]), end="")
    kind: NetworkPolicy
    spec:
      podSelector: {}
      ports:
      - protocol: TCP
        port: 5432
    note: "yes"
    """
    docs = []
    for manifest in manifests:
        out: list[str] = []
        _mapping(manifest, "", out)
        docs.append("\n".join(out) + "\n" if out else "{}\n")
    return "---\n".join(docs)


class _NoAliases(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def sorted_yaml(manifests: Sequence[Mapping[str, Any]]) -> str:
    """Documents with keys sorted, as PyYAML writes them: the canonical text that diffs and
    live-policy snapshots compare, where the emitter's own key order would not be stable."""
    return "---\n".join(
        yaml.dump(dict(m), Dumper=_NoAliases, sort_keys=True, default_flow_style=False,
                  width=100, allow_unicode=True)
        for m in manifests)


def kustomization(resources: list[str]) -> Manifest:
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": sorted(resources),
    }


def write_tree(folder: str | os.PathLike[str], files: dict[str, list[Manifest]], *,
               with_kustomization: bool = True, extra: dict[str, str] | None = None) -> list[str]:
    """Replace ``folder`` with exactly ``files`` (rendered), atomically as a whole.

    The tree is built in a temporary sibling folder and swapped in with renames
    (:func:`~segmenter.fileio.replace_folder`), so a failure leaves the previous folder
    untouched and no stale policy files survive a new run.

    Raises:
        OutputError: the folder cannot be written (a file or a dangling link in its place, a
            read-only or full disk).
    """
    written: list[str] = []

    def fill(staging: Path) -> None:
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

    replace_folder(folder, fill)
    return written
