"""The flow file (``flows.jsonl``, docs/flow-format.md): write, read back and merge.

Output is deterministic: records are sorted (flows, then DNS answers, each by the documented key,
then by their own text), keys are sorted, separators are compact and nothing depends on the
time of writing. A file is written to a temporary file beside the target and renamed over it, so
a reader never sees half a flow file.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import math
import operator
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import IO, Any, Protocol, TypeVar

from capture import __version__
from capture.errors import CaptureError

FORMAT = "segmenter-flows"
VERSION = 2  # the newest version this module reads and writes
# Record fields that version 2 added (docs/flow-format.md). A file none of whose records uses
# them is written as version 1, which every reader of this format reads.
V2_FIELDS = frozenset({"client_endpoint", "server_endpoint", "verdict", "sampled", "sources",
                       "policies"})
GENERATOR = f"segmenter-capture {__version__}"

Record = dict[str, Any]
T = TypeVar("T")


@dataclass(frozen=True)
class FlowFile:
    """A flow file in memory: its header and its records, in file order."""

    header: dict[str, Any]
    records: list[Record] = field(default_factory=list)

    @property
    def flows(self) -> list[Record]:
        return [r for r in self.records if r.get("record") == "flow"]

    @property
    def dns(self) -> list[Record]:
        return [r for r in self.records if r.get("record") == "dns"]


_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                            allow_nan=False)

try:  # an optional accelerator, for the lines it writes exactly as _ENCODER does
    import orjson  # type: ignore[import-not-found,unused-ignore]

    _orjson_dumps: Callable[..., bytes] | None = orjson.dumps
    # Sorted keys; dataclasses and dates are refused (TypeError) as the json module refuses
    # them, not written.
    _ORJSON_OPTIONS = (orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATACLASS
                       | orjson.OPT_PASSTHROUGH_DATETIME)
except ImportError:  # pragma: no cover - depends on the environment
    _orjson_dumps, _ORJSON_OPTIONS = None, 0


def dumps(obj: Mapping[str, Any]) -> str:
    """One JSON line: keys sorted, compact, UTF-8 text (no ASCII escaping).

    orjson writes it when its text is the json module's byte for byte (several times faster
    on a flow record): not when a float is written differently -- Python writes 1e-05 and
    1e+16 where orjson writes 0.00001 and 1e16; both write the shortest round-trip digits
    in between -- nor for a value orjson writes where the json module refuses it (NaN and
    infinities, which orjson writes as null), nor for anything but JSON's own types (orjson
    writes enums, the json module refuses them). What orjson refuses (non-string keys,
    integers beyond 64 bits, lone surrogates) the json module writes or refuses itself."""
    if _orjson_dumps is not None and _plain(obj):
        try:
            return _orjson_dumps(obj, option=_ORJSON_OPTIONS).decode()
        except TypeError:
            pass
    return _ENCODER.encode(obj)


_SCALARS = frozenset({str, int, bool, type(None)})
_CONTAINERS = frozenset({dict, list, tuple})


def _plain(obj: Any) -> bool:
    """``obj`` (a dict, list or tuple) holds only strings, integers, booleans, None, the same
    containers, and floats that are 0 or between 1e-4 and 1e16 in magnitude (where Python's
    repr of a float has no exponent; NaN is not)."""
    for value in obj.values() if type(obj) is dict else obj:
        kind = type(value)
        if kind in _SCALARS:
            continue
        if kind is float:
            if not (value == 0.0 or 1e-4 <= abs(value) < 1e16):
                return False
        elif kind not in _CONTAINERS or (value and not _plain(value)):
            return False
    return True


def _port(value: Any) -> int:
    return value if isinstance(value, int) else -1


def sort_key(rec: Mapping[str, Any]) -> tuple[Any, ...]:
    """Flows by (first_seen, proto, client, client_port, server, server_port), then DNS answers
    by (ts, client, server, name), then any other record type."""
    kind = rec.get("record")
    if kind == "flow":
        return (
            0,
            float(rec.get("first_seen") or 0.0),
            str(rec.get("proto")),
            str(rec.get("client") or ""),  # null (an end named, not addressed) sorts first
            _port(rec.get("client_port")),
            str(rec.get("server") or ""),
            _port(rec.get("server_port")),
        )
    if kind == "dns":
        return (
            1,
            float(rec.get("ts") or 0.0),
            str(rec.get("client")),
            str(rec.get("server")),
            str(rec.get("name")),
            0,
            "",
        )
    return (2, 0.0, str(kind), "", 0, "", 0)


def file_version(records: Iterable[Mapping[str, Any]]) -> int:
    """The lowest format version that holds ``records``: 2 when any uses a version-2 field."""
    return 2 if any(not V2_FIELDS.isdisjoint(r) for r in records) else 1


def make_header(
    sources: Iterable[str],
    packets: int,
    skipped: Mapping[str, int],
    flows: int,
    dns: int,
    *,
    version: int = 1,
    interfaces: Mapping[str, Iterable[str]] | None = None,
) -> dict[str, Any]:
    """A flow file's header. ``interfaces``: the interfaces each capture file names (pcapng
    ``if_name``), by file name; the key is left out when no capture names any."""
    header: dict[str, Any] = {
        "format": FORMAT,
        "version": version,
        "generator": GENERATOR,
        "sources": sorted(set(sources)),
        "stats": {
            "packets": packets,
            "skipped": {k: skipped[k] for k in sorted(skipped) if skipped[k]},
            "flows": flows,
            "dns": dns,
        },
    }
    named = {source: sorted(set(names)) for source, names in (interfaces or {}).items() if names}
    if named:
        header["interfaces"] = dict(sorted(named.items()))
    return header


def header_interfaces(header: Mapping[str, Any]) -> dict[str, set[str]]:
    """The ``interfaces`` a flow file's header names, by capture file (text entries only)."""
    raw = header.get("interfaces")
    if not isinstance(raw, Mapping):
        return {}
    return {str(source): {str(n) for n in names if isinstance(n, str)}
            for source, names in raw.items() if isinstance(names, list)}


