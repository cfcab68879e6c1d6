"""Zones around sensitive data stores.

For each data class (``pci``, ``phi``, custom):

- **restricted**: the declared stores and processors (PCI DSS: the CDE systems);
- **connected**: workloads with an observed flow to or from a restricted member (PCI DSS
  "connected-to" systems, PCI SSC scoping guidance 2016, category 2);
- **infrastructure**: nodes, the API server, cluster DNS and the unpoliced system namespaces
  (security-impacting: they provide segmentation, name resolution and control);
- **external**: addresses outside the cluster;
- **general**: every other workload (out of scope once the policies are in force).

The zones of one class partition the graph's nodes. The plan keeps every observed flow and the
flows ``segmenter.yaml`` declares (``declared_flows``: they join the graph as edges marked
declared, :mod:`segmenter.graph.declared`, so zones and crossings account for them); the
compiler allows exactly those (plus DNS where used and the internet on entry points), nothing
more. A declared flow into or out of a restricted zone needs a justification and an approver.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Final

import networkx as nx

from segmenter.config import DATA_CLASS_KEY, Config
from segmenter.documents import At, load_json
from segmenter.errors import InputError, PlanError
from segmenter.gcpause import no_gc
from segmenter.graph.declared import DECLARED, DeclaredFlow, apply_declared, resolve_declared
from segmenter.graph.stats import count_text
from segmenter.model import Labels, is_workload_id


class Zone(enum.StrEnum):
    """The zones of one data class, most restrictive first (see the module docstring)."""

    RESTRICTED = "restricted"
    CONNECTED = "connected"
    INFRASTRUCTURE = "infrastructure"
    EXTERNAL = "external"
    GENERAL = "general"


ZONES: Final = tuple(Zone)
PLAN_FORMAT: Final = "segmenter-plan"
PLAN_VERSION: Final = 1
# Left to right the way traffic usually flows towards the data (how views lay zones out).
ZONE_FLOW_ORDER: Final = (Zone.EXTERNAL, Zone.GENERAL, Zone.CONNECTED, Zone.RESTRICTED,
                          Zone.INFRASTRUCTURE)


@dataclass(frozen=True, order=True)
class ZoneMember:
    node: str
    reason: str


@dataclass(frozen=True, order=True)
class Crossing:
    """An observed flow whose ends are in different zones of one class."""

    client: str
    server: str
    protocol: str
    port: int | None
    client_zone: Zone
    server_zone: Zone
    flows: int
    first_seen: float | None
    last_seen: float | None
    tls: bool
    # The reason(s) of the declarations behind it; "" when only observed (flows > 0 when both).
    declared: str = ""


@dataclass(frozen=True, order=True)
class Reduction:
    """Cutting (removing or proxying) ``flows`` takes ``leaves`` out of the class's scope."""

    flows: tuple[tuple[str, str], ...]  # (client, server) edges
    leaves: tuple[str, ...]
    note: str = ""


@dataclass(frozen=True)
class ClassScope:
    data_class: str
    title: str
    framework: str
    zones: tuple[tuple[Zone, tuple[ZoneMember, ...]], ...]
    crossings: tuple[Crossing, ...]
    reductions: tuple[Reduction, ...] = ()

    def members(self, zone: str) -> tuple[ZoneMember, ...]:
        for name, members in self.zones:
            if name == zone:
                return members
        return ()

    @cached_property
    def _zone_index(self) -> dict[str, Zone]:
        return {m.node: name for name, members in self.zones for m in members}

    def zone_of(self, node: str) -> Zone:
        return self._zone_index.get(node, Zone.GENERAL)


@dataclass(frozen=True)
class Plan:
    classes: tuple[ClassScope, ...]
    policed: tuple[str, ...]  # workload node ids that get policies
    excluded_namespaces: tuple[str, ...]
    notes: tuple[str, ...] = ()
    suggestions: tuple[ZoneMember, ...] = ()  # look like data stores; never applied
    declared: tuple[DeclaredFlow, ...] = ()  # flows segmenter.yaml declares (not observed)

    def zone_of(self, node: str) -> Zone:
        """The most restrictive zone of ``node`` over every class."""
        zones = {scope.zone_of(node) for scope in self.classes}
        for zone in ZONES:
            if zone in zones:
                return zone
        return Zone.GENERAL

    def restricted_classes(self, node: str) -> tuple[str, ...]:
        return tuple(s.data_class for s in self.classes if s.zone_of(node) == Zone.RESTRICTED)


