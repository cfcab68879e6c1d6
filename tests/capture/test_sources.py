"""The traffic-source registry: detection by content, flow files as a source, mixing sources."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from capture_pcapbuild import client_hello, ether, handshake_flow, timed, write_pcap

from capture.errors import CaptureError
from capture.flowfile import FORMAT, read_flow_file
from capture.ingest import ingest
from capture.sources import SOURCES, detect
from capture.sources.base import Opened, ReadOptions, Sink, SourceFormat


def _capture(tmp_path: Path) -> Path:
    frames = [ether(p) for p in handshake_flow(request=client_hello("shop.example"))]
    return write_pcap(tmp_path / "a.pcap", timed(frames))


def _agent_file(tmp_path: Path, name: str = "agent.jsonl") -> Path:
    """A flow file as the capture agent writes it, holding one version-2 record."""
    header = {"format": FORMAT, "version": 2, "generator": "segmenter-capture 0.1.0",
              "sources": ["node-a"], "stats": {"packets": 7, "skipped": {"non-ip": 2},
                                               "flows": 1, "dns": 0}}
    record = {"record": "flow", "proto": "UDP", "client": "10.1.0.5", "client_port": 41000,
              "server": "10.1.0.9", "server_port": 53, "first_seen": 1.0, "last_seen": 2.0,
              "packets_to_server": 1, "bytes_to_server": 60, "packets_to_client": 1,
              "bytes_to_client": 90, "direction": "reported", "handshake": False,
              "resets": 0, "tls": False, "sni": None, "outer": None, "sources": ["hubble"],
              "client_endpoint": {"namespace": "shop", "pod": "web-1",
                                  "labels": {"app": "web"}}}
    path = tmp_path / name
    path.write_text(json.dumps(header) + "\n" + json.dumps(record) + "\n")
    return path


def test_every_source_has_a_distinct_name() -> None:
    names = [s.name for s in SOURCES]
    assert len(names) == len(set(names))


@pytest.mark.parametrize(("make", "expected"), [
    (_capture, "pcap"),
    (_agent_file, "flows"),
])
def test_detect_by_content_not_by_name(tmp_path: Path, make: object, expected: str) -> None:
    path = make(tmp_path)  # type: ignore[operator]
    renamed = path.rename(tmp_path / "no-suffix")
    assert detect(str(renamed))[1].name == expected


def test_detect_sees_through_gzip(tmp_path: Path) -> None:
    plain = _agent_file(tmp_path)
    packed = tmp_path / "agent.jsonl.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    opened, source = detect(str(packed))
    assert source.name == "flows" and opened.gzipped


def test_unknown_format_names_the_formats_read(tmp_path: Path) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("hello\n" * 20)
    with pytest.raises(CaptureError) as err:
        detect(str(bad))
    message = str(err.value)
    assert message.startswith(f"{bad}: ")
    for source in SOURCES:
        assert source.name in message


def test_agent_flow_files_and_captures_mix_in_one_ingest(tmp_path: Path) -> None:
    out = tmp_path / "flows.jsonl"
    captured = ingest([str(_capture(tmp_path))], str(tmp_path / "capture-only.jsonl"))
    stats = ingest([str(_agent_file(tmp_path)), str(_capture(tmp_path))], str(out))
    flow_file = read_flow_file(str(out))
    assert stats.flows == 2
    assert flow_file.header["version"] == 2  # a version-2 record was kept
    # The agent's packet count (7) adds to the capture's.
    assert flow_file.header["stats"]["packets"] == stats.packets == captured.packets + 7
    assert flow_file.header["stats"]["skipped"] == {"non-ip": 2}
    kept = [r for r in flow_file.flows if r.get("sources") == ["hubble"]]
    assert kept and kept[0]["client_endpoint"]["pod"] == "web-1"
    # The same inputs in the other order give the same bytes.
    again = tmp_path / "again.jsonl"
    ingest([str(_capture(tmp_path)), str(_agent_file(tmp_path))], str(again))
    assert again.read_bytes() == out.read_bytes()


def test_captures_alone_stay_version_1(tmp_path: Path) -> None:
    out = tmp_path / "flows.jsonl"
    ingest([str(_capture(tmp_path))], str(out))
    assert read_flow_file(str(out)).header["version"] == 1


def test_a_new_source_is_one_registry_entry(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A fake record source: one SourceFormat value added to SOURCES, nothing else."""

    def read(opened: Opened, sink: Sink, options: ReadOptions) -> None:
        for line in Path(opened.path).read_text().splitlines()[1:]:
            client, server, port = line.split()
            sink.input_records += 1
            sink.add_record({"record": "flow", "proto": "TCP", "client": client,
                             "client_port": None, "server": server, "server_port": int(port),
                             "first_seen": 0.0, "last_seen": 0.0, "packets_to_server": 0,
                             "bytes_to_server": 0, "packets_to_client": 0,
                             "bytes_to_client": 0, "direction": "reported",
                             "handshake": False, "resets": 0, "tls": False, "sni": None,
                             "outer": None, "sources": ["fake"]})

    fake = SourceFormat("fake", "fake flow log", lambda head: head.startswith(b"#fake"), read)
    monkeypatch.setattr("capture.sources.SOURCES", (*SOURCES, fake))
    log = tmp_path / "fake.log"
    log.write_text("#fake\n10.0.0.1 10.0.0.2 5432\n")
    out = tmp_path / "flows.jsonl"
    stats = ingest([str(log)], str(out))
    assert stats.flows == 1
    assert read_flow_file(str(out)).flows[0]["server_port"] == 5432
