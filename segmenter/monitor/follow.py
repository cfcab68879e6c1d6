"""Following traffic sources as they grow: files, folders of files, standard input.

Every registered traffic format (``capture.sources.SOURCES``) is read, in one of two ways:

* **by parts** -- a format with a ``header`` (flow files, Zeek ``conn.log``, AWS and GCP flow
  logs as lines, Hubble, Calico and Goldmane JSON lines): what was appended since the last
  read, cut after its last whole line, is read alone as the file's header followed by those
  lines (``capture.stream.in_memory``). The cursor is the byte offset of the next line.
* **whole** -- a format without one (pcap and pcapng captures, Azure's one-document blobs, a
  gzip-compressed file): the file is read again when it changed (at most every
  ``reread_interval`` seconds), and only the records not seen in the previous read go on. The
  cursor is the set of record identities read (protocol, both ends, first time, verdict).

Rotation, as ``tail -F`` follows it:

* **rename and create** (``logrotate``'s default, Zeek, the capture agent's snapshot): a file
  named on the command line is kept open, so when its name points at another file the old one
  is read to its end first (its last line even without a line end), then the new one from its
  start. In a folder, files are known by their inode: a renamed file keeps its cursor.
* **copytruncate**: a file shorter than its cursor was truncated; what had been appended since
  the last read is in the copy, which is looked for beside it (a file whose first bytes are the
  same and that is long enough) and read from the cursor; then the file from its start (a flow
  file keeps the header it had: the writer does not write it again).
* **a restart**: cursors are checkpointed with the inode and a digest of the file's first bytes.
  A file rotated while the monitor was down is found by its inode among the files beside it.

What a format cannot give back -- a gzip-compressed copy of a file rotated with copytruncate,
a file deleted before it was read to its end -- is logged with the bytes lost.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import stat
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, Final

from capture.errors import CaptureError
from capture.sources import SOURCES, SourceFormat, detect
from capture.sources.base import Record
from capture.stream import HEAD_BYTES, in_memory, is_compressed
from segmenter.errors import InputError
from segmenter.monitor.records import STDIN, Chunk, read_format
from segmenter.monitor.stdin import StdinReader

logger = logging.getLogger(__name__)

MAX_CHUNK: Final = 4 << 20  # bytes read from one file per poll
FINGERPRINT_BYTES: Final = 256  # first bytes that recognise a file after a rename
REREAD_INTERVAL: Final = 5.0  # seconds between two whole reads of a changing file
SETTLE: Final = 1.0  # a file without a whole line yet is sniffed once unchanged this long
_FORMATS: Final = {s.name: s for s in SOURCES}


@dataclass
class Poll:
    chunks: list[Chunk] = field(default_factory=list)
    more: bool = False  # input is waiting beyond what this poll read
    ended: bool = False  # every source has ended (standard input closed)


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=8).hexdigest()


def record_identity(record: Mapping[str, Any]) -> str:
    """A connection record's identity across reads of a file: what does not change as the
    connection goes on (protocol, both ends, first time, verdict)."""
    key = [record.get(k) for k in ("record", "proto", "client", "client_port", "server",
                                   "server_port", "first_seen", "verdict", "name", "ts")]
    return _digest(json.dumps(key, separators=(",", ":"), default=str).encode())


class _Cursor:
    """Where one file has been read to."""

    def __init__(self, path: str, st: os.stat_result) -> None:
        self.path = path
        self.dev = st.st_dev
        self.ino = st.st_ino
        self.offset = 0
        self.lines = 0  # whole lines before ``offset`` (for line numbers in errors)
        self.fp_len = 0
        self.fp = ""
        self.format: SourceFormat | None = None
        self.preamble = b""  # the header read before every part (by parts)
        self.preamble_lines = 0
        self.whole = False
        self.size = -1  # whole: at the last read
        self.mtime_ns = -1
        self.seen: set[str] = set()
        self.read_at = -1e18
        self.snapshot = False
        self.origin = ""
        self.handle: IO[bytes] | None = None
        self.failed = False  # of no format read (logged once)
        # The bytes from offset 0 start with the file's own header (not after a truncation by
        # a writer that goes on without writing it again).
        self.own_header = True
        self.recheck = False  # truncated: look at the new start for a header of its own

    # -- checkpoint --------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        return {
            "path": self.path, "dev": self.dev, "ino": self.ino, "offset": self.offset,
            "lines": self.lines, "fp_len": self.fp_len, "fp": self.fp,
            "format": self.format.name if self.format else None,
            "preamble": self.preamble.decode("latin-1"), "preamble_lines": self.preamble_lines,
            "whole": self.whole, "size": self.size, "mtime_ns": self.mtime_ns,
            "seen": sorted(self.seen), "snapshot": self.snapshot, "origin": self.origin,
            "own_header": self.own_header,
        }

    @classmethod
    def from_state(cls, data: Mapping[str, Any], st: os.stat_result) -> _Cursor:
        cur = cls(str(data["path"]), st)
        cur.dev, cur.ino = int(data["dev"]), int(data["ino"])
        cur.offset, cur.lines = int(data["offset"]), int(data["lines"])
        cur.fp_len, cur.fp = int(data["fp_len"]), str(data["fp"])
        name = data.get("format")
        cur.format = _FORMATS.get(str(name)) if name else None
        if name and cur.format is None:
            raise InputError(f"the checkpoint names the source format {name!r}, which this "
                             "version does not read", path=cur.path)
        cur.preamble = str(data["preamble"]).encode("latin-1")
        cur.preamble_lines = int(data["preamble_lines"])
        cur.whole = bool(data["whole"])
        cur.size, cur.mtime_ns = int(data["size"]), int(data["mtime_ns"])
        cur.seen = set(data.get("seen") or ())
        cur.snapshot = bool(data.get("snapshot"))
        cur.origin = str(data.get("origin") or "")
        cur.own_header = bool(data.get("own_header", True))
        return cur

    def same_file(self, path: str) -> bool:
        """Whether ``path`` starts with the bytes this cursor's file started with."""
        if not self.fp_len:
            return True
        try:
            with open(path, "rb") as f:
                return _digest(f.read(self.fp_len)) == self.fp
        except OSError:
            return False

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