def node_zone(graph: nx.DiGraph, plan: Plan | None, node: str,
              data_class: str | None = None) -> Zone:
    """The zone ``node`` is drawn in: its zone for ``data_class`` (the most restrictive over
    every class when None). With no class declared, externals, cluster nodes, the API server
    and excluded namespaces still get their own zones."""
    attrs = graph.nodes[node] if node in graph else {}
    if plan is not None and plan.classes:
        if data_class is None:
            return plan.zone_of(node)
        for scope in plan.classes:
            if scope.data_class == data_class:
                return scope.zone_of(node)
        raise ValueError(f"the plan has no class {data_class!r}")
    kind = attrs.get("kind")
    if kind == "external":
        return Zone.EXTERNAL
    if kind in {"node", "apiserver"}:
        return Zone.INFRASTRUCTURE
    excluded = set(plan.excluded_namespaces) if plan is not None else set()
    if attrs.get("namespace") in excluded:
        return Zone.INFRASTRUCTURE
    return Zone.GENERAL


def _labels(graph: nx.DiGraph, node: str) -> Labels:
    return Labels.of(graph.nodes[node].get("labels") or {})


def _declared_classes(attrs: dict[str, Any]) -> set[str]:
    found: set[str] = set()
    for source in ("labels", "annotations"):
        value = (attrs.get(source) or {}).get(DATA_CLASS_KEY)
        if value:
            found.update(v.strip() for v in str(value).split(",") if v.strip())
    return found


def workload_nodes(graph: nx.DiGraph) -> list[str]:
    return sorted(n for n, a in graph.nodes(data=True) if a.get("kind") == "workload")


def plan(graph: nx.DiGraph, config: Config, *, dns_nodes: Iterable[str] | None = None) -> Plan:
    """Partition ``graph`` into zones per data class.

    Cluster DNS is infrastructure: the nodes the graph marks ``cluster_dns`` (the graph stage
    finds the resolver in the inventory), or ``dns_nodes`` when given. The config's declared
    flows are put into ``graph`` (in place, replacing earlier declarations) before zoning.

    Raises:
        PlanError: a declaration matches no workload, or names an unknown class; a declared flow
            into or out of a restricted zone has no justification or approver.
    """
    with no_gc():
        return _plan(graph, config, dns_nodes)


def _plan(graph: nx.DiGraph, config: Config, dns_nodes: Iterable[str] | None) -> Plan:
    declared = resolve_declared(graph, config.declared_flows, config.path)
    apply_declared(graph, declared)
    dns = (set(dns_nodes) if dns_nodes is not None
           else {n for n, a in graph.nodes(data=True) if a.get("cluster_dns")})
    workloads = workload_nodes(graph)
    restricted: dict[str, dict[str, str]] = {}  # class -> node -> reason
    for decl in config.sensitive:
        hits = [
            n for n in workloads
            if (decl.namespace is None or graph.nodes[n].get("namespace") == decl.namespace)
            and _labels(graph, n).matches(decl.selector)
        ]
        if not hits:
            where = f"namespace {decl.namespace}" if decl.namespace else "any namespace"
            selector = ",".join(f"{k}={v}" for k, v in decl.selector.items)
            raise PlanError(f"sensitive selector {selector} matches no pod in {where}",
                            path=config.path, record=decl.source)
        for node in hits:
            restricted.setdefault(decl.data_class, {})[node] = (
                f"{decl.role} of {decl.data_class} data: {decl.reason} ({decl.source})")
    for node in workloads:
        for data_class in sorted(_declared_classes(graph.nodes[node])):
            if data_class not in config.classes:
                raise PlanError(f"unknown class {data_class!r} in {DATA_CLASS_KEY}",
                                record=node)
            restricted.setdefault(data_class, {}).setdefault(
                node, f"store of {data_class} data: labelled {DATA_CLASS_KEY}={data_class}")

    excluded = set(config.exclude_namespaces)
    policed = tuple(
        n for n in workloads
        if graph.nodes[n].get("namespace") not in excluded
        and not graph.nodes[n].get("host_network")
    )
    notes = []
    for n in workloads:
        if graph.nodes[n].get("host_network") and graph.nodes[n].get("namespace") not in excluded:
            notes.append(f"{n} uses hostNetwork: NetworkPolicy cannot select it (treated as its "
                         "node's address)")
    for data_class in sorted(restricted):
        for node in sorted(restricted[data_class]):
            if node not in policed:
                raise PlanError(
                    f"{node} is declared {data_class} but is not policed (hostNetwork or an "
                    "excluded namespace); it cannot be isolated by pod policy", record=node)

    _check_declared_into_restricted(declared, restricted, config.path)
    scopes = []
    for data_class in sorted(restricted):
        scope = _scope(graph, config, data_class, restricted[data_class], excluded=excluded,
                       dns=dns)
        scopes.append(_with_reductions(graph, scope))
    stores = {n for members in restricted.values() for n in members}
    return Plan(tuple(scopes), policed, tuple(sorted(excluded)), tuple(notes),
                suggest_stores(graph, stores, excluded), declared)


