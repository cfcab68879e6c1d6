"""Standard input as a traffic source (``segmenter monitor -``): whole lines, read by a thread,
handed over by parts like an appended file (``capture.sources`` formats with a ``header``)."""

from __future__ import annotations

import queue
import threading
from typing import IO

from capture.errors import CaptureError
from capture.sources import SOURCES, SourceFormat
from capture.stream import HEAD_BYTES, in_memory
from segmenter.errors import InputError
from segmenter.monitor.records import STDIN, Chunk, read_format


class StdinReader:
    """Standard input, read by a thread into a queue of whole lines."""

    def __init__(self, stream: IO[bytes], once: bool) -> None:
        self.stream = stream
        self.once = once
        self.queue: queue.Queue[bytes | None] = queue.Queue()
        self.ended = False
        self.format: SourceFormat | None = None
        self.preamble = b""
        self.preamble_lines = 0
        self.lines = 0
        self.buffer = b""
        self.thread = threading.Thread(target=self._pump, daemon=True, name="monitor-stdin")
        self.thread.start()

    def _pump(self) -> None:
        try:
            for line in self.stream:
                self.queue.put(line)
        finally:
            self.queue.put(None)

    def pending(self) -> bool:
        return not self.queue.empty()

    def take(self, limit: int) -> Chunk | None:
        parts = [self.buffer]
        size = len(self.buffer)
        self.buffer = b""
        while size < limit:
            try:
                line = self.queue.get(timeout=None if self.once and not self.ended else 0) \
                    if self.once else self.queue.get_nowait()
            except queue.Empty:
                break
            if line is None:
                self.ended = True
                break
            parts.append(line)
            size += len(line)
        data = b"".join(parts)
        if not data:
            return None
        if not data.endswith(b"\n"):
            if not self.ended:
                cut = data.rfind(b"\n") + 1
                self.buffer = data[cut:]
                data = data[:cut]
            else:
                data += b"\n"
        if not data.strip():
            return None
        first_line = self.lines + 1
        if self.format is None:
            self.format = next((s for s in SOURCES if s.sniff(data[:HEAD_BYTES])), None)
            if self.format is None:
                raise InputError("standard input is not traffic records of a format segmenter "
                                 "reads", path=STDIN)
            size_ = self.format.header(data[:HEAD_BYTES]) if self.format.header else None
            if size_ is None:
                raise InputError(f"a {self.format.title} cannot be followed on standard input "
                                 "(it is not read by parts): give it as a file", path=STDIN)
            self.preamble = data[:size_]
            self.preamble_lines = self.preamble.count(b"\n")
        self.lines += data.count(b"\n")
        part = data if first_line == 1 else self.preamble + data
        try:
            records = read_format(self.format, in_memory("<stdin>", part))
        except CaptureError as exc:
            number = exc.record
            if exc.unit == "line" and number is not None and first_line > 1:
                number = number - self.preamble_lines + first_line - 1
            raise InputError(str(CaptureError(exc.message, path="<stdin>", record=number,
                                              unit=exc.unit))) from None
        return Chunk(STDIN, "<stdin>", self.format, records) if records else None


