"""The one error type of the capture package.

``CaptureError`` means "this input cannot be used": a file that is missing, is not a capture,
or a flow file that cannot be read. A capture that is damaged part-way is *not* an error: the
packets before the damage are used and a warning is logged (see ``capture.ingest``).
"""

from __future__ import annotations


class CaptureError(Exception):
    """A user-facing error about one input file.

    ``path`` is the file as the caller named it and ``record`` the 1-based packet (or line)
    number where the problem is, when known. ``str()`` is one line, e.g.
    ``shop.pcap (packet 1234): truncated record header``.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        record: int | None = None,
        unit: str = "packet",
    ) -> None:
        self.message = message
        self.path = path
        self.record = record
        self.unit = unit
        super().__init__(self.one_line())

    def one_line(self) -> str:
        where = ""
        if self.path:
            where = self.path
            if self.record is not None:
                where += f" ({self.unit} {self.record})"
            where += ": "
        elif self.record is not None:
            where = f"{self.unit} {self.record}: "
        return (where + self.message).replace("\n", " ")

    def __str__(self) -> str:
        return self.one_line()
