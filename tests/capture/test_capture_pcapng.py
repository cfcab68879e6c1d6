"""Our pcapng block reader (``capture.pcapng``) against scapy's ``RawPcapNgReader``.

The fast path reads pcapng with our own reader; ``fast=False`` (the reference) with scapy's.
Both must give the same packets (time, link type, bytes, wire length) and, on a damaged file,
the same packets before the damage and the same description of it. Checked on the corpus
pcapngs, on hand-built files with every block type, option and byte order we know of, on every
truncation of such a file and on random corruption of its bytes.
"""

from __future__ import annotations

import random
import struct
from pathlib import Path
from typing import Any

import pytest
from capture_pcapbuild import client_hello

import capture.pcapfast
from capture.errors import CaptureError
from capture.ingest import ingest
from capture.pcapng import NS, PcapngBadStart, PcapngDamaged, Run, iter_packets
from capture.readers import MAX_RECORD, _Damaged, _scapy_packets, open_capture

CORPUS = (Path(__file__).resolve().parents[2] / "../shared/corpora/pcaps").resolve()


def _block(endian: str, btype: int, body: bytes, *, pad: bool = True,
           length: int | None = None) -> bytes:
    if pad:
        body += b"\x00" * (-len(body) % 4)
    total = 12 + len(body) if length is None else length
    return (struct.pack(endian + "II", btype, total) + body
            + b"\x00" * (-total % 4 if not pad else 0) + struct.pack(endian + "I", total))


def _opt(endian: str, code: int, value: bytes) -> bytes:
    return struct.pack(endian + "HH", code, len(value)) + value + b"\x00" * (-len(value) % 4)


def _shb(endian: str, options: bytes = b"") -> bytes:
    return _block(endian, 0x0A0D0D0A, struct.pack(endian + "IHHq", 0x1A2B3C4D, 1, 0, -1)
                  + options)


def _idb(endian: str, linktype: int, snaplen: int = 262144, tsresol: int | None = None,
         extra: bytes = b"") -> bytes:
    opts = extra
    if tsresol is not None:
        opts += _opt(endian, 9, bytes([tsresol]))
    if opts:
        opts += struct.pack(endian + "HH", 0, 0)
    return _block(endian, 1, struct.pack(endian + "HHI", linktype, 0, snaplen) + opts)


def _frame(rnd: random.Random, k: int) -> bytes:
    payload = client_hello(f"h{k}.example") if k % 5 == 0 else bytes(rnd.randrange(0, 200))
    tcp = struct.pack(">HHIIBBHHH", 40000 + k % 7, 443, 1, 1, 0x50, 0x18, 65535, 0, 0) + payload
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0x4000, 64, 6, 0,
                     bytes([10, 0, 0, 1 + k % 3]), b"\x0a\x00\x01\x01") + tcp
    return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip


def _sll(frame: bytes) -> bytes:
    return b"\x00\x00\x00\x01\x00\x06" + b"\x02" * 6 + b"\x00\x00" + frame[12:]


def build(seed: int, endian: str = "<", sections: int = 2) -> bytes:
    """A pcapng with every block type we know of, several interfaces and sections."""
    rnd = random.Random(seed)
    out = b""
    for section in range(sections):
        e = endian if section % 2 == 0 else "<>"[endian == "<"]
        out += _shb(e, _opt(e, 4, b"segmenter test") + struct.pack(e + "HH", 0, 0)
                    if rnd.random() < 0.5 else b"")
        out += _idb(e, 1, tsresol=rnd.choice((None, 6, 9, 3, 0x80 | 20)))
        out += _idb(e, 113, snaplen=rnd.choice((0, 80, 262144)), tsresol=9)
        out += _block(e, 4, b"\x00\x00\x00\x00")  # name resolution block: ignored
        for k in range(40):
            frame = _frame(rnd, k)
            r = rnd.random()
            ts = 1_700_000_000_000_000 + k * 1000 + section * 10**7
            if r < 0.55:
                ifid = rnd.choice((0, 1, 1, 2))  # 2: no such interface, skipped
                data = _sll(frame) if ifid == 1 else frame
                caplen = len(data)
                opts = b""
                q = rnd.random()
                if q < 0.1:
                    opts = _opt(e, 2, struct.pack(e + "I", 1)) + _opt(e, 1, b"hi") + struct.pack(
                        e + "HH", 0, 0)
                elif q < 0.15:
                    caplen = len(data) + 7  # a capture length past the data
                elif q < 0.2:
                    data = data[:60]
                    caplen = 60
                out += _block(e, 6, struct.pack(e + "IIIII", ifid, ts >> 32, ts & 0xFFFFFFFF,
                                                caplen, len(frame) + 4)
                              + data + b"\x00" * (-len(data) % 4) + opts)
            elif r < 0.7:
                out += _block(e, 3, struct.pack(e + "I", len(frame)) + frame)  # simple packet
            elif r < 0.8:
                out += _block(e, 2, struct.pack(e + "HHIIII", 0, 0, ts >> 32, ts & 0xFFFFFFFF,
                                                len(frame), len(frame)) + frame)  # obsolete
            elif r < 0.85:
                out += _block(e, 5, struct.pack(e + "III", 0, ts >> 32, ts & 0xFFFFFFFF))
            elif r < 0.9:
                secret = b"CLIENT_RANDOM 00 11\n"
                out += _block(e, 10, struct.pack(e + "II", 0x12345678, len(secret)) + secret)
            elif r < 0.95:
                out += _block(e, 0x80000001, struct.pack(e + "I", 42) + _opt(e, 2, b"curl"))
            else:
                out += _block(e, 0x0BAD, bytes(rnd.randrange(0, 9)))  # unknown: skipped
    return out


