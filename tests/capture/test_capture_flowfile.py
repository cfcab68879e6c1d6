"""The flow file: format, reading back, version check, order-independent merge."""

from __future__ import annotations

import datetime
import enum
import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from capture_pcapbuild import (
    T0,
    client_hello,
    ether,
    handshake_flow,
    timed,
    udp,
    write_pcap,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.dns import DNS, DNSQR, DNSRR

from capture import flowfile
from capture.errors import CaptureError
from capture.flowfile import GENERATOR, dumps, merge_flow_files, read_flow_file
from capture.ingest import ingest

FLOW_KEYS = {
    "record", "proto", "client", "server", "client_port", "server_port", "first_seen",
    "last_seen", "packets_to_server", "bytes_to_server", "packets_to_client", "bytes_to_client",
    "direction", "handshake", "resets", "tls", "sni", "outer",
}
DNS_KEYS = {"record", "client", "server", "name", "answers", "cnames", "ts"}


def _flow_file(tmp_path: Path, name: str, start: float, k: int) -> Path:
    pkts = handshake_flow(f"10.0.{k}.1", "10.0.0.2", 40000 + k, 443,
                          request=client_hello(f"n{k}.example"))
    answer = DNS(id=1, qr=1, qd=DNSQR(qname=f"n{k}.example."),
                 an=[DNSRR(rrname=f"n{k}.example.", type="A", rdata="10.0.0.2")])
    pkts.append(udp("10.96.0.10", f"10.0.{k}.1", 53, 50000, bytes(answer)))
    pcap = write_pcap(tmp_path / f"{name}.pcap", timed([ether(p) for p in pkts], start=start))
    out = tmp_path / f"{name}.jsonl"
    ingest([str(pcap)], str(out))
    return out


def test_format(tmp_path: Path) -> None:
    path = _flow_file(tmp_path, "a", T0, 1)
    lines = path.read_text(encoding="utf-8").splitlines()
    header = json.loads(lines[0])
    assert header == {
        "format": "segmenter-flows",
        "version": 1,
        "generator": GENERATOR,
        "sources": ["a.pcap"],
        "stats": {"packets": 9, "skipped": {}, "flows": 2, "dns": 1},
    }
    recs = [json.loads(line) for line in lines[1:]]
    assert [r["record"] for r in recs] == ["flow", "flow", "dns"]
    assert set(recs[0]) == FLOW_KEYS
    assert set(recs[2]) == DNS_KEYS
    for line in lines:
        obj = json.loads(line)
        assert line == json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    flows = recs[:2]
    assert flows == sorted(flows, key=lambda r: (r["first_seen"], r["proto"], r["client"]))


def test_read_back(tmp_path: Path) -> None:
    path = _flow_file(tmp_path, "a", T0, 1)
    ff = read_flow_file(str(path))
    assert ff.header["sources"] == ["a.pcap"]
    assert len(ff.flows) == 2
    assert ff.dns[0]["name"] == "n1.example"


@pytest.mark.parametrize(
    ("first_line", "message"),
    [
        ('{"format":"segmenter-flows","version":3}', "version 3 is newer"),
        ('{"format":"other","version":1}', "not a flow file"),
        ('{"format":"segmenter-flows","version":"1"}', "integer"),
        ("[1, 2]", "not a JSON object"),
        ("{oops", "not JSON"),
    ],
)
def test_read_refuses(tmp_path: Path, first_line: str, message: str) -> None:
    path = tmp_path / "f.jsonl"
    path.write_text(first_line + "\n")
    with pytest.raises(CaptureError, match=message) as err:
        read_flow_file(str(path))
    assert err.value.path == str(path)


def test_read_bad_record_line_is_named(tmp_path: Path) -> None:
    path = _flow_file(tmp_path, "a", T0, 1)
    path.write_text(path.read_text() + "{broken\n")
    with pytest.raises(CaptureError) as err:
        read_flow_file(str(path))
    assert str(err.value).startswith(f"{path} (line 5): not JSON")


def test_read_missing_and_empty(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="no such file"):
        read_flow_file(str(tmp_path / "nope.jsonl"))
    (tmp_path / "e.jsonl").write_text("")
    with pytest.raises(CaptureError, match="empty"):
        read_flow_file(str(tmp_path / "e.jsonl"))


def test_merge_is_order_independent(tmp_path: Path) -> None:
    paths = [_flow_file(tmp_path, n, T0 + 10 * k, k) for k, n in enumerate("abc")]
    outputs = set()
    for i, order in enumerate(itertools.permutations(paths)):
        out = tmp_path / f"m{i}.jsonl"
        merge_flow_files([str(p) for p in order], str(out))
        outputs.add(out.read_bytes())
    assert len(outputs) == 1
    merged = read_flow_file(str(tmp_path / "m0.jsonl"))
    assert merged.header["sources"] == ["a.pcap", "b.pcap", "c.pcap"]
    assert merged.header["stats"] == {"packets": 27, "skipped": {}, "flows": 6, "dns": 3}
    assert len(merged.flows) == 6
    assert [r["record"] for r in merged.records] == ["flow"] * 6 + ["dns"] * 3


def test_merge_joins_the_interfaces_each_capture_names(tmp_path: Path) -> None:
    paths = [_flow_file(tmp_path, n, T0 + 10 * k, k) for k, n in enumerate("ab")]
    named = ({"a.pcap": ["eth0"]}, {"a.pcap": ["any"], "b.pcap": ["cali1"]})
    for path, interfaces in zip(paths, named, strict=True):
        lines = path.read_text().splitlines()
        header = json.loads(lines[0])
        header["interfaces"] = interfaces
        path.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    out = tmp_path / "m.jsonl"
    merge_flow_files([str(p) for p in reversed(paths)], str(out))
    assert read_flow_file(str(out)).header["interfaces"] == {"a.pcap": ["any", "eth0"],
                                                             "b.pcap": ["cali1"]}


def test_merge_of_one_file_is_that_file(tmp_path: Path) -> None:
    path = _flow_file(tmp_path, "a", T0, 1)
    out = tmp_path / "m.jsonl"
    merge_flow_files([str(path)], str(out))
    assert out.read_bytes() == path.read_bytes()


def test_merge_equals_ingesting_together_when_captures_do_not_overlap(tmp_path: Path) -> None:
    a = _flow_file(tmp_path, "a", T0, 1)
    b = _flow_file(tmp_path, "b", T0 + 100, 2)
    out = tmp_path / "m.jsonl"
    merge_flow_files([str(b), str(a)], str(out))
    together = tmp_path / "ab.jsonl"
    ingest([str(tmp_path / "a.pcap"), str(tmp_path / "b.pcap")], str(together))
    assert out.read_bytes() == together.read_bytes()


def test_merge_refuses_newer_version(tmp_path: Path) -> None:
    good = _flow_file(tmp_path, "a", T0, 1)
    newer = tmp_path / "newer.jsonl"
    newer.write_text('{"format":"segmenter-flows","version":3,"sources":[],"stats":{}}\n')
    with pytest.raises(CaptureError, match="version 3"):
        merge_flow_files([str(good), str(newer)], str(tmp_path / "m.jsonl"))
    assert not (tmp_path / "m.jsonl").exists()


def test_segmenter_reader_accepts_our_flow_files(tmp_path: Path) -> None:
    """Contract with the planner's reader (segmenter.flowfile), when it is installed."""
    reader = pytest.importorskip("segmenter.flowfile")
    path = _flow_file(tmp_path, "a", T0, 1)
    ff = reader.read_flow_file(str(path))
    assert len(ff.flows) == 2
    assert ff.flows[0].sni == "n1.example"
    assert ff.dns[0].answers == ("10.0.0.2",)


def test_writing_to_a_device_leaves_the_device_alone(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Atomic rename over /dev/null would turn the device into a regular file (as root)."""
    import os
    import stat

    from capture.flowfile import write_lines

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        write_lines(str(fifo), ["{}"])
        assert stat.S_ISFIFO(os.stat(fifo).st_mode)
        assert os.read(reader, 100) == b"{}\n"
    finally:
        os.close(reader)
    write_lines(os.devnull, ["{}"])
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)


# -- the line writer: orjson where it writes what the json module writes ----------------------

_KEYS = st.text(max_size=4) | st.sampled_from(["first_seen", "labels", "a", "b"])
_SCALARS = (st.none() | st.booleans() | st.integers(-(2**70), 2**70)
            | st.floats(allow_nan=True, allow_infinity=True)
            | st.sampled_from([1e-5, 1e-4, 0.0001, 1e16, 9.999999999999998e15, -0.0,
                               1709294400.06, 5e-324])
            | st.text(alphabet=st.characters(codec="utf-8") | st.sampled_from(
                ["\x00", "\x1f", "\x7f", "\u2028", '"', "\\", "/", "é"])))
_VALUES = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(_KEYS, inner, max_size=3), max_leaves=12)


@settings(max_examples=400, deadline=None)
@given(obj=st.dictionaries(_KEYS | st.integers(0, 3), _VALUES, max_size=5))
def test_dumps_writes_what_the_json_module_writes(obj: dict[Any, Any]) -> None:
    """``dumps`` (orjson when installed) gives the json module's text byte for byte, or the
    same refusal: floats in exponent form, NaN, non-string keys, big integers included."""
    def outcome(encode: Any) -> str:
        try:
            return str(encode(obj))
        except (TypeError, ValueError) as exc:
            return f"refused: {type(exc).__name__}"

    assert outcome(dumps) == outcome(flowfile._ENCODER.encode)


def test_dumps_refuses_what_the_json_module_refuses() -> None:
    class Kind(enum.Enum):
        FLOW = "flow"

    for bad in ({"x": float("nan")}, {"x": float("inf")}, {"k": Kind.FLOW},
                {"t": datetime.datetime(2024, 1, 1)}):
        with pytest.raises((TypeError, ValueError)):
            dumps(bad)
    assert dumps({"b": 1e-05, "a": [1e16, 0.5]}) == '{"a":[1e+16,0.5],"b":1e-05}'
