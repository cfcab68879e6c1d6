"""Summaries of a graph: counts by kind, top talkers, and whether the capture window was long
enough to learn its edges (``segmenter graph --stats``)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

import networkx as nx

from segmenter.graph.addresses import special_summary
from segmenter.graph.blocked import blocked_lines

LEARNING_BUCKET: Final = 3600.0
EXAMPLES: Final = 5


def graph_stats(graph: nx.DiGraph, *, top: int = 10) -> dict[str, Any]:
    """Counts by node kind, edges, flows, packets, bytes, top talkers, the flows left out for a
    special address (``special_addresses``: loopback, link-local, multicast, broadcast), and
    learning completeness.

    ``learning`` counts new edges per hour of the capture window, an edge being a (client,
    server, protocol, port) entry counted at its ``first_seen``: when the last hours still bring
    new edges, a longer capture would likely find more. ``window`` is the span of the flows.
    """
    by_kind: Counter[str] = Counter(attrs.get("kind", "?") for _, attrs in graph.nodes(data=True))
    unobserved = sorted(
        n
        for n, a in graph.nodes(data=True)
        if a.get("kind") == "workload" and not a.get("observed")
    )
    named_sets = sum(1 for _, a in graph.nodes(data=True) if a.get("aggregation"))
    talk_bytes: Counter[str] = Counter()
    talk_flows: Counter[str] = Counter()
    protocols: Counter[str] = Counter()
    firsts: list[float] = []
    lasts: list[float] = []
    by_source: Counter[str] = Counter()
    flows = packets = volume = entries = sampled = 0
    for src, dst, attrs in graph.edges(data=True):
        flows += attrs.get("flows", 0)
        packets += attrs.get("packets", 0)
        volume += attrs.get("bytes", 0)
        for entry in attrs.get("ports", []):
            entries += 1
            protocols[entry.get("protocol", "?")] += entry.get("flows", 0)
            sampled += bool(entry.get("sampled"))
            for source in entry.get("sources", ()):
                by_source[source] += 1
            if isinstance(entry.get("first_seen"), int | float):
                firsts.append(float(entry["first_seen"]))
            if isinstance(entry.get("last_seen"), int | float):
                lasts.append(float(entry["last_seen"]))
        for node in {src, dst}:
            talk_bytes[node] += attrs.get("bytes", 0)
            talk_flows[node] += attrs.get("flows", 0)
    talkers = sorted(talk_bytes, key=lambda n: (-talk_bytes[n], -talk_flows[n], n))[:top]
    special = graph.graph.get("special_addresses") or {}
    return {
        "nodes": graph.number_of_nodes(),
        "nodes_by_kind": dict(sorted(by_kind.items())),
        "unobserved_workloads": len(unobserved),
        "external_named_sets": named_sets,
        "special_addresses": {
            "flows": int(special.get("flows", 0)),
            "by_class": {k: dict(v) for k, v in sorted((special.get("by_class") or {}).items())},
        },
        "edges": graph.number_of_edges(),
        "self_loops": nx.number_of_selfloops(graph),
        "port_entries": entries,
        "flows": flows,
        "packets": packets,
        "bytes": volume,
        "flows_by_protocol": dict(sorted(protocols.items())),
        # Entries whose counts are estimates (a sampled source saw them), and the (protocol,
        # port) entries each source saw.
        "sampled_port_entries": sampled,
        "port_entries_by_source": dict(sorted(by_source.items())),
        "identity": graph.graph.get("identity"),
        "blocked": graph.graph.get("blocked") or [],
        "top_talkers": [
            {
                "node": n,
                "bytes": talk_bytes[n],
                "flows": talk_flows[n],
                "peers": len((set(graph.predecessors(n)) | set(graph.successors(n))) - {n}),
            }
            for n in talkers
        ],
        **_learning(firsts, lasts),
    }


def _learning(firsts: list[float], lasts: list[float]) -> dict[str, Any]:
    if not firsts:
        return {"window": None, "learning": None}
    start = min(firsts)
    end = max([*lasts, *firsts])
    buckets = [0] * (math.floor((end - start) / LEARNING_BUCKET) + 1)
    for first in firsts:
        buckets[math.floor((first - start) / LEARNING_BUCKET)] += 1
    last_new = max(firsts)
    return {
        "window": {"start": start, "end": end, "seconds": end - start},
        "learning": {
            "bucket_seconds": LEARNING_BUCKET,
            "new_edges_per_hour": buckets,
            "new_edges_last_hour": sum(1 for f in firsts if f > end - LEARNING_BUCKET),
            "last_new_edge": last_new,
            "quiet_seconds": end - last_new,
        },
    }


def format_stats(stats: Mapping[str, Any]) -> str:
    """:func:`graph_stats` as plain text for ``segmenter graph --stats`` (ends with a newline)."""
    lines: list[str] = []
    kinds = ", ".join(f"{k} {v}" for k, v in stats.get("nodes_by_kind", {}).items())
    line = f"nodes: {stats.get('nodes', 0)}" + (f" ({kinds})" if kinds else "")
    if stats.get("unobserved_workloads"):
        line += f"; {_n(stats['unobserved_workloads'], 'workload')} not seen in traffic"
    lines.append(line)
    if stats.get("external_named_sets"):
        lines.append(
            f"external named sets: {stats['external_named_sets']} (addresses grouped by DNS name)"
        )
    special = stats.get("special_addresses") or {}
    if special.get("flows"):
        lines.append("left out (loopback, link-local, multicast, broadcast: no policy peer): "
                     + special_summary(special))
    lines.append(
        f"edges: {stats.get('edges', 0)} ({_n(stats.get('self_loops', 0), 'self-loop')}), "
        f"{_n(stats.get('port_entries', 0), '(protocol, port) entry', '(protocol, port) entries')}"
    )
    protocols = ", ".join(f"{k} {v}" for k, v in stats.get("flows_by_protocol", {}).items())
    sampled = int(stats.get("sampled_port_entries") or 0)
    lines.append(
        ("flows: about " if sampled else "flows: ") + str(stats.get("flows", 0))
        + (f" ({protocols})" if protocols else "")
        + f", {_n(stats.get('packets', 0), 'packet')}, {_size(stats.get('bytes', 0))}"
    )
    if sampled:
        lines.append(
            f"  {_n(sampled, '(protocol, port) entry', '(protocol, port) entries')} of "
            f"{stats.get('port_entries', 0)} come from sampled sources: their flow, packet and "
            "byte counts are estimates, not exact")
    by_source = stats.get("port_entries_by_source") or {}
    if set(by_source) - {"capture"}:
        lines.append("sources: " + ", ".join(
            f"{name} {_n(count, 'entry', 'entries')}" for name, count in by_source.items()))
    lines.extend(record_lines(stats.get("identity"), stats.get("blocked") or []))
    window, learning = stats.get("window"), stats.get("learning")
    if window and learning:
        start, end = float(window["start"]), float(window["end"])
        lines.append(
            f"capture window: {_utc(start)} to {_utc(end)} ({_span(float(window['seconds']))})"
        )
        lines.append(
            "new edges per hour (an edge is a client, server, protocol and port, counted when "
            "first seen):"
        )
        per_hour = list(learning["new_edges_per_hour"])
        bucket = float(learning.get("bucket_seconds", LEARNING_BUCKET))
        for i, count in enumerate(per_hour):
            lo, hi = start + i * bucket, min(start + (i + 1) * bucket, end)
            lines.append(f"  hour {i + 1:>3} ({_utc(lo)[11:16]}-{_utc(hi)[11:16]}Z): {count}")
        quiet = float(learning["quiet_seconds"])
        lines.append(
            f"last new edge: {_utc(float(learning['last_new_edge']))}, "
            f"{_span(quiet)} before the end of the window"
        )
        lines.append(_verdict(float(window["seconds"]), quiet, learning, bucket))
    talkers = stats.get("top_talkers") or []
    if talkers:
        lines.append("top talkers by bytes:")
        width = max(len(str(t["node"])) for t in talkers)
        for t in talkers:
            lines.append(
                f"  {t['node']:<{width}}  {_size(t['bytes']):>9}  {_n(t['flows'], 'flow'):>13}  "
                f"{_n(t['peers'], 'peer'):>10}"
            )
    return "\n".join(lines) + "\n"


def count_text(count: int, data: Mapping[str, Any]) -> str:
    """A flow count of a graph edge or port entry as people read it: ``~12`` when a sampled
    source counted it (an estimate, never shown as exact)."""
    return f"~{count}" if data.get("sampled") else str(count)


def entry_of(graph: nx.DiGraph, client: str, server: str, protocol: str,
             port: int | None) -> Mapping[str, Any]:
    """The ``ports`` entry of an edge for (protocol, port); {} when there is none."""
    if not graph.has_edge(client, server):
        return {}
    for entry in graph.edges[client, server].get("ports", ()):
        if entry.get("protocol") == protocol and entry.get("port") == port:
            return dict(entry)
    return {}


def record_lines(identity: Mapping[str, Any] | None,
                 blocked: list[dict[str, Any]]) -> list[str]:
    """What flow records said that the graph does not show as edges: disagreements between
    their identities and the inventory, ends that could not be placed, what an inventory
    built from the records lacks, and the flows the policies in force did not let through.
    For ``graph --stats`` and ``run``."""
    lines: list[str] = []
    if identity:
        lines.extend(str(note) for note in identity.get("notes") or ())
        checked = int(identity.get("checked_ends") or 0)
        disagree = identity.get("disagreements") or {}
        count = int(disagree.get("ends") or 0)
        if checked:
            kinds = ", ".join(f"{k} {v}" for k, v in (disagree.get("by_kind") or {}).items())
            lines.append(
                f"identity: {_n(checked, 'flow end')} carried an identity that was checked "
                f"against the inventory; {count} disagree" + (f" ({kinds})" if kinds else "")
                + (":" if count else ""))
            for ex in disagree.get("examples") or ():
                lines.append(
                    f"  {ex['side']} {ex['address']} at {_utc(float(ex['first_seen']))}: the "
                    f"records say {ex['record']}, the inventory {ex['inventory']} "
                    f"({ex['kind']}; {_n(int(ex['flows']), 'flow')})")
            if count:
                lines.append("  the graph follows the inventory (as the policies and their "
                             "replay do): check that it was taken during the capture window")
        unresolved = identity.get("unresolved") or {}
        left = int(unresolved.get("flows") or 0)
        if left:
            lines.append(
                f"unresolved: {_n(left, 'flow')} left out of the graph: an end that no "
                "workload matches (or several do); nothing is guessed:")
            for ex in unresolved.get("examples") or ():
                lines.append(f"  {ex['side']} {ex['record']}: {ex['reason']} "
                             f"({_n(int(ex['flows']), 'flow')})")
    lines.extend(blocked_lines(blocked))
    return lines


def _verdict(seconds: float, quiet: float, learning: Mapping[str, Any], bucket: float) -> str:
    recent = int(learning.get("new_edges_last_hour", 0))
    total = sum(learning.get("new_edges_per_hour") or [0])
    if seconds < bucket:
        return (
            f"learning: the window is shorter than an hour; {_n(total, 'edge')} learned, the "
            f"last {_span(quiet)} before its end. Capture over a full business cycle (a day, "
            "with its batch jobs) before trusting the graph as complete."
        )
    if recent:
        share = 100.0 * recent / total if total else 0.0
        return (
            f"learning: still learning: {_n(recent, 'new edge')} ({share:.0f}%) in the last hour "
            "of the window; a longer capture would likely find more."
        )
    return (
        f"learning: no new edge in the last {_span(quiet)} of the window; the window looks long "
        "enough for the traffic it saw."
    )


def _n(count: int, singular: str, plural: str | None = None) -> str:
    return f"{count} {singular if count == 1 else (plural or singular + 's')}"


def _utc(ts: float) -> str:
    return datetime.fromtimestamp(math.floor(ts), UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _span(seconds: float) -> str:
    total = max(0, round(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "min"), (secs, "s")]
    shown = [f"{n} {unit}" for n, unit in parts if n][:2]
    return " ".join(shown) if shown else "0 s"


def _size(count: float) -> str:
    value = float(count)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