EPB_RUNS = [None] + ([capture.pcapfast._fastloop.epb_run]
                     if capture.pcapfast._fastloop is not None else [])


def _flatten(item: Any) -> list[Any]:
    """The packets of a ``Run`` (classic records) or a packet."""
    if not isinstance(item, Run):
        return [item]
    out = []
    pos = 0
    while pos < item.size:
        sec, frac, caplen, wirelen = struct.unpack_from("<IIII", item.records, pos)
        out.append((sec * NS + frac, item.linktype,
                    bytes(item.records[pos + 16 : pos + 16 + caplen]), wirelen))
        pos += 16 + caplen
    assert len(out) == item.packets and pos == item.size
    return out


def _ours(path: Path, epb_run: Any = None) -> tuple[list[Any], str | None]:
    """Our reader's packets and damage; with ``epb_run``, through the C converter."""
    packets: list[Any] = []
    try:
        with path.open("rb", buffering=0) as f:
            for item in iter_packets(f, MAX_RECORD, epb_run):
                packets.extend(_flatten(item))
    except PcapngDamaged as exc:
        return packets, str(exc)
    except PcapngBadStart as exc:
        return packets, f"cannot read as pcapng: {exc}"
    return packets, None


def _scapy(path: Path) -> tuple[list[Any], str | None]:
    packets: list[Any] = []
    try:
        for t, linktype, data, wirelen in _scapy_packets(open_capture(str(path))):
            packets.append((t, linktype, bytes(data), wirelen))
    except _Damaged as exc:
        return packets, str(exc)
    except CaptureError as exc:
        return packets, exc.message
    return packets, None


@pytest.mark.parametrize("epb_run", EPB_RUNS, ids=lambda f: "C" if f else "py")
@pytest.mark.parametrize("endian", ["<", ">"])
@pytest.mark.parametrize("seed", range(4))
def test_same_packets_as_scapy(tmp_path: Path, endian: str, seed: int, epb_run: Any) -> None:
    path = tmp_path / "t.pcapng"
    path.write_bytes(build(seed, endian))
    ours, damage = _ours(path, epb_run)
    assert damage is None
    assert ours == _scapy(path)[0]
    assert {linktype for _t, linktype, _d, _w in ours} == {1, 113}
    if epb_run is not None:  # the C converter really made runs of them
        with path.open("rb") as f:
            runs = [i for i in iter_packets(f, MAX_RECORD, epb_run) if isinstance(i, Run)]
        assert sum(run.packets for run in runs) > len(ours) / 4


def test_simple_packet_on_an_interface_without_snap_length(tmp_path: Path) -> None:
    """Snap length 0 is "no limit" (the format); scapy's own reader keeps no bytes of such a
    Simple Packet Block, the subclass in capture.readers mends that."""
    frame = _frame(random.Random(1), 1)
    path = tmp_path / "spb.pcapng"
    path.write_bytes(_shb("<") + _idb("<", 1, snaplen=0)
                     + _block("<", 3, struct.pack("<I", len(frame)) + frame))
    assert _ours(path) == _scapy(path) == ([(0, 1, frame, len(frame))], None)


