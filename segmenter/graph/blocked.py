"""Flows the dataplane did not let through, kept as evidence (flow file version 2 ``verdict``).

A flow-log record with the verdict ``dropped``, ``audit`` or ``error`` says what the policies in
force block (or would block, in audit mode): it is never traffic to allow, so it never becomes a
graph edge, a planned flow or a rule. The graph keeps it, aggregated like edges per (client
node, server node, protocol, port) and verdict, in its ``blocked`` attribute
(docs/graph-format.md), with the sources that saw it and the policies they said decided it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from segmenter.graph.resolve import Resolved
from segmenter.model import Flow

EXAMPLES: Final = 5


# (client node, server node, protocol, port, verdict, window start or None)
BlockedKey = tuple[str, str, str, int | None, str, int | None]


class BlockedFlows:
    """Accumulates the flows that were not forwarded, per ``window`` seconds of their first
    packet when given (the graph summaries of :mod:`segmenter.graph.fold`), else over all time.
    Tallies of separate flows merge (:meth:`merge`), in any order."""

    def __init__(self, window: int | None = None) -> None:
        self.window = window
        # key -> [flows, first, last, sources, policies, sampled]
        self._acc: dict[BlockedKey, list[Any]] = {}

    def __len__(self) -> int:
        return len(self._acc)

    def add(self, flow: Flow, client: Resolved, server: Resolved) -> None:
        assert flow.verdict is not None
        window = self.window
        key = (client.node_id, server.node_id, flow.transport.value, server.port,
               flow.verdict.value,
               None if window is None else int(flow.first_seen // window) * window)
        self.add_row(key, 1, flow.first_seen, flow.last_seen,
                     sources=flow.sources or ("capture",), policies=flow.policies,
                     sampled=flow.sampled)

    def add_row(self, key: BlockedKey, flows: int, first: float, last: float, *,
                sources: Iterable[str], policies: Iterable[str], sampled: bool) -> None:
        """Count ``flows`` flows of one key at once (a summary's row)."""
        slot = self._acc.get(key)
        if slot is None:
            slot = self._acc[key] = [0, first, last, set(), set(), False]
        slot[0] += flows
        slot[1] = min(slot[1], first)
        slot[2] = max(slot[2], last)
        slot[3].update(sources)
        slot[4].update(policies)
        slot[5] = slot[5] or sampled

    def merge(self, other: BlockedFlows) -> None:
        for key, (flows, first, last, sources, policies, sampled) in other._acc.items():
            self.add_row(key, flows, first, last, sources=sources, policies=policies,
                         sampled=sampled)

    def rows(self) -> list[tuple[BlockedKey, list[Any]]]:
        """(key, [flows, first, last, sources, policies, sampled]), by key."""
        return [(key, self._acc[key]) for key in sorted(self._acc, key=_key_order)]

    def entries(self) -> list[dict[str, Any]]:
        """The graph's ``blocked`` list, sorted (windows added up)."""
        whole = BlockedFlows()
        for key, (flows, first, last, sources, policies, sampled) in self._acc.items():
            whole.add_row((*key[:5], None), flows, first, last, sources=sources,
                          policies=policies, sampled=sampled)
        out = []
        for key in sorted(whole._acc, key=_key_order):
            client, server, protocol, port, verdict, _ = key
            flows, first, last, sources, policies, sampled = whole._acc[key]
            entry: dict[str, Any] = {
                "client": client, "server": server, "protocol": protocol, "port": port,
                "verdict": verdict, "flows": flows, "first_seen": float(first),
                "last_seen": float(last), "sources": sorted(sources),
                "policies": sorted(policies),
            }
            if sampled:
                entry["sampled"] = True
            out.append(entry)
        return out


def _key_order(key: tuple[Any, ...]) -> tuple[Any, ...]:
    client, server, protocol, port, verdict, *window = key
    return (client, server, protocol, -1 if port is None else port, verdict,
            *(-1 if w is None else w for w in window))


def blocked_lines(entries: list[dict[str, Any]]) -> list[str]:
    """``N flows the policies in force dropped: ...`` for ``graph --stats`` and ``run``."""
    if not entries:
        return []
    by_verdict: dict[str, int] = {}
    for entry in entries:
        by_verdict[entry["verdict"]] = by_verdict.get(entry["verdict"], 0) + int(entry["flows"])
    total = sum(by_verdict.values())
    sampled = any(e.get("sampled") for e in entries)
    verdicts = ", ".join(f"{v} {n}" for v, n in sorted(by_verdict.items()))
    lines = [
        f"{'about ' if sampled else ''}{total} flow{'' if total == 1 else 's'} the policies in "
        f"force did not let through ({verdicts}; evidence of what they block, never allowed "
        f"by the plan), {len(entries)} (client, server, port) entr"
        f"{'y' if len(entries) == 1 else 'ies'}:"
    ]
    ranked = sorted(entries, key=lambda e: (-int(e["flows"]), _key_order(
        (e["client"], e["server"], e["protocol"], e["port"], e["verdict"]))))
    for entry in ranked[:EXAMPLES]:
        port = str(entry["protocol"])
        if entry["port"] is not None:
            port += f"/{entry['port']}"
        count = f"{'~' if entry.get('sampled') else ''}{entry['flows']}"
        text = (f"  {entry['verdict']}: {entry['client']} -> {entry['server']} {port} "
                f"({count} flow{'' if entry['flows'] == 1 else 's'}; {', '.join(entry['sources'])}")
        if entry["policies"]:
            text += f"; by {', '.join(entry['policies'])}"
        lines.append(text + ")")
    if len(ranked) > EXAMPLES:
        lines.append(f"  and {len(ranked) - EXAMPLES} more (the graph's \"blocked\" attribute)")
    return lines
