"""Inputs: pipes and FIFOs, compression, the link-type field's upper bits, empty and cut-short
captures, the output naming an input, scapy's own log lines, JSON the parser chokes on.

Every capture is generated here (``capture_pcapbuild``); compressed ones with the standard
library or the ``zstandard`` package, as ``gzip`` / ``zstd`` / ``xz`` / ``bzip2`` write them.
"""

from __future__ import annotations

import bz2
import gzip
import json
import logging
import lzma
import os
import random
import struct
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from capture_pcapbuild import (
    T0,
    client_hello,
    ether,
    handshake_flow,
    pcapng_bytes,
    records,
    tcp,
    timed,
    udp,
    write_pcap,
)

from capture.cli import main
from capture.errors import CaptureError
from capture.flowfile import FORMAT
from capture.ingest import ingest

REPO = Path(__file__).resolve().parents[2]
SEGMENTER = Path(sys.executable).with_name("segmenter")


def _frames() -> list[bytes]:
    frames = []
    for k in range(6):
        frames += [ether(p) for p in handshake_flow(f"10.0.{k}.1", "10.0.0.2", 40000 + k, 443,
                                                    request=client_hello(f"s{k}.example"))]
    frames.append(ether(udp("10.96.0.10", "10.0.0.1", 53, 40001, b"\x00" * 12)))
    return frames


def _pcap(tmp_path: Path, name: str = "c.pcap") -> Path:
    return write_pcap(tmp_path / name, timed(_frames()))


def _pcapng(tmp_path: Path, name: str = "c.pcapng") -> Path:
    packets = [(0, int(T0 * 10**6) + i * 1000, f) for i, f in enumerate(_frames())]
    path = tmp_path / name
    path.write_bytes(pcapng_bytes([(1, 6)], packets))
    return path


