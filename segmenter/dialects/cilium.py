"""cilium.io/v2: a CiliumNetworkPolicy per workload, CiliumClusterwideNetworkPolicy guardrails.

The mapping, with the sections of policy-semantics.md it rests on:

- **Subjects** (§4.1-4.3). ``endpointSelector`` matches Cilium identity labels, which are the
  pod's Kubernetes labels under the ``k8s:`` source; every key is written with that prefix
  (``k8s:app: web``), never bare (a bare key means ``any:`` source). A CNP's subject is pinned to
  its own namespace by Cilium; every pod peer names its namespace explicitly with
  ``k8s:io.kubernetes.pod.namespace: <ns>``, a positive namespace term (so issue #46949 cannot
  widen it). A selector key that Cilium's default label filter leaves out of identities
  (``pod-template-hash``, ``kubernetes.io/...``, §4.2) would match nothing: reported.
- **Default deny** (§4.4). A direction is enforced once a selecting rule has an entry for it;
  ``ingress: []`` enforces nothing, so an isolated direction with no allowance is written as
  ``ingress: [{}]`` / ``egress: [{}]`` (one rule that matches nothing, as upstream's
  default-deny example). ``enableDefaultDeny`` is always written: ``true`` for the directions a
  policy isolates.
- **Peers** (§4.5): pods as ``fromEndpoints``/``toEndpoints``; any peer (``peers=()``) as the
  ``all`` entity (an empty rule would match nothing); the API server (role APISERVER) as the
  ``kube-apiserver`` entity, the identity Cilium gives every API server endpoint, wherever it
  runs; external, DNS-resolver and node addresses as ``fromCIDRSet``/``toCIDRSet`` (``except``
  kept), and ``0.0.0.0/0`` with ``::/0`` as the ``world`` entity. The internet of an entry
  point (role INTERNET: the whole address space minus the cluster's pod, Service and node
  ranges) stays a ``fromCIDRSet`` with those ranges as ``except``, never ``world``: ``world`` is
  every identity outside the cluster, which also takes in addresses of the cluster's ranges that
  no endpoint holds, while the CIDR set with its exceptions means the same under every
  ``policy-cidr-match-mode`` (CIDRs match no pod or node by default, and the exceptions keep
  them out when the mode lets CIDRs select them). Node addresses (role NODE)
  stay CIDRs: the ``host``/``remote-node`` entities would allow every node, and under Cilium's
  default ``policy-cidr-match-mode`` a CIDR never matches a node, so these rules need
  ``policy-cidr-match-mode: nodes`` (noted; the pod's own node is always allowed in, §4.4).
  External peers known by DNS name become ``toFQDNs`` (``matchName``) on egress, and every
  egress rule to port 53 of that policy gets the DNS-proxy rule ``rules.dns: [{matchPattern:
  "*"}]`` without which Cilium never learns the names' addresses (tricky case 8); ``*`` filters
  no lookup. A policy with no port-53 egress keeps the CIDRs.
- **Ports** (§4.6): ``toPorts`` (at most 40 ports per entry), ``"0"`` for every port of a
  protocol, ``ANY`` only where a port is listed for TCP, UDP and SCTP alike, ``endPort`` for
  ranges (Cilium ≥ 1.16, noted); ICMP as ``icmps`` fields by type in a rule of its own.
  "Every ICMP type" has no Cilium spelling (types only): reported.
- **Guardrails** (§4.4): Cilium has no tiers, Pass or Log, and a deny overrides every allow, so
  "deny everything but the planned flows" cannot be one deny. A restricted zone's guardrail
  becomes a CCNP whose ``ingressDeny``/``egressDeny`` deny exactly the peers that have *no*
  planned flow with the zone member: pods outside the planned selectors (positive namespace
  terms, ``NotIn`` for the rest of a planned namespace), ``world`` when no address peer is
  planned and ``remote-node`` when neither a node nor the API server is. It never denies a
  planned flow, under any CIDR match mode. ``enableDefaultDeny`` is ``false`` on it: the
  per-workload policies carry the allowed set. What it cannot cover (planned peers on unplanned
  ports, pods of other clusters, the ``host``/``ingress``/``health``/``init``/``unmanaged``
  identities) is noted.

Files: ``<namespace>/<name>.yaml`` per CNP, ``_clusterwide/<name>.yaml`` per CCNP (``_`` cannot
start a namespace name, so the folder never collides with one).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from itertools import product
from typing import Any, Literal

from segmenter.dialects.base import MANAGED_BY, Dialect, Manifest, policy_annotations
from segmenter.dialects.kubernetes import evidence_lines
from segmenter.model import Transport
from segmenter.policy.ir import (
    Action,
    CidrPeer,
    CidrRole,
    Peer,
    PodPeer,
    Policy,
    PolicySet,
    Port,
    Rule,
)

API_VERSION = "cilium.io/v2"
NAMESPACE_KEY = "k8s:io.kubernetes.pod.namespace"
CLUSTERWIDE_DIR = "_clusterwide"
# Limits of the v2 API (rule_validation.go: maxPorts, maxICMPFields).
MAX_PORTS = 40
MAX_ICMP_FIELDS = 40
DNS_PORT = 53
# The DNS-proxy rule that lets toFQDNs learn addresses and filters no lookup (§4.5 [J]).
DNS_PROXY_RULES = {"dns": [{"matchPattern": "*"}]}
# A complement of planned pod selectors with more terms than this is not written (noted).
MAX_COMPLEMENT_TERMS = 32
# The CRD's pattern for toFQDNs matchName.
_MATCH_NAME = re.compile(r"^([-a-zA-Z0-9_]+[.]?)+$")
_PORT_PROTOCOLS = {Transport.TCP, Transport.UDP, Transport.SCTP}
_ICMP_FAMILY = {Transport.ICMP: "IPv4", Transport.ICMPV6: "IPv6"}

# Cilium's default identity label filter (pkg/labelsfilter/filter.go, defaultLabelPrefixCfg;
# policy-semantics.md §4.2): a key is left out of identities when an ignore prefix matches at its
# start, unless a longer include prefix does. Kept separate from the evaluator's copy on purpose:
# the evaluator is the oracle this dialect's output is checked against.
_IDENTITY_INCLUDE = ("io.kubernetes.pod.namespace", "io.cilium.k8s.namespace.labels",
                     "app.kubernetes.io", "io.cilium.k8s.policy.cluster")
_IDENTITY_IGNORE = ("io.kubernetes", "kubernetes.io", "statefulset.kubernetes.io/pod-name",
                    "apps.kubernetes.io/pod-index", "batch.kubernetes.io/job-completion-index",
                    "k8s.io", "pod-template-generation", "pod-template-hash",
                    "controller-revision-hash", "annotation", "etcd_node")


def in_identity(key: str) -> bool:
    """Whether Cilium's default label filter keeps a pod label key in the pod's identity.

    >>> in_identity("app"), in_identity("app.kubernetes.io/name"), in_identity("pod-template-hash")
    (True, True, False)
    >>> in_identity("node.kubernetes.io/instance-type"), in_identity("kubernetes.io/os")
    (True, False)
    """
    ignored = [len(p) for p in _IDENTITY_IGNORE if key.startswith(p)]
    # `.*beta\.kubernetes\.io` matches from the start of any key that contains it.
    if "beta.kubernetes.io" in key:
        ignored.append(key.index("beta.kubernetes.io") + len("beta.kubernetes.io"))
    if not ignored:
        return True
    included = max((len(p) for p in _IDENTITY_INCLUDE if key.startswith(p)), default=0)
    return included > min(ignored)


def _selector(labels: Iterable[tuple[str, str]], namespace: str | None = None
              ) -> dict[str, Any]:
    match: dict[str, str] = {}
    if namespace is not None:
        match[NAMESPACE_KEY] = namespace
    for key, value in sorted(labels):
        match[f"k8s:{key}"] = value
    return {"matchLabels": match} if match else {}


class Cilium(Dialect):
    """Cilium v2 network policies."""

    def __init__(self, *, best_effort: bool = False, staged: bool = False):
        super().__init__(name="cilium", best_effort=best_effort, staged=staged)
        self._node_policies: set[str] = set()
        self._fqdn_policies: set[str] = set()
        self._apiserver_policies: set[str] = set()
        self._resolver_policies: set[str] = set()
        self._range_policies: set[str] = set()
        self._checked: set[tuple[str, str]] = set()

    def generate(self, policy_set: PolicySet) -> dict[str, list[Manifest]]:
        self._node_policies, self._fqdn_policies = set(), set()
        self._apiserver_policies, self._resolver_policies = set(), set()
        self._range_policies, self._checked = set(), set()
        if self.staged:
            self.note("--staged applies to Calico only; Cilium policies have no staged form "
                      "(use policy audit mode on the agent)")
        files: dict[str, list[Manifest]] = {}
        for guard in policy_set.guardrails:
            manifest = self.guardrail(guard)
            if manifest is not None:
                self.put_file(files, f"{CLUSTERWIDE_DIR}/{manifest['metadata']['name']}.yaml",
                          manifest)
        for policy in policy_set.policies:
            manifest = self.policy(policy)
            folder = CLUSTERWIDE_DIR if policy.namespace is None else policy.namespace
            self.put_file(files, f"{folder}/{manifest['metadata']['name']}.yaml", manifest)
        if self._node_policies:
            self.note("node addresses are written as CIDRs, which Cilium matches against nodes "
                      "only with policy-cidr-match-mode: nodes (a pod's own node is always "
                      "allowed in; the host/remote-node entities would allow every node): "
                      + ", ".join(sorted(self._node_policies)))
        if self._fqdn_policies:
            self.note("external peers known by DNS name are allowed by name (toFQDNs: the "
                      "addresses the name resolves to for the pod, learned by the DNS proxy, "
                      "in place of the observed addresses), with a DNS-proxy rule on port 53: "
                      + ", ".join(sorted(self._fqdn_policies)))
        if self._apiserver_policies:
            self.note("the API server is allowed as the kube-apiserver entity (every API server "
                      "endpoint, whichever address was observed); ingress from it may not work "
                      "on managed control planes that tunnel to nodes: "
                      + ", ".join(sorted(self._apiserver_policies)))
        if self._range_policies:
            self.note("port ranges (endPort) need Cilium 1.16 or later; older agents accept "
                      "them and open only the first port (policy-semantics.md tricky case 20): "
                      + ", ".join(sorted(self._range_policies)))
        if self._resolver_policies:
            self.note("resolver addresses (NodeLocal DNSCache, cloud resolvers) are written as "
                      "CIDRs, which match only addresses outside the cluster; where NodeLocal "
                      "DNSCache runs behind a Cilium Local Redirect Policy, its node-local-dns "
                      "pods answer instead and must be allowed by selector: "
                      + ", ".join(sorted(self._resolver_policies)))
        return files

    # ----------------------------------------------------------------------------------------
    # Allow policies

    def policy(self, policy: Policy) -> Manifest:
        ident = f"{policy.namespace}/{policy.name}" if policy.namespace else policy.name
        if not policy.directions:
            self.unsupported(f"{ident}: a policy that restricts no direction (Cilium rejects a "
                             "rule without entries)")
        fqdn = (policy.egress is not None and any(
            self._fqdn_peer(p) for r in policy.egress for p in r.peers)
            and any(self._has_dns_port(r) for r in policy.egress))
        body: dict[str, Any] = {}
        evidence: list[str] = []
        for direction, rules in (("ingress", policy.ingress), ("egress", policy.egress)):
            if rules is None:
                continue
            emitted, sources = self.rules(ident, direction, rules, fqdn=fqdn)
            # An enforced direction with no allowance: one rule that matches nothing (§4.4).
            body[direction] = emitted or [{}]
            evidence += evidence_lines(tuple(sources), direction)
        annotations = policy_annotations(policy)
        if evidence:
            annotations["segmenter.io/evidence"] = "\n".join(evidence) + "\n"
        deny = {d.value.lower(): True for d in policy.directions}
        metadata: dict[str, Any] = {"name": policy.name}
        if policy.namespace is not None:
            metadata["namespace"] = policy.namespace
        metadata["labels"] = dict(MANAGED_BY)
        metadata["annotations"] = annotations
        if policy.namespace is None:
            if not policy.members:
                self.unsupported(f"{ident}: a cluster-wide policy without members would select "
                                 "every endpoint of the cluster")
            specs = [{"endpointSelector": self.subject(ident, m.pods.labels.items, m.namespace),
                      "enableDefaultDeny": deny, **body} for m in policy.members]
            spec_key, spec_value = ("spec", specs[0]) if len(specs) == 1 else ("specs", specs)
            return {"apiVersion": API_VERSION, "kind": "CiliumClusterwideNetworkPolicy",
                    "metadata": metadata, spec_key: spec_value}
        spec = {"endpointSelector": self.subject(ident, policy.target.labels.items, None),
                "enableDefaultDeny": deny, **body}
        return {"apiVersion": API_VERSION, "kind": "CiliumNetworkPolicy", "metadata": metadata,
                "spec": spec}

    def subject(self, ident: str, labels: Iterable[tuple[str, str]],
                namespace: str | None) -> dict[str, Any]:
        labels = tuple(labels)
        self._check_keys(ident, labels)
        # A CNP's subject is pinned to its namespace by Cilium (§4.1); a CCNP's is written.
        return _selector(labels, namespace)

    def _check_keys(self, ident: str, labels: Iterable[tuple[str, str]]) -> None:
        for key, _ in labels:
            if (ident, key) in self._checked:
                continue
            self._checked.add((ident, key))
            if not in_identity(key):
                self.unsupported(f"{ident}: label {key} is left out of Cilium identities by the "
                                 "default label filter; a selector on it matches nothing")

    def rules(self, ident: str, direction: str, rules: Sequence[Rule], *, fqdn: bool
              ) -> tuple[list[dict[str, Any]], list[Rule]]:
        """The Cilium rules of one direction, and the IR rule each one came from."""
        out: list[dict[str, Any]] = []
        sources: list[Rule] = []
        seen: set[str] = set()
        for rule in rules:
            if rule.action is not Action.ALLOW:
                self.unsupported(f"{ident}: {direction} {rule.action} rule (Cilium has no "
                                 "ordered rules; a deny would override every allow)")
                continue
            l4 = self.l4(ident, rule.ports, dns_proxy=fqdn and direction == "egress")
            if rule.ports and not l4:
                # Every port of the rule was dropped (reported); without L4 the rule would
                # allow every port, so it is left out whole.
                continue
            for l3 in self.l3(ident, direction, rule.peers, fqdn=fqdn):
                for part in l4 or [{}]:
                    item = {**l3, **part}
                    key = repr(item)
                    if key not in seen:
                        seen.add(key)
                        out.append(item)
                        sources.append(rule)
        return out, sources

    def l3(self, ident: str, direction: str, peers: Sequence[Peer], *, fqdn: bool
           ) -> list[dict[str, Any]]:
        """One dict per L3 peer kind (Cilium allows one kind per rule, §4.5)."""
        side = "from" if direction == "ingress" else "to"
        if not peers:
            # Any peer. A rule with no L3 field and no ports matches nothing, so say `all`.
            return [{f"{side}Entities": ["all"]}]
        endpoints: list[dict[str, Any]] = []
        cidrs: list[dict[str, Any]] = []
        names: list[str] = []
        entities: list[str] = []
        for peer in peers:
            if isinstance(peer, PodPeer):
                self._check_keys(ident, peer.pods.labels.items)
                selector = _selector(peer.pods.labels.items, peer.namespace)
                if selector not in endpoints:
                    endpoints.append(selector)
                continue
            assert isinstance(peer, CidrPeer)
            if peer.role is CidrRole.APISERVER:
                self._apiserver_policies.add(ident)
                if "kube-apiserver" not in entities:
                    entities.append("kube-apiserver")
                continue
            if fqdn and direction == "egress" and self._fqdn_peer(peer):
                self._fqdn_policies.add(ident)
                names.extend(n for n in peer.dns_names if n not in names)
                continue
            if peer.role is CidrRole.NODE:
                self._node_policies.add(ident)
            if peer.role is CidrRole.DNS:
                self._resolver_policies.add(ident)
            item: dict[str, Any] = {"cidr": peer.cidr}
            if peer.excepts:
                item["except"] = list(peer.excepts)
            if item not in cidrs:
                cidrs.append(item)
        if {"cidr": "0.0.0.0/0"} in cidrs and {"cidr": "::/0"} in cidrs:
            # Both whole address families are the world entity (entity.go, #29958), which keeps
            # meaning "outside the cluster" whatever policy-cidr-match-mode says.
            cidrs = [c for c in cidrs if c not in ({"cidr": "0.0.0.0/0"}, {"cidr": "::/0"})]
            entities.append("world")
        out: list[dict[str, Any]] = []
        if endpoints:
            out.append({f"{side}Endpoints": endpoints})
        if entities:
            out.append({f"{side}Entities": entities})
        if cidrs:
            out.append({f"{side}CIDRSet": cidrs})
        if names:
            out.append({"toFQDNs": [{"matchName": n} for n in sorted(names)]})
        return out

    @staticmethod
    def _fqdn_peer(peer: Peer) -> bool:
        return (isinstance(peer, CidrPeer) and peer.role is CidrRole.EXTERNAL
                and not peer.excepts and bool(peer.dns_names)
                and all(_MATCH_NAME.fullmatch(n) and len(n) <= 255 for n in peer.dns_names))

    @staticmethod
    def _has_dns_port(rule: Rule) -> bool:
        return rule.action is Action.ALLOW and any(
            p.transport in (Transport.UDP, Transport.TCP) and p.port == DNS_PORT
            and p.end_port in (None, DNS_PORT) for p in rule.ports)

    def l4(self, ident: str, ports: Sequence[Port], *, dns_proxy: bool
           ) -> list[dict[str, Any]]:
        """``toPorts`` and ``icmps`` parts: ICMP needs a rule without toPorts (§4.6)."""
        dns: list[dict[str, Any]] = []
        plain: list[dict[str, Any]] = []
        icmp: list[dict[str, Any]] = []
        for port in ports:
            if port.transport in _ICMP_FAMILY:
                if port.port is None:
                    self.unsupported(f"{ident}: every {port.transport} type (Cilium matches ICMP "
                                     "by type only)")
                    continue
                icmp.append({"family": _ICMP_FAMILY[port.transport], "type": port.port})
                continue
            if port.transport not in _PORT_PROTOCOLS:
                self.unsupported(f"{ident}: {port.transport} cannot be allowed by Cilium")
                continue
            entry: dict[str, Any] = {"port": str(port.port if port.port is not None else 0)}
            if port.port is not None and port.end_port not in (None, port.port):
                entry["endPort"] = port.end_port
            entry["protocol"] = port.transport.value
            single_dns = port.port == DNS_PORT and port.end_port in (None, DNS_PORT)
            (dns if dns_proxy and single_dns and port.transport is not Transport.SCTP
             else plain).append(entry)
        if any("endPort" in e for e in plain):
            self._range_policies.add(ident)
        out: list[dict[str, Any]] = []
        to_ports: list[dict[str, Any]] = []
        if dns:
            to_ports.append({"ports": _any_protocol(dns), "rules": DNS_PROXY_RULES})
        plain = _any_protocol(plain)
        to_ports += [{"ports": plain[i:i + MAX_PORTS]} for i in range(0, len(plain), MAX_PORTS)]
        if to_ports:
            out.append({"toPorts": to_ports})
        out += [{"icmps": [{"fields": icmp[i:i + MAX_ICMP_FIELDS]}]}
                for i in range(0, len(icmp), MAX_ICMP_FIELDS)]
        return out

    # ----------------------------------------------------------------------------------------
    # Guardrails

    def guardrail(self, guard: Policy) -> Manifest | None:
        """Deny rules for the peers with no planned flow to or from a restricted workload."""
        name = f"{guard.tier}.{guard.name}" if guard.tier else guard.name
        if guard.namespace is not None or not guard.members:
            self.unsupported(f"guardrail {guard.name}: expected a cluster-wide policy with "
                             "members")
            return None
        body: dict[str, Any] = {}
        gaps: list[str] = []
        for direction, rules in (("ingress", guard.ingress), ("egress", guard.egress)):
            if rules is None:
                continue
            planned = self._planned_peers(guard.name, direction, rules)
            if planned is None:
                return None
            if planned == "every peer":
                continue  # every peer has a planned flow on some port: nothing to deny by peer
            entries, missing = self.complement(guard.name, direction, planned)
            gaps += missing
            if entries:
                body[f"{direction}Deny"] = entries
        self.note(f"zone guardrail {name}: Cilium has no tiers, Pass or Log and a deny overrides "
                  "every allow, so it denies only the peers with no planned flow with the zone; "
                  "planned peers on unplanned ports, pods of other clusters and the host, "
                  "ingress, health, init and unmanaged identities"
                  + "".join(f", {g}" for g in gaps)
                  + " are denied by the per-workload default deny alone; Hubble records every "
                  "policy drop")
        if not body:
            return None
        for member in guard.members:
            self._check_keys(guard.name, member.pods.labels.items)
        specs = [{"endpointSelector": _selector(m.pods.labels.items, m.namespace),
                  # The guardrail only denies: the per-workload policies set the posture.
                  "enableDefaultDeny": {"ingress": False, "egress": False}, **body}
                 for m in guard.members]
        annotations = policy_annotations(guard)
        # The IR's description speaks of Pass and Log, which Cilium lacks: say what this does.
        members = "; ".join(
            f"{m.namespace}/" + (",".join(f"{k}={v}" for k, v in m.pods.labels.items) or "*")
            for m in guard.members)
        annotations["segmenter.io/description"] = (
            f"Zone boundary ({guard.zone or 'restricted'}) of the pods {members}: denies every "
            "peer with no planned flow with them, whatever other policies allow")
        spec_key, spec_value = ("spec", specs[0]) if len(specs) == 1 else ("specs", specs)
        return {"apiVersion": API_VERSION, "kind": "CiliumClusterwideNetworkPolicy",
                "metadata": {"name": name, "labels": dict(MANAGED_BY),
                             "annotations": annotations},
                spec_key: spec_value}

    def _planned_peers(self, guard: str, direction: str, rules: Sequence[Rule]
                       ) -> list[Peer] | Literal["every peer"] | None:
        """The peers of the guardrail's Pass rules, ``"every peer"`` when one passes any peer;
        None (reported) for another shape than Pass rules followed by Log/Deny catch-alls."""
        planned: list[Peer] = []
        every = False
        tail = False
        for rule in rules:
            if rule.action is Action.PASS and not tail:
                every = every or not rule.peers
                planned += [p for p in rule.peers if p not in planned]
                continue
            tail = True
            if rule.action in (Action.LOG, Action.DENY) and not rule.peers and not rule.ports:
                continue
            self.unsupported(f"guardrail {guard}: {direction} {rule.action} rule is not a "
                             "Pass of planned traffic nor a final Log/Deny of everything else")
            return None
        if not rules or rules[-1].action is not Action.DENY:
            self.unsupported(f"guardrail {guard}: {direction} does not end with a Deny of "
                             "everything else")
            return None
        return "every peer" if every else planned

    def complement(self, guard: str, direction: str, planned: Sequence[Peer]
                   ) -> tuple[list[dict[str, Any]], list[str]]:
        """Deny entries for every peer outside ``planned``, and what could not be covered."""
        side = "from" if direction == "ingress" else "to"
        pods: dict[str, list[tuple[tuple[str, str], ...]]] = {}
        roles = set()
        for peer in planned:
            if isinstance(peer, PodPeer):
                pods.setdefault(peer.namespace, []).append(peer.pods.labels.items)
            else:
                assert isinstance(peer, CidrPeer)
                roles.add(peer.role)
        gaps: list[str] = []
        # Pods of namespaces with no planned peer. The explicit Exists keeps the term positive:
        # a selector of only negative namespace terms may select reserved identities (#46949).
        others: list[dict[str, Any]] = [{"key": NAMESPACE_KEY, "operator": "Exists"}]
        if pods:
            others.append({"key": NAMESPACE_KEY, "operator": "NotIn", "values": sorted(pods)})
        selectors: list[dict[str, Any]] = [{"matchExpressions": others}]
        for namespace in sorted(pods):
            terms = _complement_terms(pods[namespace])
            if terms is None:
                gaps.append(f"pods of {namespace} outside the planned selectors ({direction}: "
                            f"more than {MAX_COMPLEMENT_TERMS} selector terms)")
                continue
            for term in terms:
                selectors.append({
                    "matchLabels": {NAMESPACE_KEY: namespace},
                    "matchExpressions": [{"key": f"k8s:{k}", "operator": "NotIn",
                                          "values": sorted(vs)} for k, vs in term],
                })
        entries: list[dict[str, Any]] = [{f"{side}Endpoints": selectors}]
        entities = []
        # The kube-apiserver identity also carries remote-node (a remote node serving it) or
        # world (outside the cluster): keep both when it is planned.
        if not roles & {CidrRole.NODE, CidrRole.APISERVER}:
            entities.append("remote-node")
        else:
            gaps.append(f"other nodes ({direction})")
        if not roles & {CidrRole.EXTERNAL, CidrRole.DNS, CidrRole.APISERVER, CidrRole.INTERNET}:
            entities.append("world")
        else:
            gaps.append(f"unplanned addresses outside the cluster ({direction})")
        if entities:
            entries.append({f"{side}Entities": entities})
        return entries, gaps


def _any_protocol(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One ``ANY`` entry for a port listed for each of TCP, UDP and SCTP (exactly what ``ANY``
    covers, §4.6), in the order of first appearance.

    >>> _any_protocol([{"port": "53", "protocol": p} for p in ("TCP", "UDP", "SCTP")])
    [{'port': '53', 'protocol': 'ANY'}]
    """
    protocols: dict[tuple[str, int | None], set[str]] = {}
    for entry in entries:
        protocols.setdefault((entry["port"], entry.get("endPort")), set()).add(entry["protocol"])
    out: list[dict[str, Any]] = []
    done: set[tuple[str, int | None]] = set()
    for entry in entries:
        key = (entry["port"], entry.get("endPort"))
        if protocols[key] >= {"TCP", "UDP", "SCTP"}:
            if key not in done:
                done.add(key)
                out.append({**{k: v for k, v in entry.items() if k != "protocol"},
                            "protocol": "ANY"})
            continue
        out.append(entry)
    return out


