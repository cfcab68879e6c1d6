"""The fold of Hubble events into connections. :class:`HubbleFold` keeps, per unordered
5-tuple, what all the events of a connection said: which end is the client and how sure that is,
the verdicts, packet estimates per vantage point, the identities of both ends, names, services
and policies; and the DNS answers of the proxy's L7 records. ``capture.sources.hubble`` says
what is read and how client and server are decided; ``capture.sources.hubble_records`` writes
the flow records.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from capture.sources.recordfold import address, dns_name, rfc3339_ns

NAME = "hubble"

# Verdicts (flow.proto ``enum Verdict``). FORWARDED, REDIRECTED (to the L7 proxy), TRACED and
# TRANSLATED all mean the packet went on.
_PASSED = frozenset({"FORWARDED", "REDIRECTED", "TRACED", "TRANSLATED"})

# Reserved identities: labels ``reserved:<name>`` and the numeric identities Cilium reserves for
# them (cilium pkg/identity/numericidentity.go), used when a field mask dropped the labels.
_RESERVED_IDS = {1: "host", 2: "world", 3: "unmanaged", 4: "health", 5: "init",
                 6: "remote-node", 7: "kube-apiserver", 8: "ingress", 9: "world", 10: "world"}
_RESERVED_LABELS = {"world-ipv4": "world", "world-ipv6": "world"}
# One entity an end is, when it has several reserved labels (the host running the API server
# has both ``reserved:host`` and ``reserved:kube-apiserver``): the more specific first.
_ENTITY_ORDER = ("kube-apiserver", "host", "remote-node", "health", "ingress", "init",
                 "unmanaged", "world")
# Labels Cilium derives for its own use, not labels of the pod (cilium pkg/k8s/apis/cilium.io
# const.go: the pod's namespace, its namespace's labels, service account, cluster name).
_META_LABEL_PREFIX = "io.cilium.k8s."
_META_LABELS = frozenset({"io.kubernetes.pod.namespace"})

# Fields few events have (names, services, policies), looked at only when one is there.
_EXTRA_FIELDS = frozenset({"source_names", "destination_names", "source_service",
                           "destination_service", "egress_allowed_by", "ingress_allowed_by",
                           "egress_denied_by", "ingress_denied_by"})
# ICMP types that start an exchange and those that answer one (RFC 792, RFC 4443, RFC 4861).
_ICMP_REQUESTS = {"ICMP": frozenset({8, 13, 15, 17}), "ICMPv6": frozenset({128, 133, 135})}
_ICMP_REPLIES = {"ICMP": frozenset({0, 14, 16, 18}), "ICMPv6": frozenset({129, 134, 136})}

# How strongly an event says which end is the client, and the flow file's word for it.
R_NONE, R_ICMP_REPLY, R_ICMP_REQUEST, R_HANDSHAKE, R_REPORTED = range(5)
_DIRECTION = {R_REPORTED: "reported", R_HANDSHAKE: "handshake", R_ICMP_REQUEST: "first-packet",
              R_ICMP_REPLY: "port-heuristic", R_NONE: "port-heuristic"}

# Conn.counts: events from end a, from end b, resets, in one integer
_ONE_A, _ONE_B, _ONE_RESET, _MASK = 1, 1 << 32, 1 << 64, (1 << 32) - 1
# Conn.bits
_PASS_FROM_A = 1  # a packet from end a went on
_PASS_FROM_B = 2
_DROP = 4
_AUDIT = 8
_ERROR = 16
_SYN_A = 32  # SYN without ACK sent by a
_SYN_B = 64
_SYNACK_A = 128
_SYNACK_B = 256
_PASS = 512


class Ident(NamedTuple):
    """What an event says of one end, apart from where it was seen ("" = not said)."""

    namespace: str
    pod: str
    workload_kind: str
    workload_name: str
    entity: str
    labels: tuple[tuple[str, str], ...]


class Conn:
    """One connection: end a is the lower (address, port) of its unordered 5-tuple."""

    __slots__ = ("bits", "counts", "first", "last", "names", "nodes", "policies", "rank_a",
                 "rank_b", "seen", "services")

    def __init__(self, t: int) -> None:
        self.first = t
        self.last = t
        self.bits = 0
        self.rank_a = R_NONE  # the strongest evidence that a is the client
        self.rank_b = R_NONE
        # number of a (node, event type, observation point) -> events a->b + b->a << 32 +
        # resets << 64 (packed: a connection is seen from a few points, by many connections)
        self.counts: dict[int, int] = {}
        # (end, quick key of an endpoint object) -> (number of its Ident, local to the node)
        # (HubbleFold._end)
        self.seen: dict[tuple[Any, ...], tuple[int, bool]] = {}
        self.nodes: set[tuple[int, str]] | None = None  # (end, node where it is local)
        self.names: list[set[str]] | None = None
        self.services: list[set[str]] | None = None
        self.policies: set[str] | None = None


ConnKey = tuple[str, str, int | None, str, int | None]
DnsKey = tuple[str, str, str, tuple[str, ...], tuple[str, ...]]


class HubbleFold:
    """Every Hubble event of one ingest, folded by connection (see the module doc)."""

    def __init__(self) -> None:
        self.conns: dict[ConnKey, Conn] = {}
        self.dns: dict[DnsKey, int] = {}  # answer -> first time seen (ns)
        # Endpoint objects seen (without ``ID``) -> (number of their Ident in ``ident_list``,
        # is the node's own host); and the last object seen per (identity, pod, ID).
        self.idents: dict[tuple[Any, ...], tuple[int, bool]] = {}
        self.quick: dict[tuple[Any, Any, Any], tuple[Any, tuple[int, bool]]] = {}
        # (address, pod name, identity, ID, labels, fields) -> what _ident said (see _end)
        self.ends: dict[tuple[Any, ...], tuple[int, bool]] = {}
        self.node_names: dict[Any, str] = {}
        self.vantages: dict[tuple[str, int, str], int] = {}
        self.interned: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        self.ident_list: list[Ident] = [_NO_IDENT]
        self.lost = 0

    def add(self, flow: Mapping[str, Any], envelope: Mapping[str, Any]) -> str | None:
        """Fold one flow event; returns a skip reason when it is not folded.

        The per-event path of an ingest of millions of events: few lookups, no helper calls
        for what most events repeat (see ``_end``)."""
        get = flow.get
        ip = get("IP")
        if not ip:
            return "non-ip"
        if get("Type") == "SOCK":
            # Socket-LB translation traces repeat the connection before and after the service
            # address is translated; the packet traces of the same connection are kept.
            return "socket-trace"
        l4 = get("l4")
        if not l4:
            return "unsupported-protocol"
        flags: Mapping[str, Any] | None = None
        icmp_type = -1
        ports = l4.get("TCP")
        if ports is not None:
            proto = "TCP"
            flags = ports.get("flags")
        elif (ports := l4.get("UDP")) is not None:
            proto = "UDP"
        elif (ports := l4.get("SCTP")) is not None:
            proto = "SCTP"
        if ports is not None:
            sport: int | None = ports.get("source_port", 0)
            dport: int | None = ports.get("destination_port", 0)
            if type(sport) is not int or type(dport) is not int or not (
                    0 <= sport <= 65535 and 0 <= dport <= 65535):
                raise ValueError(f"bad port {sport!r} or {dport!r}")
        elif (icmp := l4.get("ICMPv4")) is not None:
            # proto3 JSON leaves zero values out: an echo reply is ``"ICMPv4": {}``.
            proto, sport, dport, icmp_type = "ICMP", None, None, _port(icmp.get("type", 0))
        elif (icmp := l4.get("ICMPv6")) is not None:
            proto, sport, dport, icmp_type = "ICMPv6", None, None, _port(icmp.get("type", 0))
        else:
            return "unsupported-protocol"
        src = address(ip["source"])
        dst = address(ip["destination"])
        stamp = get("time") or envelope.get("time")
        if stamp is None:
            raise ValueError("no \"time\"")
        t = rfc3339_ns(stamp)
        raw_node = get("node_name") or envelope.get("node_name") or ""
        node = self.node_names.get(raw_node)
        if node is None:
            if not isinstance(raw_node, str):
                raise ValueError("\"node_name\" is not a string")
            # Hubble Relay names nodes "<cluster>/<node>".
            node = self.node_names[raw_node] = raw_node.rpartition("/")[2]
        s_ep = get("source")
        d_ep = get("destination")

        # Which end of the packet is the client, and how sure that is.
        src_is_client: bool | None = None
        rank = R_NONE
        reply = get("is_reply")
        if reply is None and get("reply") is True:
            reply = True  # the deprecated field is only ever written when true
        l7 = get("l7")
        if reply is not None:
            if reply is not True and reply is not False:
                raise ValueError("\"is_reply\" is not a boolean")
            src_is_client, rank = not reply, R_REPORTED
        elif l7 and l7.get("type") in ("REQUEST", "RESPONSE"):
            src_is_client, rank = l7["type"] == "REQUEST", R_REPORTED
        elif flags and flags.get("SYN"):
            src_is_client, rank = not flags.get("ACK"), R_HANDSHAKE
        elif icmp_type in _ICMP_REQUESTS.get(proto, ()):
            src_is_client, rank = True, R_ICMP_REQUEST
        elif icmp_type in _ICMP_REPLIES.get(proto, ()):
            src_is_client, rank = False, R_ICMP_REPLY
        else:
            direction = get("traffic_direction")
            s_id, d_id = _has_id(s_ep), _has_id(d_ep)
            if direction in ("EGRESS", "INGRESS") and s_id != d_id:
                # The direction is the connection's, seen from the local endpoint: on EGRESS
                # the local endpoint is the client, on INGRESS the server.
                src_is_client, rank = (direction == "EGRESS") == s_id, R_REPORTED
            elif icmp_type >= 0:
                src_is_client, rank = True, R_ICMP_REQUEST  # an ICMP error: its sender

        # The connection, by its unordered 5-tuple.
        src_is_a = src <= dst if sport is None else (src, sport) <= (dst, dport)
        key: ConnKey = ((proto, src, sport, dst, dport) if src_is_a
                        else (proto, dst, dport, src, sport))
        conn = self.conns.get(key)
        if conn is None:
            conn = self.conns[key] = Conn(t)
        elif t < conn.first:
            conn.first = t
        elif t > conn.last:
            conn.last = t

        if src_is_client is not None:
            if src_is_client == src_is_a:
                conn.rank_a = max(conn.rank_a, rank)
            else:
                conn.rank_b = max(conn.rank_b, rank)

        verdict = get("verdict")
        bits = conn.bits
        if verdict in _PASSED or verdict == "AUDIT":
            bits |= (_PASS_FROM_A if src_is_a else _PASS_FROM_B) | _PASS
            if verdict == "AUDIT":
                bits |= _AUDIT
        elif verdict == "DROPPED":
            bits |= _DROP
        elif verdict == "ERROR":
            bits |= _ERROR
        reset = 0
        if flags:
            if flags.get("SYN"):
                if flags.get("ACK"):
                    bits |= _SYNACK_A if src_is_a else _SYNACK_B
                else:
                    bits |= _SYN_A if src_is_a else _SYN_B
            if flags.get("RST"):
                reset = 1
        conn.bits = bits

        event_type = get("event_type")
        vantage = (node, event_type.get("type", 0) if event_type else 0,
                   get("trace_observation_point", ""))
        number = self.vantages.get(vantage)
        if number is None:
            number = self.vantages[vantage] = len(self.vantages)
        counts = conn.counts
        counts[number] = counts.get(number, 0) + (_ONE_A if src_is_a else _ONE_B) + \
            (_ONE_RESET if reset else 0)

        s, d = (0, 1) if src_is_a else (1, 0)
        src_local = self._end(conn, s, s_ep, src)
        dst_local = self._end(conn, d, d_ep, dst)
        if (src_local or dst_local) and node:
            nodes = conn.nodes
            if nodes is None:
                nodes = conn.nodes = set()
            if src_local:
                nodes.add(self._intern((s, node)))
            if dst_local:
                nodes.add(self._intern((d, node)))
        if not _EXTRA_FIELDS.isdisjoint(flow):
            self._extras(conn, flow, s, d)
        if l7 and (dns := l7.get("dns")) is not None:
            self._dns(dns, l7, reply=reply, src=src, dst=dst, t=t)
        return None

    def _end(self, conn: Conn, side: int, ep: Any, address: str) -> bool:
        """Record what ``ep`` says of end ``side`` of ``conn``; whether it is local to the node
        that saw the event.

        The address of an end is fixed within a connection, so its endpoint objects differ
        only by where they were seen (``ID``) and by what an exporter's field mask left out:
        an object with the same security identity (Cilium's identity *is* the label set),
        ``ID``, number of labels and of fields as one seen before says nothing new. The same
        holds across connections for the same address and pod name (a pod is the end of many
        connections): such an object is looked at once per ingest."""
        if not ep:
            return False
        labels = ep.get("labels")
        identity, endpoint_id, count, fields = (ep.get("identity"), ep.get("ID"),
                                                len(labels) if labels else 0, len(ep))
        quick = (side, identity, endpoint_id, count, fields)
        known = conn.seen.get(quick)
        if known is None:
            key = (address, ep.get("pod_name"), identity, endpoint_id, count, fields)
            known = self.ends.get(key)
            if known is None:
                known = self.ends[key] = self._ident(ep)
            conn.seen[self._intern(quick)] = known
        return known[1]

    def _intern(self, key: tuple[Any, ...]) -> tuple[Any, ...]:
        """One tuple object for equal keys kept by many connections."""
        return self.interned.setdefault(key, key)

    def _extras(self, conn: Conn, flow: Mapping[str, Any], s: int, d: int) -> None:
        """DNS names, services and policies an event gives (most events give none)."""
        for field, end in (("source_names", s), ("destination_names", d)):
            names = flow.get(field)
            if names:
                if conn.names is None:
                    conn.names = [set(), set()]
                conn.names[end].update(dns_name(_text(n)) for n in names)
        for field, end in (("source_service", s), ("destination_service", d)):
            service = flow.get(field)
            if service and service.get("name"):
                if conn.services is None:
                    conn.services = [set(), set()]
                ns = _text(service.get("namespace") or "")
                conn.services[end].add(f"{ns}/{_text(service['name'])}" if ns
                                        else _text(service["name"]))
        for field, action in (("egress_allowed_by", "allow"), ("ingress_allowed_by", "allow"),
                              ("egress_denied_by", "deny"), ("ingress_denied_by", "deny")):
            policies = flow.get(field)
            if policies:
                if conn.policies is None:
                    conn.policies = set()
                for policy in policies:
                    # Cilium policies have no tiers (flow.proto ``message Policy``).
                    ns = _text(policy.get("namespace") or "") or "-"
                    name = _text(policy.get("name") or "") or "-"
                    conn.policies.add(f"-/{ns}/{name} {action}")

    def _dns(self, dns: Mapping[str, Any], l7: Mapping[str, Any], *, reply: bool | None,
             src: str, dst: str, t: int) -> None:
        """A DNS answer from the proxy's L7 record: who asked, the name, the addresses."""
        if l7.get("type") != "RESPONSE" and reply is not True:
            return
        query = dns.get("query")
        ips = dns.get("ips") or ()
        cnames = dns.get("cnames") or ()
        if not query or not (ips or cnames):
            return
        key = (dst, src, dns_name(_text(query)), tuple(sorted({address(a) for a in ips})),
               tuple(dns_name(_text(c)) for c in cnames))
        seen = self.dns.get(key)
        if seen is None or t < seen:
            self.dns[key] = t

    def _ident(self, ep: Any) -> tuple[int, bool]:
        """An endpoint object as the number of its ``Ident`` (cached: few distinct endpoints,
        many events), and whether it is local to the node that saw the event."""
        if not ep:
            return 0, False
        # Looked up by security identity and pod, then checked field by field (equality of
        # lists and strings runs in C): far cheaper than a key of every field.
        quick = (ep.get("identity"), ep.get("pod_name"), ep.get("ID"))
        known = self.quick.get(quick)
        if known is not None and known[0] == ep:
            return known[1]
        key = tuple(sorted((k, _frozen(v)) for k, v in ep.items() if k != "ID"))
        found = self.idents.get(key)
        if found is None:
            ident, local = _parse_ident(ep)
            found = self.idents[key] = (len(self.ident_list), local)
            self.ident_list.append(ident)
        # ``local`` depends on ``ID`` being set, which ``key`` leaves out.
        result = (found[0], bool(ep.get("ID")) or found[1])
        self.quick[quick] = (ep, result)
        return result


_NO_IDENT = Ident("", "", "", "", "", ())


def _parse_ident(ep: Mapping[str, Any]) -> tuple[Ident, bool]:
    labels: dict[str, str] = {}
    reserved: set[str] = set()
    for label in ep.get("labels") or ():
        source, _, rest = _text(label).partition(":")
        key, _, value = rest.partition("=")
        if source == "reserved":
            reserved.add(_RESERVED_LABELS.get(key, key))
        elif source == "k8s" and not key.startswith(_META_LABEL_PREFIX) and \
                key not in _META_LABELS:
            labels[key] = value
    identity = ep.get("identity")
    if not reserved and isinstance(identity, int) and identity in _RESERVED_IDS:
        reserved.add(_RESERVED_IDS[identity])
    pod = _text(ep.get("pod_name") or "")
    entity = ""
    if reserved and not pod:  # a pod name wins over a reserved identity (docs/sources.md)
        entity = next((e for e in _ENTITY_ORDER if e in reserved), min(reserved))
    workloads = ep.get("workloads") or ()
    kind = name = ""
    if workloads:
        first = min((_text(w.get("kind") or ""), _text(w.get("name") or "")) for w in workloads)
        kind, name = first
    ident = Ident(_text(ep.get("namespace") or ""), pod, kind, name, entity,
                  tuple(sorted(labels.items())))
    # Local to the node that saw the event: a Cilium endpoint of that node (its ``ID`` is set
    # only there, see HubbleFold._ident), or that node's own host.
    return ident, entity == "host"


def _frozen(value: Any) -> Any:
    """A JSON value as a hashable one."""
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    return value


def _has_id(ep: Any) -> bool:
    return bool(ep and ep.get("ID"))


def _port(value: Any) -> int:
    if type(value) is not int or not 0 <= value <= 65535:
        raise ValueError(f"bad port or type {value!r}")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}")
    return value