def _check_declared_into_restricted(declared: Iterable[DeclaredFlow],
                                    restricted: dict[str, dict[str, str]],
                                    path: str | None) -> None:
    """A declared flow into or out of a restricted zone is refused without a justification and
    an approver (PCI DSS 1.2.5: every allowed service has a documented business need and is
    approved)."""
    for flow in declared:
        classes = sorted(c for c, members in restricted.items()
                         if flow.client in members or flow.server in members)
        if not classes or (flow.justification and flow.approved_by):
            continue
        missing = " and ".join(f"`{k}`" for k, v in (("justification", flow.justification),
                                                      ("approved_by", flow.approved_by)) if not v)
        record = flow.source.split(" ", 1)[-1] if flow.source else None
        raise PlanError(f"declares {flow.client} -> {flow.server} {flow.protocol}/"
                        f"{flow.port}, into or out of the restricted {', '.join(classes)} zone: "
                        f"it needs {missing} (who approved it), or it is refused",
                        path=path, record=record)


# Server ports of common databases, caches and queues (IANA / vendor defaults).
STORE_PORTS = {
    1433: "Microsoft SQL Server", 1521: "Oracle Database", 3306: "MySQL/MariaDB",
    5432: "PostgreSQL", 5984: "CouchDB", 6379: "Redis", 7000: "Cassandra (internode)",
    8086: "InfluxDB", 9042: "Cassandra", 9092: "Kafka", 9200: "Elasticsearch/OpenSearch",
    11211: "memcached", 26257: "CockroachDB", 27017: "MongoDB", 28015: "RethinkDB",
}
STORE_IMAGE_HINTS = ("postgres", "mysql", "mariadb", "mongo", "redis", "cassandra",
                     "elasticsearch", "opensearch", "memcached", "cockroach", "couchdb",
                     "influxdb", "valkey", "keydb", "scylla", "clickhouse", "etcd", "kafka")
STORE_NAME_HINTS = ("postgres", "mysql", "mariadb", "mongo", "redis", "cassandra", "elastic",
                    "memcache", "cockroach", "couch", "db", "database", "vault", "ledger")


