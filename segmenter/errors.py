"""Errors the CLI turns into one line on stderr and exit status 2.

Anything that is not a ``SegmenterError`` is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any


class SegmenterError(Exception):
    """A user-facing error: bad input, unreachable cluster, unsatisfiable plan.

    ``path`` and ``record`` name where the problem is, when known; ``str()`` gives one line.
    """

    def __init__(self, message: str, *, path: str | None = None, record: str | None = None):
        self.message = message
        self.path = path
        self.record = record
        super().__init__(self.one_line())

    def one_line(self) -> str:
        where = ""
        if self.path:
            where = self.path
            if self.record:
                where += f" ({self.record})"
            where += ": "
        elif self.record:
            where = f"{self.record}: "
        return (where + self.message).replace("\n", " ")


class InputError(SegmenterError):
    """A file that is missing, unreadable or malformed."""


class OutputError(SegmenterError):
    """A file or folder that cannot be written (a folder where a file goes, a read-only or
    full disk...); what was there before is left as it was."""


class InventoryError(SegmenterError):
    """Kubernetes metadata that cannot be read or reached."""


class PlanError(SegmenterError):
    """A plan that cannot be made from the declarations given (config, selectors)."""


class UnsupportedError(SegmenterError):
    """A policy that a dialect cannot express exactly; ``reasons`` lists every one."""

    def __init__(self, reasons: list[str], *, dialect: str):
        self.reasons = reasons
        self.dialect = dialect
        super().__init__(
            f"the {dialect} dialect cannot express this plan exactly: " + "; ".join(reasons)
        )


class UnknownNameError(SegmenterError):
    """A name that is not one of the known ones (a target, a source format, a class), with the
    closest known names ("did you mean")."""

    def __init__(self, what: str, name: str, known: Iterable[str], *, path: str | None = None,
                 record: str | None = None):
        self.name = name
        self.known = sorted(known)
        close = difflib.get_close_matches(name, self.known, n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        super().__init__(f"unknown {what} {name!r} (known: {', '.join(self.known)}){hint}",
                         path=path, record=record)


def type_name(value: Any) -> str:
    """How a JSON/YAML value reads in an error message: ``null``, ``a list``, ``an object``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__