def _zstd(data: bytes, *, frames: int = 1) -> bytes:
    zstandard = pytest.importorskip("zstandard", reason="zstandard not installed")
    step = -(-len(data) // frames)
    return b"".join(zstandard.ZstdCompressor().compress(data[i : i + step])
                    for i in range(0, len(data), step))


def _flow_lines(path: Path) -> list[str]:
    return path.read_text().splitlines()[1:]


def _stats(path: Path) -> dict[str, object]:
    header: dict[str, object] = json.loads(path.read_text().splitlines()[0])
    return header["stats"]  # type: ignore[return-value]


# -- pipes, FIFOs, /dev/stdin -----------------------------------------------------------------

FORMATS = {
    "pcap": lambda tmp: _pcap(tmp).read_bytes(),
    "pcapng": lambda tmp: _pcapng(tmp).read_bytes(),
    "pcap.gz": lambda tmp: gzip.compress(_pcap(tmp).read_bytes()),
    "pcapng.gz": lambda tmp: gzip.compress(_pcapng(tmp).read_bytes()),
    "pcapng.zst": lambda tmp: _zstd(_pcapng(tmp).read_bytes()),
    "pcap.xz": lambda tmp: lzma.compress(_pcap(tmp).read_bytes()),
}


def _reference(tmp_path: Path, data: bytes, name: str) -> Path:
    path = tmp_path / f"file.{name}"
    path.write_bytes(data)
    out = tmp_path / f"file.{name}.jsonl"
    ingest([str(path)], str(out))
    return out


@pytest.mark.parametrize("kind", sorted(FORMATS))
def test_a_capture_through_a_pipe_reads_as_the_file(tmp_path: Path, kind: str) -> None:
    """``cat x | segmenter ingest /dev/stdin -o f.jsonl``: the head that told the format is
    read again, not lost (nor the stream reopened: a pipe cannot seek)."""
    data = FORMATS[kind](tmp_path)
    expected = _reference(tmp_path, data, kind)
    out = tmp_path / "piped.jsonl"
    run = subprocess.run([sys.executable, "-m", "capture", "ingest", "/dev/stdin", "-o",
                          str(out)], input=data, cwd=REPO, capture_output=True, check=False)
    assert (run.returncode, run.stderr) == (0, b"")
    assert _flow_lines(out) == _flow_lines(expected)
    assert len(_flow_lines(out)) == 7
    assert _stats(out) == _stats(expected)


@pytest.mark.skipif(not SEGMENTER.is_file(), reason=f"no segmenter script at {SEGMENTER}")
def test_segmenter_ingest_from_a_pipe(tmp_path: Path) -> None:
    """The command of the issue, verbatim: cat x.pcapng | segmenter ingest /dev/stdin."""
    capture = _pcapng(tmp_path)
    expected = _reference(tmp_path, capture.read_bytes(), "pcapng")
    out = tmp_path / "f.jsonl"
    cat = subprocess.Popen(["cat", str(capture)], stdout=subprocess.PIPE)
    run = subprocess.run([str(SEGMENTER), "ingest", "/dev/stdin", "-o", str(out)],
                         stdin=cat.stdout, capture_output=True, text=True, check=False)
    assert cat.stdout is not None
    cat.stdout.close()
    cat.wait()
    assert run.returncode == 0, run.stderr
    assert _flow_lines(out) == _flow_lines(expected)


def _feed(fd: int, data: bytes, chunk: int = 1000) -> threading.Thread:
    """Write ``data`` to ``fd`` in small pieces from a thread, then close it: a slow writer."""

    def write() -> None:
        with os.fdopen(fd, "wb", buffering=0) as f:
            for i in range(0, len(data), chunk):
                f.write(data[i : i + chunk])

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("kind", ["pcap", "pcapng", "pcapng.gz", "pcapng.zst"])
@pytest.mark.parametrize("fast", [True, False], ids=["own-reader", "scapy-reader"])
def test_an_os_pipe_read_in_pieces(tmp_path: Path, kind: str, fast: bool) -> None:
    data = FORMATS[kind](tmp_path)
    expected = _reference(tmp_path, data, kind)
    read_end, write_end = os.pipe()
    writer = _feed(write_end, data)
    out = tmp_path / "pipe.jsonl"
    try:
        stats = ingest([f"/dev/fd/{read_end}"], str(out), fast=fast)
    finally:
        writer.join()
        os.close(read_end)
    assert stats.packets == len(_frames())
    assert _flow_lines(out) == _flow_lines(expected)


def test_a_fifo_with_a_capture_and_a_file(tmp_path: Path) -> None:
    """A FIFO read alongside a regular file, in time order as any two captures."""
    fifo = tmp_path / "live.fifo"
    os.mkfifo(fifo)
    data = write_pcap(tmp_path / "later.pcap", timed([ether(p) for p in handshake_flow(
        "10.9.9.9", "10.0.0.2", 41000, 80)], start=T0 + 100)).read_bytes()
    writer_fd: list[int] = []

    def open_writer() -> None:  # blocks until ingest opens the FIFO to read
        writer_fd.append(os.open(fifo, os.O_WRONLY))
        _feed(writer_fd[0], data).join()

    thread = threading.Thread(target=open_writer, daemon=True)
    thread.start()
    out = tmp_path / "fifo.jsonl"
    stats = ingest([str(fifo), str(_pcap(tmp_path))], str(out))
    thread.join()
    assert stats.packets == len(_frames()) + 8
    assert stats.sources == ("c.pcap", "live.fifo")
    assert [json.loads(line)["server_port"] for line in _flow_lines(out)][-1] == 80  # later


def test_a_flow_file_through_a_pipe(tmp_path: Path) -> None:
    flows = tmp_path / "a.jsonl"
    ingest([str(_pcap(tmp_path))], str(flows))
    out = tmp_path / "b.jsonl"
    run = subprocess.run([sys.executable, "-m", "capture", "ingest", "/dev/stdin", "-o",
                          str(out)], input=gzip.compress(flows.read_bytes()), cwd=REPO,
                         capture_output=True, check=False)
    assert run.returncode == 0, run.stderr
    assert _flow_lines(out) == _flow_lines(flows)


# -- compression -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "compress"),
    [("zst", _zstd), ("zst-multiframe", lambda d: _zstd(d, frames=3)),
     ("xz", lzma.compress), ("bz2", bz2.compress), ("gz", gzip.compress),
     ("gz-two-members", lambda d: gzip.compress(d[:5000]) + gzip.compress(d[5000:]))],
)
@pytest.mark.parametrize("kind", ["pcap", "pcapng"])
@pytest.mark.parametrize("fast", [True, False], ids=["own-reader", "scapy-reader"])
def test_compressed_captures(tmp_path: Path, name: str, compress: object, kind: str,
                             fast: bool) -> None:
    plain = _pcap(tmp_path) if kind == "pcap" else _pcapng(tmp_path)
    packed = tmp_path / f"c.{kind}.{name}"
    packed.write_bytes(compress(plain.read_bytes()))  # type: ignore[operator]
    header, flows, dns = records([packed], fast=fast)
    plain_header, plain_flows, plain_dns = records([plain], fast=fast)
    assert (header["stats"], flows, dns) == (plain_header["stats"], plain_flows, plain_dns)
    assert len(flows) == 7