def suggest_stores(graph: nx.DiGraph, declared: set[str], excluded: set[str]) -> tuple[
        ZoneMember, ...]:
    """Undeclared workloads that look like data stores: listening on a database or cache port,
    or labelled like one. Reported for a human to decide, never applied."""
    out = []
    for node in workload_nodes(graph):
        attrs = graph.nodes[node]
        if node in declared or attrs.get("namespace") in excluded:
            continue
        reasons = set()
        for _, _, data in graph.in_edges(node, data=True):
            for port in data.get("ports", []):
                product = STORE_PORTS.get(port.get("port") or 0)
                if product and port.get("protocol") == "TCP":
                    reasons.add(f"serves TCP/{port['port']} ({product})")
        for image in attrs.get("images") or []:
            # registry/org/name:tag -> name
            base = str(image).rsplit("/", 1)[-1].split("@")[0].split(":")[0].lower()
            hits = [h for h in STORE_IMAGE_HINTS if h in base]
            if hits:
                reasons.add(f"runs image {image} ({hits[0]})")
        words = " ".join([str(attrs.get("name", "")),
                          *(str(v) for v in (attrs.get("labels") or {}).values())]).lower()
        hints = sorted({h for h in STORE_NAME_HINTS if h in words.replace("-", " ").split()
                        or (len(h) > 4 and h in words)})
        if hints:
            reasons.add("named or labelled like a data store (" + ", ".join(hints) + ")")
        if reasons:
            out.append(ZoneMember(node, "; ".join(sorted(reasons))))
    return tuple(out)


def min_edge_cut(graph: nx.DiGraph, sources: set[str], sinks: set[str]) -> list[tuple[str, str]]:
    """The fewest workload-to-workload flows whose removal separates ``sinks`` from ``sources``.

    Unit capacities on the undirected workload graph; augmenting paths by breadth-first search
    (Edmonds-Karp), each search stopping at the first sink it reaches. The flow is bounded by the
    number of flows touching ``sources``, which keeps this fast on large graphs where a generic
    max-flow would build a residual network of every edge.

    >>> g = nx.DiGraph([("a", "b"), ("b", "c"), ("a", "c2"), ("c2", "c")])
    >>> for n in g:
    ...     g.nodes[n]["kind"] = "workload"
    >>> min_edge_cut(g, {"c"}, {"a"})
    [('b', 'c'), ('c2', 'c')]
    """
    if not sources or not sinks:
        return []
    adjacency: dict[str, set[str]] = {}
    for u, v in graph.edges:
        if u == v or graph.nodes[u].get("kind") != "workload" or (
                graph.nodes[v].get("kind") != "workload"):
            continue
        adjacency.setdefault(u, set()).add(v)
        adjacency.setdefault(v, set()).add(u)
    flow: dict[tuple[str, str], int] = {}  # net flow u->v on undirected unit edges

    def residual(u: str, v: str) -> int:
        return 1 - flow.get((u, v), 0)

    def search() -> tuple[dict[str, str | None], str | None]:
        parent: dict[str, str | None] = {s: None for s in sorted(sources)}
        queue = deque(sorted(sources))
        while queue:
            u = queue.popleft()
            for v in sorted(adjacency.get(u, ())):
                if v in parent or v in sources or residual(u, v) <= 0:
                    continue
                parent[v] = u
                if v in sinks:
                    return parent, v
                queue.append(v)
        return parent, None

    while True:
        parent, end = search()
        if end is None:
            break
        v = end
        while parent[v] is not None:
            u = parent[v]
            assert u is not None
            flow[(u, v)] = flow.get((u, v), 0) + 1
            flow[(v, u)] = flow.get((v, u), 0) - 1
            v = u
    reach = set(parent)
    cut = set()
    for u, v in graph.edges:
        if u in adjacency and v in adjacency and u != v and (u in reach) != (v in reach):
            cut.add((u, v))
    return sorted(cut)


def _with_reductions(graph: nx.DiGraph, scope: ClassScope) -> ClassScope:
    """Scope reduction: which flows to cut (remove or proxy) to take workloads out of scope.

    Per connected workload, the flows it has with the restricted zone (cutting them all takes it
    out of the connected zone); cheapest first. Then a minimum edge cut between the restricted
    zone and the general zone over workload-to-workload flows, so that no general workload can
    reach the restricted zone through an in-scope one (PCI SSC scoping guidance, 2016).
    """
    restricted = {m.node for m in scope.members(Zone.RESTRICTED)}
    reductions = []
    for member in scope.members(Zone.CONNECTED):
        node = member.node
        edges = sorted({(u, v) for u, v in graph.in_edges(node) if v in restricted}
                       | {(u, v) for u, v in graph.out_edges(node) if v in restricted}
                       | {(u, v) for u, v in graph.out_edges(node) if u in restricted}
                       | {(u, v) for u, v in graph.in_edges(node) if u in restricted})
        if edges:
            reductions.append(Reduction(tuple(edges), (node,),
                                        f"{node} leaves {scope.data_class} scope"))
    reductions.sort(key=lambda r: (len(r.flows), r.leaves))
    general = {m.node for m in scope.members(Zone.GENERAL)}
    cut = min_edge_cut(graph, restricted, general)
    if cut:
        reductions.append(Reduction(
            tuple(cut), (),
            "minimum cut: without these flows no general workload can reach the "
            f"restricted {scope.data_class} zone through another workload"))
    return ClassScope(scope.data_class, scope.title, scope.framework, scope.zones,
                      scope.crossings, tuple(reductions))


