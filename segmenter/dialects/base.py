"""The dialect contract: read a ``PolicySet``, return manifests (plain dicts) and notes.

What the target cannot express is collected by ``unsupported()`` and raised together as one
``UnsupportedError`` (every reason at once), unless the dialect runs best-effort, in which case
the reasons are returned as ``dropped`` so the caller can say what was left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from segmenter.errors import UnsupportedError
from segmenter.gcpause import no_gc
from segmenter.policy.ir import Evidence, Policy, PolicySet
from segmenter.render import Manifest

MANAGED_BY = {"app.kubernetes.io/managed-by": "segmenter"}
# Sources of packet captures (the graph's "capture" and the capture formats' names).
CAPTURE_SOURCES: Final = frozenset({"capture", "pcap", "pcapng"})


def flow_count(ev: Evidence) -> str:
    """``3 flows``; ``~3 flows (sampled)`` when a sampled source counted them (an estimate)."""
    text = f"{ev.flows} flow{'' if ev.flows == 1 else 's'}"
    return f"~{text} (sampled)" if ev.sampled else text


def evidence_sources(ev: Evidence) -> str | None:
    """The sources that saw a rule's flows, ``capture, hubble``, when any is not a packet
    capture; None for capture-only evidence.

    A capture is the default evidence: naming it on every rule would say nothing and change
    every policy written from captures. A flow log is evidence of another kind (aggregated,
    sampled, reported by the dataplane), which whoever reviews the rule needs to know.
    """
    if not ev.sources or CAPTURE_SOURCES.issuperset(ev.sources):
        return None
    return ", ".join(ev.sources)


def policy_annotations(policy: Policy) -> dict[str, str]:
    """The provenance annotations of a policy, the same in every dialect: what it is for, its
    zone, the compliance requirements it serves, how its selector was chosen."""
    annotations = {"segmenter.io/description": policy.description}
    if policy.zone:
        annotations["segmenter.io/zone"] = policy.zone
    if policy.requirements:
        annotations["segmenter.io/requirements"] = ", ".join(policy.requirements)
    if policy.selector_note:
        annotations["segmenter.io/selector"] = policy.selector_note
    if policy.entry_point:
        annotations["segmenter.io/entry-point"] = policy.entry_point
    return annotations


@dataclass(frozen=True)
class Output:
    """Emitted manifests keyed by relative file path, plus what was noted or dropped."""

    files: dict[str, list[Manifest]]
    notes: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()


@dataclass
class Dialect:
    name: str = "base"
    best_effort: bool = False
    staged: bool = False
    _unsupported: list[str] = field(default_factory=list)
    _notes: list[str] = field(default_factory=list)

    def unsupported(self, message: str) -> None:
        self._unsupported.append(message)

    def note(self, message: str) -> None:
        self._notes.append(message)

    def put_file(self, files: dict[str, list[Manifest]], key: str, manifest: Manifest) -> None:
        """Put ``manifest`` alone in the file ``key``; a second policy for the same file (names
        that collide once made file-safe) cannot be expressed."""
        if key in files:
            self.unsupported(f"two policies would both be written as {key}")
        files[key] = [manifest]

    def emit(self, policy_set: PolicySet) -> Output:
        self._unsupported.clear()
        self._notes.clear()
        with no_gc():
            files = self.generate(policy_set)
        if self._unsupported and not self.best_effort:
            raise UnsupportedError(list(self._unsupported), dialect=self.name)
        return Output(files, tuple(self._notes), tuple(self._unsupported))

    def generate(self, policy_set: PolicySet) -> dict[str, list[Manifest]]:
        raise NotImplementedError