def union_interfaces(headers: Iterable[Mapping[str, Any]]) -> dict[str, set[str]]:
    """The ``interfaces`` of several flow files' headers, joined per capture file."""
    joined: dict[str, set[str]] = {}
    for header in headers:
        for source, names in header_interfaces(header).items():
            joined.setdefault(source, set()).update(names)
    return joined


def render(header: Mapping[str, Any], records: Iterable[Mapping[str, Any]]) -> list[str]:
    """The lines of a flow file (without newlines): header, then the records sorted."""
    return [dumps(header), *ordered_lines(((sort_key(r), r) for r in records), dumps)]


class SortedLines(Protocol):
    """Records held elsewhere, already in the order of the file, that make their own lines:
    the flows of the C loop's store (``capture.table.FlowTable.native_lines``)."""

    def count(self, bound: tuple[Any, ...] | None, inclusive: bool, /) -> int:
        """How many of the records not yet taken sort before ``bound`` (at most it, when
        ``inclusive``; all of them for None)."""
        ...

    def lines(self, n: int, /) -> tuple[str, int]:
        """The lines of the next records, at most ``n`` of them, joined by newlines; how
        many (at least one while any is left)."""
        ...


def ordered_lines(
    items: Iterable[tuple[tuple[Any, ...], T]],
    to_line: Callable[[T], str],
    presorted: SortedLines | None = None,
) -> Iterator[str]:
    """Record lines in the order of the file: by ``sort_key``, ties by the line's own text.

    ``items`` pairs each record's ``sort_key`` with anything ``to_line`` turns into the
    record's line (``dumps`` of the record), so that lines are made (and dropped) one at a
    time while writing. The lines of ``presorted`` are merged in, in runs: a string yielded may
    then hold several lines, joined by newlines (never one at its end).
    """
    if presorted is None:
        yield from map(to_line, in_file_order(items, to_line))
        return
    ordered = sorted(items, key=itemgetter(0))
    for key, group in itertools.groupby(ordered, key=itemgetter(0)):
        yield from _runs(presorted, presorted.count(key, False))
        objs = [obj for _, obj in group]
        same = presorted.count(key, True)  # the presorted records of the same key
        if len(objs) == 1 and not same:
            yield to_line(objs[0])
        else:  # ties, by the lines' own text (as in_file_order)
            lines = [to_line(obj) for obj in objs]
            for run in _runs(presorted, same):
                lines.extend(run.split("\n"))
            lines.sort()
            yield from lines
    yield from _runs(presorted, presorted.count(None, False))


