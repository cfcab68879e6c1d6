"""Reading record files line by line or as a stream of JSON values, with the line numbers that
errors name.

Flow logs arrive as text lines (AWS, Zeek TSV), JSON Lines (Zeek JSON, Cloud Logging exports,
CloudWatch forwarders) or one JSON document holding an array (``gcloud logging read
--format=json``, Azure's ``{"records": [...]}`` blobs). Every reader here streams: memory holds
one line or one array element at a time, never the whole file. A gzip-compressed file is read
through; one that is damaged part-way is a warning on the sink (the lines before the damage are
used), as ``capture.sources.base`` asks.
"""

from __future__ import annotations

import codecs
import gzip
import io
import ipaddress
import json
import re
import zlib
from collections.abc import Iterator
from datetime import datetime
from socket import AF_INET, inet_pton
from typing import IO, Any

from capture.errors import CaptureError
from capture.sources.base import READ_BUFFER, Opened, Sink

CHUNK = 1 << 20  # bytes read at a time by the JSON stream
_DAMAGE = (EOFError, OSError, zlib.error)
_BOM = "\ufeff"


def line_error(opened: Opened, line: int | None, message: str) -> CaptureError:
    """The one-line error about line ``line`` of ``opened``."""
    return CaptureError(message, path=opened.path, record=line, unit="line")


def _open(opened: Opened) -> IO[bytes]:
    try:
        # Closed by the callers' with blocks.
        raw = open(opened.path, "rb", buffering=READ_BUFFER)  # noqa: SIM115
    except OSError as exc:
        raise CaptureError(f"cannot read: {exc.strerror or exc}", path=opened.path) from exc
    if opened.gzipped:
        return io.BufferedReader(gzip.GzipFile(fileobj=raw, mode="rb"), READ_BUFFER)
    return raw


def _damaged(sink: Sink, opened: Opened, line: int, exc: BaseException) -> None:
    what = "compressed data ends early or is damaged" if opened.gzipped else "cannot read"
    sink.warnings.append(
        str(line_error(opened, line, f"{what} ({exc})")) + f"; using the {line - 1} lines before it"
    )


def text_lines(opened: Opened, sink: Sink) -> Iterator[tuple[int, str]]:
    """(line number, text without the line end) of every line of a UTF-8 text file.

    A line that is not UTF-8 raises ``CaptureError`` naming it; damage part-way through a
    compressed file ends the lines with a warning on ``sink``.
    """
    with _open(opened) as f:
        number = 0
        lines = iter(f)
        while True:
            try:
                raw = next(lines)
            except StopIteration:
                return
            except _DAMAGE as exc:
                _damaged(sink, opened, number + 1, exc)
                return
            number += 1
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise line_error(opened, number, f"not UTF-8 text ({exc.reason})") from None
            if number == 1:
                text = text.removeprefix(_BOM)
            yield number, text.rstrip("\r\n")


