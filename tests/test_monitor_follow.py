"""Following growing traffic files: by parts, across rotation (rename and create,
copytruncate), folders, and restarts from a checkpoint.

Files are written by the tests: flow files (docs/flow-format.md), a Zeek ``conn.log`` in its
TSV form (header directives as Zeek's ASCII writer writes them, base/protocols/conn/main.zeek
fields) and AWS VPC flow-log lines in the default version-2 format (AWS "Flow log records").
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from capture.ingest import fold
from segmenter.errors import InputError
from segmenter.monitor.follow import Follower
from tests.monitor_helpers import HEADER, T0, line, record


def _records(follower: Follower) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while True:
        poll = follower.poll()
        for chunk in poll.chunks:
            out.extend(chunk.records)
        if not poll.more:
            return out


def _flows(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [record("10.0.0.1", "10.0.0.2", 80, t=T0 + i, client_port=30000 + i)
            for i in range(start, start + n)]


def _ports(records: list[dict[str, Any]]) -> list[int]:
    return [r["client_port"] for r in records]


def test_appended_lines_are_read_once_and_a_partial_line_waits(tmp_path: Path) -> None:
    path = tmp_path / "flows.jsonl"
    path.write_text(line(HEADER) + "".join(line(r) for r in _flows(3)))
    follower = Follower([str(path)])
    assert _ports(_records(follower)) == [30000, 30001, 30002]
    assert _records(follower) == []
    text = line(_flows(1, 3)[0])
    with path.open("a") as f:
        f.write(text[:20])  # a writer in the middle of a line
    assert _records(follower) == []
    with path.open("a") as f:
        f.write(text[20:] + "".join(line(r) for r in _flows(2, 4)))
    assert _ports(_records(follower)) == [30003, 30004, 30005]


def test_rename_and_create_rotation_reads_the_old_file_to_its_end(tmp_path: Path) -> None:
    path = tmp_path / "flows.jsonl"
    path.write_text(line(HEADER) + "".join(line(r) for r in _flows(2)))
    follower = Follower([str(path)])
    assert _ports(_records(follower)) == [30000, 30001]
    with path.open("a") as f:  # written just before the rotation, not read yet
        f.write(line(_flows(1, 2)[0]))
    os.rename(path, tmp_path / "flows.jsonl.1")
    path.write_text(line(HEADER) + "".join(line(r) for r in _flows(2, 3)))
    # The old file's last line is read, then the new file from its start.
    assert _ports(_records(follower)) == [30002, 30003, 30004]
    assert _records(follower) == []


def test_copytruncate_rotation_loses_and_repeats_nothing(tmp_path: Path) -> None:
    path = tmp_path / "flows.jsonl"
    path.write_text(line(HEADER) + "".join(line(r) for r in _flows(2)))
    follower = Follower([str(path)])
    assert _ports(_records(follower)) == [30000, 30001]
    with path.open("a") as f:
        f.write(line(_flows(1, 2)[0]))
    shutil.copyfile(path, tmp_path / "flows.jsonl.1")  # logrotate copytruncate: copy...
    with path.open("r+") as f:  # ... then truncate in place (the writer keeps its handle)
        f.truncate(0)
    with path.open("a") as f:  # the writer goes on, without writing its header again
        f.writelines(line(r) for r in _flows(2, 3))
    assert _ports(_records(follower)) == [30002, 30003, 30004]
    assert _records(follower) == []


def test_a_folder_follows_new_files_and_renames_within_it(tmp_path: Path) -> None:
    folder = tmp_path / "agent"
    folder.mkdir()
    (folder / "flows-a-000001.jsonl").write_text(line(HEADER) + line(_flows(1)[0]))
    (folder / ".flows-a-000002.jsonl.tmp").write_text("partial")  # an atomic writer's temp
    follower = Follower([str(folder)])
    assert _ports(_records(follower)) == [30000]
    (folder / "flows-a-000002.jsonl").write_text(line(HEADER) + line(_flows(1, 1)[0]))
    os.rename(folder / "flows-a-000001.jsonl", folder / "old-000001.jsonl")  # same inode
    assert _ports(_records(follower)) == [30001]


def test_copytruncate_in_a_folder_continues_in_the_copy(tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    folder.mkdir()
    path = folder / "flows.jsonl"
    # A long first record: the copy is recognised by the first bytes of the file.
    path.write_text(line(HEADER) + "".join(line(r) for r in _flows(4)))
    follower = Follower([str(folder)])
    assert _ports(_records(follower)) == [30000, 30001, 30002, 30003]
    with path.open("a") as f:
        f.write(line(_flows(1, 4)[0]))
    shutil.copyfile(path, folder / "flows.jsonl.1")
    with path.open("r+") as f:
        f.truncate(0)
    with path.open("a") as f:
        f.write(line(_flows(1, 5)[0]))
    assert sorted(_ports(_records(follower))) == [30004, 30005]


def test_a_restart_goes_on_from_the_checkpoint_even_after_a_rotation(tmp_path: Path) -> None:
    path = tmp_path / "flows.jsonl"
    path.write_text(line(HEADER) + "".join(line(r) for r in _flows(2)))
    follower = Follower([str(path)])
    assert _ports(_records(follower)) == [30000, 30001]
    state = follower.to_state()
    follower.close()
    with path.open("a") as f:  # while the monitor is stopped: more lines, then a rotation
        f.write(line(_flows(1, 2)[0]))
    os.rename(path, tmp_path / "flows.jsonl-20261126")
    path.write_text(line(HEADER) + line(_flows(1, 3)[0]))
    again = Follower([str(path)], state=state)
    assert _ports(_records(again)) == [30002, 30003]


def test_a_bad_line_is_skipped_with_its_line_number_when_following(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "flows.jsonl"
    path.write_text(line(HEADER) + line(_flows(1)[0]))
    follower = Follower([str(path)])
    assert _ports(_records(follower)) == [30000]
    with path.open("a") as f:
        f.write(line(_flows(1, 1)[0]) + "not json\n" + line(_flows(1, 2)[0]))
    assert _ports(_records(follower)) == [30001, 30002]
    assert follower.errors == 1
    assert f"{path} (line 4): not JSON" in caplog.text
    # With --once the same line is the run's error.
    with pytest.raises(InputError, match=r"\(line 4\): not JSON"):
        _records(Follower([str(path)], once=True))


ZEEK_HEAD = (
    "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n"
    "#path\tconn\n#open\t2026-11-26-17-50-00\n"
    "#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tservice\tduration"
    "\torig_bytes\tresp_bytes\tconn_state\thistory\torig_pkts\torig_ip_bytes\tresp_pkts"
    "\tresp_ip_bytes\ttunnel_parents\n"
    "#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tstring\tinterval\tcount\tcount"
    "\tstring\tstring\tcount\tcount\tcount\tcount\tset[string]\n")


def _zeek(i: int) -> str:
    return (f"{T0 + i:.6f}\tC{i}\t10.0.0.1\t{30000 + i}\t10.0.0.2\t443\ttcp\tssl\t0.5\t100"
            f"\t200\tSF\tShADadFf\t5\t400\t5\t500\t(empty)\n")


AWS_HEAD = ("version account-id interface-id srcaddr dstaddr srcport dstport protocol packets "
            "bytes start end action log-status\n")


def _aws(i: int) -> str:
    return (f"2 123456789012 eni-0a 10.0.0.1 10.0.0.2 {30000 + i} 443 6 5 400 "
            f"{int(T0) + i} {int(T0) + i + 10} ACCEPT OK\n")


@pytest.mark.parametrize(("name", "head", "row", "close"), [
    ("conn.log", ZEEK_HEAD, _zeek, "#close\t2026-11-26-18-00-00\n"),
    ("vpc.log", AWS_HEAD, _aws, ""),
])
def test_line_formats_read_by_parts_give_what_a_whole_read_gives(
        tmp_path: Path, name: str, head: str, row: Any, close: str) -> None:
    path = tmp_path / name
    path.write_text(head + row(0))
    follower = Follower([str(path)])
    parts = _records(follower)
    for i in range(1, 4):
        with path.open("a") as f:
            f.write(row(i))
        parts.extend(_records(follower))
    with path.open("a") as f:
        f.write(close)
    parts.extend(_records(follower))
    _header, whole, _stats = fold([str(path)])
    key = ("client_port", "first_seen", "tls", "direction", "packets_to_server")
    assert sorted(tuple(r[k] for k in key) for r in parts) == \
        sorted(tuple(r[k] for k in key) for r in whole)
    assert len(parts) == 4
    assert follower.errors == 0


def test_a_capture_is_read_again_whole_and_only_new_records_go_on(tmp_path: Path) -> None:
    from tests.monitor_helpers import SAMPLE

    path = tmp_path / "shop.pcapng"
    shutil.copyfile(SAMPLE / "shop.pcapng", path)
    follower = Follower([str(path)], reread_interval=0.0)
    first = _records(follower)
    assert len([r for r in first if r["record"] == "flow"]) == 61
    os.utime(path, ns=(1, 1))  # touched: read again, nothing new
    assert _records(follower) == []


def test_a_writer_that_writes_its_header_again_after_a_truncation(tmp_path: Path) -> None:
    path = tmp_path / "flows.jsonl"
    path.write_text(line(HEADER) + line(_flows(1)[0]))
    follower = Follower([str(path)])
    assert _ports(_records(follower)) == [30000]
    path.write_text(line(HEADER))  # truncated, its header written anew
    assert _records(follower) == []
    with path.open("a") as f:
        f.write(line(_flows(1, 1)[0]))
    assert _ports(_records(follower)) == [30001]
    assert follower.errors == 0
