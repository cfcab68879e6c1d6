"""A policy diff as text (coloured on a terminal) and as JSON."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any, Final

from segmenter.analysis.diff.semantic import SemanticDiff
from segmenter.analysis.diff.structural import StructuralDiff

_COLOURS: Final = {"add": "\033[32m", "del": "\033[31m", "chg": "\033[33m", "hunk": "\033[36m",
                   "head": "\033[1m"}
_RESET: Final = "\033[0m"


def _paint(text: str, what: str, colour: bool) -> str:
    return f"{_COLOURS[what]}{text}{_RESET}" if colour else text


def _port_text(transport: str, port: int | None) -> str:
    return transport if port is None else f"{transport}/{port}"


def to_text(structural: StructuralDiff, semantic: SemanticDiff | None = None, *,
            colour: bool = False, old_label: str = "OLD", new_label: str = "NEW") -> str:
    """A report for terminals; ANSI colour only when ``colour``."""
    out: list[str] = []
    s = structural
    out.append(_paint(f"policies {old_label} -> {new_label}: {len(s.added)} added, "
                      f"{len(s.removed)} removed, {len(s.changed)} changed, "
                      f"{len(s.unchanged)} unchanged", "head", colour))
    out.extend(_paint(f"+ added    {a.id}", "add", colour) for a in s.added)
    out.extend(_paint(f"- removed  {r.id}", "del", colour) for r in s.removed)
    for c in s.changed:
        out.append(_paint(f"~ changed  {c.id}", "chg", colour))
        for line in c.unified.splitlines():
            if line.startswith(("+++", "---")):
                out.append("    " + _paint(line, "head", colour))
            elif line.startswith("@@"):
                out.append("    " + _paint(line, "hunk", colour))
            elif line.startswith("+"):
                out.append("    " + _paint(line, "add", colour))
            elif line.startswith("-"):
                out.append("    " + _paint(line, "del", colour))
            else:
                out.append("    " + line)
    out.extend(f"note: {n}" for n in s.notes)
    if semantic is not None:
        out.extend(_semantic_text(semantic, colour))
    return "\n".join(out) + "\n"


def _semantic_text(sem: SemanticDiff, colour: bool) -> list[str]:
    out: list[str] = []
    ports = ", ".join(_port_text(t, p) for t, p in sem.probes) or "none"
    others = (f" and {len(sem.others)} other peers (nodes, the API server, external addresses "
              "inside and outside every CIDR, the internet), both directions"
              if sem.others else "")
    out.append(_paint(
        f"connections ({sem.enforcement} enforcement, {sem.workloads_checked} of "
        f"{sem.workloads_total} workloads{others}, ports {ports}):", "head", colour))
    pairs: dict[tuple[str, str, bool], list[str]] = defaultdict(list)
    for r in sem.reach_changes:
        pairs[(r.source, r.destination, r.allowed_after)].append(
            _port_text(r.transport, r.port))
    if not pairs:
        out.append("  no connection changes verdict")
    for (src, dst, allowed), plist in sorted(pairs.items(), key=lambda kv: (not kv[0][2],
                                                                            kv[0])):
        if allowed:
            out.append(_paint(f"  + newly allowed  {src} -> {dst}: {', '.join(plist)}",
                              "add", colour))
        else:
            out.append(_paint(f"  - newly denied   {src} -> {dst}: {', '.join(plist)}",
                              "del", colour))
    if sem.flows_checked:
        changed = sum(f.flows for f in sem.flow_changes)
        out.append(_paint(f"observed flows: {changed} of {sem.flows_checked} change verdict",
                          "head", colour))
        for f in sem.flow_changes:
            what = _port_text(f.transport, f.port)
            line = (f"  {'+' if f.allowed_after else '-'} {f.client} -> {f.server} {what} "
                    f"({f.flows} flow{'s' if f.flows != 1 else ''}): "
                    f"{f.before} -> {f.after}")
            out.append(_paint(line, "add" if f.allowed_after else "del", colour))
    out.extend(f"note: {n}" for n in sem.notes)
    return out


def to_dict(structural: StructuralDiff, semantic: SemanticDiff | None = None, *,
            old_label: str = "OLD", new_label: str = "NEW") -> dict[str, Any]:
    """The JSON-ready form of :func:`to_json`."""
    s = structural
    data: dict[str, Any] = {
        "format": "segmenter-diff",
        "version": 1,
        "old": old_label,
        "new": new_label,
        "changes": s.has_changes or bool(semantic and semantic.has_changes),
        "structural": {
            "added": [{"id": a.id, **a.key.as_dict()} for a in s.added],
            "removed": [{"id": r.id, **r.key.as_dict()} for r in s.removed],
            "changed": [{"id": c.id, **c.key.as_dict(), "unified": c.unified}
                        for c in s.changed],
            "unchanged": len(s.unchanged),
            "notes": list(s.notes),
        },
        "semantic": None,
    }
    if semantic is not None:
        data["semantic"] = {
            "enforcement": semantic.enforcement,
            "workloads_total": semantic.workloads_total,
            "workloads_checked": semantic.workloads_checked,
            "capped": semantic.capped,
            "probes": [{"protocol": t, "port": p} for t, p in semantic.probes],
            "flows_checked": semantic.flows_checked,
            "flow_changes": [vars(f) for f in semantic.flow_changes],
            "connection_changes": [vars(r) for r in semantic.reach_changes],
            "other_peers": list(semantic.others),
            "notes": list(semantic.notes),
        }
    return data


def to_json(structural: StructuralDiff, semantic: SemanticDiff | None = None, *,
            old_label: str = "OLD", new_label: str = "NEW") -> str:
    """Deterministic JSON (sorted keys, no timestamps) for machines."""
    return json.dumps(to_dict(structural, semantic, old_label=old_label, new_label=new_label),
                      sort_keys=True, indent=1, ensure_ascii=False) + "\n"
