"""The policy engine: "is this connection allowed, and which policy and rule decided?".

One loop, Calico's tier algorithm (policy-semantics.md §3.4), evaluates every enforcement mode:

* ``kubernetes``: only ``networking.k8s.io/v1`` NetworkPolicy counts. Every policy sits in one
  tier of Allow rules, which is exactly the reference algorithm of §1.9: a pod that no policy
  selects for a direction is not isolated; an isolated pod needs some rule of some selecting
  policy to allow.
* ``calico``: Kubernetes policies become tier ``default`` order-1000 policies (§3.5), and the
  ``projectcalico.org/v3`` kinds join them: tiers sorted by order (missing last) then name,
  policies by order then name, rules in order; Log continues, Allow/Deny are final, Pass jumps to
  the next tier; a tier with no policy selecting the endpoint is skipped; the end of a tier applies
  its ``defaultAction``; after the last tier the pod's namespace profile allows.
* ``cilium``: ``cilium.io/v2`` CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy, and
  Kubernetes policies as Cilium translates them (§4.8): deny entries in a tier of their own ahead
  of the allows, so a deny wins over every allow (§4.4); see :mod:`.cilium`.
* ``clusternetworkpolicy``: NetworkPolicies as under ``kubernetes``, with
  ``policy.networking.k8s.io/v1alpha2`` ClusterNetworkPolicies in a Pass-ending tier before them
  (``Admin``) and one after them (``Baseline``): the reference algorithm of §2.7 (see
  :mod:`segmenter.evaluate.clusternetworkpolicy`). No rule matching anywhere: allowed.

All: a connection needs egress at the source and ingress at the destination; only the initiating
direction is evaluated (replies of allowed connections are implicit); a pod always reaches itself;
ingress from the destination pod's own node (a non-pod endpoint or hostNetwork pod on that node) is
always allowed (§1.2; Calico behaves the same: a deny-all does not stop a pod's own host, as its
maintainers confirm in projectcalico/calico#1683, #2797, #4469); endpoints that are not
pod-network pods are not governed by policy (no host endpoints are modelled).

Speed: policies are indexed per tier by namespace; the policies that apply to a pod are cached by
(namespace, labels, service account); verdicts are cached by endpoint *class* (namespace, labels,
hostNetwork, service account, container ports, and which of the engine's CIDRs hold the IP), so a
million flows between a few thousand workloads cost a few thousand real evaluations.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from segmenter.evaluate.calico import (
    STAGED_KINDS,
    compile_calico_policy,
    compile_netset,
    compile_tier,
)
from segmenter.evaluate.cilium import (
    CILIUM_GROUP,
    CILIUM_TIERS,
    NotEvaluated,
    cilium_labels,
    compile_cilium_policy,
    compile_knp_for_cilium,
    dns_visibility,
)
from segmenter.evaluate.clusternetworkpolicy import (
    CNP_KIND,
    compile_cluster_network_policy,
    evaluation_warnings,
)
from segmenter.evaluate.core import (
    BUILTIN_TIERS,
    CALICO_NAME,
    CALICO_NAMESPACE,
    CALICO_ORCHESTRATOR,
    CALICO_SERVICE_ACCOUNT,
    EMPTY,
    K8S_NAMESPACE_NAME,
    CalicoRule,
    CiliumRule,
    CnpRule,
    CompiledPolicy,
    Identity,
    IPBlockPeer,
    K8sRule,
    NetSet,
    Subject,
    Tier,
    ip_in,
)
from segmenter.evaluate.kubernetes import PolicyCompileError, compile_k8s_policy
from segmenter.evaluate.model import (
    Action,
    Decision,
    Direction,
    EvalEndpoint,
    IPNetwork,
    Verdict,
    parse_ip,
)
from segmenter.evaluate.validate import describe_manifest, is_warning, validate_manifest
from segmenter.model import Labels, Transport

__all__ = ["ENFORCEMENTS", "PolicyEngine"]

logger = logging.getLogger(__name__)

ENFORCEMENTS = ("kubernetes", "calico", "cilium", "clusternetworkpolicy")

_CALICO_GROUPS = ("projectcalico.org", "crd.projectcalico.org")
_ADMIN_GROUP = "policy.networking.k8s.io"
_CACHE_LIMIT = 1_000_000
_ENDPOINT_CACHE_LIMIT = 200_000

SELF_DECISION = Decision(True, None, None, "a pod can always reach itself")
SELF_VERDICT = Verdict(True, SELF_DECISION, SELF_DECISION)
NODE_DECISION = Decision(True, None, None, "from the pod's own node: always allowed")


def _label_dict(labels: Labels | Mapping[str, str]) -> dict[str, str]:
    if isinstance(labels, Labels):
        return dict(labels.items)
    return {str(k): str(v) for k, v in labels.items()}


def _api_group(doc: Mapping[str, Any]) -> str:
    api = str(doc.get("apiVersion") or "")
    return api.split("/", 1)[0] if "/" in api else ""


def _looks_calico(doc: Mapping[str, Any]) -> bool:
    """For a ``NetworkPolicy`` without ``apiVersion``: Calico-shaped spec or not."""
    spec = doc.get("spec") or {}
    return isinstance(spec, Mapping) and any(
        k in spec for k in ("selector", "order", "tier", "types")
    ) and "podSelector" not in spec


class PolicyEngine:
    """Evaluates connections against Kubernetes NetworkPolicy and, optionally, Calico or
    Cilium policy.

    Args:
        namespaces: labels of each namespace (``kubernetes.io/metadata.name`` is always added, and
            ``projectcalico.org/name`` under Calico). ``Namespace`` manifests given to
            :meth:`add_manifest` fill in namespaces not listed here.
        enforcement: ``"kubernetes"``, ``"calico"``, ``"cilium"`` or ``"clusternetworkpolicy"``
            (see the module docstring).
        ipblock_matches_pods: [I] (policy-semantics.md §1.5, case 17) whether a Kubernetes
            ``ipBlock`` also matches pod IPs. True is Calico's behaviour and the upstream e2e
            suite's expectation; False is Cilium's (CIDR rules never select in-cluster pods).
            Calico enforcement always matches pod IPs; Cilium enforcement never does.
        skip_invalid: leave out manifests that :func:`validate_manifest` finds errors in (the
            API server would have rejected them); they are listed in :attr:`rejected`.
        cache: index and cache (the default). ``False`` evaluates every flow from scratch
            against every policy: the naive baseline of ``benchmarks/verify.py``.

    Attributes:
        ignored: policy-like manifests that this enforcement does not evaluate, with why.
        staged: Calico staged policies (recorded, never enforced).
        rejected: manifests left out because they are invalid, with the problems.
        warnings: problems that do not stop a manifest from being evaluated.
        policies: the compiled policies in evaluation order.
    """

    def __init__(
        self,
        *,
        namespaces: Mapping[str, Labels] | Mapping[str, Mapping[str, str]] | None = None,
        enforcement: str = "kubernetes",
        ipblock_matches_pods: bool = True,
        skip_invalid: bool = True,
        cache: bool = True,
    ):
        if enforcement not in ENFORCEMENTS:
            raise ValueError(f"enforcement must be one of {', '.join(ENFORCEMENTS)}, "
                             f"not {enforcement!r}")
        self.enforcement = enforcement
        self.ipblock_matches_pods = ipblock_matches_pods
        self.skip_invalid = skip_invalid
        self.cache = cache
        self.ignored: list[str] = []
        self.staged: list[str] = []
        self.warnings: list[str] = []
        self._rejected: list[str] = []
        self._tier_rejected: list[str] = []
        self._policies: list[CompiledPolicy] = []
        self._compiled: list[CompiledPolicy] = []
        self._tier_defs: dict[str, Tier] = {}
        self._netsets: list[NetSet] = []
        self._explicit_ns: dict[str, dict[str, str]] = {
            str(ns): _label_dict(labels) for ns, labels in (namespaces or {}).items()
        }
        self._doc_ns: dict[str, dict[str, str]] = {}
        self._dirty = True
        self._tiers: list[Tier] = []
        if enforcement == "cilium":
            self._tier_defs.update((t.name, t) for t in CILIUM_TIERS)
        self._reset_caches()

    @property
    def calico(self) -> bool:
        return self.enforcement == "calico"

    @property
    def admin_policies(self) -> bool:
        """Whether ClusterNetworkPolicy objects are enforced (§2)."""
        return self.enforcement == "clusternetworkpolicy"

    @property
    def rejected(self) -> list[str]:
        """Manifests left out as invalid, and policies naming a tier that does not exist."""
        self._prepare()
        return [*self._rejected, *self._tier_rejected]

    @property
    def policies(self) -> list[CompiledPolicy]:
        """The compiled policies in evaluation order (tiers, then order and name)."""
        self._prepare()
        return list(self._policies)

    @classmethod
    def from_manifests(
        cls,
        manifests: Iterable[Mapping[str, Any]],
        *,
        namespaces: Mapping[str, Labels] | Mapping[str, Mapping[str, str]],
        enforcement: str = "kubernetes",
        ipblock_matches_pods: bool = True,
        skip_invalid: bool = True,
        cache: bool = True,
    ) -> PolicyEngine:
        """Build an engine from parsed manifests (any kinds; non-policy kinds are skipped).

        Examples:
            >>> deny = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            ...         "metadata": {"name": "deny", "namespace": "shop"},
            ...         "spec": {"podSelector": {}}}
            >>> engine = PolicyEngine.from_manifests([deny], namespaces={})
            >>> web = EvalEndpoint("10.0.0.1", "shop", Labels.of({"app": "web"}))
            >>> db = EvalEndpoint("10.0.0.2", "shop", Labels.of({"app": "db"}))
            >>> v = engine.check(web, db, Transport.TCP, 5432)
            >>> v.allowed, v.egress.reason, v.ingress.policy
            (False, 'not isolated for egress', 'networking.k8s.io/NetworkPolicy shop/deny')
        """
        engine = cls(
            namespaces=namespaces,
            enforcement=enforcement,
            ipblock_matches_pods=ipblock_matches_pods,
            skip_invalid=skip_invalid,
            cache=cache,
        )
        for doc in manifests:
            engine.add_manifest(doc)
        engine._prepare()
        return engine

    # ----------------------------------------------------------------------------------------
    # Loading

    def add_manifest(self, doc: Mapping[str, Any]) -> None:
        """Take one manifest into account (policies, tiers, network sets, namespaces)."""
        if not isinstance(doc, Mapping):
            raise TypeError("a manifest must be a mapping")
        kind = str(doc.get("kind") or "")
        group = _api_group(doc)
        ident = describe_manifest(doc)
        self._dirty = True
        if kind == "Namespace" and group == "":
            meta = doc.get("metadata") or {}
            name = str(meta.get("name") or "")
            if name:
                self._doc_ns[name] = {str(k): str(v) for k, v in
                                      (meta.get("labels") or {}).items()}
            return
        if kind == "NetworkPolicy" and (
            doc.get("apiVersion") == "networking.k8s.io/v1"
            or (group == "" and not _looks_calico(doc))
        ):
            if self.enforcement == "cilium":
                if self._admit(doc, ident):
                    self._compile_cilium(ident, lambda: compile_knp_for_cilium(doc))
                return
            if self._admit(doc, ident):
                self._compile(ident, lambda: compile_k8s_policy(
                    doc, ipblock_matches_pods=self.ipblock_matches_pods, calico=self.calico))
            return
        if group == CILIUM_GROUP:
            if self.enforcement != "cilium":
                self.ignored.append(f"{ident}: Cilium objects are not enforced under "
                                    f"{self.enforcement} enforcement")
            elif kind in ("CiliumNetworkPolicy", "CiliumClusterwideNetworkPolicy"):
                self._compile_cilium(ident, lambda: compile_cilium_policy(doc))
            else:
                self.ignored.append(f"{ident}: kind {kind} is not evaluated")
            return
        if group in _CALICO_GROUPS or (group == "" and kind == "NetworkPolicy"):
            self._add_calico(doc, kind, group, ident)
            return
        if kind == "NetworkPolicy" and group in ("extensions", "networking.k8s.io"):
            self.ignored.append(f"{ident}: apiVersion {doc.get('apiVersion')} is no longer "
                                f"served; use networking.k8s.io/v1")
            return
        if group == _ADMIN_GROUP and kind == CNP_KIND and self.admin_policies:
            if self._admit(doc, ident):
                self.warnings.extend(f"{ident}: {w}" for w in evaluation_warnings(doc))
                self._compile(ident, lambda: compile_cluster_network_policy(doc))
            return
        if group == _ADMIN_GROUP:
            self.ignored.append(f"{ident}: the admin network policy APIs are not evaluated")
            return
        if kind.endswith("Policy"):
            self.ignored.append(f"{ident}: kind {kind} is not evaluated")
            return
        logger.debug("skipping %s: not a policy object", ident)

    def _add_calico(self, doc: Mapping[str, Any], kind: str, group: str, ident: str) -> None:
        if not self.calico:
            self.ignored.append(f"{ident}: Calico objects are not enforced under "
                                f"{self.enforcement} enforcement")
            return
        if group == "crd.projectcalico.org":
            self.warnings.append(f"{ident}: crd.projectcalico.org/v1 is Calico's internal "
                                 f"storage; read as projectcalico.org/v3")
        if kind in STAGED_KINDS:
            action = (doc.get("spec") or {}).get("stagedAction") or "Set"
            self.staged.append(f"{ident} (stagedAction {action}): staged, not enforced")
            return
        if not self._admit(doc, ident):
            return
        if kind in ("NetworkPolicy", "GlobalNetworkPolicy"):
            self._compile(ident, lambda: compile_calico_policy(doc))
        elif kind in ("NetworkSet", "GlobalNetworkSet"):
            try:
                self._netsets.append(compile_netset(doc))
            except PolicyCompileError as exc:
                self._rejected.append(f"{ident}: {exc}")
        elif kind == "Tier":
            try:
                tier = compile_tier(doc)
            except PolicyCompileError as exc:
                self._rejected.append(f"{ident}: {exc}")
                return
            self._tier_defs[tier.name] = tier
        else:
            self.ignored.append(f"{ident}: kind {kind} is not evaluated")

    def _admit(self, doc: Mapping[str, Any], ident: str) -> bool:
        problems = validate_manifest(doc)
        errors = [p for p in problems if not is_warning(p)]
        self.warnings.extend(f"{ident}: {p}" for p in problems if is_warning(p))
        if errors and self.skip_invalid:
            self._rejected.append(f"{ident}: " + "; ".join(errors))
            logger.warning("%s is invalid and left out: %s", ident, "; ".join(errors))
            return False
        return True

    def _compile_cilium(self, ident: str, build: Callable[[], list[CompiledPolicy]]) -> None:
        try:
            policies = build()
        except NotEvaluated as exc:
            self.ignored.append(f"{ident}: {exc}")
            return
        except PolicyCompileError as exc:
            self._rejected.append(f"{ident}: {exc}")
            logger.warning("%s cannot be evaluated: %s", ident, exc)
            return
        self._compiled.extend(policies)

    def _compile(self, ident: str, build: Callable[[], CompiledPolicy]) -> None:
        try:
            policy = build()
        except PolicyCompileError as exc:
            self._rejected.append(f"{ident}: {exc}")
            logger.warning("%s cannot be evaluated: %s", ident, exc)
            return
        self._compiled.append(policy)

    # ----------------------------------------------------------------------------------------
    # Preparation: tiers, indexes, caches

    def _reset_caches(self) -> None:
        self._ns_cache: dict[str, Mapping[str, str]] = {}
        self._subjects: dict[EvalEndpoint, Subject] = {}
        self._applicable_cache: dict[tuple[Any, ...], tuple[tuple[Tier,
                                     tuple[CompiledPolicy, ...]], ...]] = {}
        self._candidates: dict[tuple[str, str | None], list[CompiledPolicy]] = {}
        self._verdicts: dict[tuple[Any, ...], Verdict] = {}
        self._decisions: dict[tuple[Any, ...], Decision] = {}
        self._ip_sigs: dict[str, tuple[int, ...]] = {}
        self._ep_ids: dict[int, tuple[EvalEndpoint, int]] = {}
        self._class_ids: dict[tuple[Any, ...], int] = {}

    def _prepare(self) -> None:
        if not self._dirty:
            return
        tiers: dict[str, Tier] = {
            name: Tier(name, order, action) for name, (order, action) in BUILTIN_TIERS.items()
        }
        for t in self._tier_defs.values():
            tiers[t.name] = Tier(t.name, t.order, t.default_action)
        self._tier_rejected = []
        for policy in self._compiled:
            tier = tiers.get(policy.tier)
            if tier is None:
                self._tier_rejected.append(f"{policy.display}: tier {policy.tier!r} does not "
                                           f"exist")
                continue
            tier.policies.append(policy)
        for tier in tiers.values():
            tier.policies.sort(key=CompiledPolicy.sort_key)
        self._tiers = sorted((t for t in tiers.values() if t.policies), key=Tier.sort_key)
        self._policies = [p for t in self._tiers for p in t.policies]
        self._index: dict[str, dict[str | None, list[CompiledPolicy]]] = {}
        for tier in self._tiers:
            by_ns: dict[str | None, list[CompiledPolicy]] = {}
            for p in tier.policies:
                by_ns.setdefault(p.namespace, []).append(p)
            self._index[tier.name] = by_ns
        self._build_cidr_index()
        self._reset_caches()
        self._dirty = False

    def cidr_peers(self) -> list[tuple[str, str, IPNetwork]]:
        """Every CIDR a rule names as a peer (``ipBlock.cidr``, Calico ``nets``, Cilium
        ``toCIDR``/``toCIDRSet.cidr``, ClusterNetworkPolicy ``networks``; not the exceptions
        carved out of one), as (policy, rule, network) with rules named ``egress[0]``; and the
        nets of Calico network sets, as (set, "", network). Sorted."""
        self._prepare()
        found: set[tuple[str, str, IPNetwork]] = set()
        for p in self._policies:
            for rule in (*p.ingress, *p.egress):
                where = f"{rule.direction.value}[{rule.index}]"
                nets: list[IPNetwork] = []
                if isinstance(rule, K8sRule):
                    nets = [peer.cidr for peer in rule.peers if isinstance(peer, IPBlockPeer)]
                elif isinstance(rule, CalicoRule):
                    nets = [*(rule.source.nets or ()), *(rule.destination.nets or ())]
                elif isinstance(rule, CnpRule):
                    nets = list(rule.networks)
                else:
                    nets = [cidr for cidr, _ in rule.cidrs or ()]
                found.update((p.display, where, net) for net in nets)
        for s in self._netsets:
            found.update((s.display, "", net) for net in s.nets)
        return sorted(found, key=lambda f: (f[0], f[1], f[2].version, str(f[2])))

    def _build_cidr_index(self) -> None:
        nets: set[IPNetwork] = set()
        for p in self._policies:
            for rule in (*p.ingress, *p.egress):
                if isinstance(rule, K8sRule):
                    for peer in rule.peers:
                        if isinstance(peer, IPBlockPeer):
                            nets.add(peer.cidr)
                            nets.update(peer.excepts)
                elif isinstance(rule, CalicoRule):
                    for ent in (rule.source, rule.destination):
                        nets.update(ent.nets or ())
                        nets.update(ent.not_nets)
                elif isinstance(rule, CnpRule):
                    nets.update(rule.networks)
                else:
                    nets.update(rule.nets())
        for s in self._netsets:
            nets.update(s.nets)
        tables: dict[int, dict[int, dict[int, int]]] = {4: {}, 6: {}}
        for i, net in enumerate(sorted(nets, key=lambda n: (n.version, str(n)))):
            bits = net.max_prefixlen
            masked = int(net.network_address) >> (bits - net.prefixlen)
            tables[net.version].setdefault(net.prefixlen, {})[masked] = i
        self._cidr_tables = {v: sorted(t.items()) for v, t in tables.items()}
        self._has_cidrs = bool(nets)
        self._nets = tuple(sorted(nets, key=lambda n: (n.version, int(n.network_address),
                                                       n.prefixlen)))

    def networks(self) -> tuple[IPNetwork, ...]:
        """Every CIDR the evaluated policies and network sets name (ipBlocks and their
        excepts, Calico nets and notNets, Cilium CIDRs, ClusterNetworkPolicy networks), sorted:
        where a verdict on an address can change."""
        self._prepare()
        return self._nets

    def _ip_signature(self, ip: str) -> tuple[int, ...]:
        """Which of the engine's CIDRs hold ``ip``: all that policy can tell apart about an IP."""
        if not self._has_cidrs:
            return ()
        sig = self._ip_sigs.get(ip)
        if sig is None:
            addr = parse_ip(ip)
            ids: list[int] = []
            if addr is not None:
                value = int(addr)
                bits = addr.max_prefixlen
                for plen, table in self._cidr_tables[addr.version]:
                    hit = table.get(value >> (bits - plen))
                    if hit is not None:
                        ids.append(hit)
            sig = tuple(ids)
            if len(self._ip_sigs) >= _CACHE_LIMIT:
                self._ip_sigs.clear()
            self._ip_sigs[ip] = sig
        return sig

    def namespace_labels(self, namespace: str) -> Mapping[str, str]:
        """A namespace's labels as selectors see them (automatic labels included)."""
        cached = self._ns_cache.get(namespace)
        if cached is None:
            labels = dict(self._doc_ns.get(namespace, {}))
            labels.update(self._explicit_ns.get(namespace, {}))
            labels[K8S_NAMESPACE_NAME] = namespace
            if self.calico:
                labels[CALICO_NAME] = namespace
            cached = labels
            if self.cache:
                self._ns_cache[namespace] = cached
        return cached

    def _subject(self, ep: EvalEndpoint) -> Subject:
        if self.cache:
            hit = self._subjects.get(ep)
            if hit is not None:
                return hit
        is_pod = ep.is_pod
        ns = ep.namespace if is_pod else None
        pod_labels = dict(ep.labels.items)
        ns_labels = self.namespace_labels(ns) if ns is not None else EMPTY
        labels: Mapping[str, str] = pod_labels
        sa = ep.service_account or "default"
        ip = parse_ip(ep.ip)
        identities: list[Identity] = []
        if is_pod:
            if self.calico:
                labels = {**pod_labels, CALICO_NAMESPACE: str(ns), CALICO_ORCHESTRATOR: "k8s",
                          CALICO_SERVICE_ACCOUNT: sa}
            elif self.enforcement == "cilium":
                labels = cilium_labels(pod_labels, str(ns), ns_labels, sa)
            identities.append(Identity(labels, ns, ns_labels, sa, {CALICO_NAME: sa}))
        by_domain: list[Identity] = []
        if self.calico and ip is not None:
            for s in self._netsets:
                set_ns = EMPTY if s.namespace is None else self.namespace_labels(s.namespace)
                if any(ip_in(ip, n) for n in s.nets):
                    identities.append(Identity(s.labels, s.namespace, set_ns, None, EMPTY))
                elif not is_pod and any(d.match(name) for name in ep.dns_names
                                        for d in s.domains):
                    # Calico Enterprise learns the name's addresses from DNS answers.
                    by_domain.append(Identity(s.labels, s.namespace, set_ns, None, EMPTY))
        subject = Subject(ep, is_pod, ns, pod_labels, labels, ns_labels, ip, tuple(identities),
                          ep.ports if is_pod else (), domain_identities=tuple(by_domain))
        if is_pod and self.enforcement == "cilium":
            subject.fqdn_visible = dns_visibility(
                p for _, pols in self._applicable(Direction.EGRESS, subject) for p in pols)
        if self.cache:
            if len(self._subjects) >= _CACHE_LIMIT:
                self._subjects.clear()
            self._subjects[ep] = subject
        return subject

    def _applicable(
        self, direction: Direction, subj: Subject
    ) -> tuple[tuple[Tier, tuple[CompiledPolicy, ...]], ...]:
        """Per tier (in order), the policies selecting ``subj`` with ``direction`` in types."""
        key = (direction, subj.namespace, subj.ep.labels, subj.ep.service_account)
        if self.cache:
            hit = self._applicable_cache.get(key)
            if hit is not None:
                return hit
        out = []
        for tier in self._tiers:
            candidates = self._tier_candidates(tier, subj.namespace)
            pols = tuple(p for p in candidates if direction in p.types and p.selects(subj))
            if pols:
                out.append((tier, pols))
        result = tuple(out)
        if self.cache:
            self._applicable_cache[key] = result
        return result

    def _tier_candidates(self, tier: Tier, namespace: str | None) -> list[CompiledPolicy]:
        if not self.cache:
            return tier.policies
        key = (tier.name, namespace)
        hit = self._candidates.get(key)
        if hit is None:
            by_ns = self._index[tier.name]
            own = by_ns.get(namespace, []) if namespace is not None else []
            hit = sorted([*own, *by_ns.get(None, [])], key=CompiledPolicy.sort_key)
            self._candidates[key] = hit
        return hit

    # ----------------------------------------------------------------------------------------
    # Evaluation

    def check(
        self,
        src: EvalEndpoint,
        dst: EvalEndpoint,
        transport: Transport | str,
        port: int | None,
    ) -> Verdict:
        """Is a new connection from ``src`` to ``dst`` on ``transport``/``port`` allowed?

        ``port`` is the destination port as the destination pod sees it (after DNAT: the
        container port, not the Service port). For ICMP it is read as the ICMP type, if given.
        """
        if not isinstance(transport, Transport):
            transport = Transport.parse(transport)
        if self._dirty:
            self._prepare()
        src_pod = src.namespace is not None and not src.host_network
        dst_pod = dst.namespace is not None and not dst.host_network
        if src.ip == dst.ip and (src_pod or dst_pod):
            return SELF_VERDICT
        same_node = dst_pod and not src_pod and src.node is not None and src.node == dst.node
        key: tuple[Any, ...] | None = None
        if self.cache:
            # Cilium tells a node endpoint on the pod's own node (host) from others (remote-node).
            near = self.enforcement == "cilium" and src.node is not None and src.node == dst.node
            key = (self._class_id(src), self._class_id(dst), same_node, near, transport, port)
            hit = self._verdicts.get(key)
            if hit is not None:
                return hit
        s, d = self._subject(src), self._subject(dst)
        egress = self._decide(Direction.EGRESS, s, s, d, proto=transport, port=port)
        ingress = NODE_DECISION if same_node else self._decide(
            Direction.INGRESS, d, s, d, proto=transport, port=port)
        verdict = Verdict(egress.allowed and ingress.allowed, egress, ingress)
        if key is not None:
            if len(self._verdicts) >= _CACHE_LIMIT:
                self._verdicts.clear()
            self._verdicts[key] = verdict
        return verdict

    def decide(
        self,
        direction: Direction | str,
        src: EvalEndpoint,
        dst: EvalEndpoint,
        transport: Transport | str,
        port: int | None,
    ) -> Decision:
        """One side of :meth:`check`: the egress decision at ``src`` or the ingress decision at
        ``dst`` for a new connection from ``src`` to ``dst``, without evaluating the other
        side (what a check of one workload's own controls needs)."""
        if not isinstance(transport, Transport):
            transport = Transport.parse(transport)
        direction = Direction(str(direction).lower())
        if self._dirty:
            self._prepare()
        src_pod = src.namespace is not None and not src.host_network
        dst_pod = dst.namespace is not None and not dst.host_network
        if src.ip == dst.ip and (src_pod or dst_pod):
            return SELF_DECISION
        if direction is Direction.INGRESS and dst_pod and not src_pod and \
                src.node is not None and src.node == dst.node:
            return NODE_DECISION
        key: tuple[Any, ...] | None = None
        if self.cache:
            near = self.enforcement == "cilium" and src.node is not None and src.node == dst.node
            key = (direction, self._class_id(src), self._class_id(dst), near, transport, port)
            hit = self._decisions.get(key)
            if hit is not None:
                return hit
        s, d = self._subject(src), self._subject(dst)
        decision = self._decide(direction, s if direction is Direction.EGRESS else d, s, d,
                                proto=transport, port=port)
        if key is not None:
            if len(self._decisions) >= _CACHE_LIMIT:
                self._decisions.clear()
            self._decisions[key] = decision
        return decision

    def _class_id(self, ep: EvalEndpoint) -> int:
        """A small int naming everything about ``ep`` that policy can tell apart.

        That is the namespace, labels, hostNetwork, service account, container ports and which
        of the engine's CIDRs hold the IP. Looked up by object identity first (the endpoint is
        kept alive by the cache entry, so its id cannot be reused while cached).
        """
        entry = self._ep_ids.get(id(ep))
        if entry is not None and entry[0] is ep:
            return entry[1]
        key = (ep.namespace, ep.host_network, ep.labels, ep.service_account, ep.ports,
               self._ip_signature(ep.ip), ep.node is not None and not ep.is_pod,
               ep.kube_apiserver, ep.dns_names)
        cid = self._class_ids.get(key)
        if cid is None:
            cid = self._class_ids[key] = len(self._class_ids)
        if len(self._ep_ids) >= _ENDPOINT_CACHE_LIMIT:
            self._ep_ids.clear()
        self._ep_ids[id(ep)] = (ep, cid)
        return cid

    def policies_for(self, ep: EvalEndpoint, direction: Direction | str) -> list[str]:
        """The policies that apply to ``ep`` in ``direction``, in evaluation order.

        Empty for an endpoint that is not a pod-network pod, or not isolated in that direction.
        """
        self._prepare()
        subj = self._subject(ep)
        if not subj.is_pod:
            return []
        # dict.fromkeys: a Cilium policy can sit in its deny tier and in an allow tier.
        return list(dict.fromkeys(
            p.display for _, pols in self._applicable(Direction(str(direction).lower()), subj)
            for p in pols))

    def _decide(
        self,
        direction: Direction,
        local: Subject,
        src: Subject,
        dst: Subject,
        *,
        proto: Transport,
        port: int | None,
    ) -> Decision:
        side = "source" if direction is Direction.EGRESS else "destination"
        if not local.is_pod:
            what = "a hostNetwork pod (node traffic)" if local.ep.host_network else "not a pod"
            return Decision(True, None, None,
                            f"{side} is {what}: {direction} is not governed by policy")
        applicable = self._applicable(direction, local)
        if not applicable:
            if self.calico:
                return Decision(True, None, None,
                                f"no policy applies: allowed by profile kns.{local.namespace}")
            return Decision(True, None, None, f"not isolated for {direction}")
        passed: str | None = None
        logged: list[str] = []
        on_way: list[str] = []  # Pass and Log rules that matched
        for tier, pols in applicable:
            outcome: tuple[Action, CompiledPolicy, str] | None = None
            for pol in pols:
                for rule in pol.rules(direction):
                    if not rule.matches(src, dst, proto, port):
                        continue
                    name = rule_name(rule, direction)
                    if rule.action is Action.LOG:
                        logged.append(f"{pol.display} {name}")
                        on_way.append(f"{pol.display} {name}")
                        continue
                    outcome = (rule.action, pol, name)
                    break
                if outcome is not None:
                    break
            note = f"; logged by {', '.join(logged)}" if logged else ""
            if outcome is None:
                if tier.default_action is Action.PASS:
                    passed = f"the end of tier {tier.name} (defaultAction Pass)"
                    continue
                return self._no_match(direction, tier, pols, note, tuple(on_way))
            action, pol, name = outcome
            if action is Action.ALLOW:
                return Decision(True, pol.display, name, f"allowed by rule {name}{note}",
                                tuple(on_way))
            if action is Action.DENY:
                return Decision(False, pol.display, name, f"denied by rule {name}{note}",
                                tuple(on_way))
            passed = f"{pol.display} {name}"
            on_way.append(passed)
        note = f"; logged by {', '.join(logged)}" if logged else ""
        if self.enforcement == "cilium":
            return Decision(True, None, None, f"no deny matched and no selecting rule enables "
                                              f"default deny for {direction}", tuple(on_way))
        default = f"profile kns.{local.namespace}" if self.calico else "the Kubernetes default"
        return Decision(True, None, None, f"passed by {passed}, no later tier decided: allowed "
                                          f"by {default}{note}", tuple(on_way))

    def _no_match(self, direction: Direction, tier: Tier, pols: tuple[CompiledPolicy, ...],
                  note: str, on_way: tuple[str, ...] = ()) -> Decision:
        if not self.calico:
            names = ", ".join(p.display.split(" ", 1)[1] for p in pols[:3])
            more = f" and {len(pols) - 3} more" if len(pols) > 3 else ""
            return Decision(False, pols[0].display, None,
                            f"isolated for {direction} by {names}{more}; no rule allows it",
                            on_way)
        return Decision(False, pols[-1].display, None,
                        f"no rule matched (end of tier {tier.name}){note}", on_way)

    def rules_in_force(self) -> list[tuple[str, str | None]]:
        """Every (policy, rule) in evaluation order, named as decisions name them
        (``ingress[2]``, a Cilium rule's path); (policy, None) for a policy without rules (a
        default deny: it decides by isolating)."""
        out: list[tuple[str, str | None]] = []
        for policy in self.policies:
            names = [rule_name(rule, direction) for direction in (Direction.INGRESS,
                                                                  Direction.EGRESS)
                     for rule in policy.rules(direction)]
            out.extend((policy.display, name) for name in dict.fromkeys(names))
            if not names:
                out.append((policy.display, None))
        return list(dict.fromkeys(out))


def rule_name(rule: Any, direction: Direction) -> str:
    """How decisions name a rule: ``ingress[2]``, or a Cilium rule's path."""
    return rule.path if isinstance(rule, CiliumRule) else f"{direction}[{rule.index}]"
