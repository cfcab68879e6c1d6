"""The compliance frameworks and requirements the zones serve, in one place.

Requirement wording is paraphrased from PCI DSS v4.0.1 and 45 CFR 164.312 (sources and the
mapping's rationale: policy-semantics.md §5). The compiler cites requirements in policy
annotations (:func:`citations`); the report maps evidence to them (:data:`CATALOG`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final


class Framework(enum.StrEnum):
    PCI = "pci"
    HIPAA = "hipaa"


FRAMEWORK_TITLES: Final = {Framework.PCI: "PCI DSS v4.0.1", Framework.HIPAA: "HIPAA Security Rule"}
# How a requirement is cited in annotations: "PCI DSS v4.0.1 1.3.1", "HIPAA 164.312(b)".
_CITE_PREFIX: Final = {Framework.PCI: "PCI DSS v4.0.1", Framework.HIPAA: "HIPAA"}

# Built-in data classes and the framework whose requirements their zones serve.
BUILTIN_CLASSES: Final[dict[str, dict[str, str]]] = {
    "pci": {"title": "PCI DSS cardholder data", "framework": Framework.PCI.value},
    "phi": {"title": "HIPAA electronic protected health information",
            "framework": Framework.HIPAA.value},
}


@dataclass(frozen=True)
class Requirement:
    framework: Framework
    ref: str  # "1.3.1", "164.312(a)(1)"
    asks: str  # what it asks, in a line

    @property
    def cite(self) -> str:
        return f"{_CITE_PREFIX[self.framework]} {self.ref}"


CATALOG: Final = {
    (r.framework, r.ref): r for r in (
        Requirement(Framework.PCI, "1.2.2", "Changes to network connections and to NSC "
                    "configurations approved and managed by change control"),
        Requirement(Framework.PCI, "1.2.4", "Accurate data-flow diagrams of all account-data "
                    "flows, updated on change"),
        Requirement(Framework.PCI, "1.2.5", "Every allowed service, protocol and port "
                    "identified, approved, with a business need"),
        Requirement(Framework.PCI, "1.3.1", "Inbound traffic to the CDE restricted to what is "
                    "necessary; all else specifically denied"),
        Requirement(Framework.PCI, "1.3.2", "Outbound traffic from the CDE restricted to what is "
                    "necessary; all else specifically denied"),
        Requirement(Framework.PCI, "1.4.1", "NSCs between trusted and untrusted networks"),
        Requirement(Framework.PCI, "1.4.2", "Inbound traffic from untrusted networks only to "
                    "authorised public services"),
        Requirement(Framework.PCI, "1.4.4", "Stores of cardholder data not directly reachable "
                    "from untrusted networks"),
        Requirement(Framework.PCI, "10.2", "Audit logs of access and of changes to security "
                    "controls"),
        Requirement(Framework.PCI, "11.4.5", "Segmentation controls penetration-tested every 12 "
                    "months and after changes"),
        Requirement(Framework.PCI, "11.4.6", "Service providers: segmentation controls "
                    "penetration-tested every six months and after changes"),
        Requirement(Framework.PCI, "12.5.2", "PCI DSS scope documented and confirmed every 12 "
                    "months and on significant change"),
        Requirement(Framework.HIPAA, "164.312(a)(1)", "Access control: only authorised software "
                    "reaches ePHI systems"),
        Requirement(Framework.HIPAA, "164.312(b)", "Audit controls: record and examine activity "
                    "in ePHI systems"),
        Requirement(Framework.HIPAA, "164.312(e)(1)", "Transmission security: guard ePHI in "
                    "transit"),
    )
}


class PolicyRole(enum.StrEnum):
    """What a compiled policy does, as far as requirements go."""

    RESTRICTED = "restricted"  # the policy of a restricted-zone workload, or its guardrail
    CONNECTED = "connected"  # the policy of a connected-to workload
    DEFAULT_DENY = "default-deny"  # a namespace's default deny
    EXTERNAL = "external"  # rules with addresses outside the cluster


# Which requirements each kind of policy serves (policy-semantics.md §5.1, §5.2).
SERVES: Final[dict[Framework, dict[PolicyRole, tuple[str, ...]]]] = {
    Framework.PCI: {
        PolicyRole.RESTRICTED: ("1.3.1", "1.3.2", "1.4.4", "10.2"),
        PolicyRole.CONNECTED: ("1.3.1", "1.3.2"),
        PolicyRole.DEFAULT_DENY: ("1.3.1", "1.3.2"),
        PolicyRole.EXTERNAL: ("1.4.1", "1.4.2"),
    },
    Framework.HIPAA: {
        PolicyRole.RESTRICTED: ("164.312(a)(1)", "164.312(b)", "164.312(e)(1)"),
        PolicyRole.CONNECTED: ("164.312(a)(1)",),
        PolicyRole.DEFAULT_DENY: ("164.312(a)(1)",),
        PolicyRole.EXTERNAL: ("164.312(e)(1)",),
    },
}


def citations(framework: str, role: str) -> tuple[str, ...]:
    """The requirements a policy of ``role`` serves under ``framework``, as cited in annotations
    (empty for a custom framework or a role that serves none).

    >>> citations("pci", "connected")
    ('PCI DSS v4.0.1 1.3.1', 'PCI DSS v4.0.1 1.3.2')
    """
    if framework not in Framework._value2member_map_ or role not in PolicyRole._value2member_map_:
        return ()
    fw = Framework(framework)
    return tuple(CATALOG[(fw, ref)].cite for ref in SERVES[fw].get(PolicyRole(role), ()))