class _Memo:
    """Where a file of a folder was when it was truncated (copytruncate), until its copy
    shows up."""

    def __init__(self, cur: _Cursor) -> None:
        for name in ("offset", "lines", "fp_len", "fp", "format", "preamble", "preamble_lines",
                     "whole", "snapshot", "origin"):
            setattr(self, name, getattr(cur, name))
        self.path = cur.path
        self.fp_len: int = cur.fp_len
        self.fp: str = cur.fp

    def same_file(self, path: str) -> bool:
        return _Cursor.same_file(self, path)  # type: ignore[arg-type]


class Follower:
    """Follows SOURCE arguments: files, folders (every file in them, hidden ones aside) and
    ``-`` (standard input). ``poll()`` returns what is new since the previous call.

    ``once``: the files are complete (``--once``): a last line without a line end is a line,
    and a file of no format read is an error rather than a warning.
    """

    def __init__(self, sources: Sequence[str], *, state: Mapping[str, Any] | None = None,
                 once: bool = False, reread_interval: float = REREAD_INTERVAL,
                 max_chunk: int = MAX_CHUNK, clock: Callable[[], float] = time.monotonic,
                 stdin: IO[bytes] | None = None) -> None:
        if not sources:
            raise InputError("no traffic source given (files, folders, or - for standard "
                             "input)")
        self.sources = list(dict.fromkeys(sources))
        self.once = once
        self.reread_interval = reread_interval
        self.max_chunk = max_chunk
        self.clock = clock
        self.files: dict[str, _Cursor | None] = {}  # a file named on the command line
        self.draining: dict[str, list[_Cursor]] = {}  # its rotated predecessors, oldest first
        self.folders: dict[str, dict[tuple[int, int], _Cursor]] = {}
        self.folder_mtime: dict[str, int] = {}
        self.stdin: StdinReader | None = None
        self.truncated: dict[str, list[_Memo]] = {}  # per folder: cursors of truncated files
        self.errors = 0
        saved = dict((state or {}).get("sources") or {})
        for source in self.sources:
            if source == STDIN:
                self.stdin = StdinReader(stdin if stdin is not None else sys.stdin.buffer, once)
            elif os.path.isdir(source):
                self.folders[source] = self._restore_folder(source, saved.get(source))
            elif os.path.exists(source) or not once:
                self.files[source] = None
                self.draining[source] = []
                self._restore_file(source, saved.get(source))
            else:
                raise InputError("no such file or directory", path=source)

    # -- checkpoint --------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        sources: dict[str, Any] = {}
        for source, cur in self.files.items():
            sources[source] = {"file": cur.to_state() if cur else None,
                               "draining": [d.to_state() for d in self.draining[source]]}
        for folder, cursors in self.folders.items():
            sources[folder] = {"folder": [c.to_state() for _k, c in sorted(cursors.items())]}
        return {"sources": sources}

    def _restore_file(self, source: str, saved: Any) -> None:
        if not isinstance(saved, Mapping) or not saved.get("file"):
            return
        data = saved["file"]
        for old in saved.get("draining") or ():
            found = self._find(source, old)
            if found is not None:
                self.draining[source].append(found)
        try:
            st = os.stat(source)
        except FileNotFoundError:
            st = None
        if st is not None and (st.st_dev, st.st_ino) == (data["dev"], data["ino"]):
            cur = _Cursor.from_state(data, st)
            if cur.same_file(source):
                if st.st_size < cur.offset and not cur.whole:
                    self._recover_truncated(cur, source)
                self.files[source] = cur
                return
        # Rotated while the monitor was down: finish the old file where it now lives.
        found = self._find(source, data)
        if found is not None:
            self.draining[source].append(found)
        elif int(data.get("offset") or 0):
            logger.warning("%s was rotated while the monitor was stopped and its old content is "
                           "not beside it any more; lines appended to it after byte %s are "
                           "lost", source, data.get("offset"))

    def _find(self, source: str, data: Mapping[str, Any]) -> _Cursor | None:
        """The file a checkpointed cursor was reading, now renamed beside ``source``."""
        folder = os.path.dirname(os.path.abspath(source))
        for entry in _scan(folder):
            st = entry.stat()
            if (st.st_dev, st.st_ino) == (data["dev"], data["ino"]):
                cur = _Cursor.from_state(data, st)
                cur.path = entry.path
                if cur.same_file(entry.path):
                    return cur
        return None

    def _restore_folder(self, folder: str, saved: Any) -> dict[tuple[int, int], _Cursor]:
        cursors: dict[tuple[int, int], _Cursor] = {}
        by_ino = {(d["dev"], d["ino"]): d for d in
                  (saved.get("folder") or () if isinstance(saved, Mapping) else ())}
        for entry in _scan(folder):
            st = entry.stat()
            data = by_ino.get((st.st_dev, st.st_ino))
            if data is None:
                continue
            cur = _Cursor.from_state(data, st)
            cur.path = entry.path
            if cur.same_file(entry.path):
                cursors[(st.st_dev, st.st_ino)] = cur
        return cursors

    def close(self) -> None:
        for cur in self.files.values():
            if cur is not None:
                cur.close()
        for olds in self.draining.values():
            for cur in olds:
                cur.close()

    # -- polling -----------------------------------------------------------------------------

    def poll(self) -> Poll:
        """What every source appended since the last poll (at most ``max_chunk`` bytes of
        each file)."""
        result = Poll()
        for source in self.sources:
            if source == STDIN:
                assert self.stdin is not None
                self._poll_stdin(result)
            elif source in self.folders:
                self._poll_folder(source, result)
            else:
                self._poll_file(source, result)
        result.ended = self.stdin is not None and self.stdin.ended and not result.more and \
            not self.files and not self.folders
        return result

    def lag_bytes(self) -> dict[str, int]:
        """Per source, the bytes of its files not read yet (by parts)."""
        out: dict[str, int] = {}
        for source, cur in self.files.items():
            out[source] = sum(_unread(c) for c in [*self.draining[source],
                                                   *([cur] if cur else [])])
        for folder, cursors in self.folders.items():
            out[folder] = sum(_unread(c) for c in cursors.values())
        return out

    def _poll_file(self, source: str, result: Poll) -> None:
        olds = self.draining[source]
        for old in list(olds):
            # A rotated file: read to its end (time order: before its successor), and let go
            # once its writer has stopped writing to it for a while (writers reopen their
            # file some time after the rename: on SIGHUP, at their next write).
            try:
                st_old = os.fstat(old.handle.fileno()) if old.handle else os.stat(old.path)
            except OSError:
                olds.remove(old)
                continue
            settled = self.once or time.time() - st_old.st_mtime >= SETTLE
            if self._read(source, old, result, final=settled, stat_result=st_old):
                result.more = True
                return
            if settled:
                old.close()
                olds.remove(old)
        cur = self.files[source]
        try:
            st = os.stat(source)
        except FileNotFoundError:
            st = None
        except OSError as exc:
            raise InputError(f"cannot read: {exc.strerror or exc}", path=source) from None
        if cur is not None and (st is None or (st.st_dev, st.st_ino) != (cur.dev, cur.ino)):
            # Renamed away (rotation) or deleted: the old file is read to its end first.
            if cur.handle is not None:
                olds.append(cur)
                result.more = True
            self.files[source] = None
            return
        if st is None:
            if self.once:
                raise InputError("no such file", path=source)
            return
        if not stat.S_ISREG(st.st_mode):
            raise InputError("not a regular file", path=source)
        if cur is None:
            cur = self.files[source] = _Cursor(source, st)
        if cur.handle is None and not cur.whole:
            try:
                cur.handle = open(source, "rb")  # noqa: SIM115 - kept open across polls
            except OSError as exc:
                raise InputError(f"cannot read: {exc.strerror or exc}", path=source) from None
        if self._read(source, cur, result, final=self.once, explicit=True):
            result.more = True

    def _poll_folder(self, folder: str, result: Poll) -> None:
        cursors = self.folders[folder]
        try:
            entries = _scan(folder)
        except OSError as exc:
            raise InputError(f"cannot list: {exc.strerror or exc}", path=folder) from None
        present: dict[tuple[int, int], tuple[str, os.stat_result]] = {}
        for entry in entries:
            st = entry.stat()
            present[(st.st_dev, st.st_ino)] = (entry.path, st)
        for key in list(cursors):
            if key not in present:
                gone = cursors.pop(key)
                if not gone.whole and gone.size > gone.offset:
                    logger.warning("%s was deleted before it was read to its end; %d bytes "
                                   "lost", gone.path, gone.size - gone.offset)
        for key, (path, st) in sorted(present.items(), key=lambda kv: kv[1][0]):
            cur: _Cursor | None = cursors.get(key)
            if cur is not None and cur.path != path:
                if cur.same_file(path):
                    cur.path = path  # renamed within the folder: the same file
                else:
                    cur = None  # an inode reused by another file
            if cur is None:
                cur = cursors[key] = _Cursor(path, st)
                self._copy_of(folder, cur)
            if self._read(folder, cur, result, final=self.once, stat_result=st):
                result.more = True

    def _copy_of(self, folder: str, cur: _Cursor) -> None:
        """A new file of ``folder`` that starts with the bytes of a file followed there (or
        one truncated there) is its copy (copytruncate): it goes on from that file's cursor."""
        candidates: list[_Cursor | _Memo] = [
            *(c for c in self.folders[folder].values() if c is not cur and c.fp_len),
            *self.truncated.get(folder, ())]
        for other in candidates:
            if other.fp_len == FINGERPRINT_BYTES and other.same_file(cur.path):
                _carry(other, cur)  # type: ignore[arg-type]
                if isinstance(other, _Memo):
                    self.truncated[folder].remove(other)
                return

    def _poll_stdin(self, result: Poll) -> None:
        assert self.stdin is not None
        chunk = self.stdin.take(self.max_chunk)
        if chunk is not None:
            result.chunks.append(chunk)
        if self.stdin.pending():
            result.more = True

    # -- one file ----------------------------------------------------------------------------

    def _read(self, source: str, cur: _Cursor, result: Poll, *, final: bool,
              explicit: bool = False, stat_result: os.stat_result | None = None) -> bool:
        """Read what is new in ``cur``'s file into ``result``; True when more is waiting."""
        if cur.failed:
            return False
        st = stat_result
        if st is None:
            try:
                st = os.fstat(cur.handle.fileno()) if cur.handle else os.stat(cur.path)
            except OSError:
                return False
        if cur.format is None and not self._identify(source, cur, st, final, explicit):
            return False
        if cur.whole:
            self._read_whole(source, cur, st, result, final)
            return False
        cur.size = st.st_size
        if st.st_size < cur.offset:
            if source in self.files:
                self._recover_truncated(cur, source)
                return True  # the copy's rest first
            # In a folder, the copy is a file of the folder: it goes on from the cursor.
            self.truncated.setdefault(source, []).append(_Memo(cur))
            _start_over(cur)
        if st.st_size == cur.offset:
            return False
        if cur.recheck:
            self._recheck(cur)
        data = _read_range(cur, cur.offset, self.max_chunk)
        cut = data.rfind(b"\n") + 1
        more = cur.offset + len(data) < st.st_size
        if cut == 0:
            if not final or more:
                if len(data) >= self.max_chunk:
                    raise InputError(f"a line longer than {self.max_chunk} bytes",
                                     path=cur.path, record=f"line {cur.lines + 1}")
                return more
            cut = len(data)  # the last line of a complete file, without its line end
            data += b"\n"
        body = data[:cut]
        first_line = cur.lines + 1
        if first_line == 1 and cur.own_header and body.count(b"\n") <= cur.preamble_lines \
                and not final:
            return more  # only the header so far
        cur.offset += min(cut, st.st_size - cur.offset)
        cur.lines += body.count(b"\n")
        if body.strip():
            chunk = self._parse(source, cur, body, first_line)
            if chunk is not None:
                result.chunks.append(chunk)
        return more

    @staticmethod
    def _recheck(cur: _Cursor) -> None:
        """After a truncation: does the file start with a header of its own again?"""
        assert cur.format is not None
        head = _read_range(cur, 0, HEAD_BYTES)
        if b"\n" not in head:
            return
        cur.recheck = False
        cur.fp_len = min(len(head), FINGERPRINT_BYTES)
        cur.fp = _digest(head[:cur.fp_len])
        size = cur.format.header(head) if cur.format.header else None
        if size and cur.format.sniff(head) and _looks_like_header(cur, head[:size]):
            cur.preamble = head[:size]
            cur.preamble_lines = cur.preamble.count(b"\n")
            cur.own_header = True

    def _identify(self, source: str, cur: _Cursor, st: os.stat_result, final: bool,
                  explicit: bool) -> bool:
        """Find the file's format (by content); False when it cannot be told yet."""
        if st.st_size == 0:
            if final and explicit:
                raise InputError("empty file", path=cur.path)
            return False
        head = _read_range(cur, 0, HEAD_BYTES)
        settled = time.time() - st.st_mtime >= SETTLE
        if b"\n" not in head and not (final or settled or len(head) >= HEAD_BYTES):
            return False  # the first line is still being written
        try:
            _opened, fmt = detect(cur.path)
        except CaptureError as exc:
            if final:
                raise InputError(str(exc)) from None
            cur.failed = True
            self.errors += 1
            logger.error("%s; not followed", exc)
            return False
        cur.format = fmt
        cur.fp_len = min(len(head), FINGERPRINT_BYTES)
        cur.fp = _digest(head[:cur.fp_len])
        size = None if is_compressed(head) or fmt.header is None else fmt.header(head)
        if size is None:
            cur.whole = True
            cur.close()
            return True
        cur.preamble = head[:size]
        cur.preamble_lines = cur.preamble.count(b"\n")
        if fmt.name == "flows" and cur.preamble:
            cur.snapshot, cur.origin = _agent_header(cur.preamble)
        return True

    def _parse(self, source: str, cur: _Cursor, body: bytes, first_line: int) -> Chunk | None:
        """The records of ``body``: whole lines, the first of them line ``first_line`` of the
        file. A bad line is an error with ``once``; otherwise it is logged and skipped, and
        the lines around it are read."""
        assert cur.format is not None
        lines = body.split(b"\n")[:-1]
        fresh = first_line == 1 and cur.own_header  # the part starts with the file's header
        records: list[Record] = []
        start = 0  # the first line of ``lines`` not read yet
        while start < len(lines) and any(line.strip() for line in lines[start:]):
            prefix = cur.preamble if (not fresh or start > 0) else b""
            prefix_lines = prefix.count(b"\n")
            part = prefix + b"".join(line + b"\n" for line in lines[start:])
            try:
                records.extend(self._read_part(cur, part))
                break
            except CaptureError as exc:
                if exc.record is None or exc.unit != "line":
                    if fresh and start == 0:
                        self._unreadable(cur, str(exc))
                    # A later part without records (a Zeek log's closing "#close" line):
                    # the formats say "no records in the file" of it; nothing to read.
                    break
                local = exc.record - prefix_lines  # 1-based, within lines[start:]
                if local < 1:
                    self._unreadable(cur, str(exc))
                    break
                where = CaptureError(exc.message, path=cur.path,
                                     record=first_line + start + local - 1, unit="line")
                if self.once:
                    raise InputError(str(where)) from None
                self.errors += 1
                logger.error("%s; line skipped", where)
                good = lines[start:start + local - 1]
                if any(line.strip() for line in good):
                    piece = prefix + b"".join(line + b"\n" for line in good)
                    # Another bad line before this one: those lines are skipped with it.
                    with contextlib.suppress(CaptureError):
                        records.extend(self._read_part(cur, piece))
                start += local
        if not records:
            return None
        return Chunk(source, cur.path, cur.format, records, cur.snapshot, cur.origin)

    @staticmethod
    def _read_part(cur: _Cursor, part: bytes) -> list[Record]:
        assert cur.format is not None
        return read_format(cur.format, in_memory(cur.path, part))

    def _unreadable(self, cur: _Cursor, message: str) -> None:
        if self.once:
            raise InputError(message)
        cur.failed = True
        self.errors += 1
        logger.error("%s; not followed", message)

    def _read_whole(self, source: str, cur: _Cursor, st: os.stat_result, result: Poll,
                    final: bool) -> None:
        assert cur.format is not None
        if (st.st_size, st.st_mtime_ns) == (cur.size, cur.mtime_ns):
            return
        now = self.clock()
        if not final and cur.size >= 0 and now - cur.read_at < self.reread_interval:
            return
        if not final and time.time() - st.st_mtime < SETTLE and cur.size < 0 and \
                st.st_size < HEAD_BYTES:
            return
        cur.read_at = now
        cur.size, cur.mtime_ns = st.st_size, st.st_mtime_ns
        try:
            opened, _fmt = detect(cur.path)
            records = read_format(cur.format, opened)
        except CaptureError as exc:
            if self.once:
                raise InputError(str(exc)) from None
            self.errors += 1
            logger.error("%s; this version of the file skipped", exc)
            return
        seen = {record_identity(r) for r in records}
        new = [r for r in records if record_identity(r) not in cur.seen]
        cur.seen = seen
        if new:
            result.chunks.append(Chunk(source, cur.path, cur.format, new))

    def _recover_truncated(self, cur: _Cursor, path: str) -> None:
        """``path`` (named on the command line) is shorter than its cursor: truncated in place
        (copytruncate). What was appended before the truncation is in the copy beside it: it
        is read from the cursor on, before the file starts over."""
        folder = os.path.dirname(os.path.abspath(path))
        base = os.path.basename(path)
        for entry in _scan(folder):
            if entry.name != base and entry.name.startswith(base) and \
                    entry.stat().st_size >= cur.offset and cur.same_file(entry.path):
                old = _Cursor(entry.path, entry.stat())
                _carry(cur, old)
                self.draining[path].append(old)
                break
        else:
            logger.warning("%s was truncated (copytruncate) and no copy of it is beside it; "
                           "lines appended after byte %d since the last read are lost",
                           path, cur.offset)
        _start_over(cur)


