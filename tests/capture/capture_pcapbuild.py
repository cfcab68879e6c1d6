"""Helpers for the capture tests: build frames with scapy, write pcap / pcapng files, ingest.

Captures are generated into ``tmp_path`` by the tests themselves; nothing binary is committed.
"""

from __future__ import annotations

import json
import struct
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

# This folder is named "capture" and has no __init__.py: with pytest's rootdir-less layout,
# tests/ is on sys.path and tests/capture could be taken for a namespace package "capture"
# when the repository root is not on sys.path (the pytest script rather than python -m pytest).
# Put the root first and forget such a namespace package before importing the real one.
_REPO = str(Path(__file__).resolve().parents[2])
if sys.path[:1] != [_REPO]:
    sys.path.insert(0, _REPO)
if getattr(sys.modules.get("capture"), "__file__", "") is None:
    for _name in [n for n in sys.modules if n == "capture" or n.startswith("capture.")]:
        del sys.modules[_name]

from scapy.layers.inet import ICMP, IP, TCP, UDP  # noqa: E402
from scapy.layers.inet6 import IPv6  # noqa: E402
from scapy.layers.l2 import Ether  # noqa: E402
from scapy.packet import Packet  # noqa: E402
from scapy.utils import RawPcapNgWriter, RawPcapWriter  # noqa: E402

from capture.ingest import fold  # noqa: E402

T0 = 1_700_000_000.0
CLIENT = "10.0.0.1"
SERVER = "10.0.0.2"
MAC_A = "02:00:00:00:00:01"
MAC_B = "02:00:00:00:00:02"

Frame = tuple[float, bytes]  # (time, frame bytes)


def ether(ip: Packet) -> bytes:
    return bytes(Ether(src=MAC_A, dst=MAC_B) / ip)


def tcp(  # noqa: PLR0917 - reads like the header it builds
    src: str, dst: str, sport: int, dport: int, flags: str, payload: bytes = b"", seq: int = 1000,
    *, v6: bool = False,
) -> Packet:
    ip = IPv6(src=src, dst=dst) if v6 else IP(src=src, dst=dst, id=1)
    return ip / TCP(sport=sport, dport=dport, flags=flags, seq=seq) / payload


def udp(src: str, dst: str, sport: int, dport: int, payload: bytes = b"", *,
        v6: bool = False) -> Packet:
    ip = IPv6(src=src, dst=dst) if v6 else IP(src=src, dst=dst, id=1)
    return ip / UDP(sport=sport, dport=dport) / payload


def icmp_echo(src: str, dst: str, reply: bool = False) -> Packet:
    return IP(src=src, dst=dst) / ICMP(type=0 if reply else 8, id=7, seq=1) / b"ping"


def handshake_flow(
    client: str = CLIENT, server: str = SERVER, cport: int = 40000, sport: int = 443, *,
    request: bytes = b"GET / HTTP/1.1\r\n\r\n", response: bytes = b"HTTP/1.1 200 OK\r\n\r\n",
    v6: bool = False, close: bool = True, isn: int = 1000,
) -> list[Packet]:
    """A whole TCP conversation: handshake, one request / response, FIN from both sides;
    ``isn``: the client's initial sequence number (a new connection has a new one)."""
    c = isn
    s = 5000
    pkts = [
        tcp(client, server, cport, sport, "S", seq=c, v6=v6),
        tcp(server, client, sport, cport, "SA", seq=s, v6=v6),
        tcp(client, server, cport, sport, "A", seq=c + 1, v6=v6),
        tcp(client, server, cport, sport, "PA", request, seq=c + 1, v6=v6),
        tcp(server, client, sport, cport, "PA", response, seq=s + 1, v6=v6),
    ]
    if close:
        pkts += [
            tcp(client, server, cport, sport, "FA", seq=c + 1 + len(request), v6=v6),
            tcp(server, client, sport, cport, "FA", seq=s + 1 + len(response), v6=v6),
            tcp(client, server, cport, sport, "A", seq=c + 2 + len(request), v6=v6),
        ]
    return pkts


def timed(frames: Iterable[bytes], start: float = T0, step: float = 0.001) -> list[Frame]:
    return [(start + i * step, f) for i, f in enumerate(frames)]


