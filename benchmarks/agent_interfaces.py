"""The agent's folding cost when it captures every interface of a node (``--iface any``).

On ``any`` a packet between two pods of a node is read twice (in on one veth, out on the
other), a packet to another node's pod twice or three times (veth, bridge, uplink). Each
sighting is decoded; the first one of a direction is folded, the others are counted as
``other-interface`` (``capture.agent.Agent.packet_on``). This measures, in one run on the same
generated conversations (TCP request/response and UDP exchanges between pod addresses):

* baseline: ``Agent.packet``, each frame once, Ethernet (one named interface);
* ``Agent.packet_on`` with each frame once (a cooked SLL2 frame: what ``any`` costs when a
  packet crosses one interface), twice and three times;

and prints the time per packet sent and the ratio to the baseline. Reading from the socket
(a ``recvmsg`` per sighting) is not included: it scales with sightings the same way.

    .venv/bin/python benchmarks/agent_interfaces.py
    .venv/bin/python benchmarks/agent_interfaces.py --packets 500000
"""

from __future__ import annotations

import argparse
import struct
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from capture.agent import Agent
from capture.decode import LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL2
from capture.table import NS

T0 = 1_700_000_000 * NS


def _checksum_free_ip(src: bytes, dst: bytes, proto: int, l4: bytes) -> bytes:
    total = 20 + len(l4)
    return struct.pack(">BBHHHBBH4s4s", 0x45, 0, total, 1, 0, 64, proto, 0, src, dst) + l4


def conversations(packets: int) -> list[tuple[bytes, bool]]:
    """IP packets (and whether the client sent it) of TCP and UDP conversations."""
    out: list[tuple[bytes, bool]] = []
    n = 0
    while len(out) < packets:
        n += 1
        a = struct.pack(">BBH", 10, 1, n % 60000)
        b = struct.pack(">BBH", 10, 2, (n * 7) % 60000)
        client, server = b"\x0a" + a[1:], b"\x0a" + b[1:]
        sport = 32768 + n % 28000
        if n % 4:
            seq = 1000
            for flags, from_client, size in ((0x02, True, 0), (0x12, False, 0), (0x10, True, 0),
                                             (0x18, True, 200), (0x18, False, 1200),
                                             (0x11, True, 0), (0x11, False, 0), (0x10, True, 0)):
                ports = (sport, 8080) if from_client else (8080, sport)
                tcp = struct.pack(">HHIIBBHHH", *ports, seq, 0, 0x50, flags, 65535, 0, 0)
                src, dst = (client, server) if from_client else (server, client)
                out.append((_checksum_free_ip(src, dst, 6, tcp + b"x" * size), from_client))
                seq += 1
        else:
            for from_client in (True, False):
                ports = (sport, 53) if from_client else (53, sport)
                udp = struct.pack(">HHHH", *ports, 8 + 30, 0) + b"q" * 30
                src, dst = (client, server) if from_client else (server, client)
                out.append((_checksum_free_ip(src, dst, 17, udp), from_client))
    return out[:packets]


def ether(ip: bytes) -> bytes:
    return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip


def cooked(ip: bytes, ifindex: int, pkttype: int) -> bytes:
    return struct.pack(">HHIHBB8s", 0x0800, 0, ifindex, 1, pkttype, 6, b"\x02" * 6) + ip


def run_once(ips: list[tuple[bytes, bool]], sightings: int | None) -> float:
    """Seconds to fold ``ips``: ``sightings`` None is the Ethernet baseline."""
    with tempfile.TemporaryDirectory() as tmp:
        agent = Agent(tmp, host="bench", max_flows=1_000_000,
                      linktype=LINKTYPE_ETHERNET if sightings is None else LINKTYPE_LINUX_SLL2)
        if sightings is None:
            frames = [(ether(ip), T0 + i * 1000) for i, (ip, _c) in enumerate(ips)]
            start = time.perf_counter()
            for data, t in frames:
                agent.packet(data, t)
            return time.perf_counter() - start
        seen = []
        for i, (ip, from_client) in enumerate(ips):
            # In on the sender's veth, out on the receiver's (and the uplink).
            path = (5, 7, 2) if from_client else (7, 5, 2)
            for k in range(sightings):
                seen.append((cooked(ip, path[k], 4 if k else 0), T0 + i * 1000 + k, path[k]))
        start = time.perf_counter()
        for data, t, ifindex in seen:
            agent.packet_on(data, t, ifindex)
        elapsed = time.perf_counter() - start
        assert agent.table.skipped.get("other-interface", 0) == (sightings - 1) * len(ips)
        return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packets", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    ips = conversations(args.packets)
    print(f"{len(ips):,} packets of generated TCP and UDP conversations; best of {args.repeat}")
    variants: list[int | None] = [None, 1, 2, 3]
    best: dict[int | None, float] = {}
    for _ in range(args.repeat):  # interleaved, so that a busy moment hits every variant
        for v in variants:
            t = run_once(ips, v)
            best[v] = min(best.get(v, t), t)
    base = best[None]
    print(f"  one interface (Agent.packet, Ethernet): {base / len(ips) * 1e6:6.2f} us/packet")
    for sightings in (1, 2, 3):
        t = best[sightings]
        print(f"  any, each packet seen {sightings}x (packet_on):  {t / len(ips) * 1e6:6.2f}"
              f" us/packet  ({t / base:.2f}x the baseline)")


if __name__ == "__main__":
    main()
