"""policy.networking.k8s.io/v1alpha2 ClusterNetworkPolicy, written with the NetworkPolicies.

The target is network-policy-api v0.2.0 (standard channel; implemented by Calico 3.32 and
kube-network-policies; policy-semantics.md §2.1). Evaluation order per direction is Admin tier ->
NetworkPolicy tier -> Baseline tier -> allow (§2.3). The folder this dialect writes is the whole
policy for a cluster without Calico tiers (``kubectl apply -k`` of it alone):

- **NetworkPolicies** (``<namespace>/<name>.yaml``): ``PolicySet.policies`` through the
  ``kubernetes`` dialect's own emitter, unchanged. They carry the plan's allowed set exactly, the
  per-namespace ``default-deny`` included (§1).
- **Admin tier** (``clusternetworkpolicy-admin.yaml``): one ClusterNetworkPolicy chain per zone
  guardrail, subject ``pods`` (namespace by ``kubernetes.io/metadata.name`` AND the workload's
  selector). Planned flows ``Pass`` to the NetworkPolicy tier; everything else into or out of
  the restricted workload is ``Deny``\\ed.
- **Baseline tier** (``clusternetworkpolicy-baseline.yaml``): for every namespace-wide default
  deny of the IR, a ``Deny`` from any pod / to anywhere with subject ``namespaces`` (that one
  namespace). Baseline only decides for pods no NetworkPolicy isolates (§2.3), so with the
  NetworkPolicies in place it changes no verdict; it is the deny that stays if a namespace owner
  deletes their ``default-deny`` (PCI DSS 1.3.1/1.3.2, "specifically denied", §5.1).

Pass, not Accept, for planned flows (§2.3). Both give the same verdicts here, because the
NetworkPolicies allow exactly the guardrail's planned flows. Accept would turn the Admin tier into
a grant that no NetworkPolicy can narrow (Accept is final for its direction), so one mistake in a
guardrail would open the zone by itself. With Pass, a connection into or out of a restricted
workload must pass both the admin-owned guardrail and the namespace policy: two independent
controls, the defence in depth the guardrail exists for, as in the Calico dialect's tier.

What ClusterNetworkPolicy cannot say, and what is done instead:

- **Ingress peers are pods only** (``namespaces``/``pods``, §2.4): no ingress rule matches
  nodes, host-networked pods or external clients, so that traffic always reaches the NetworkPolicy
  tier. A ``Pass`` from such a peer therefore needs no rule, and writing none is exact (a note
  says so). A catch-all ``Deny`` can only cover pods; the NetworkPolicy default deny holds the
  rest (§2.8 case 1; noted, and stated in each object's ``segmenter.io/limits`` annotation). An
  ``Accept`` or an explicit ``Deny`` naming a non-pod source would change verdicts and is
  reported with ``unsupported()``.
- **No Log action**: the guardrail's Log rule is left out (it decides nothing); unplanned traffic
  shows in the CNI's deny logs where enabled.
- **No ICMP match** (§2.5): a port of another protocol than TCP/UDP/SCTP is ``unsupported()``.
- **No ipBlock except**: ``cidr`` minus ``except`` becomes the exact list of CIDRs covering the
  difference.
- **All ports of a protocol**: ``tcp: {}`` is rejected by the CRD (§2.2, §2.8 case 9), so it is
  ``destinationPort.range`` 1-65535.
- **Egress to anywhere**: ``namespaces: {}`` and ``networks: [0.0.0.0/0, ::/0]`` (§2.8 case 2:
  a namespaces peer alone leaves the internet open; ``networks`` also matches pod IPs, §2.4).

Limits (§2.6): 25 rules per direction, 25 peers and 25 protocols per rule, 25 CIDRs per
``networks`` peer, 25 names per ``domainNames`` peer. Consecutive rules with the same action and
the same ports are merged (their peers ORed: exact under first match). A rule with more peers or
protocols becomes consecutive rules with the same action, one per chunk (exact: each chunk only
adds matches the others would have decided the same way). A direction with more than 25 rules
continues in the next object of the chain: ``<name>``, ``<name>.part-2``, ... at consecutive
priorities. Every chain gets a contiguous block of priorities, so for any pod the tier still
reads each guardrail's rules in written order: splitting never interleaves two guardrails.

Priorities (deterministic): Admin chains take 100, 101, ... in IR order (``order``, then name),
leaving 0-99 to the cluster's own Admin policies, which then run first. Baseline default denies
all take 1000, the last place in the tier, after any Baseline policy of the cluster's; they are
unambiguous at the same priority because their subjects (one namespace each) are disjoint
(upstream only leaves equal priorities undefined for policies that can match the same
connection, §2.3). Rule names (at most 100 characters) say action, direction and peer.

``domain_names=True`` (experimental channel CRD only; off by default): for egress peers that
carry observed DNS names, ``Accept`` rules to ``domainNames`` ahead of the guardrail's ``Pass``
rules, the allow-list pattern the field documents (§2.4). It is a deliberate widening: it
allows whatever those names resolve to at connection time (implementation-defined), without the
NetworkPolicies being asked. The observed addresses stay allowed through the ``Pass`` and the
NetworkPolicies, so the output still works where name resolution is cold. Off (the default),
such peers are CIDRs, and the rule names and evidence carry the DNS names.
"""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass, field
from typing import Any