def _carry(src: _Cursor, dst: _Cursor) -> None:
    """``dst`` (a copy of ``src``'s file) goes on from where ``src`` was."""
    for name in ("offset", "lines", "fp_len", "fp", "format", "preamble", "preamble_lines",
                 "whole", "snapshot", "origin"):
        setattr(dst, name, getattr(src, name))


def _start_over(cur: _Cursor) -> None:
    """The file was truncated: read it from its start, with the header it had (a writer that
    goes on after a truncation does not write its header again)."""
    cur.offset = 0
    cur.lines = 0
    cur.fp_len = 0
    cur.fp = ""
    cur.own_header = False
    cur.recheck = True


def _scan(folder: str) -> list[os.DirEntry[str]]:
    """The regular files of a folder, hidden ones (temporary files of atomic writers, locks)
    left out."""
    with os.scandir(folder) as it:
        return sorted((e for e in it if not e.name.startswith(".")
                       and e.is_file(follow_symlinks=True)), key=lambda e: e.name)


def _read_range(cur: _Cursor, offset: int, size: int) -> bytes:
    if cur.handle is not None:
        cur.handle.seek(offset)
        return cur.handle.read(size)
    try:
        with open(cur.path, "rb") as f:
            f.seek(offset)
            return f.read(size)
    except OSError:
        return b""