def _scope(graph: nx.DiGraph, config: Config, data_class: str, restricted: dict[str, str], *,
           excluded: set[str], dns: set[str]) -> ClassScope:
    zone: dict[str, ZoneMember] = {}
    zone_name: dict[str, Zone] = {}
    for node, reason in restricted.items():
        zone[node] = ZoneMember(node, reason)
        zone_name[node] = Zone.RESTRICTED
    for node, attrs in sorted(graph.nodes(data=True)):
        if node in zone_name:
            continue
        kind = attrs.get("kind")
        if kind == "external":
            zone_name[node] = Zone.EXTERNAL
            zone[node] = ZoneMember(node, "address outside the cluster")
        elif kind in {"node", "apiserver"}:
            zone_name[node] = Zone.INFRASTRUCTURE
            zone[node] = ZoneMember(node, f"cluster {kind}: security-impacting")
        elif node in dns:
            zone_name[node] = Zone.INFRASTRUCTURE
            zone[node] = ZoneMember(node, "cluster DNS: name resolution is security-impacting")
        elif attrs.get("namespace") in excluded:
            zone_name[node] = Zone.INFRASTRUCTURE
            zone[node] = ZoneMember(node, f"system namespace {attrs.get('namespace')} (not "
                                          "policed)")
    # Connected-to: a direct observed flow with a restricted member, either direction.
    for node in sorted(restricted):
        for peer, incoming in [(p, True) for p in graph.predecessors(node)] + [
            (s, False) for s in graph.successors(node)
        ]:
            if zone_name.get(peer) is not None or graph.nodes[peer].get("kind") != "workload":
                continue
            data = graph.edges[(peer, node) if incoming else (node, peer)]
            ports = ", ".join(_port_text(p) for p in data.get("ports", []))
            verb = f"connects to {node}" if incoming else f"is called by {node}"
            declared = sorted({str(p[DECLARED]) for p in data.get("ports", [])
                               if p.get(DECLARED)})
            why = f"; declared: {'; '.join(declared)}" if declared else ""
            zone_name[peer] = Zone.CONNECTED
            count = count_text(int(data.get("flows", 0)), data)
            zone[peer] = ZoneMember(peer, f"{verb} ({ports}; {count} flows{why})")
    for node in graph.nodes:
        if node not in zone_name:
            zone_name[node] = Zone.GENERAL
            zone[node] = ZoneMember(node, "no observed flow with the restricted zone")
    crossings = []
    for client, server, data in sorted(graph.edges(data=True)):
        a, b = zone_name[client], zone_name[server]
        if a == b:
            continue
        for port in data.get("ports", []):
            crossings.append(Crossing(client, server, str(port.get("protocol")), port.get("port"),
                                      a, b, int(port.get("flows", 0)), port.get("first_seen"),
                                      port.get("last_seen"), bool(port.get("tls")),
                                      str(port.get(DECLARED) or "")))
    zones = tuple(
        (name, tuple(sorted(m for n, m in zone.items() if zone_name[n] == name))) for name in ZONES
    )
    info = config.classes.get(data_class, {})
    return ClassScope(data_class, info.get("title", data_class), config.framework(data_class),
                      zones, tuple(sorted(crossings)))


def _port_text(port: dict[str, Any]) -> str:
    if port.get("port") is None:
        return str(port.get("protocol"))
    return f"{port.get('protocol')}/{port.get('port')}"


