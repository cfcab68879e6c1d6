"""Cilium Hubble flows: ``hubble observe -o json`` (one flow object a line), ``-o jsonpb`` and the
Hubble exporter's files (``{"flow": {...}, "node_name": ..., "time": ...}`` a line; rotated,
optionally gzip-compressed). docs/sources.md says what is kept and how.

Hubble logs packets and proxy messages, not connections: one TCP connection shows up as the
egress trace at the client's node, the ingress trace at the server's node, the policy-verdict
events of both, the reply packets (``is_reply``: source and destination swapped, so the
*destination* port of a reply is the client's ephemeral port) and the L7 records of the proxy.
All of them are folded into one connection keyed by its unordered 5-tuple; which end is the
client is decided from the evidence of all its events, never from one reply alone:

1. ``is_reply`` (``reply`` in older Cilium), the L7 record type (REQUEST / RESPONSE), and
   ``traffic_direction`` where exactly one end is a local endpoint (Cilium endpoint ``ID``
   set): the direction is of the connection, relative to that endpoint (EGRESS: it is the
   client) -- ``reported``;
2. TCP SYN without ACK (sender is the client) or SYN-ACK (receiver is) -- ``handshake``;
3. ICMP request and reply types -- ``first-packet`` / ``port-heuristic``, as for captures;
4. otherwise the lower port is the server's -- ``port-heuristic``.

Memory grows with distinct connections (and distinct DNS answers), not with events: the file is
streamed and each event is folded into its connection. Packet counts are estimates (Hubble
aggregates trace events per connection; the same packet is seen at several points), hence
``sampled``; Hubble has no byte counts (0).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from capture.errors import CaptureError
from capture.sources.base import Opened, ReadOptions, Sink, SourceFormat
from capture.sources.hubble_fold import NAME, HubbleFold
from capture.sources.hubble_records import records
from capture.sources.recordfold import FileFold, head_objects, json_lines, lines_stand_alone

WHAT = "Hubble flow"

# GetFlowsResponse lines that are not flows (observer.proto ``GetFlowsResponse.response_types``).
_NON_FLOW = ("node_status", "lost_events", "agent_event", "debug_event")
_FLOW_KEYS = ("IP", "l4", "verdict", "event_type")


def _fold_file(fold: HubbleFold, opened: Opened, sink: Sink) -> int:
    """Fold the events of one file; returns the number of flow events read."""
    path = opened.path
    flows = 0
    for number, obj in json_lines(opened, sink, what=WHAT):
        sink.input_records += 1
        flow = obj.get("flow")
        if flow is None:
            if any(k in obj for k in _FLOW_KEYS):
                flow = obj  # hubble observe -o json: the bare flow
            elif any(k in obj for k in _NON_FLOW):
                _non_flow(fold, obj, sink)
                continue
            else:
                raise CaptureError(
                    f"not a {WHAT}: no \"flow\" object and none of the flow fields "
                    f"({', '.join(_FLOW_KEYS)})", path=path, record=number, unit="line")
        if not isinstance(flow, dict):
            raise CaptureError(f"not a {WHAT}: \"flow\" is not an object", path=path,
                               record=number, unit="line")
        flows += 1
        try:
            reason = fold.add(flow, obj)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise CaptureError(f"malformed {WHAT}: {_describe(exc)}", path=path,
                               record=number, unit="line") from exc
        if reason is not None:
            sink.skipped[reason] += 1
    return flows


def _non_flow(fold: HubbleFold, obj: Mapping[str, Any], sink: Sink) -> None:
    lost = obj.get("lost_events")
    if isinstance(lost, dict):
        n = lost.get("num_events_lost", 0)
        fold.lost += int(n) if isinstance(n, (int, str)) and str(n).isdigit() else 0
    sink.skipped["non-flow-event"] += 1


def _describe(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"no {exc.args[0]!r}"
    return str(exc) or type(exc).__name__


def _sniff(head: bytes) -> bool:
    for obj in head_objects(head):
        flow = obj.get("flow", obj)
        if isinstance(flow, dict) and "Key" not in flow and \
                sum(k in flow for k in _FLOW_KEYS) >= 2:
            return True
        if not any(k in obj for k in _NON_FLOW):
            return False
    return False


def _read(opened: Opened, sink: Sink, options: ReadOptions) -> None:
    fold = FileFold.state(sink, NAME, HubbleFold)
    lost_before = fold.lost
    if _fold_file(fold, opened, sink) == 0:
        raise CaptureError(f"holds no {WHAT}s (only other Hubble events)", path=opened.path)
    if fold.lost > lost_before:
        sink.warnings.append(f"{opened.path}: Hubble reports {fold.lost - lost_before} events "
                             "lost (ring buffer overrun): some connections may be missing")
    FileFold.publish(sink, NAME, records(fold))


HUBBLE = SourceFormat(
    name=NAME,
    title="Hubble flow log (hubble observe -o json / jsonpb, Hubble exporter)",
    sniff=_sniff,
    read=_read,
    header=lines_stand_alone,
)