from segmenter.dialects.base import MANAGED_BY, Dialect, Manifest, policy_annotations
from segmenter.dialects.kubernetes import NAMESPACE_NAME_LABEL, Kubernetes, evidence_text
from segmenter.model import Transport
from segmenter.policy.ir import (
    Action,
    CidrPeer,
    CidrRole,
    Direction,
    Evidence,
    PodPeer,
    Policy,
    PolicySet,
    Port,
    Rule,
)

API_VERSION = "policy.networking.k8s.io/v1alpha2"
KIND = "ClusterNetworkPolicy"
ADMIN, BASELINE = "Admin", "Baseline"
# Limits of the v1alpha2 CRD (policy-semantics.md §2.2, §2.6; CRD maxItems / maxLength).
MAX_ITEMS = 25
MAX_RULE_NAME = 100
MAX_PRIORITY = 1000
ADMIN_PRIORITY_START = 100
BASELINE_PRIORITY = MAX_PRIORITY
ADMIN_FILE = "clusternetworkpolicy-admin.yaml"
BASELINE_FILE = "clusternetworkpolicy-baseline.yaml"
ALL_NETWORKS = ("0.0.0.0/0", "::/0")
_ACTIONS = {Action.ALLOW: "Accept", Action.DENY: "Deny", Action.PASS: "Pass"}
_PROTOCOL_KEYS = {Transport.TCP: "tcp", Transport.UDP: "udp", Transport.SCTP: "sctp"}
# DomainName as the v1alpha2 Go type states it (network-policy-api apis/v1alpha2); stricter than
# the CRD's copy, which has a typo ([a-zA-z0-9]), so what fits here is accepted by either.
DOMAIN_NAME = re.compile(r"^(\*\.)?([a-zA-Z0-9]([-a-zA-Z0-9_]*[a-zA-Z0-9])?\.)+"
                         r"[a-zA-Z0-9]([-a-zA-Z0-9_]*[a-zA-Z0-9])?\.?$")
_SLUG_BAD = re.compile(r"[^a-z0-9]+")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")

LIMITS_ANNOTATION = "segmenter.io/limits"
# Said in the objects themselves (for whoever reads them in the cluster) and as a note.
_INGRESS_LIMIT = ("ClusterNetworkPolicy ingress rules match pod sources only (v1alpha2 "
                  "ClusterNetworkPolicyIngressPeer): traffic from nodes, host-networked pods and "
                  "outside the cluster always reaches the NetworkPolicy tier, where the "
                  "namespace's default deny holds it")
_LOG_LIMIT = ("ClusterNetworkPolicy has no Log action: unplanned traffic shows in the CNI's deny "
              "logs where enabled")

# A protocol entry: (transport, first port, last port); every port of a transport is 1-65535.
ProtocolEntry = tuple[Transport, int, int]


def subtract_cidrs(cidr: str, excepts: tuple[str, ...]) -> list[str]:
    """The CIDRs covering ``cidr`` minus ``excepts`` exactly (ClusterNetworkPolicy has no except).

    >>> subtract_cidrs("10.0.0.0/8", ("10.0.0.0/9",))
    ['10.128.0.0/9']
    >>> subtract_cidrs("192.0.2.0/24", ())
    ['192.0.2.0/24']
    """
    remaining = [ipaddress.ip_network(cidr, strict=False)]
    for text in excepts:
        hole = ipaddress.ip_network(text, strict=False)
        out: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for net in remaining:
            if net.version != hole.version or not net.overlaps(hole):
                out.append(net)
            elif not hole.supernet_of(net):  # type: ignore[arg-type]
                out.extend(net.address_exclude(hole))  # type: ignore[arg-type]
        remaining = out
    return [str(n) for n in sorted(remaining, key=lambda n: (n.version, n))]


