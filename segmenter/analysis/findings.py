"""What the gates (``verify``, ``report``) find, how severe each finding is, and the exit
status a pipeline sees.

Severities follow the convention of vulnerability scanners' ``--fail-on`` (grype): a run fails
when it finds anything at or above the chosen severity. The default, ``high``, fails on what a
security team wires a gate for: an observed flow the policies deny (the application breaks), a
restricted workload that is not isolated (``critical``) or that is reachable beyond the plan
(``high``). The same problems on a connected-to workload are ``medium``: in scope, but one
step away from the data.

==========================  ======================================  ===================
kind                        what                                    severity
==========================  ======================================  ===================
``unisolated``              a restricted / connected workload that  critical / medium
                            no policy isolates for ingress or
                            egress
``over-permissive``         a restricted / connected workload       high / medium
                            reachable (or reaching out) beyond its
                            planned peers and ports
``unchecked``               a restricted / connected workload with  high / medium
                            no pod in the inventory: nothing to
                            probe
``denied-flow``             an observed flow the policies deny      high
``segmentation``            a path into or out of a restricted      high
                            workload that the segmentation test
                            finds allowed and no observed or
                            declared flow explains (report)
``not-enforced``            the inventory shows policy engines,     high
                            none of which enforces the judged
                            target's policies (report)
``no-default-deny``         a policed namespace where a new pod is  medium
                            not denied by default (report)
``invalid-policy``          a document the API server would         medium
                            reject: left out, not in force
``unjustified``             a flow across a restricted zone's       medium
                            boundary with no entry in the
                            justifications register (report)
``still-learning``          the capture window is shorter than a    medium
                            day, or new edges were still appearing
                            in its last fifth (report)
``enforcement-unverified``  nothing shows a policy engine that      medium
                            enforces the judged policies: no
                            inventory, or none recognised (report)
``plaintext``               a flow to or from the restricted zone   low
                            without TLS (report)
``processor-candidate``     a connected workload that reads from    low
                            or writes to a restricted store: in
                            the CDE unless shown otherwise (report)
``node-path``               a path into a restricted workload from  low
                            its own node (or a hostNetwork pod on
                            it) that no policy governs: node
                            isolation is the control (report)
==========================  ======================================  ===================
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

EXIT_CLEAN: Final = 0
EXIT_FINDINGS: Final = 1


class Severity(enum.StrEnum):
    """How much a finding matters, most severe first."""

    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"

    @property
    def rank(self) -> int:
        """0 for the most severe."""
        return list(Severity).index(self)

    def at_least(self, threshold: Severity) -> bool:
        """Whether this severity is ``threshold`` or worse."""
        return self.rank <= threshold.rank


DEFAULT_FAIL_ON: Final = Severity.HIGH


class FindingKind(enum.StrEnum):
    """What was found (see the module docstring for the severities)."""

    UNISOLATED = "unisolated"
    OVER_PERMISSIVE = "over-permissive"
    UNCHECKED = "unchecked"
    DENIED_FLOW = "denied-flow"
    SEGMENTATION = "segmentation"
    NO_DEFAULT_DENY = "no-default-deny"
    INVALID_POLICY = "invalid-policy"
    PLAINTEXT = "plaintext"
    NOT_ENFORCED = "not-enforced"
    UNJUSTIFIED = "unjustified"
    STILL_LEARNING = "still-learning"
    ENFORCEMENT_UNVERIFIED = "enforcement-unverified"
    PROCESSOR_CANDIDATE = "processor-candidate"
    NODE_PATH = "node-path"


# Severity by kind, and for the kinds that depend on it, by the zone of the workload concerned.
_BY_ZONE: Final = {
    FindingKind.UNISOLATED: {"restricted": Severity.CRITICAL, "connected": Severity.MEDIUM},
    FindingKind.OVER_PERMISSIVE: {"restricted": Severity.HIGH, "connected": Severity.MEDIUM},
    FindingKind.UNCHECKED: {"restricted": Severity.HIGH, "connected": Severity.MEDIUM},
}
_FIXED: Final = {
    FindingKind.DENIED_FLOW: Severity.HIGH,
    FindingKind.SEGMENTATION: Severity.HIGH,
    FindingKind.NO_DEFAULT_DENY: Severity.MEDIUM,
    FindingKind.INVALID_POLICY: Severity.MEDIUM,
    FindingKind.PLAINTEXT: Severity.LOW,
    FindingKind.NOT_ENFORCED: Severity.HIGH,
    FindingKind.UNJUSTIFIED: Severity.MEDIUM,
    FindingKind.STILL_LEARNING: Severity.MEDIUM,
    FindingKind.ENFORCEMENT_UNVERIFIED: Severity.MEDIUM,
    FindingKind.PROCESSOR_CANDIDATE: Severity.LOW,
    FindingKind.NODE_PATH: Severity.LOW,
}


def severity_of(kind: FindingKind, zone: str = "") -> Severity:
    """The severity of a finding of ``kind`` about a workload in ``zone``.

    >>> severity_of(FindingKind.UNISOLATED, "restricted"), severity_of(FindingKind.PLAINTEXT)
    (<Severity.CRITICAL: 'critical'>, <Severity.LOW: 'low'>)
    """
    if kind in _BY_ZONE:
        return _BY_ZONE[kind].get(zone, Severity.MEDIUM)
    return _FIXED[kind]


@dataclass(frozen=True, order=True)
class Finding:
    """One thing a gate found: ``subject`` is what it is about (a workload id, a namespace, a
    flow), ``message`` one line for people."""

    severity_rank: int
    kind: FindingKind
    subject: str
    message: str

    @classmethod
    def of(cls, kind: FindingKind, subject: str, message: str, zone: str = "") -> Finding:
        return cls(severity_of(kind, zone).rank, kind, subject, message)

    @property
    def severity(self) -> Severity:
        return list(Severity)[self.severity_rank]

    def line(self) -> str:
        """``[critical] unisolated: <message>``."""
        return f"[{self.severity}] {self.kind}: {self.message}"

    def as_dict(self) -> dict[str, str]:
        return {"severity": str(self.severity), "kind": str(self.kind),
                "subject": self.subject, "message": self.message}


def failing(findings: Iterable[Finding], fail_on: Severity = DEFAULT_FAIL_ON) -> list[Finding]:
    """The findings at or above ``fail_on``, most severe first."""
    return sorted(f for f in set(findings) if f.severity.at_least(fail_on))


def exit_status(findings: Iterable[Finding], fail_on: Severity = DEFAULT_FAIL_ON) -> int:
    """0 when nothing is at or above ``fail_on``, else 1 (2, bad input, is the CLI's)."""
    return EXIT_FINDINGS if failing(findings, fail_on) else EXIT_CLEAN


__all__ = [
    "DEFAULT_FAIL_ON",
    "EXIT_CLEAN",
    "EXIT_FINDINGS",
    "Finding",
    "FindingKind",
    "Severity",
    "exit_status",
    "failing",
    "severity_of",
]
