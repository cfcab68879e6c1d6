"""Flows folded into what the graph is made of: per-edge totals that add up.

:class:`GraphFold` resolves both ends of every flow (at its time) and adds it to a
:class:`GraphSummary`: per (client node, server node, protocol, port) the flows, packets,
bytes, first and last seen, TLS, sampling, the sources that saw them and the Services they went
through; the flows a flow log says were blocked; the addresses each node was seen at; the
addresses that stayed external (for the inventory check); the flows left out for a special
address; what the records' identities said. Nothing in it grows with the number of flows, only
with the workloads, edges and addresses, so a day of a large cluster's flows streams through it
(:func:`segmenter.graph.build.graph_from_summary` makes the graph of a summary).

Every part of a summary is a sum, a minimum, a maximum, an "or" or a union, so two summaries of
separate flows merge (:meth:`GraphSummary.merge`) into the summary of all of them, whatever the
order or grouping: the per-node, per-window summaries of :mod:`segmenter.graph.summaries`
rely on it. With ``window``, edges and blocked flows are kept per window of that many seconds of
their first packet (aligned on the epoch), which the graph adds up again.

DNS-named sets of external addresses (``external:name:<name>``) are decided in two steps, so
that a summary can be made before every DNS answer is known: the fold keeps, for a flow to an
external address, the name its client's own answers gave that address at the time (its
*hint*, ``""`` when it asked none), and the graph turns hints into sets with all the answers
(:class:`NamedSets`).
"""

from __future__ import annotations

import bisect
import functools
import ipaddress
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

from segmenter.graph.addresses import address_class
from segmenter.graph.blocked import BlockedFlows
from segmenter.graph.identity import FlowEnds, IdentityTally
from segmenter.graph.ranges import UnexplainedAddresses
from segmenter.graph.resolve import Resolved, Resolver, is_private
from segmenter.model import DnsAnswer, Flow, FlowVerdict, Inventory, NodeId, Resolution, Transport

logger = logging.getLogger(__name__)

# (client node, server node as resolved, transport, port as the server pod sees it, DNS-name
# hint of an external server or None, window start or None)
EdgeKey = tuple[str, str, Transport, int | None, str | None, int | None]
# Indexes into an edge's totals (a list: the fold's loop runs once per flow).
FLOWS, PACKETS, BYTES, FIRST, LAST, TLS, VIA, SOURCES, SAMPLED = range(9)
_CAPTURE: Final = ("capture",)
# Resolutions whose node keeps the addresses it was seen at.
ADDRESSED: Final = frozenset({Resolution.NODE, Resolution.APISERVER, Resolution.EXTERNAL,
                              Resolution.LINK_LOCAL_SERVICE})
# A flow observer: called with every forwarded flow whose ends are placed and not special.
Observer = Callable[[Flow, Resolved, Resolved], None]


class GraphSummary:
    """The totals the graph is made of (see the module docstring). Mutable: a fold adds to it,
    :meth:`merge` adds another summary to it."""

    def __init__(self, window: int | None = None) -> None:
        if window is not None and window <= 0:
            raise ValueError("a summary window is a positive number of seconds")
        self.window = window
        # key -> [flows, packets, bytes, first, last, tls, {(via Service, DNATed address)} or
        # None, {source}, sampled]; the source of a capture's flows is "capture".
        self.edges: dict[EdgeKey, list[Any]] = {}
        self.blocked = BlockedFlows(window)
        self.addresses: dict[str, set[str]] = defaultdict(set)  # node -> addresses seen
        self.external = UnexplainedAddresses()
        # address class ("" for all) -> [flows, {addresses}]
        self.special: dict[str, list[Any]] = {}
        self.identity = IdentityTally()
        self.flows = 0

    def merge(self, other: GraphSummary) -> None:
        """Add ``other`` (a summary of other flows, with the same window) to this one."""
        if other.window != self.window:
            raise ValueError(f"summaries of {self.window} s and {other.window} s windows")
        for key, slot in other.edges.items():
            add_edge(self.edges, key, slot)
        self.blocked.merge(other.blocked)
        for node, addresses in other.addresses.items():
            self.addresses[node].update(addresses)
        self.external.merge(other.external)
        for name, (flows, addresses) in other.special.items():
            mine = self.special.setdefault(name, [0, set()])
            mine[0] += flows
            mine[1].update(addresses)
        self.identity.merge(other.identity)
        self.flows += other.flows

    def left_out(self) -> dict[str, Any]:
        """The graph's ``special_addresses`` attribute: flows left out per address class."""
        if not self.special:
            return {}
        return {"flows": self.special[""][0], "by_class": {
            name: {"flows": n, "addresses": sorted(addresses, key=ip_sort_key)}
            for name, (n, addresses) in sorted(self.special.items()) if name}}