def _unread(cur: _Cursor) -> int:
    if cur.whole:
        return 0
    try:
        size = os.fstat(cur.handle.fileno()).st_size if cur.handle else \
            os.stat(cur.path).st_size
    except OSError:
        return 0
    return max(0, size - cur.offset)


def _looks_like_header(cur: _Cursor, candidate: bytes) -> bool:
    """Whether the first lines of a truncated file are a header like the one it had: as many
    lines, and for a one-line header the same first bytes (a flow file's header starts
    ``{"format":``, its records ``{"bytes_``; an AWS header ``version``, its records ``2``)."""
    old = cur.preamble
    return bool(old) and candidate.count(b"\n") == old.count(b"\n") and \
        candidate[:1] == old[:1] and (old.count(b"\n") > 1 or candidate.split(b"\n")[0]
                                      .startswith(old.split(b"\n")[0][:12]))


def _agent_header(preamble: bytes) -> tuple[bool, str]:
    """(a capture agent's snapshot of active flows, the header's ``sources``) of a flow file
    header line (docs/capture-agent.md)."""
    try:
        header = json.loads(preamble)
    except ValueError:
        return False, ""
    if not isinstance(header, dict):
        return False, ""
    agent = header.get("agent")
    snapshot = isinstance(agent, dict) and agent.get("kind") == "snapshot"
    return snapshot, json.dumps(header.get("sources"), sort_keys=True)


def iter_cursors(follower: Follower) -> Iterator[str]:
    """The files being followed (for messages and tests)."""
    for cur in follower.files.values():
        if cur is not None:
            yield cur.path
    for cursors in follower.folders.values():
        yield from (c.path for c in cursors.values())
