"""Bounding the agent's output directory by size and age (``--max-bytes``, ``--max-age``).

On a node the output directory is a hostPath: without a bound the flow files of a long capture
fill the node's disk. After every numbered file it writes (and once at start), the agent deletes
its own oldest numbered files (``flows-HOST-NNNNNN.jsonl``) that are older than ``max_age``
seconds, then more of the oldest while its files (the snapshot of active flows included) take
more than ``max_bytes``. It never deletes the newest numbered file -- so that a restarted agent
continues the numbering after it and a collector never sees a name come back with other
contents -- nor the snapshot, nor a file being written (those are hidden temporary files until
renamed), nor files of other agent names.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kKMGTP]i?)?[bB]?")
_UNITS = {"": 1, "k": 1000, "K": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4, "P": 1000**5,
          "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "Pi": 1 << 50}
_AGE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)")
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_size(text: str) -> int:
    """Bytes from ``1073741824``, ``500M`` / ``1G`` (powers of 1000) or ``512Mi`` / ``1Gi``
    (powers of 1024), as Kubernetes quantities; ``ValueError`` otherwise."""
    m = _SIZE.fullmatch(text.strip())
    if not m:
        raise ValueError(f"not a size: {text!r} (e.g. 500Mi, 2Gi, 1G)")
    value = int(float(m.group(1)) * _UNITS[m.group(2) or ""])
    if value < 1:
        raise ValueError(f"must be at least one byte: {text!r}")
    return value


def parse_age(text: str) -> float:
    """Seconds from ``3600``, ``90s``, ``15m``, ``12h`` or ``7d``; ``ValueError`` otherwise."""
    m = _AGE.fullmatch(text.strip())
    if not m:
        raise ValueError(f"not a duration: {text!r} (e.g. 12h, 7d)")
    value = float(m.group(1)) * _SECONDS[m.group(2)]
    if not value > 0:
        raise ValueError(f"must be positive: {text!r}")
    return value


@dataclass(frozen=True)
class Retention:
    """How much the agent keeps: at most ``max_bytes`` of flow files, none older than
    ``max_age`` seconds (None: no bound)."""

    max_bytes: int | None = None
    max_age: float | None = None

    @property
    def bounded(self) -> bool:
        return self.max_bytes is not None or self.max_age is not None

    def describe(self) -> str:
        parts = []
        if self.max_bytes is not None:
            parts.append(f"{self.max_bytes} bytes")
        if self.max_age is not None:
            parts.append(f"{self.max_age:g}s")
        return " and ".join(parts) if parts else "unbounded"


@dataclass(frozen=True)
class Pruned:
    """A file the agent deleted, and why ("age" or "size")."""

    name: str
    size: int
    reason: str


def prune(out_dir: str, host: str, retention: Retention, now: float,
          snapshot: str | None = None) -> list[Pruned]:
    """Delete ``host``'s oldest numbered flow files in ``out_dir`` beyond ``retention`` (``now``:
    seconds since the epoch); the files deleted, oldest first. Files that vanish meanwhile (or
    cannot be deleted) are left to the next call."""
    if not retention.bounded:
        return []
    pattern = re.compile(rf"flows-{re.escape(host)}-(\d+)\.jsonl")
    files: list[tuple[int, str, int, float]] = []  # (seq, name, size, mtime)
    total = 0
    try:
        entries = list(os.scandir(out_dir))
    except OSError:
        return []
    for entry in entries:
        m = pattern.fullmatch(entry.name)
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if m:
            files.append((int(m.group(1)), entry.name, st.st_size, st.st_mtime))
            total += st.st_size
        elif entry.name == snapshot:
            total += st.st_size
    files.sort()
    candidates = files[:-1]  # never the newest: the numbering goes on after it
    out: list[Pruned] = []
    for _seq, name, size, mtime in candidates:
        reason = None
        if retention.max_age is not None and mtime < now - retention.max_age:
            reason = "age"
        elif retention.max_bytes is not None and total > retention.max_bytes:
            reason = "size"
        if reason is None:
            break  # oldest first: once one stays, the newer ones stay too
        try:
            os.unlink(os.path.join(out_dir, name))
        except FileNotFoundError:
            pass
        except OSError:
            break
        total -= size
        out.append(Pruned(name, size, reason))
    return out