def add_edge(edges: dict[EdgeKey, list[Any]], key: EdgeKey, slot: Sequence[Any]) -> None:
    """Add the totals ``slot`` of some flows to ``edges[key]``."""
    mine = edges.get(key)
    if mine is None:
        via = slot[VIA]
        edges[key] = [slot[FLOWS], slot[PACKETS], slot[BYTES], slot[FIRST], slot[LAST],
                      slot[TLS], set(via) if via else None, set(slot[SOURCES]), slot[SAMPLED]]
        return
    mine[FLOWS] += slot[FLOWS]
    mine[PACKETS] += slot[PACKETS]
    mine[BYTES] += slot[BYTES]
    mine[FIRST] = min(mine[FIRST], slot[FIRST])
    mine[LAST] = max(mine[LAST], slot[LAST])
    mine[TLS] = mine[TLS] or slot[TLS]
    if slot[VIA]:
        if mine[VIA] is None:
            mine[VIA] = set()
        mine[VIA].update(slot[VIA])
    mine[SOURCES].update(slot[SOURCES])
    mine[SAMPLED] = mine[SAMPLED] or slot[SAMPLED]


class GraphFold:
    """Resolves flows and adds them to :attr:`summary` (see the module docstring).

    ``ends`` places flow ends that records identify and reports on the identities (one over
    ``inventory`` by default); ``dns``: the answers whose names give external addresses their
    hint (all of them, or a capture node's own).
    """

    def __init__(self, inventory: Inventory, dns: Iterable[DnsAnswer] = (), *,
                 resolver: Resolver | None = None, named_sets: bool = True,
                 ends: FlowEnds | None = None, window: int | None = None) -> None:
        if resolver is None:
            resolver = ends.resolver if ends is not None else Resolver(inventory)
        self.resolver = resolver
        self.ends = ends if ends is not None else FlowEnds(inventory, resolver)
        self.namer = NamedSets(tuple(dns)) if named_sets else None
        self.summary = GraphSummary(window)
        # The identity tally is the fold's own: the summary shares it.
        self.summary.identity = self.ends.tally

    def add(self, flows: Iterable[Flow], observer: Observer | None = None) -> None:
        """Resolve both ends of every flow and add it to the summary. ``observer`` sees every
        forwarded flow whose ends are placed and not special, with its ends (the replay of
        flows folds the same pass: :mod:`segmenter.analysis.replay`)."""
        summary = self.summary
        resolve = self.resolver.resolve
        namer = self.namer
        hint_of = namer.hint if namer is not None and namer.asked else None
        acc = summary.edges
        seen_addresses = summary.addresses
        external = summary.external
        special = summary.special
        blocked = summary.blocked
        ends = self.ends
        window = summary.window
        count = 0
        forwarded = FlowVerdict.FORWARDED
        pod = Resolution.POD
        external_how = Resolution.EXTERNAL
        special_how = Resolution.SPECIAL
        addressed = ADDRESSED
        for flow in flows:
            count += 1
            transport = flow.transport
            ts = flow.first_seen
            last = flow.last_seen
            client_ip, server_ip = flow.client, flow.server
            if (client_ip is None or server_ip is None or flow.client_endpoint is not None
                    or flow.server_endpoint is not None):
                pair = ends.resolve(flow)
                if pair is None:
                    continue  # an end without an address that no workload matches: reported
                client, server = pair
                ends.check(flow, client, server)
            else:
                client = resolve(client_ip, None, transport, ts)
                server = resolve(server_ip, flow.server_port, transport, ts)
            if client.how is special_how or server.how is special_how:
                count_special(special, flow, client.how, server.how)
                continue
            if flow.verdict is not None and flow.verdict is not forwarded:
                blocked.add(flow, client, server)
                continue
            if observer is not None:
                observer(flow, client, server)
            how = server.how
            if how is external_how or client.how is external_how:
                external.note(flow, client, server)
            hint = None
            if (hint_of is not None and how is external_how and client_ip is not None
                    and server_ip is not None):
                hint = hint_of(client_ip, server_ip, ts)
            key = (client.node_id, server.node_id, transport, server.port, hint,
                   None if window is None else int(ts // window) * window)
            slot = acc.get(key)
            if slot is None:
                slot = acc[key] = [0, 0, 0, ts, last, False, None, set(), False]
            else:
                if ts < slot[3]:  # noqa: PLR1730 - min() is markedly slower here
                    slot[3] = ts
                if last > slot[4]:  # noqa: PLR1730
                    slot[4] = last
            slot[0] += 1
            slot[1] += flow.packets_to_server + flow.packets_to_client
            slot[2] += flow.bytes_to_server + flow.bytes_to_client
            if flow.tls:
                slot[5] = True
            slot[7].update(flow.sources or _CAPTURE)
            if flow.sampled:
                slot[8] = True
            if how is not pod or server.via_service is not None:
                if how.dnat or server.via_service is not None:
                    if slot[6] is None:
                        slot[6] = set()
                    slot[6].add((server.via_service, server_ip if how.dnat else None))
                if how in addressed and server_ip is not None:
                    seen_addresses[server.node_id].add(server_ip)
            if client.how in addressed and client_ip is not None:
                seen_addresses[client.node_id].add(client_ip)
        summary.flows += count
        logger.debug("graph: %d flows folded, %d (edge, port) entries", count, len(acc))


def count_special(special: dict[str, list[Any]], flow: Flow, client_how: Resolution,
                  server_how: Resolution) -> None:
    """Count a flow left out for its special end(s): once in all (key ``""``), once under the
    class of each such end (a DHCP discover from 0.0.0.0 to 255.255.255.255 is in two)."""
    special.setdefault("", [0, set()])[0] += 1
    classes: dict[str, set[str]] = {}
    for address, how in ((flow.client, client_how), (flow.server, server_how)):
        if how is Resolution.SPECIAL and address is not None:
            canonical = canonical_ip(address) or address
            found = address_class(canonical)
            classes.setdefault(str(found or "special"), set()).add(canonical)
    for name, addresses in classes.items():
        slot = special.setdefault(name, [0, set()])
        slot[0] += 1
        slot[1].update(addresses)


@functools.lru_cache(maxsize=1 << 16)
def canonical_ip(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        return None


def ip_sort_key(ip: str) -> tuple[int, bytes, str]:
    """IPv4 before IPv6, numerically (``inet_pton`` is much faster than ``ipaddress``)."""
    import socket

    for rank, family in ((4, socket.AF_INET), (6, socket.AF_INET6)):
        try:
            return (rank, socket.inet_pton(family, ip), ip)
        except OSError:
            continue
    return (9, b"", ip)


def dns_name(name: str) -> str:
    return name.strip().rstrip(".").lower()


class NamedSets:
    """External addresses grouped by the DNS name that the capture's answers give them.

    A name is a set when its answers hold at least two addresses, all public or all private.
    A flow to one of those addresses joins the set of the name its client resolved to that
    address (its latest such answer at or before the flow, else its first: the flow's
    :meth:`hint`); a client seen resolving no name to it joins the set only when every answer
    naming the address is for that one name. Otherwise the address stays its own node.
    """

    def __init__(self, answers: Sequence[DnsAnswer]):
        addresses: dict[str, set[str]] = defaultdict(set)
        names_of: dict[str, set[str]] = defaultdict(set)
        asked: dict[tuple[str, str], list[tuple[float, str]]] = defaultdict(list)
        for answer in answers:
            name = dns_name(answer.name)
            client = canonical_ip(answer.client) or answer.client
            for raw in answer.answers:
                ip = canonical_ip(raw)
                if ip is None or not name:
                    continue
                addresses[name].add(ip)
                names_of[ip].add(name)
                asked[(client, ip)].append((answer.ts, name))
        self.sets: dict[str, tuple[str, ...]] = {}
        self.private: dict[str, bool] = {}
        for name in sorted(addresses):
            members = addresses[name]
            if len(members) < 2:
                continue
            classes = {is_private(ip) for ip in members}
            if len(classes) > 1:
                logger.info(
                    "DNS name %s answers both private and public addresses; its addresses are "
                    "not aggregated",
                    name,
                )
                continue
            self.sets[name] = tuple(sorted(members, key=ip_sort_key))
            self.private[name] = classes.pop()
        self.names_of = {ip: names for ip, names in names_of.items() if names & self.sets.keys()}
        # Every client's answers, sets or not: a capture node's hints are made before the
        # answers of every node are known.
        self.asked = {key: sorted(v) for key, v in asked.items()}

    def hint(self, client: str, server: str, ts: float) -> str:
        """The name ``client``'s own answers gave ``server`` at ``ts`` (its latest at or before
        ``ts``, else its first); ``""`` when it asked none."""
        if ":" in server:
            server = canonical_ip(server) or server
        if ":" in client:
            client = canonical_ip(client) or client
        history = self.asked.get((client, server))
        if not history:
            return ""
        i = bisect.bisect_right(history, ts, key=lambda entry: entry[0]) - 1
        return history[max(i, 0)][1]

    def named_set(self, server: str, hint: str) -> str | None:
        """The named-set node id of a flow to external ``server`` whose client's answers gave
        it ``hint`` (:meth:`hint`), or None."""
        names = self.names_of.get(server)
        if names is None:
            if ":" not in server:
                return None
            names = self.names_of.get(canonical_ip(server) or server)
            if names is None:
                return None
        if hint:
            name = hint
        elif len(names) == 1:
            (name,) = names
        else:
            return None
        return NodeId.of_named_set(name) if name in self.sets else None

    def name_for(self, client: str, server: str, ts: float) -> str | None:
        """The named-set node id for a flow from ``client`` to external ``server``, or None."""
        return self.named_set(server, self.hint(client, server, ts))

    def attrs(self, name: str, seen: set[str]) -> dict[str, Any]:
        members = self.sets[name]
        blocks = exact_blocks(members)
        rule = f"dns-name {name}: {len(members)} addresses from DNS answers in the capture"
        if len(blocks) == 1:
            rule += f", filling {blocks[0]}"
        elif len(blocks) < len(members):
            rule += f", in {len(blocks)} address blocks"
        return {
            "kind": "external",
            "label": name,
            "addresses": list(members),
            "addresses_seen": sorted({canonical_ip(a) or a for a in seen}, key=ip_sort_key),
            "cidrs": blocks,
            "dns_names": [name],
            "private": self.private[name],
            "aggregation": rule,
        }


def exact_blocks(addresses: Iterable[str]) -> list[str]:
    """The fewest CIDR blocks that hold exactly ``addresses`` (IPv4 first)."""
    by_version: dict[int, list[Any]] = defaultdict(list)
    for ip in addresses:
        addr = ipaddress.ip_address(ip)
        by_version[addr.version].append(addr)
    return [
        str(net)
        for version in sorted(by_version)
        for net in ipaddress.collapse_addresses(by_version[version])
    ]