def _runs(presorted: SortedLines, n: int) -> Iterator[str]:
    while n > 0:
        text, got = presorted.lines(n)
        if got <= 0:
            raise RuntimeError("presorted records ended early")
        n -= got
        yield text


def in_file_order(
    items: Iterable[tuple[tuple[Any, ...], T]], to_line: Callable[[T], str]
) -> Iterator[T]:
    """The objects of ``items`` in the order ``ordered_lines`` writes their lines."""
    ordered = sorted(items, key=itemgetter(0))
    keys = list(map(itemgetter(0), ordered))
    if not any(map(operator.eq, keys, itertools.islice(keys, 1, None))):
        yield from map(itemgetter(1), ordered)  # no ties (nearly always)
        return
    del keys
    for _key, group in itertools.groupby(ordered, key=itemgetter(0)):
        objs = [obj for _, obj in group]
        if len(objs) == 1:
            yield objs[0]
        else:  # the same sort key: by the line's own text (rare: the same flow twice)
            yield from (obj for _line, _n, obj in sorted(
                (to_line(obj), n, obj) for n, obj in enumerate(objs)))


def write_lines(out: str | None, lines: Iterable[str]) -> None:
    """Write lines to ``out`` atomically (temp file in the same directory + ``os.replace``);
    ``None`` or ``"-"`` writes to standard output."""
    if out is None or out == "-":
        _write_all(sys.stdout, lines)
        sys.stdout.flush()
        return
    target = os.path.abspath(out)
    if os.path.exists(target) and not os.path.isfile(target) and not os.path.isdir(target):
        # A device or pipe (/dev/null, a FIFO): write straight to it. Renaming a temp file over
        # it would replace the device node itself with a regular file (as root, /dev/null).
        try:
            with open(target, "w", encoding="utf-8", newline="\n") as f:
                _write_all(f, lines)
        except OSError as exc:
            raise CaptureError(f"cannot write the flow file: {exc.strerror or exc}",
                               path=out) from exc
        return
    directory = os.path.dirname(target)
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(target)}.",
                                   suffix=".tmp")
    except OSError as exc:
        raise CaptureError(f"cannot write the flow file: {exc.strerror or exc}", path=out) from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            _write_all(f, lines)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise CaptureError(f"cannot write the flow file: {exc.strerror or exc}",
                               path=out) from exc
        raise


def _write_all(f: IO[str], lines: Iterable[str]) -> None:
    """Each line and a newline, in writes of about a MiB (not two writes a line)."""
    batch: list[str] = []
    size = 0
    for line in lines:
        batch.append(line)
        size += len(line)
        if size >= 1 << 20:
            batch.append("")
            f.write("\n".join(batch))
            batch = []
            size = 0
    if batch:
        batch.append("")
        f.write("\n".join(batch))


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_flow_file(
    out: str | None, header: Mapping[str, Any], records: Iterable[Mapping[str, Any]]
) -> None:
    """Write a flow file: ``header`` then ``records`` in the documented order."""
    write_lines(out, render(header, records))


def read_flow_file(path: str, stream: IO[bytes] | None = None) -> FlowFile:
    """Read a flow file back (from ``stream`` when given -- a pipe, a decompressed file --,
    else from ``path``, which messages name); ``CaptureError`` if it is not one, is from a
    newer version or has a line that is not a record."""
    try:
        if stream is None:
            with open(path, encoding="utf-8") as f:
                lines = f.read().splitlines()
        else:
            lines = io.TextIOWrapper(stream, encoding="utf-8").read().splitlines()
    except FileNotFoundError as exc:
        raise CaptureError("no such file", path=path) from exc
    except IsADirectoryError as exc:
        raise CaptureError("is a directory, not a flow file", path=path) from exc
    except UnicodeDecodeError as exc:
        raise CaptureError("not a flow file (not UTF-8 text)", path=path) from exc
    except OSError as exc:
        raise CaptureError(f"cannot read: {exc.strerror or exc}", path=path) from exc
    return parse_flow_lines(lines, path)


