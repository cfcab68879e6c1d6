"""The checkpoint of a monitor (``--state DIR``) and where alerts go.

After each batch of records the monitor appends the batch's alerts to the alert file, syncs it
to disk, then replaces ``DIR/checkpoint.json`` atomically: the cursor of every followed file,
the open deduplication windows, the outside addresses seen, the capture agents' active flows
already judged, the learning and rule-hygiene windows, and the alert file's length. A restart
goes on from there. If the monitor died between the two writes, the alert file is longer than
the checkpoint says: it is cut back to that length, and the records after the checkpoint are
read and judged again, giving the same alerts again (judging is deterministic) -- so a restart
neither repeats nor loses alerts. On standard output nothing can be cut back: a crash (not a
stop: SIGTERM and Ctrl-C checkpoint first) may repeat the alerts of the last batch there.

One monitor per state folder: ``DIR/.lock`` is held while it runs.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from pathlib import Path
from typing import IO, Any, Final

from segmenter.errors import InputError
from segmenter.fileio import atomic_write_text

FORMAT: Final = "segmenter-monitor-state"
VERSION: Final = 1
CHECKPOINT: Final = "checkpoint.json"
LOCK: Final = ".lock"


class StateDir:
    """The state folder: its lock, and the checkpoint read and written."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._lock: IO[str] | None = open(self.path / LOCK, "a")  # noqa: SIM115 - held
        except OSError as exc:
            raise InputError(f"cannot use as the state folder: {exc.strerror or exc}",
                             path=path) from None
        try:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock.close()
            self._lock = None
            raise InputError("another monitor is using this state folder", path=path) from None

    def load(self) -> dict[str, Any] | None:
        """The last checkpoint, or None for a first run."""
        file = self.path / CHECKPOINT
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"cannot read the checkpoint: {exc}", path=str(file)) from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise InputError(f"not a monitor checkpoint (format {FORMAT})", path=str(file))
        if data.get("version") != VERSION:
            raise InputError(f"checkpoint version {data.get('version')} is not the one this "
                             f"program reads ({VERSION})", path=str(file))
        return data

    def save(self, state: dict[str, Any]) -> None:
        document = {"format": FORMAT, "version": VERSION, **state}
        atomic_write_text(self.path / CHECKPOINT,
                          json.dumps(document, sort_keys=True, separators=(",", ":")) + "\n")

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None


class AlertSink:
    """JSON Lines to a file (appended to) or to standard output."""

    def __init__(self, path: str | None, stream: IO[str] | None = None) -> None:
        self.path = path if path not in (None, "-") else None
        self.stream: IO[str] = stream if stream is not None else sys.stdout
        self.file: IO[str] | None = None
        if self.path is not None:
            try:
                self.file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - held
            except OSError as exc:
                raise InputError(f"cannot write the alerts: {exc.strerror or exc}",
                                 path=self.path) from None

    def restore(self, saved: dict[str, Any] | None) -> None:
        """Cut the alert file back to its length at the checkpoint (see the module
        docstring), when it is still the same file."""
        if self.file is None or not saved:
            return
        st = os.fstat(self.file.fileno())
        size = int(saved.get("size", -1))
        if (st.st_dev, st.st_ino) == (saved.get("dev"), saved.get("ino")) and \
                0 <= size < st.st_size:
            self.file.flush()
            os.truncate(self.file.fileno(), size)

    def position(self) -> dict[str, Any] | None:
        if self.file is None:
            return None
        self.file.flush()
        st = os.fstat(self.file.fileno())
        return {"dev": st.st_dev, "ino": st.st_ino, "size": st.st_size}

    def write(self, lines: list[str]) -> None:
        if not lines:
            return
        out = self.file if self.file is not None else self.stream
        out.write("".join(line + "\n" for line in lines))
        out.flush()

    def sync(self) -> None:
        if self.file is not None:
            self.file.flush()
            os.fsync(self.file.fileno())

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
