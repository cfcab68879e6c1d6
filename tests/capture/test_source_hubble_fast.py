"""The typed Hubble reader (capture.sources.hubble_fast) against the line-by-line reader: the
same flow file, byte for byte, or the same one-line error, on drawn records -- replies, both
nodes and observation points, every verdict, the jsonpb and json forms, missing, null and
mistyped fields, names, services, policies, DNS answers, bad lines -- and on the real exports of
the corpus. The records are built here from cilium's flow.proto through flowlog_build (see its
module doc); the bad lines are the JSON corner cases where msgspec and orjson differ.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import CORPORA
from flowlog_build import (
    API,
    APISERVER,
    DB,
    DNS,
    HOST_A,
    WEB,
    WORLD,
    End,
    dns_lookup,
    envelope,
    flow,
    tcp_connection,
    write_lines,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from capture.errors import CaptureError
from capture.ingest import ingest
from capture.sources import hubble_fast

HUBBLE_OTEL = CORPORA / "flows" / "hubble-otel"
EXPORT_RST = CORPORA / "flows" / "hubble" / "export.rst"

pytestmark = pytest.mark.skipif(not hubble_fast.AVAILABLE,
                                reason="msgspec or capture._jsonlines not installed")


@contextmanager
def _reader(fast: bool, chunk: int = hubble_fast.CHUNK) -> Iterator[dict[str, int]]:
    """Ingest with the typed reader on or off, with runs of ``chunk`` bytes; yields how many
    events the typed reader folded itself."""
    saved = hubble_fast.AVAILABLE, hubble_fast.CHUNK, hubble_fast._Reader._add
    seen = {"fast": 0}

    def add(self: Any, f: Any) -> bool:
        done = saved[2](self, f)
        seen["fast"] += done
        return done

    hubble_fast.AVAILABLE, hubble_fast.CHUNK = fast, chunk
    hubble_fast._Reader._add = add  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        hubble_fast.AVAILABLE, hubble_fast.CHUNK, hubble_fast._Reader._add = saved


def _outcome(paths: list[Path], out: Path, *, fast: bool, chunk: int = hubble_fast.CHUNK
             ) -> tuple[str, int]:
    """The flow file written (or the error), and the events the typed reader folded."""
    with _reader(fast, chunk) as seen:
        try:
            ingest([str(p) for p in paths], str(out))
        except CaptureError as exc:
            return f"error: {exc}", seen["fast"]
    return out.read_text(), seen["fast"]


def _same(tmp_path: Path, paths: list[Path], chunk: int = hubble_fast.CHUNK) -> tuple[str, int]:
    slow, none = _outcome(paths, tmp_path / "slow.jsonl", fast=False)
    fast, folded = _outcome(paths, tmp_path / "fast.jsonl", fast=True, chunk=chunk)
    assert none == 0
    assert fast == slow
    return fast, folded


# -- the real exports --------------------------------------------------------------------------


def _corpus() -> list[Path]:
    if not HUBBLE_OTEL.is_dir():
        pytest.skip(f"corpus not present: {HUBBLE_OTEL}")
    return sorted(HUBBLE_OTEL.glob("*.json"))


@pytest.mark.parametrize("chunk", [hubble_fast.CHUNK, 4096])
def test_corpus_exports_read_the_same_typed(tmp_path: Path, chunk: int) -> None:
    files = _corpus()
    for path in files:
        text, folded = _same(tmp_path, [path], chunk)
        lines = sum(1 for line in path.read_text().splitlines() if line.strip())
        assert '"record":"flow"' in text.replace(" ", "")
        # The typed reader did the work (ICMP lines and the line cut by a run's end go to the
        # line reader), not the line reader alone.
        if "icmp" not in path.name:
            assert folded >= lines // 2, (path.name, folded, lines)
    text, _ = _same(tmp_path, files, chunk)  # all of them in one ingest, folded across files
    assert text.count('"record":"flow"') + text.count('"record": "flow"') > 10


def test_corpus_export_rst_reads_the_same_typed(tmp_path: Path) -> None:
    if not EXPORT_RST.exists():
        pytest.skip(f"corpus not present: {EXPORT_RST}")
    lines = [line.strip() for line in EXPORT_RST.read_text().splitlines()
             if line.strip().startswith('{"flow"')]
    path = tmp_path / "events.log"
    path.write_text("\n".join(lines) + "\n")
    _same(tmp_path, [path])


# -- drawn records -----------------------------------------------------------------------------

ENDS: list[End] = [WEB, API, DB, DNS, WORLD, HOST_A, APISERVER]
PORTS = [53, 80, 5432, 40000, 40001, 0]
OPTIONAL = ["time", "node_name", "is_reply", "traffic_direction", "event_type", "source",
            "destination", "verdict", "trace_observation_point", "Type", "IP", "l4"]


@st.composite
def _event(draw: st.DrawFn) -> dict[str, Any]:
    src, dst = draw(st.permutations(ENDS))[:2]
    proto = draw(st.sampled_from(["TCP", "TCP", "UDP", "SCTP", "ICMPv4"]))
    sport, dport = draw(st.sampled_from(PORTS)), draw(st.sampled_from(PORTS))
    l4: dict[str, Any]
    if proto == "ICMPv4":
        l4 = {"ICMPv4": {"type": draw(st.sampled_from([0, 3, 8]))}}
    else:
        ports: dict[str, Any] = {"source_port": sport, "destination_port": dport}
        if proto == "TCP":
            flags = draw(st.sets(st.sampled_from(["SYN", "ACK", "RST", "FIN", "PSH"])))
            if flags or draw(st.booleans()):
                ports["flags"] = dict.fromkeys(sorted(flags), True)
        l4 = {proto: ports}
    extra: dict[str, Any] = {}
    if draw(st.integers(0, 4)) == 0:
        extra["destination_names"] = [draw(st.sampled_from(["api.stripe.com.", "GitHub.com"]))]
    if draw(st.integers(0, 4)) == 0:
        extra["destination_service"] = {"name": "api", "namespace": draw(
            st.sampled_from(["shop", ""]))}
    if draw(st.integers(0, 4)) == 0:
        extra[draw(st.sampled_from(["egress_allowed_by", "ingress_denied_by"]))] = [
            {"name": "p", "namespace": "shop", "kind": "CiliumNetworkPolicy"}]
    if draw(st.integers(0, 5)) == 0:
        extra["l7"] = {"type": draw(st.sampled_from(["REQUEST", "RESPONSE"])),
                       "dns": {"query": "Api.Shop.svc.cluster.local.",
                               "ips": [draw(st.sampled_from(["10.0.2.20", "::ffff:a00:214"]))],
                               "cnames": []}}
    old_reply = draw(st.sampled_from([None, None, None, True, False]))  # Cilium < 1.9
    f = flow(draw(st.integers(0, 40)) / 8, draw(st.sampled_from(["node-a", "node-b",
                                                                 "cluster/node-c"])),
             src, dst, l4,
             verdict=draw(st.sampled_from(["FORWARDED", "DROPPED", "AUDIT", "REDIRECTED",
                                           "ERROR", "TRACED"])),
             reply=draw(st.sampled_from([None, True, False])),
             direction=draw(st.sampled_from([None, "EGRESS", "INGRESS",
                                             "TRAFFIC_DIRECTION_UNKNOWN"])),
             etype=draw(st.sampled_from([1, 4, 5, 129])),
             point=draw(st.sampled_from([None, "TO_STACK", "TO_ENDPOINT"])), **extra)
    if old_reply is not None:
        f["reply"] = old_reply
    # Fields left out by a field mask, null, or of another type than Hubble writes.
    for key in draw(st.lists(st.sampled_from(OPTIONAL), max_size=2)):
        change = draw(st.sampled_from(["drop", "drop", "null", "odd"]))
        if change == "drop":
            f.pop(key, None)
        elif change == "null":
            f[key] = None
        else:
            f[key] = draw(st.sampled_from(["SOCK", 7, "", [], {}, True]))
    if draw(st.integers(0, 9)) == 0 and isinstance(f.get("source"), dict):
        f["source"] = dict(f["source"], labels=draw(st.sampled_from([[], "x", [3], None])))
    return f


# Lines where msgspec's reading differs from orjson's, or the struct's types from what the fold
# accepts: each must give the line reader's error.
_IP = b'{"flow":{"IP":{"source":"10.0.0.1","destination":"10.0.0.2"},'
BAD_LINES = [
    b"{} {}",  # two values on a line
    b'{"flow":\n{}}',  # a value over two lines
    b'{"flow":{"IP":{"source":"10.0.0.1"}},"x":1e999}',  # infinite as a double
    b'{"flow":{"IP":{"source":"10.0.0.1"}},"x":' + b"9" * 400 + b"}",
    b'{"flow":{"IP":{"source":"10.0.0.1"}},"x":"\xff"}',  # not UTF-8, in a skipped field
    b'{"flow":{"IP":{"source":"10.0.0.1"}},"x":"\xed\xa0\x80"}',  # a UTF-8 surrogate
    _IP + b'"l4":{"TCP":{"source_port":99999999999999999999999}}}}',
    _IP + b'"l4":{"TCP":{"source_port":70000,"destination_port":80}}}}',
    _IP + b'"l4":{"TCP":{"source_port":1.0,"destination_port":80}}}}',
    _IP + b'"l4":{"TCP":{"source_port":1,"destination_port":80}},"is_reply":"yes"}}',
    _IP + b'"l4":{"UDP":{}},"time":"2024-03-01T12:00:00.5Z","node_name":"n","source":[1]}}',
    b'{"flow":' + b"[" * 300 + b"]" * 300 + b"}",
    b"not json",
    b"[1, 2]",
    b"\x0c",
]


@st.composite
def _file(draw: st.DrawFn) -> bytes:
    events = draw(st.lists(_event(), min_size=1, max_size=12))
    if draw(st.booleans()):  # a real connection too, its replies at both nodes
        client, server = draw(st.permutations([WEB, API, DB]))[:2]
        events += tcp_connection(client, server, 40123, 5432, t=1.0,
                                 denied=draw(st.booleans()))
        events += dns_lookup(WEB, DNS, 40200, "db.payments.svc.cluster.local", [DB.ip], t=2.0)
    random.Random(draw(st.integers(0, 1000))).shuffle(events)
    bare = draw(st.booleans())  # hubble observe -o json, else jsonpb / the exporter
    lines = [json.dumps(e if bare else envelope_safe(e), separators=(",", ":")).encode()
             for e in events]
    for _ in range(draw(st.integers(0, 2))):
        lines.insert(draw(st.integers(0, len(lines))),
                     draw(st.sampled_from([b"", b"  ", b"\r", *BAD_LINES])))
    end = draw(st.sampled_from([b"\n", b"\r\n"]))
    text = end.join(lines)
    return text + (end if draw(st.integers(0, 4)) else b"")  # sometimes no final line end


def envelope_safe(f: dict[str, Any]) -> dict[str, Any]:
    """``envelope`` of a flow that may lack its time or node name."""
    if isinstance(f.get("node_name"), str) and isinstance(f.get("time"), str):
        return envelope(f)
    return {"flow": f, "node_name": "node-a", "time": "2024-03-01T12:00:00.5Z"}


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(text=_file(), chunk=st.sampled_from([64, 700, 4096, 1 << 22]))
def test_drawn_records_read_the_same_typed(tmp_path_factory: pytest.TempPathFactory,
                                           text: bytes, chunk: int) -> None:
    tmp_path = tmp_path_factory.mktemp("fast")
    path = tmp_path / "hubble.log"
    path.write_bytes(text)
    _same(tmp_path, [path], chunk)


@pytest.mark.parametrize("bad", BAD_LINES)
def test_a_line_msgspec_reads_otherwise_gives_the_line_readers_error(tmp_path: Path,
                                                                     bad: bytes) -> None:
    good = [envelope(e) for e in tcp_connection(WEB, API, 40000, 80)]
    path = write_lines(tmp_path / "hubble.log", good)
    text = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(text[:3]) + bad + b"\n" + b"".join(text[3:]))
    result, _ = _same(tmp_path, [path])
    if bad not in (b"{} {}", b"\x0c"):
        assert result.startswith("error: ") and "hubble.log" in result, result
    if result.startswith("error: "):
        assert "line 4" in result, result


def test_the_typed_reader_reads_most_lines_of_a_plain_export(tmp_path: Path) -> None:
    events = []
    for k, (client, server) in enumerate([(WEB, API), (API, DB), (WEB, DB)] * 20):
        events += tcp_connection(client, server, 40000 + k, 5432, t=k)
    path = write_lines(tmp_path / "hubble.log", [envelope(e) for e in events])
    _text, folded = _same(tmp_path, [path])
    assert folded == len(events)
