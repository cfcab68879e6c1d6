"""What the flow-log sources (Hubble, Calico) share: reading JSON lines, and folding across files.

* ``json_lines(opened)`` yields ``(line number, object)`` for every non-blank line of a file,
  compressed or not, file or pipe, without reading it whole. A line that is not a JSON object is a
  ``CaptureError`` naming the file and the line; a final line cut short (a file copied while the
  agent was still writing it, a compressed stream that ends early) is a warning and what came before
  it is used.
* ``FileFold`` is a source's state for one ingest. One connection is reported in several files
  -- each node writes its own log (Hubble exporter, Calico ``flows.log``), the exporter rotates
  its file -- so a source folds every file of an ingest into the same state and, after each
  file, replaces the records it gave the sink before with the records of everything read so
  far (``publish``). The sink holds each connection once, whatever the number of files.
"""

from __future__ import annotations

import calendar
import datetime
import ipaddress
import json
import re
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from capture.errors import CaptureError
from capture.sources.base import Opened, Record, Sink
from capture.sources.reading import raw_lines

try:  # an optional accelerator: the same objects, 2-3 times faster on long lines
    import orjson  # type: ignore[import-not-found,unused-ignore]

    _loads: Callable[[bytes], Any] = orjson.loads
except ImportError:  # pragma: no cover - depends on the environment
    _loads = json.loads

JSON_ERRORS = (ValueError, UnicodeDecodeError)
NS = 1_000_000_000


def loads(line: bytes) -> Any:
    """One JSON value from ``line`` (raises ``ValueError`` when it is not JSON)."""
    return _loads(line)


