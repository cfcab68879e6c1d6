"""A folder given as an input stands for the files in it (``segmenter ingest collected/``).

``segmenter collect`` writes one subfolder per node; an agent's own output directory holds its
numbered flow files and the snapshot of its active flows. Either is read as it is: the folder
is replaced by every file under it, at any depth, in the order of their paths, each then
detected by content like a file named on the command line (so a file of no format read is the
usual error naming it). Hidden files and folders (``.name``: the agent's lock and unfinished
temporary files) are left out. A folder with no file in it is an error, not an empty input,
and so is an output file inside a folder given as an input: the next run would read it back as
traffic and count every flow twice.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from capture.errors import CaptureError


def expand_inputs(paths: Iterable[str | os.PathLike[str]]) -> list[str]:
    """``paths`` with every folder replaced by the files under it (sorted, hidden ones left
    out); files and anything else stay as given."""
    out: list[str] = []
    for name in paths:
        path = os.fspath(name)
        if not os.path.isdir(path):
            out.append(path)
            continue
        found: list[str] = []
        for root, dirs, files in os.walk(path):  # symbolic links to folders are not followed
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            found.extend(os.path.join(root, f) for f in files
                         if not f.startswith(".") and os.path.isfile(os.path.join(root, f)))
        if not found:
            raise CaptureError("a folder with no files in it (hidden files are left out)",
                               path=path)
        out.extend(sorted(found, key=lambda p: os.path.relpath(p, path).split(os.sep)))
    return out


def refuse_output_inside(paths: Iterable[str | os.PathLike[str]], out: str | None) -> None:
    """``CaptureError`` when the flow file ``out`` would be written inside a folder given as
    an input (whether or not it exists yet: the same answer on every run)."""
    if out is None or out == "-":
        return
    target = os.path.realpath(out)
    for name in paths:
        path = os.fspath(name)
        if not os.path.isdir(path):
            continue
        folder = os.path.realpath(path)
        if os.path.commonpath([folder, target]) == folder:
            raise CaptureError(f"the output {out} is inside this input folder: a later ingest"
                               " of the folder would read it back as traffic; write it"
                               " elsewhere", path=path)
