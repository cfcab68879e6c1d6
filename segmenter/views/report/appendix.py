"""The report's appendices, so that it stands alone: the text of every policy evaluated, and
the note on how segmenter reads policies (``semantics.md``, shipped in the package)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any, Final

from segmenter.evaluate import describe_manifest
from segmenter.render import sorted_yaml
from segmenter.views.report.document import Block, Code, Heading, Para, blocks_from_markdown

SEMANTICS_NOTE: Final = "semantics.md"
# Fields the API server adds that say nothing about what a policy does.
_SERVER_METADATA: Final = ("managedFields", "resourceVersion", "uid", "generation",
                           "creationTimestamp", "selfLink")
_LAST_APPLIED: Final = "kubectl.kubernetes.io/last-applied-configuration"


def semantics_note() -> str:
    """The note's Markdown text, from the installed package."""
    return (resources.files("segmenter.views.report") / SEMANTICS_NOTE).read_text(
        encoding="utf-8")


def shown(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A policy as the appendix shows it: without status and the server's bookkeeping."""
    out = {k: v for k, v in doc.items() if k != "status"}
    meta = doc.get("metadata")
    if isinstance(meta, Mapping):
        kept = {k: v for k, v in meta.items() if k not in _SERVER_METADATA}
        notes = kept.get("annotations")
        if isinstance(notes, Mapping) and _LAST_APPLIED in notes:
            kept["annotations"] = {k: v for k, v in notes.items() if k != _LAST_APPLIED}
        out["metadata"] = kept
    return out


def policies_text(manifests: Sequence[Mapping[str, Any]]) -> str:
    """Every policy as the appendix prints it, one YAML document each (keys sorted): the text
    a cluster read is digested as."""
    return sorted_yaml([shown(d) for d in manifests])


def appendix_blocks(manifests: Sequence[Mapping[str, Any]], *, label: str,
                    rejected: Sequence[str] = ()) -> list[Block]:
    blocks: list[Block] = [Heading(2, "Appendix A: the policies evaluated", "policies")]
    blocks.append(Para(
        f"The {len(manifests)} policy object(s) evaluated in this report, from {label}, as "
        "YAML with keys sorted (status and the API server's bookkeeping fields left out). "
        "Their files' digests are in the inputs table."))
    for doc in manifests:
        blocks.append(Heading(3, f"`{describe_manifest(doc)}`"))
        blocks.append(Code(sorted_yaml([shown(doc)]), "yaml"))
    if rejected:
        blocks.append(Para("Left out (the API server would reject them, so they are not in "
                           "force):", "warn"))
        blocks.append(Code("\n".join(rejected) + "\n"))
    blocks.append(Heading(2, "Appendix B: how segmenter reads the policies", "semantics"))
    blocks.extend(blocks_from_markdown(semantics_note(), anchor_prefix="semantics-", shift=1)[1:])
    return blocks


__all__ = ["SEMANTICS_NOTE", "appendix_blocks", "policies_text", "semantics_note", "shown"]