def json_lines(opened: Opened, sink: Sink, *, what: str,
               prefix: bytes | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for each non-blank line of ``opened``; ``what`` names the
    format in messages ("Hubble flow"). ``prefix``, when a line starts with it, is taken off
    first (server-sent events' ``data:``)."""
    path = opened.path
    cut: tuple[int, Exception] | None = None  # a last line without its newline, not JSON
    for number, raw_line in raw_lines(opened, sink):
        line = raw_line[len(prefix):] if prefix and raw_line.startswith(prefix) else raw_line
        if line.isspace():
            continue
        try:
            obj = _loads(line)
        except JSON_ERRORS as exc:
            if line.endswith(b"\n"):
                raise _not_json(path, number, line, exc, what=what) from exc
            cut = (number, exc)  # only the last line lacks its newline
            continue
        if not isinstance(obj, dict):
            raise CaptureError(f"not a {what} record (a JSON {type(obj).__name__}, "
                               "not an object)", path=path, record=number, unit="line")
        yield number, obj
    if cut is not None:
        sink.warnings.append(str(CaptureError(
            f"last line is cut short, not JSON ({cut[1]}); file still being written?",
            path=path, record=cut[0], unit="line")) + "; using the lines before it")


def lines_stand_alone(head: bytes) -> int:
    """``SourceFormat.header`` of JSON Lines: no header, every line read alone (0)."""
    return 0


def _not_json(path: str, number: int, line: bytes, exc: Exception, *, what: str) -> CaptureError:
    shown = line[:40].decode("utf-8", "replace").strip()
    return CaptureError(f"not a {what} record: not JSON ({exc}): {shown!r}", path=path,
                        record=number, unit="line")


def head_objects(head: bytes, limit: int = 20) -> Iterator[dict[str, Any]]:
    """The JSON objects of the first complete non-blank lines of ``head`` (for sniffers); stops
    at the first line that is not a JSON object."""
    lines = head.split(b"\n")
    if len(lines) > 1:
        lines = lines[:-1]  # the last piece may be cut by the head's length
    seen = 0
    for line in lines:
        if not line.strip():
            continue
        try:
            obj = _loads(line)
        except JSON_ERRORS:
            return
        if not isinstance(obj, dict):
            return
        yield obj
        seen += 1
        if seen >= limit:
            return


_ADDRESSES: dict[str, str] = {}


def address(text: Any) -> str:
    """An IP address in the flow file's form (IPv4 dotted, IPv6 compressed); ``ValueError``
    when it is not one. Cached: a log names few distinct addresses many times."""
    try:
        return _ADDRESSES[text]
    except KeyError:
        pass
    except TypeError as exc:  # unhashable: not a string
        raise ValueError(f"not an IP address: {text!r}") from exc
    if not isinstance(text, str):
        raise ValueError(f"not an IP address: {text!r}")
    value = str(ipaddress.ip_address(text))
    if len(_ADDRESSES) < 1 << 20:
        _ADDRESSES[text] = value
    return value


def dns_name(text: str) -> str:
    """A DNS name as the flow file writes it: lower case, no trailing dot."""
    return text.rstrip(".").lower()


S = TypeVar("S")


class FileFold:
    """A source's state across the files of one ingest, kept in ``sink.state`` (see the module
    doc): the fold, and the records it gave the sink so far (replaced after each file)."""

    @staticmethod
    def state(sink: Sink, name: str, make: Callable[[], S]) -> S:
        """The source ``name``'s state for ``sink``, made by ``make()`` on its first file."""
        entry = sink.state.get(name)
        if entry is None:
            entry = sink.state[name] = [make(), []]
        known: S = entry[0]
        return known

    @staticmethod
    def publish(sink: Sink, name: str, records: list[Record]) -> None:
        """Replace the records ``name`` gave ``sink`` before by ``records``."""
        entry = sink.state[name]
        before = entry[1]
        if before:
            gone = {id(r) for r in before}
            sink.records[:] = [r for r in sink.records if id(r) not in gone]
        for record in records:
            sink.add_record(record)
        entry[1] = records


_RFC3339 = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?"
    r"(Z|z|[+-][0-9]{2}:[0-9]{2})\Z")
_DAYS: dict[str, int] = {}
_MINUTES: dict[str, int] = {}  # "2021-11-10T10:40:" -> seconds since the epoch


def rfc3339_ns(text: Any) -> int:
    """Nanoseconds since the epoch of an RFC 3339 time stamp (``2021-11-10T10:40:56.4655977Z``,
    the form protobuf's JSON mapping gives ``Timestamp``); ``ValueError`` otherwise."""
    if not isinstance(text, str):
        raise ValueError(f"not a time stamp: {text!r}")
    # Fast path: a stamp in UTC whose minute was seen before (a log's stamps share few).
    minute = _MINUTES.get(text[:17])
    if minute is not None and text[-1] == "Z":
        two, digits = text[17:19], text[20:-1]
        if two.isdigit() and two.isascii() and text[19] in ".Z" and (
                (digits.isdigit() and digits.isascii() and len(digits) <= 9)
                if digits else len(text) == 20):
            return (minute + int(two)) * NS + (int(digits.ljust(9, "0")) if digits else 0)
    m = _RFC3339.match(text)
    if m is None:
        raise ValueError(f"not an RFC 3339 time stamp: {text!r}")
    date, hh, mm, ss, frac, zone = m.groups()
    day = _DAYS.get(date)
    if day is None:
        try:
            day = calendar.timegm(datetime.date.fromisoformat(date).timetuple())
        except ValueError as exc:
            raise ValueError(f"not an RFC 3339 time stamp: {text!r} ({exc})") from exc
        _DAYS[date] = day
    secs = day + int(hh) * 3600 + int(mm) * 60 + int(ss)
    if zone == "Z" and len(_MINUTES) < 1 << 16:
        _MINUTES[text[:17]] = secs - int(ss)
    if zone not in ("Z", "z"):
        offset = int(zone[1:3]) * 3600 + int(zone[4:6]) * 60
        secs += -offset if zone[0] == "+" else offset
    return secs * NS + (int(frac.ljust(9, "0")) if frac else 0)


def epoch_seconds(ns: int) -> float:
    """The nearest double to ``ns`` nanoseconds, in seconds (as the flow file writes times)."""
    return ns / NS