def parse_flow_lines(lines: Sequence[str], path: str) -> FlowFile:
    """A flow file from its lines (a file's, or a header and lines appended after it); errors
    name ``path`` and the line."""
    if not lines:
        raise CaptureError("empty file, not a flow file", path=path)
    header = _json_object(lines[0], path, 1)
    if header.get("format") != FORMAT:
        raise CaptureError(f"not a flow file (line 1 has no \"format\": \"{FORMAT}\")",
                           path=path, record=1, unit="line")
    version = header.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise CaptureError("flow file header has no integer \"version\"", path=path, record=1,
                           unit="line")
    if version > VERSION:
        raise CaptureError(
            f"flow file format version {version} is newer than this program reads ({VERSION});"
            " upgrade segmenter-capture",
            path=path,
        )
    records = []
    for number, line in enumerate(lines[1:], 2):
        if line.strip():
            record = _json_object(line, path, number)
            _check_record(record, path, number)
            records.append(record)
    return FlowFile(header, records)


def loads(line: str) -> Any:
    """One JSON value of a flow file, or ``ValueError`` saying why it is not one: as
    ``json.loads``, but a number must be finite (NaN, Infinity and 1e999 are not JSON, and
    ``dumps`` cannot write them back) and nesting too deep for the parser is a ``ValueError``
    too, not a ``RecursionError``. (An integer of more than 4300 digits is a ``ValueError``
    of the parser already: Python's limit on int parsing.)"""
    try:
        return json.loads(line, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number out of range: {text[:40]}")
    return value


def _json_object(line: str, path: str, number: int) -> dict[str, Any]:
    try:
        obj = loads(line)
    except ValueError as exc:
        raise CaptureError(f"not JSON: {exc}", path=path, record=number, unit="line") from exc
    if not isinstance(obj, dict):
        raise CaptureError("not a JSON object", path=path, record=number, unit="line")
    return obj


def _check_record(record: Mapping[str, Any], path: str, number: int) -> None:
    """The fields records are sorted by must be usable: a time is a number (or null)."""
    field_name = {"flow": "first_seen", "dns": "ts"}.get(str(record.get("record")))
    if field_name is None:
        return
    value = record.get(field_name)
    if value is None:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok:
        try:
            float(value)
        except OverflowError:
            ok = False
    if not ok:
        raise CaptureError(f"\"{field_name}\" is not a time in seconds: {str(value)[:40]}",
                           path=path, record=number, unit="line")


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def merge(files: Sequence[FlowFile]) -> tuple[dict[str, Any], list[Record]]:
    """Header and records of the merge of ``files`` (independent of their order).

    Records are kept as they are (the same connection seen by two agents stays two records);
    ``sources`` is the sorted union and ``stats`` the sums.
    """
    sources: set[str] = set()
    packets = 0
    skipped: dict[str, int] = {}
    records: list[Record] = []
    for ff in files:
        srcs = ff.header.get("sources")
        if isinstance(srcs, list):
            sources.update(str(s) for s in srcs)
        stats = ff.header.get("stats")
        if isinstance(stats, dict):
            packets += _int(stats.get("packets"))
            sk = stats.get("skipped")
            if isinstance(sk, dict):
                for reason, count in sk.items():
                    skipped[str(reason)] = skipped.get(str(reason), 0) + _int(count)
        records.extend(ff.records)
    flows = sum(1 for r in records if r.get("record") == "flow")
    dns = sum(1 for r in records if r.get("record") == "dns")
    return make_header(sources, packets, skipped, flows, dns, version=file_version(records),
                       interfaces=union_interfaces(ff.header for ff in files)), records


def merge_flow_files(paths: Sequence[str], out: str | None) -> FlowFile:
    """Merge flow files into ``out`` (atomically; ``None`` / ``"-"``: stdout).

    Merging the same set of files in any order gives byte-identical output. Returns the merged
    header and records (in file order).
    """
    if isinstance(paths, str):
        paths = [paths]
    if not paths:
        raise CaptureError("no flow files to merge")
    header, records = merge([read_flow_file(p) for p in paths])
    keyed = sorted(((sort_key(r), dumps(r)), r) for r in records)
    write_lines(out, [dumps(header), *(line for (_key, line), _rec in keyed)])
    return FlowFile(header, [rec for _line, rec in keyed])