def isolating(rules: tuple[Rule, ...] | None) -> tuple[Rule, ...]:
    """A guardrail direction's rules with its end made explicit.

    A tiered policy isolates the directions it has (``()`` included: nothing allowed): what no
    rule decides is denied at the end of its tier (Calico, §3.4). A ClusterNetworkPolicy tier
    ends in Pass instead (§2.3), so that deny is written out, unless the last rule already
    decides everything (a catch-all Accept, Deny or Pass). ``None``: the direction is left alone.

    >>> [r.action.value for r in isolating(())]
    ['Deny']
    >>> isolating(None)
    ()
    """
    if rules is None:
        return ()
    last = rules[-1] if rules else None
    if last is not None and not last.peers and not last.ports and last.action is not Action.LOG:
        return rules
    end = Evidence(reason="end of the guardrail: what no rule above decides is denied")
    return (*rules, Rule(Action.DENY, evidence=end))


def slug(text: str, limit: int = MAX_RULE_NAME) -> str:
    """Lowercase letters, digits and dashes, at most ``limit`` characters.

    >>> slug("Deny from api.gateway.example")
    'deny-from-api-gateway-example'
    """
    return _SLUG_BAD.sub("-", text.lower()).strip("-")[:limit].rstrip("-") or "x"


@dataclass
class _Draft:
    """One rule on its way to YAML: IR rules merge into it, then it splits at the limits."""

    action: str
    direction: Direction
    pods: list[PodPeer | None]  # None: every pod (``namespaces: {}``)
    networks: list[str]
    domains: list[str]
    protocols: tuple[ProtocolEntry, ...] | None  # None: every protocol
    hint: str
    sources: list[Rule] = field(default_factory=list)
    merged: int = 1  # how many drafts were merged into this one

    @property
    def name_hint(self) -> str:
        return self.hint if self.merged == 1 else f"{self.hint}-and-{self.merged - 1}-more"

    def key(self) -> tuple[str, tuple[ProtocolEntry, ...] | None, bool]:
        return (self.action, self.protocols, bool(self.domains))


@dataclass
class _Emitted:
    """A rule ready for YAML, with the IR rules behind it (for the evidence annotation)."""

    body: dict[str, Any]
    sources: list[Rule]