def test_zstd_without_the_zstandard_package(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    packed = tmp_path / "c.pcap.zst"
    packed.write_bytes(_zstd(_pcap(tmp_path).read_bytes()))
    monkeypatch.setitem(sys.modules, "zstandard", None)  # import zstandard -> ImportError
    with pytest.raises(CaptureError) as err:
        ingest([str(packed)], str(tmp_path / "o.jsonl"))
    assert str(err.value).startswith(f"{packed}: zstd-compressed")
    assert "zstandard" in str(err.value)


@pytest.mark.parametrize(
    ("magic", "name"),
    [(b"\x04\x22\x4d\x18", "lz4"), (b"\x02\x21\x4c\x18", "lz4")],
    ids=["lz4-frame", "lz4-legacy"],
)
def test_a_compression_not_read_is_named(tmp_path: Path, magic: bytes, name: str) -> None:
    path = tmp_path / "c.pcap.lz4"
    path.write_bytes(magic + bytes(60))
    with pytest.raises(CaptureError) as err:
        ingest([str(path)], str(tmp_path / "o.jsonl"))
    message = str(err.value)
    assert message.startswith(f"{path}: {name}-compressed")
    assert "decompress it first" in message


@pytest.mark.parametrize(("name", "compress"), [
    ("gz", gzip.compress), ("zst", _zstd), ("xz", lzma.compress),
    ("bz2", lambda d: bz2.compress(d, compresslevel=1)),  # 100 kB blocks
])
@pytest.mark.parametrize("fast", [True, False], ids=["own-reader", "scapy-reader"])
def test_a_compressed_capture_cut_short(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                        name: str, compress: object, fast: bool) -> None:
    """The packets before the damage are used, and the warning says the compressed data is
    damaged (the same packets on both paths). The capture spans several blocks of each
    compressor (random payloads), so that some decompress before the cut."""
    rnd = random.Random(1)
    frames = [ether(p) for k in range(150) for p in handshake_flow(
        f"10.1.{k // 250}.{k % 250}", "10.0.0.2", 40000, 443,
        request=rnd.randbytes(1200), response=rnd.randbytes(1400))]
    data = compress(write_pcap(tmp_path / "big.pcap", timed(frames)).read_bytes())  # type: ignore[operator]
    path = tmp_path / f"cut.pcap.{name}"
    path.write_bytes(data[: len(data) * 2 // 3])
    with caplog.at_level(logging.WARNING, logger="capture"):
        header, flows, _ = records([path], fast=fast)
    assert 0 < header["stats"]["packets"] < len(frames)
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "capture"]
    assert warning.startswith(f"{path} (packet {header['stats']['packets'] + 1}): damaged")
    other = records([path], fast=not fast)
    assert other[1:] == (flows, []) and other[0]["stats"] == header["stats"]


# -- the link-type field's upper bits -----------------------------------------------------------


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("fast", [True, False], ids=["own-reader", "scapy-reader"])
def test_link_type_with_fcs_bits(tmp_path: Path, compressed: bool, fast: bool) -> None:
    """The pcap header's link-type field carries FCS information above its 16 bits (F bit 27,
    FCS length in 16-bit words in bits 28-31: draft-ietf-opsawg-pcap); the link type is the low
    16. Here Ethernet with a 4-byte FCS after each frame."""
    fcs = (2 << 28) | (1 << 27)
    path = write_pcap(tmp_path / "fcs.pcap", timed([f + b"\xde\xad\xbe\xef" for f in _frames()]))
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, 20, fcs | 1)
    path.write_bytes(gzip.compress(bytes(data)) if compressed else bytes(data))
    header, flows, _ = records([path], fast=fast)
    assert header["stats"]["skipped"] == {}
    assert len(flows) == 7
    assert {f["sni"] for f in flows if f["sni"]} == {f"s{k}.example" for k in range(6)}


# -- nothing to read ---------------------------------------------------------------------------


@pytest.mark.parametrize("fast", [True, False], ids=["own-reader", "scapy-reader"])
@pytest.mark.parametrize("kind", ["pcap", "pcapng"])
def test_a_capture_cut_short_in_its_only_packet(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                fast: bool, kind: str) -> None:
    """tshark: "cut short in the middle of a packet". A warning, and since no packet at all
    was read, an error naming the file: not an empty flow file and exit 0."""
    frame = ether(tcp("10.0.0.1", "10.0.0.2", 40000, 443, "S"))
    if kind == "pcap":
        whole = write_pcap(tmp_path / "one.pcap", [(T0, frame)]).read_bytes()
    else:
        whole = pcapng_bytes([(1, 6)], [(0, int(T0) * 10**6, frame)])
    path = tmp_path / f"cut.{kind}"
    path.write_bytes(whole[:-20])
    out = tmp_path / "o.jsonl"
    with caplog.at_level(logging.WARNING, logger="capture"), pytest.raises(CaptureError) as err:
        ingest([str(path)], str(out), fast=fast)
    assert str(err.value).startswith(f"{path}: no packets")
    assert not out.exists()
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "capture"]
    assert warning.startswith(f"{path} (packet 1): truncated")