def write_pcap(
    path: Path,
    frames: Sequence[Frame],
    linktype: int = 1,
    *,
    endianness: str = "<",
    nano: bool = False,
    snaplen: int = 65535,
) -> Path:
    """A classic pcap with ``linktype``; frames longer than ``snaplen`` are cut (wirelen kept)."""
    with RawPcapWriter(str(path), linktype=linktype, endianness=endianness, nano=nano,
                       snaplen=snaplen) as w:
        w.linktype = linktype  # scapy's writer ignores a falsy link type (0, NULL)
        w.write_header(None)
        for t, frame in frames:
            sec = int(t)
            frac = round((t - sec) * (1e9 if nano else 1e6))
            w.write_packet(frame[:snaplen], sec=sec, usec=frac, wirelen=len(frame))
    return path


def write_pcapng_scapy(path: Path, frames: Sequence[tuple[float, bytes, int, str]]) -> Path:
    """A pcapng written by scapy's writer: (time, frame, linktype, interface name) each."""
    first_if = frames[0][3]
    with RawPcapNgWriter(str(path)) as w:
        # Interface 0 (ifname None in scapy's writer) is opened with the writer's link type.
        w.linktype = frames[0][2]
        w.write_header(None)
        for t, frame, linktype, ifname in frames:
            name = None if ifname == first_if else ifname.encode()
            w._write_packet(frame, linktype=linktype, sec=t, ifname=name)
    return path


def pcapng_bytes(
    interfaces: Sequence[tuple[int, int]],
    packets: Sequence[tuple[int, int, bytes]],
    *,
    endian: str = "<",
    wirelen: dict[int, int] | None = None,
    names: Sequence[bytes | None] = (),
) -> bytes:
    """A pcapng built by hand: interfaces (linktype, if_tsresol byte), packets (interface id,
    time stamp in that interface's units, frame). Used where scapy's writer cannot (time stamp
    resolution, byte order). ``names``: each interface's if_name option value (bytes as
    written, None for none), in order."""

    def block(btype: int, body: bytes) -> bytes:
        body += b"\x00" * (-len(body) % 4)
        length = 12 + len(body)
        return struct.pack(endian + "II", btype, length) + body + struct.pack(endian + "I", length)

    out = block(0x0A0D0D0A, struct.pack(endian + "IHHq", 0x1A2B3C4D, 1, 0, -1))
    for i, (linktype, tsresol) in enumerate(interfaces):
        opts = struct.pack(endian + "HH", 9, 1) + bytes([tsresol]) + b"\x00" * 3
        name = names[i] if i < len(names) else None
        if name is not None:
            opts += struct.pack(endian + "HH", 2, len(name)) + name + b"\x00" * (-len(name) % 4)
        opts += struct.pack(endian + "HH", 0, 0)
        out += block(1, struct.pack(endian + "HHI", linktype, 0, 262144) + opts)
    for n, (ifid, ts, frame) in enumerate(packets):
        orig = (wirelen or {}).get(n, len(frame))
        out += block(6, struct.pack(endian + "IIIII", ifid, ts >> 32, ts & 0xFFFFFFFF, len(frame),
                                    orig) + frame)
    return out


def records(paths: Sequence[Path | str], **kwargs: Any) -> tuple[dict[str, Any],
                                                                   list[dict[str, Any]],
                                                                   list[dict[str, Any]]]:
    """(header, flow records, dns records) of ingesting ``paths``."""
    header, recs, _stats = fold([str(p) for p in paths], **kwargs)
    # Round-trip through JSON, as a reader of the flow file would see them.
    recs = [json.loads(json.dumps(r)) for r in recs]
    return header, [r for r in recs if r["record"] == "flow"], [r for r in recs
                                                               if r["record"] == "dns"]


def only_flow(paths: Sequence[Path | str], **kwargs: Any) -> dict[str, Any]:
    _h, flows, _d = records(paths, **kwargs)
    assert len(flows) == 1, flows
    return flows[0]


def client_hello(sni: str | None, *, pad: int = 0) -> bytes:
    """A minimal TLS 1.2-style ClientHello record with a server_name extension."""
    exts = b""
    if sni is not None:
        name = sni.encode()
        exts += struct.pack(">HHHBH", 0, len(name) + 5, len(name) + 3, 0, len(name)) + name
    if pad:
        exts = struct.pack(">HH", 21, pad) + bytes(pad) + exts  # padding extension first
    body = b"\x03\x03" + bytes(32) + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00"
    body += struct.pack(">H", len(exts)) + exts
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack(">H", len(hs)) + hs