@pytest.mark.parametrize("epb_run", EPB_RUNS, ids=lambda f: "C" if f else "py")
def test_every_truncation_is_read_as_scapy_reads_it(tmp_path: Path, epb_run: Any) -> None:
    whole = build(7, "<", sections=2)
    path = tmp_path / "cut.pcapng"
    step = max(1, len(whole) // 700)
    for cut in range(1, len(whole), step):
        path.write_bytes(whole[:cut])
        try:
            open_capture(str(path))
        except CaptureError:
            continue  # too short to tell it is a pcapng: neither reader is reached
        assert _ours(path, epb_run) == _scapy(path), cut


@pytest.mark.parametrize("epb_run", EPB_RUNS, ids=lambda f: "C" if f else "py")
@pytest.mark.parametrize("seed", range(3))
def test_corruption_is_read_as_scapy_reads_it(tmp_path: Path, seed: int, epb_run: Any) -> None:
    rnd = random.Random(seed)
    whole = build(seed, "<>"[seed % 2], sections=2)
    path = tmp_path / "bad.pcapng"
    for _ in range(150):
        data = bytearray(whole)
        for _ in range(rnd.randrange(1, 4)):
            pos = rnd.randrange(len(data))
            data[pos] = rnd.choice((0, 0xFF, rnd.randrange(256), data[pos] ^ 4))
        path.write_bytes(bytes(data))
        try:
            open_capture(str(path))
        except CaptureError:
            continue  # not a pcapng any more: neither reader is reached
        assert _ours(path, epb_run) == _scapy(path), data.hex()[:200]


def test_absurd_block_length(tmp_path: Path) -> None:
    path = tmp_path / "absurd.pcapng"
    path.write_bytes(_shb("<") + _idb("<", 1) + struct.pack("<II", 6, 1 << 30) + bytes(64))
    assert _ours(path) == _scapy(path) == ([], "absurd block length 1073741824 (more than"
                                                 " 16777216)")


def test_block_length_not_a_multiple_of_four(tmp_path: Path) -> None:
    """scapy reads over the padding such a length forgot; so do we."""
    frame = _frame(random.Random(2), 3)[:61]
    body = struct.pack("<IIIII", 0, 0, 5, len(frame), len(frame)) + frame
    path = tmp_path / "pad.pcapng"
    path.write_bytes(_shb("<") + _idb("<", 1) + _block("<", 6, body, pad=False,
                                                      length=12 + len(body)))
    assert _ours(path) == _scapy(path)
    assert len(_ours(path)[0]) == 1


@pytest.mark.skipif(not CORPUS.is_dir(), reason=f"no corpus at {CORPUS}")
@pytest.mark.parametrize("epb_run", EPB_RUNS, ids=lambda f: "C" if f else "py")
def test_corpus_pcapngs(tmp_path: Path, epb_run: Any) -> None:
    paths = sorted(CORPUS.rglob("*.pcapng"))
    assert paths
    for path in paths:
        ours, damage = _ours(path, epb_run)
        assert (ours, damage) == _scapy(path), path
        assert ours


def _ingest(path: Path, tmp_path: Path, name: str, **kwargs: Any) -> bytes:
    out = tmp_path / f"{name}.flows"
    ingest([str(path)], str(out), **kwargs)
    return out.read_bytes()


@pytest.mark.parametrize("seed", range(3))
def test_flow_files_the_same_every_way(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       seed: int) -> None:
    """Our reader with and without the C loop, and scapy's with the general decoder."""
    path = tmp_path / "f.pcapng"
    path.write_bytes(build(seed, "<>"[seed % 2], sections=3))
    fast = _ingest(path, tmp_path, "fast")
    reference = _ingest(path, tmp_path, "ref", fast=False)
    monkeypatch.setattr(capture.pcapfast, "_fastloop", None)
    pure = _ingest(path, tmp_path, "pure")
    assert fast == pure == reference


@pytest.mark.parametrize("epb_run", EPB_RUNS, ids=lambda f: "C" if f else "py")
@pytest.mark.parametrize("kind", ["absurd", "truncated"])
def test_damage_at_the_end_of_a_read_buffer(tmp_path: Path, epb_run: Any, kind: str) -> None:
    """A block header across the end of the 4096-byte buffer of scapy's file: its peek()
    gives only part of it; the damage is described all the same, and alike."""
    filler = _block("<", 0xBAD, bytes(4092 - 28 - 20 - 12))  # the next block starts at 4092
    tail = (struct.pack("<II", 6, 1 << 30) + bytes(64) if kind == "absurd"
            else struct.pack("<II", 6, 48) + bytes(20))
    path = tmp_path / "edge.pcapng"
    path.write_bytes(_shb("<") + _idb("<", 1) + filler + tail)
    assert len(_shb("<") + _idb("<", 1) + filler) == 4092
    expected = ("absurd block length 1073741824 (more than 16777216)" if kind == "absurd"
                else "truncated or damaged block (type 0x6, length 48)")
    assert _ours(path, epb_run) == _scapy(path) == ([], expected)


@pytest.mark.parametrize("first", [True, False])
def test_section_header_longer_than_any_block(tmp_path: Path, first: bool) -> None:
    big = struct.pack("<II", 0x0A0D0D0A, (16 << 20) + 32) + struct.pack("<IHHq", 0x1A2B3C4D, 1,
                                                                        0, -1) + bytes(64)
    path = tmp_path / "bigshb.pcapng"
    path.write_bytes(big if first else _shb("<") + _idb("<", 1) + big)
    expected = ("cannot read as pcapng: the first section header block is damaged" if first
                else "absurd block length 16777248 (more than 16777216)")
    assert _ours(path) == _scapy(path) == ([], expected)