class ClusterNetworkPolicy(Dialect):
    """ClusterNetworkPolicy guardrails (Admin), default denies (Baseline), and NetworkPolicies.

    Args:
        domain_names: write ``domainNames`` Accept rules for egress peers with observed DNS
            names (experimental channel CRD only; see the module docstring).
    """

    def __init__(self, *, best_effort: bool = False, staged: bool = False,
                 domain_names: bool = False):
        super().__init__(name="clusternetworkpolicy", best_effort=best_effort, staged=staged)
        self.domain_names = domain_names
        self._said: set[str] = set()

    def note_once(self, message: str) -> None:
        if message not in self._said:
            self._said.add(message)
            self.note(message)

    def generate(self, policy_set: PolicySet) -> dict[str, list[Manifest]]:
        self._said = set()
        if self.staged:
            self.note("--staged applies to Calico only; ClusterNetworkPolicy and NetworkPolicy "
                      "have no staged form")
        if self.domain_names:
            self.note("domainNames rules need the experimental channel CRD of network-policy-api "
                      "v0.2.0; they allow what the names resolve to at connection time")
        # The NetworkPolicies: the kubernetes dialect's emitter, its findings passed on as ours.
        namespaced = Kubernetes(best_effort=True).emit(PolicySet(policy_set.policies))
        files = dict(namespaced.files)
        for message in namespaced.notes:
            self.note(message)
        for message in namespaced.dropped:
            self.unsupported(message)

        admin: list[Manifest] = []
        priority = ADMIN_PRIORITY_START
        for guard in sorted(policy_set.guardrails,
                            key=lambda p: (math.inf if p.order is None else p.order, p.name)):
            for subject_index, subject in enumerate(self.subjects(guard)):
                base = f"segmenter.{guard.name}"
                if subject_index:
                    base += f".subject-{subject_index + 1}"
                chain = self.chain(guard, ADMIN, subject, base, priority, step=1)
                priority += len(chain)
                admin.extend(chain)
        if priority - 1 > MAX_PRIORITY:
            self.unsupported(f"the Admin tier needs priorities {ADMIN_PRIORITY_START} to "
                             f"{priority - 1}, beyond the {MAX_PRIORITY} the API allows")

        baseline: list[Manifest] = []
        for policy in policy_set.policies:
            if policy.namespace is None or policy.target.labels or not (
                    policy.ingress == () or policy.egress == ()):
                continue
            deny = Policy(
                name=policy.name, namespace=None,
                ingress=(Rule(Action.DENY, evidence=_baseline_evidence(policy, "ingress")),)
                if policy.ingress == () else None,
                egress=(Rule(Action.DENY, evidence=_baseline_evidence(policy, "egress")),)
                if policy.egress == () else None,
                description=policy.description, zone=policy.zone,
                requirements=policy.requirements)
            subject = {"namespaces": {"matchLabels": {NAMESPACE_NAME_LABEL: policy.namespace}}}
            baseline.extend(self.chain(deny, BASELINE, subject,
                                       f"segmenter.{policy.namespace}.{policy.name}",
                                       BASELINE_PRIORITY, step=0))

        for key, manifests in ((ADMIN_FILE, admin), (BASELINE_FILE, baseline)):
            if not manifests:
                continue
            if key in files:
                self.unsupported(f"two objects would both be written as {key}")
            files[key] = manifests
        return files

    # ----------------------------------------------------------------------------------------
    # Objects

    def subjects(self, policy: Policy) -> list[dict[str, Any]]:
        """``spec.subject`` for each pod group the policy selects (one chain per group)."""
        if policy.namespace is not None:
            return [self.pods_subject(PodPeer(policy.namespace, policy.target))]
        if not policy.members:
            self.unsupported(f"{policy.name}: a cluster-wide policy without members would select "
                             "every pod in the cluster")
            return []
        return [self.pods_subject(m) for m in policy.members]

    @staticmethod
    def pods_subject(peer: PodPeer) -> dict[str, Any]:
        return {"pods": _pods(peer)}

    def chain(self, policy: Policy, tier: str, subject: dict[str, Any], base: str,
              priority: int, *, step: int) -> list[Manifest]:
        """The objects for one policy and subject: rules split at 25 per direction, parts at
        ``priority``, ``priority + step``, ..."""
        ingress = self.rules(policy, Direction.INGRESS, isolating(policy.ingress))
        egress = self.rules(policy, Direction.EGRESS, isolating(policy.egress))
        parts = max(math.ceil(len(ingress) / MAX_ITEMS), math.ceil(len(egress) / MAX_ITEMS))
        if parts == 0:
            self.note(f"{policy.name}: no rule left to write as a ClusterNetworkPolicy")
            return []
        limits = []
        if any(r.action is Action.LOG for r in (*(policy.ingress or ()), *(policy.egress or ()))):
            limits.append(_LOG_LIMIT)
        if ingress:
            limits.append(_INGRESS_LIMIT)
        out = []
        for part in range(parts):
            chunk_in = ingress[part * MAX_ITEMS:(part + 1) * MAX_ITEMS]
            chunk_out = egress[part * MAX_ITEMS:(part + 1) * MAX_ITEMS]
            annotations = policy_annotations(policy)
            if parts > 1:
                annotations["segmenter.io/part"] = f"{part + 1} of {parts}"
            evidence = _evidence(chunk_in) + _evidence(chunk_out)
            if evidence:
                annotations["segmenter.io/evidence"] = "\n".join(evidence) + "\n"
            if limits:
                annotations[LIMITS_ANNOTATION] = "; ".join(limits)
            spec: dict[str, Any] = {"tier": tier, "priority": priority + part * step,
                                    "subject": subject}
            if chunk_in:
                spec["ingress"] = [r.body for r in chunk_in]
            if chunk_out:
                spec["egress"] = [r.body for r in chunk_out]
            name = base if part == 0 else f"{base}.part-{part + 1}"
            if len(name) > 253 or not _DNS_SUBDOMAIN.fullmatch(name):
                self.unsupported(f"{policy.name}: {name!r} is not a valid object name (a DNS "
                                 "subdomain of at most 253 characters)")
            out.append({
                "apiVersion": API_VERSION,
                "kind": KIND,
                "metadata": {"name": name,
                             "labels": dict(MANAGED_BY),
                             "annotations": annotations},
                "spec": spec,
            })
        return out

    # ----------------------------------------------------------------------------------------
    # Rules

    def rules(self, policy: Policy, direction: Direction, rules: tuple[Rule, ...]
              ) -> list[_Emitted]:
        """One direction's rules: converted, merged where consecutive and alike, split at the
        limits, named."""
        drafts: list[_Draft] = []
        run: list[_Draft] = []  # consecutive non-Deny drafts
        accepts: list[_Draft] = []  # their domainNames Accepts, which go first in the run
        for index, rule in enumerate(rules):
            draft = self.draft(policy, direction, index, rule)
            if draft is None:
                continue
            if draft.action == "Deny":
                drafts += accepts + run
                accepts, run = [], []
                drafts.append(draft)
                continue
            run.append(draft)
            names = self.domains_of(rule) if direction is Direction.EGRESS else []
            if names:
                accepts.append(_Draft("Accept", direction, [], [], names, draft.protocols,
                                      f"accept-to-{names[0]}", [rule]))
        drafts += accepts + run

        merged: list[_Draft] = []
        for draft in drafts:
            last = merged[-1] if merged else None
            if last is not None and last.key() == draft.key():
                last.pods += [p for p in draft.pods if p not in last.pods]
                last.networks += [n for n in draft.networks if n not in last.networks]
                last.domains += [d for d in draft.domains if d not in last.domains]
                last.sources += draft.sources
                last.merged += 1
                continue
            merged.append(draft)

        emitted: list[_Emitted] = []
        used: dict[str, int] = {}
        for draft in merged:
            peers = [_peer(p) for p in draft.pods]
            peers += [{"networks": draft.networks[i:i + MAX_ITEMS]}
                      for i in range(0, len(draft.networks), MAX_ITEMS)]
            peers += [{"domainNames": draft.domains[i:i + MAX_ITEMS]}
                      for i in range(0, len(draft.domains), MAX_ITEMS)]
            protocols = [_protocol(e) for e in draft.protocols] if draft.protocols else []
            peer_chunks = [peers[i:i + MAX_ITEMS] for i in range(0, len(peers), MAX_ITEMS)]
            proto_chunks: list[list[dict[str, Any]] | None] = (
                [protocols[i:i + MAX_ITEMS] for i in range(0, len(protocols), MAX_ITEMS)]
                if protocols else [None])
            for peer_chunk in peer_chunks:
                for proto_chunk in proto_chunks:
                    name = _unique_name(used, slug(draft.name_hint, MAX_RULE_NAME - 4))
                    body: dict[str, Any] = {"name": name, "action": draft.action}
                    body["from" if direction is Direction.INGRESS else "to"] = peer_chunk
                    if proto_chunk is not None:
                        body["protocols"] = proto_chunk
                    emitted.append(_Emitted(body, list(draft.sources)))
        return emitted

    def draft(self, policy: Policy, direction: Direction, index: int, rule: Rule
              ) -> _Draft | None:
        """One IR rule as a draft, or None when nothing of it is written (reported)."""
        where = f"{policy.name} {direction.value.lower()}[{index}]"
        if rule.action is Action.LOG:
            self.note_once(f"{_LOG_LIMIT}; the Log rules of the zone guardrails are left out")
            return None
        action = _ACTIONS[rule.action]
        protocols = self.protocols(rule.ports, where)
        if protocols == ():
            return None
        ingress = direction is Direction.INGRESS
        way = "from" if ingress else "to"
        pods: list[PodPeer | None] = []
        networks: list[str] = []
        if not rule.peers:
            pods.append(None)
            if ingress:
                if rule.action is Action.ALLOW:
                    self.unsupported(f"{where}: an Accept from any source: ClusterNetworkPolicy "
                                     "ingress peers can only be pods (policy-semantics.md §2.4)")
                elif rule.action is Action.DENY:
                    self.note_once(f"{_INGRESS_LIMIT}; the guardrails' and default denies' "
                                   "ingress Deny covers pods only")
                return _Draft(action, direction, pods, [], [], protocols,
                              f"{action}-{way}-any-pod", [rule])
            networks.extend(ALL_NETWORKS)
            return _Draft(action, direction, pods, networks, [], protocols,
                          f"{action}-{way}-anywhere", [rule])
        hints = []
        for peer in rule.peers:
            if isinstance(peer, PodPeer):
                pods.append(peer)
                hints.append(_pod_hint(peer))
            elif ingress:
                if rule.action is Action.PASS:
                    self.note_once(
                        f"{_INGRESS_LIMIT}; so guardrail Pass rules from such peers need no "
                        "ClusterNetworkPolicy rule and are not written (exact)")
                else:
                    self.unsupported(f"{where}: {action} from {peer.cidr} ({peer.role}): "
                                     "ClusterNetworkPolicy ingress peers can only be pods "
                                     "(policy-semantics.md §2.4)")
            else:
                networks.extend(n for n in subtract_cidrs(peer.cidr, peer.excepts)
                                if n not in networks)
                hints.append(_cidr_hint(peer))
        if not pods and not networks:
            return None
        return _Draft(action, direction, pods, networks, [], protocols,
                      f"{action}-{way}-{hints[0]}", [rule])

    def protocols(self, ports: tuple[Port, ...], where: str
                  ) -> tuple[ProtocolEntry, ...] | None:
        """``protocols`` entries; None for every protocol; () when none could be written."""
        if not ports:
            return None
        out: list[ProtocolEntry] = []
        for port in ports:
            if port.transport not in _PROTOCOL_KEYS:
                self.unsupported(f"{where}: {port.transport} cannot be matched by "
                                 "ClusterNetworkPolicy protocols (policy-semantics.md §2.5)")
                continue
            if port.port is None:
                entry = (port.transport, 1, 65535)
            else:
                entry = (port.transport, port.port, port.end_port or port.port)
            if entry not in out:
                out.append(entry)
        return tuple(out)

    def domains_of(self, rule: Rule) -> list[str]:
        """The DNS names to Accept before ``rule`` (``domain_names`` only)."""
        if not self.domain_names or rule.action not in (Action.PASS, Action.ALLOW):
            return []
        names: list[str] = []
        for peer in rule.peers:
            if not isinstance(peer, CidrPeer) or peer.role is not CidrRole.EXTERNAL:
                continue
            for name in peer.dns_names:
                if not DOMAIN_NAME.fullmatch(name):
                    self.note(f"DNS name {name!r} does not fit the domainNames pattern; "
                              f"{peer.cidr} stays a CIDR only")
                elif name not in names:
                    names.append(name)
        return names