@pytest.mark.parametrize("kind", ["pcap", "pcapng"])
def test_a_capture_without_packets_is_an_error(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"empty.{kind}"
    if kind == "pcap":
        write_pcap(path, [])
    else:
        path.write_bytes(pcapng_bytes([(1, 6)], []))
    with pytest.raises(CaptureError) as err:
        ingest([str(path)], str(tmp_path / "o.jsonl"))
    assert str(err.value) == (f"{path}: no packets in it (an empty capture): nothing to make"
                              " flows of")
    assert main(["ingest", str(path), "-o", str(tmp_path / "o.jsonl")]) == 2


def test_an_empty_capture_among_others_is_a_warning(tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    empty = write_pcap(tmp_path / "rot-0002.pcap", [])
    with caplog.at_level(logging.WARNING, logger="capture"):
        stats = ingest([str(_pcap(tmp_path)), str(empty)], str(tmp_path / "o.jsonl"))
    assert stats.flows == 7
    assert [r.getMessage() for r in caplog.records if r.name == "capture"] == [
        f"{empty}: no packets or records in it (an empty file)"]
    with pytest.raises(CaptureError, match="no packets or records in any of the 2 inputs"):
        ingest([str(empty), str(write_pcap(tmp_path / "e2.pcap", []))], str(tmp_path / "p"))


# -- the output must not be an input -----------------------------------------------------------


@pytest.mark.parametrize("spelling", ["same", "relative", "symlink", "hardlink"])
def test_the_output_naming_an_input_is_refused(tmp_path: Path, spelling: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    capture = _pcap(tmp_path)
    before = capture.read_bytes()
    other = _pcapng(tmp_path)
    monkeypatch.chdir(tmp_path)
    out = {"same": str(capture), "relative": "./c.pcap", "symlink": "link.pcap",
           "hardlink": "hard.pcap"}[spelling]
    if spelling == "symlink":
        os.symlink(capture, tmp_path / out)
    if spelling == "hardlink":
        os.link(capture, tmp_path / out)
    with pytest.raises(CaptureError) as err:
        ingest([str(other), str(capture)], out)
    assert str(err.value).startswith(f"{capture}: is also the output file")
    assert capture.read_bytes() == before
    assert main(["ingest", str(capture), "-o", out]) == 2
    assert capture.read_bytes() == before


# -- scapy's own log lines --------------------------------------------------------------------


def _bad_section_header(tmp_path: Path) -> Path:
    """A pcapng whose section header's closing length differs from its opening one."""
    shb = struct.pack("<II", 0x0A0D0D0A, 28) + struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)
    path = tmp_path / "bad.pcapng"
    path.write_bytes(shb + struct.pack("<I", 99) + bytes(40))
    return path


@pytest.mark.parametrize("args", [[], ["--scapy-reader"]], ids=["own-reader", "scapy-reader"])
@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzip"])
def test_a_damaged_section_header_is_one_line(tmp_path: Path, args: list[str],
                                              compressed: bool) -> None:
    path = _bad_section_header(tmp_path)
    if compressed:
        path = path.with_suffix(".pcapng.gz")
        path.write_bytes(gzip.compress(_bad_section_header(tmp_path).read_bytes()))
    run = subprocess.run([sys.executable, "-m", "capture", "ingest", *args, str(path), "-o",
                          str(tmp_path / "o.jsonl")], cwd=REPO, capture_output=True, text=True,
                         check=False)
    assert run.returncode == 2
    assert run.stderr == (f"error: {path}: cannot read as pcapng: the first section header"
                          " block is damaged\n")


@pytest.mark.skipif(not SEGMENTER.is_file(), reason=f"no segmenter script at {SEGMENTER}")
def test_a_damaged_section_header_through_segmenter(tmp_path: Path) -> None:
    path = _bad_section_header(tmp_path)
    run = subprocess.run([str(SEGMENTER), "ingest", str(path), "-o", str(tmp_path / "o.jsonl")],
                         capture_output=True, text=True, check=False)
    assert run.returncode != 0
    assert run.stderr.count("\n") == 1, run.stderr
    assert "WARNING" not in run.stderr and "PcapNg" not in run.stderr


# -- JSON the parser chokes on -----------------------------------------------------------------

HEADER = {"format": FORMAT, "version": 1, "generator": "test", "sources": ["a"],
          "stats": {"packets": 1, "skipped": {}, "flows": 1, "dns": 0}}
RECORD = ('{"record":"flow","proto":"TCP","client":"10.0.0.1","server":"10.0.0.2",'
          '"client_port":1,"server_port":2,"first_seen":%s,"last_seen":1.0,'
          '"packets_to_server":1,"bytes_to_server":1,"packets_to_client":0,'
          '"bytes_to_client":0,"direction":"handshake","handshake":true,"resets":0,'
          '"tls":false,"sni":null,"outer":null}')


@pytest.mark.parametrize(
    ("header", "record", "line", "reason"),
    [
        (json.dumps(HEADER).replace('"packets": 1', '"packets": ' + "7" * 5000), None, 1,
         "Exceeds the limit (4300 digits)"),
        (json.dumps(HEADER), RECORD % ("1" * 5000), 2, "Exceeds the limit (4300 digits)"),
        (json.dumps(HEADER)[:-1] + ', "x": ' + "[" * 100_000 + "]" * 100_000 + "}", None, 1,
         "nested too deeply"),
        (json.dumps(HEADER), '{"record": "flow", "x": ' + "[" * 50_000 + "]" * 50_000 + "}", 2,
         "nested too deeply"),
        (json.dumps(HEADER), RECORD % ("1" * 4000), 2, "is not a time in seconds"),
        (json.dumps(HEADER), RECORD % "1e999", 2, "number out of range"),
        (json.dumps(HEADER), RECORD % "NaN", 2, "NaN is not a JSON number"),
        (json.dumps(HEADER), RECORD % '"yesterday"', 2, "is not a time in seconds"),
    ],
    ids=["header-long-int", "record-long-int", "header-deep", "record-deep", "time-huge-int",
         "time-inf", "time-nan", "time-string"],
)
@pytest.mark.parametrize("command", ["ingest", "merge"])
def test_json_the_parser_chokes_on_is_one_line(  # noqa: PLR0917 - one per parameter
    tmp_path: Path, header: str, record: str | None, line: int, reason: str, command: str
) -> None:
    path = tmp_path / "flows.jsonl"
    path.write_text(header + "\n" + (record + "\n" if record else ""))
    out = tmp_path / "out.jsonl"
    run = subprocess.run([sys.executable, "-m", "capture", command, str(path), "-o", str(out)],
                         cwd=REPO, capture_output=True, text=True, check=False)
    assert run.returncode == 2, run.stderr
    assert run.stderr.startswith(f"error: {path} (line {line}): ")
    assert reason in run.stderr
    assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr
    assert not out.exists()