def _complement_terms(selectors: Sequence[tuple[tuple[str, str], ...]]
                      ) -> list[tuple[tuple[str, frozenset[str]], ...]] | None:
    """Pods of one namespace matching none of ``selectors`` (equality label sets), as a union
    of terms, each a conjunction of ``key NotIn values``: not (L1 or L2 ...) is, by De Morgan,
    the product of the negated literals of each Li. Empty when a selector selects every pod;
    None when there would be more than ``MAX_COMPLEMENT_TERMS`` terms.

    >>> [[(k, sorted(v)) for k, v in t] for t in _complement_terms([(("app", "api"),),
    ...                                                                 (("app", "batch"),)])]
    [[('app', ['api', 'batch'])]]
    >>> len(_complement_terms([(("app", "a"), ("tier", "x")), (("app", "b"),)]))
    2
    """
    if any(not s for s in selectors):
        return []
    count = 1
    for s in selectors:
        count *= len(s)
        if count > MAX_COMPLEMENT_TERMS * 8:
            return None
    terms: set[tuple[tuple[str, frozenset[str]], ...]] = set()
    for choice in product(*selectors):
        merged: dict[str, set[str]] = {}
        for key, value in choice:
            merged.setdefault(key, set()).add(value)
        terms.add(tuple(sorted((k, frozenset(v)) for k, v in merged.items())))
    # Drop a term that implies another (it selects a subset of it).
    def implies(a: tuple[tuple[str, frozenset[str]], ...],
                b: tuple[tuple[str, frozenset[str]], ...]) -> bool:
        held = dict(a)
        return all(k in held and v <= held[k] for k, v in b)

    kept = sorted((t for t in terms
                   if not any(o != t and implies(t, o) for o in terms)),
                  key=lambda t: [(k, sorted(v)) for k, v in t])
    return kept if len(kept) <= MAX_COMPLEMENT_TERMS else None


__all__ = ["Cilium", "in_identity"]