# --------------------------------------------------------------------------------------------
# Pieces


def _pods(peer: PodPeer) -> dict[str, Any]:
    labels = peer.pods.labels.as_dict()
    return {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: peer.namespace}},
            "podSelector": {"matchLabels": labels} if labels else {}}


def _peer(peer: PodPeer | None) -> dict[str, Any]:
    if peer is None:
        return {"namespaces": {}}
    return {"pods": _pods(peer)}


def _protocol(entry: ProtocolEntry) -> dict[str, Any]:
    transport, first, last = entry
    port: dict[str, Any] = ({"number": first} if first == last
                            else {"range": {"start": first, "end": last}})
    return {_PROTOCOL_KEYS[transport]: {"destinationPort": port}}


def _pod_hint(peer: PodPeer) -> str:
    values = [v for _, v in peer.pods.labels.items]
    return "-".join([peer.namespace, *values]) if values else f"{peer.namespace}-all-pods"


def _cidr_hint(peer: CidrPeer) -> str:
    if peer.dns_names:
        return peer.dns_names[0]
    return peer.name or peer.cidr


def _unique_name(used: dict[str, int], name: str) -> str:
    count = used.get(name, 0) + 1
    used[name] = count
    return name if count == 1 else f"{name}-{count}"


def _evidence(rules: list[_Emitted]) -> list[str]:
    """``<rule name>: 3 flows, <first> to <last>; <reason>`` per IR rule behind each rule."""
    out = []
    for rule in rules:
        for source in rule.sources:
            text = f"{rule.body['name']}: {evidence_text(source.evidence)}"
            if text not in out:
                out.append(text)
    return out


def _baseline_evidence(policy: Policy, direction: str) -> Evidence:
    return Evidence(reason=f"default deny of {direction} in {policy.namespace} (NetworkPolicy "
                           f"{policy.namespace}/{policy.name} makes the same deny for every pod)",
                    requirements=policy.requirements)


__all__ = ["ADMIN_FILE", "BASELINE_FILE", "ClusterNetworkPolicy", "subtract_cidrs"]