def plan_to_dict(result: Plan) -> dict[str, Any]:
    """The JSON form of a plan (``plan.json``)."""
    return {
        "format": PLAN_FORMAT,
        "version": PLAN_VERSION,
        "policed": list(result.policed),
        "excluded_namespaces": list(result.excluded_namespaces),
        "notes": list(result.notes),
        "suggestions": [{"node": m.node, "reason": m.reason} for m in result.suggestions],
        "classes": {
            scope.data_class: {
                "title": scope.title,
                "framework": scope.framework,
                "zones": {
                    name: [{"node": m.node, "reason": m.reason} for m in members]
                    for name, members in scope.zones
                },
                "crossings": [
                    {
                        "client": c.client, "server": c.server, "protocol": c.protocol,
                        "port": c.port, "client_zone": c.client_zone,
                        "server_zone": c.server_zone, "flows": c.flows,
                        "first_seen": c.first_seen, "last_seen": c.last_seen, "tls": c.tls,
                        **({"declared": c.declared} if c.declared else {}),
                    }
                    for c in scope.crossings
                ],
                "scope_reduction": [
                    {"cut": [list(f) for f in r.flows], "leaves": list(r.leaves), "note": r.note}
                    for r in scope.reductions
                ],
            }
            for scope in result.classes
        },
        # Flows segmenter.yaml declares, apart from the observed ones (they are edges of the
        # graph marked declared, and crossings above with "declared" when they cross zones).
        "declared_flows": [f.to_dict() for f in result.declared],
    }


def load_plan(path: str, *, graph: nx.DiGraph | None = None) -> Plan:
    """Read a ``plan.json`` written by ``segmenter plan`` or ``run``; with ``graph``, check that
    the plan was made from it (every node it names is in the graph, policed ones workloads)."""
    result = plan_from_dict(load_json(path), path=path)
    if graph is not None:
        check_plan_matches(result, graph, path=path)
    return result


def plan_from_dict(data: Any, *, path: str | None = None) -> Plan:
    """Read ``plan.json`` back; InputError naming the field of anything malformed."""
    doc = At(data, path)
    doc.mapping()
    if data.get("format") != PLAN_FORMAT or data.get("version") != PLAN_VERSION:
        doc.fail(f"not a segmenter plan (format {PLAN_FORMAT}, version {PLAN_VERSION})")
    scopes = []
    for name, scope in sorted(doc.need("classes").entries()):
        zones_at = scope.need("zones")
        for zone_name, members in zones_at.entries():
            if zone_name not in _ZONE_NAMES:
                members.fail(f"unknown zone (known: {', '.join(_ZONE_NAMES)})")
        zones = tuple((zone, _members(zones_at.key(zone.value))) for zone in ZONES)
        crossings = tuple(_crossing(c) for c in scope.need("crossings").items())
        reductions = tuple(
            Reduction(tuple(_cut(f) for f in r.need("cut").items()), r.need("leaves").texts(),
                      r.key("note").text_or_none() or "")
            for r in scope.key("scope_reduction").items())
        scopes.append(ClassScope(name, scope.need("title").text(),
                                 scope.need("framework").text(), zones, crossings, reductions))
    return Plan(tuple(scopes), doc.need("policed").texts(),
                doc.need("excluded_namespaces").texts(), doc.key("notes").texts(),
                _members(doc.key("suggestions")),
                tuple(_declared(f) for f in doc.key("declared_flows").items()))


_ZONE_NAMES: Final = {z.value: z for z in ZONES}


def _members(at: At) -> tuple[ZoneMember, ...]:
    return tuple(ZoneMember(m.need("node").text(), m.need("reason").text()) for m in at.items())


def _cut(at: At) -> tuple[str, str]:
    pair = at.texts()
    if len(pair) != 2:
        at.fail("must be a [client, server] pair")
    return pair[0], pair[1]


def _crossing(c: At) -> Crossing:
    return Crossing(
        c.need("client").text(), c.need("server").text(), c.need("protocol").text(),
        c.key("port").integer_or_none(0, 65535), c.need("client_zone").choice(_ZONE_NAMES),
        c.need("server_zone").choice(_ZONE_NAMES), c.need("flows").integer(0),
        c.key("first_seen").epoch_or_none(), c.key("last_seen").epoch_or_none(),
        c.need("tls").flag(), c.key("declared").text_or_none() or "")