class JsonValues:
    """The JSON values of a file, one at a time, each with the line it starts on.

    What counts as one value: each value of JSON Lines or of concatenated documents; each element
    of a top-level array; each element of the ``records`` array of a top-level
    ``{"records": [...]}`` object (Azure's blob layout). Elements are parsed one by one from a
    buffer of at most a few chunks plus the largest element, so a large document is never held
    whole.
    """

    def __init__(self, opened: Opened, sink: Sink) -> None:
        self.opened = opened
        self.sink = sink
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.json = json.JSONDecoder()
        self.buf = ""
        self.pos = 0
        self.line = 1  # line number at self.pos
        self.eof = False
        self.stream: IO[bytes] | None = None

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        with _open(self.opened) as stream:
            self.stream = stream
            yield from self._values()

    # -- buffer ------------------------------------------------------------------------------

    def _fill(self) -> bool:
        """Read one more chunk; False at the end of the file."""
        if self.eof or self.stream is None:
            return False
        try:
            chunk = self.stream.read(CHUNK)
        except _DAMAGE as exc:
            _damaged(self.sink, self.opened, self.line, exc)
            chunk = b""
        if self.pos > len(self.buf) // 2:  # drop what was consumed
            self.buf = self.buf[self.pos :]
            self.pos = 0
        try:
            text = self.decoder.decode(chunk, final=not chunk)
        except UnicodeDecodeError as exc:
            raise line_error(self.opened, self.line, f"not UTF-8 text ({exc.reason})") from None
        if not self.buf and self.line == 1:
            text = text.removeprefix(_BOM)
        self.buf += text
        if not chunk:
            self.eof = True
        return bool(chunk)

    def _advance(self, end: int) -> None:
        self.line += self.buf.count("\n", self.pos, end)
        self.pos = end

    def _peek(self) -> str | None:
        """The next character that is not white space (consumed up to it); None at the end."""
        while True:
            buf = self.buf
            n = len(buf)
            pos = self.pos
            while pos < n and buf[pos] in " \t\r\n":
                pos += 1
            self._advance(pos)
            if pos < n:
                return buf[pos]
            if not self._fill():
                return None

    def _value(self) -> Any:
        """Decode the value at the current position, reading more until it is whole."""
        want = 0
        while True:
            try:
                obj, end = self.json.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                # A value cut by the end of the buffer fails at the buffer's end (or inside a
                # string that runs to it: a string cannot hold a raw line end): read on, at
                # least doubling the text after the value's start each time, so a large value
                # costs linear time. Any other failure is the file's.
                cut = exc.pos >= len(self.buf) - 8 or exc.msg.startswith("Unterminated string")
                if cut and not self.eof:
                    want = max(want * 2, len(self.buf) - self.pos + CHUNK)
                    while not self.eof and len(self.buf) - self.pos < want:
                        self._fill()
                    continue
                line = self.line + self.buf.count("\n", self.pos, max(exc.pos, self.pos))
                raise line_error(self.opened, line, f"not JSON: {exc.msg}") from None
            if (not self.eof and isinstance(obj, (int, float))
                    and end > len(self.buf) - 32):
                # A bare number near the end of the buffer may go on in the next chunk.
                self._fill()
                continue
            self._advance(end)
            return obj

    # -- structure ---------------------------------------------------------------------------

    _RECORDS = re.compile(r'\{\s*"records"\s*:\s*\[')

    def _values(self) -> Iterator[tuple[int, Any]]:
        while True:
            c = self._peek()
            if c is None:
                return
            if c == "[":
                self._advance(self.pos + 1)
                yield from self._elements()
            elif c == "{" and self._records_array():
                yield from self._elements()
                if self._peek() != "}":
                    raise line_error(self.opened, self.line,
                                     'unexpected content after the "records" array')
                self._advance(self.pos + 1)
            else:
                line = self.line
                yield line, self._value()

    def _records_array(self) -> bool:
        while len(self.buf) - self.pos < 64 and self._fill():
            pass
        m = self._RECORDS.match(self.buf, self.pos)
        if m is None:
            return False
        self._advance(m.end())
        return True

    def _elements(self) -> Iterator[tuple[int, Any]]:
        """The elements of an array whose ``[`` was consumed, up to and including its ``]``."""
        first = True
        while True:
            c = self._peek()
            if c is None:
                raise line_error(self.opened, self.line, "the file ends inside a JSON array")
            if c == "]":
                self._advance(self.pos + 1)
                return
            if not first:
                if c != ",":
                    raise line_error(self.opened, self.line,
                                     f"not JSON: expected ',' or ']' between array elements, "
                                     f"found {c!r}")
                self._advance(self.pos + 1)
                if self._peek() is None:
                    raise line_error(self.opened, self.line, "the file ends inside a JSON array")
            first = False
            line = self.line
            yield line, self._value()


def json_values(opened: Opened, sink: Sink) -> Iterator[tuple[int, Any]]:
    """(line, value) of every JSON value of a file, as :class:`JsonValues` splits them."""
    return iter(JsonValues(opened, sink))


def head_text(head: bytes) -> str:
    """The sniffed first bytes as text (a cut multi-byte character at the end dropped)."""
    return head.decode("utf-8", errors="ignore").removeprefix(_BOM)


def first_json_value(head: bytes) -> Any:
    """The first JSON value of the head, or its first element when it is an array or a
    ``{"records": [...]}`` object; None when the head does not start with one that is whole."""
    text = head_text(head).lstrip()
    decoder = json.JSONDecoder()
    try:
        if text.startswith("["):
            return decoder.raw_decode(text, len(text) - len(text[1:].lstrip()))[0]
        m = JsonValues._RECORDS.match(text)
        if m is not None:
            rest = text[m.end():]
            return decoder.raw_decode(rest, len(rest) - len(rest.lstrip()))[0]
        return decoder.raw_decode(text)[0]
    except ValueError:
        return None


class Addresses:
    """IP address text -> its canonical form: dotted IPv4, compressed IPv6 as ``ipaddress``
    writes it (what capture.table writes for captures).

    The same address is the same string object each time (up to ``LIMIT`` addresses): the
    connections of a flow log share a few pod and node addresses, and hold them once.
    """

    LIMIT = 1 << 20

    def __init__(self) -> None:
        self.known: dict[str, str] = {}

    def __call__(self, text: str) -> str | None:
        """The canonical form, None when ``text`` is not an IP address."""
        canonical = self.known.get(text)
        if canonical is not None:
            return canonical
        try:
            # inet_pton takes exactly the canonical dotted quads (no leading zeros, no short
            # forms), at a tenth of ipaddress's cost.
            inet_pton(AF_INET, text)
            canonical = text
        except OSError:
            if ":" not in text:
                return None
            try:
                canonical = ipaddress.IPv6Address(text).compressed
            except ValueError:
                return None
        if len(self.known) < self.LIMIT:
            self.known[text] = canonical
        return canonical


def iso_time(text: str) -> float | None:
    """Epoch seconds of an ISO-8601 / RFC 3339 time with a zone (``...Z``, ``...+02:00``);
    None when it is not one (a time without a zone is not one: its epoch is unknown)."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return when.timestamp()


def count(value: Any) -> int | None:
    """A non-negative count from JSON: an integer, or an integer as a string (Cloud Logging
    writes int64 fields as strings); None when it is neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str) and value.isdigit() and value.isascii():
        return int(value)
    return None