def _declared(f: At) -> DeclaredFlow:
    return DeclaredFlow(
        f.need("client").text(), f.need("server").text(), f.need("protocol").text(),
        f.key("port").integer_or_none(0, 65535), f.need("reason").text(),
        f.key("justification").text_or_none() or "", f.key("approved_by").text_or_none() or "",
        f.key("source").text_or_none() or "")


def check_plan_matches(result: Plan, graph: nx.DiGraph, *, path: str | None) -> None:
    """InputError unless every node ``result`` names is a node of ``graph`` (and every policed
    one a workload): a plan made from another graph would be compiled or drawn wrongly."""
    # Address blocks that only declared flows name are added to the graph with them
    # (graph.declared.apply_declared), not kept in the graph file.
    declared = {n for flow in result.declared for n in (flow.client, flow.server)}

    def known(node: str) -> bool:
        return node in graph or node in declared

    def missing(node: str, record: str) -> InputError:
        return InputError(f"{node!r} is not a node of the graph (a plan made from another "
                          "graph?)", path=path, record=record)

    for node in result.policed:
        if node not in graph:
            raise missing(node, "policed")
        if graph.nodes[node].get("kind") != "workload":
            raise InputError(f"policed node {node!r} is not a workload", path=path,
                             record="policed")
    for member in result.suggestions:
        if not known(member.node):
            raise missing(member.node, "suggestions")
    for scope in result.classes:
        where = f"classes.{scope.data_class}"
        for zone, members in scope.zones:
            for member in members:
                if not known(member.node):
                    raise missing(member.node, f"{where}.zones.{zone}")
        for crossing in scope.crossings:
            for node in (crossing.client, crossing.server):
                if not known(node):
                    raise missing(node, f"{where}.crossings")
        for reduction in scope.reductions:
            for node in (*(n for cut in reduction.flows for n in cut), *reduction.leaves):
                if not known(node):
                    raise missing(node, f"{where}.scope_reduction")


def summary_lines(result: Plan) -> list[str]:
    """A short scope summary for the terminal."""
    lines = []
    if not result.classes:
        lines.append("No sensitive stores declared: nothing is in scope; every workload still "
                     "gets least-privilege policies.")
    for scope in result.classes:
        lines.append(f"[{scope.data_class}] {scope.title}")
        for zone in (Zone.RESTRICTED, Zone.CONNECTED, Zone.GENERAL):
            members = scope.members(zone)
            names = ", ".join(m.node for m in members if is_workload_id(m.node)) or "-"
            lines.append(f"  {zone:<11} {len(members):>3}  {names}")
        boundary = [c for c in scope.crossings if Zone.RESTRICTED in (c.client_zone, c.server_zone)]
        plaintext = [c for c in boundary if not c.tls]
        lines.append(f"  {len(boundary)} flows cross the restricted boundary; "
                     f"{len(plaintext)} of them without TLS")
        leaving = [r for r in scope.reductions if r.leaves]
        if leaving:
            best = leaving[0]
            lines.append(f"  scope reduction: cut {len(best.flows)} flow(s) "
                         f"({', '.join(f'{a} -> {b}' for a, b in best.flows)}) and "
                         f"{len(best.leaves)} workload(s) leave {scope.data_class} scope")
    if result.declared:
        lines.append(f"declared flows (segmenter.yaml, not observed in the capture): "
                     f"{len(result.declared)}")
        for flow in result.declared:
            port = flow.protocol if flow.port is None else f"{flow.protocol}/{flow.port}"
            approved = f"; approved by {flow.approved_by}" if flow.approved_by else ""
            lines.append(f"  declared {flow.client} -> {flow.server} {port}: {flow.reason}"
                         f"{approved}")
    for suggestion in result.suggestions:
        lines.append(f"suggestion (not applied): {suggestion.node} may be a data store: "
                     f"{suggestion.reason}")
    return lines
