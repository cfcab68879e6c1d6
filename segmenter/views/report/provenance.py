"""Where the evidence report comes from: the tool (version and commit), when it was generated
(UTC), the command line, and the full SHA-256 of every input file; the report's own outputs are
listed in ``SHA256SUMS`` beside it (written last, ``sha256sum -c`` checks it).

The generation time is the clock's unless given: ``--generated-at`` (ISO 8601), else the
``SOURCE_DATE_EPOCH`` environment variable (reproducible-builds.org), so that the same inputs
give byte-identical Markdown and HTML when asked to.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final

from segmenter.errors import InputError
from segmenter.version import BuildInfo, build_info

if TYPE_CHECKING:
    from segmenter.views.report.document import Block

SUMS_FILE: Final = "SHA256SUMS"
_CHUNK: Final = 1 << 20


@dataclass(frozen=True)
class InputFile:
    """One input: its role (``graph``, ``policies`` ...), where it was read, its full SHA-256
    and size. A directory is listed file by file; a cluster read is named by its host and
    digested as the text the report shows (``size`` -1)."""

    role: str
    path: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Provenance:
    """What the report states about its own making."""

    tool: BuildInfo
    generated_at: str  # ISO 8601, UTC, seconds: 2026-01-31T09:30:00Z
    command: tuple[str, ...] = ()
    inputs: tuple[InputFile, ...] = ()


def utc_text(moment: datetime) -> str:
    """``2026-01-31T09:30:00Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def generation_time(given: str | None = None, *, environ: Mapping[str, str] | None = None,
                    now: datetime | None = None) -> str:
    """The report's generation time as UTC text: ``given`` (an ISO 8601 date, or a date and
    time with its UTC offset), else ``SOURCE_DATE_EPOCH`` (seconds since the epoch), else now.

    >>> generation_time("2026-01-31")
    '2026-01-31T00:00:00Z'
    >>> generation_time("2026-01-31T10:15:00+01:00")
    '2026-01-31T09:15:00Z'
    >>> generation_time(None, environ={"SOURCE_DATE_EPOCH": "1700000000"})
    '2023-11-14T22:13:20Z'

    Raises:
        InputError: text that is not such a time, a time without its offset (which zone?), or a
            ``SOURCE_DATE_EPOCH`` that is not a whole number.
    """
    env = os.environ if environ is None else environ
    if given is not None:
        text = given.strip()
        try:
            day = date.fromisoformat(text)
        except ValueError:
            pass
        else:
            return utc_text(datetime(day.year, day.month, day.day, tzinfo=UTC))
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise InputError(f"--generated-at {given!r} is not an ISO 8601 date or time "
                             "(2026-01-31, 2026-01-31T09:30:00Z)") from None
        if moment.tzinfo is None:
            raise InputError(f"--generated-at {given!r} has no UTC offset: add Z or +HH:MM")
        return utc_text(moment)
    epoch = env.get("SOURCE_DATE_EPOCH")
    if epoch is not None and epoch.strip():
        if not epoch.strip().isdigit():
            raise InputError(f"SOURCE_DATE_EPOCH {epoch!r} is not a whole number of seconds")
        return utc_text(datetime.fromtimestamp(int(epoch.strip()), UTC))
    return utc_text(now or datetime.now(UTC))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def input_files(role: str, paths: Iterable[str]) -> list[InputFile]:
    """Every file of ``paths`` (a directory: each file under it, sorted) with its digest.

    Raises:
        InputError: a path that cannot be read (it was read a moment ago: fail rather than
            state a digest of something else).
    """
    out: list[InputFile] = []
    for given in paths:
        root = Path(given)
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for file in files:
            shown = str(file) if root.is_dir() else given
            try:
                out.append(InputFile(role, shown, file_sha256(file), file.stat().st_size))
            except OSError as exc:
                raise InputError(f"cannot read to digest it: {exc.strerror or exc}",
                                 path=shown) from None
    return out


def text_input(role: str, where: str, text: str) -> InputFile:
    """An input read from somewhere that is not a file (the cluster), digested as ``text``."""
    return InputFile(role, where, hashlib.sha256(text.encode()).hexdigest(), -1)


def provenance(*, command: Sequence[str] = (), inputs: Mapping[str, Sequence[str]] | None = None,
               generated_at: str | None = None, extra: Sequence[InputFile] = ()) -> Provenance:
    """The provenance of a report made now (or at ``generated_at``) by this segmenter from
    ``inputs`` (role -> paths)."""
    files = [f for role, paths in sorted((inputs or {}).items())
             for f in input_files(role, paths)]
    return Provenance(build_info(), generation_time(generated_at), tuple(command),
                      tuple([*files, *extra]))


def sums_text(digests: Mapping[str, str]) -> str:
    """``SHA256SUMS`` as ``sha256sum`` writes it: ``<hex>  <name>``, sorted by name."""
    return "".join(f"{digest}  {name}\n" for name, digest in sorted(digests.items()))




def about_blocks(prov: Provenance, *, enforcement: str, classes: str,
                 images: Sequence[tuple[str, bytes]]) -> list[Block]:
    """The "About this report" section: who made it, when, how, from what."""
    import shlex

    from segmenter.views.report.document import Bullets, Heading, Table

    items = [
        f"Generated by segmenter {prov.tool.describe()} at **{prov.generated_at}** (UTC), from "
        "observed traffic and the policies below; policies evaluated with segmenter's own "
        f"policy engine under **{enforcement}** enforcement (the semantics it follows are "
        "summarised in [the appendix](#semantics)).",
        f"Data classes in scope: {classes}.",
    ]
    if prov.command:
        items.append(f"Command: `{shlex.join(prov.command)}`")
    items.append(f"The digests of the report's own files (report.md, report.html, report.pdf "
                 f"when written, the pictures) are in `{SUMS_FILE}` beside it: check them with "
                 f"`sha256sum -c {SUMS_FILE}`.")
    out: list[Block] = [Heading(2, "About this report", "about"), Bullets(tuple(items))]
    if prov.inputs:
        out.append(Table(("Input", "Path", "Bytes", "SHA-256"), tuple(
            (f.role, f.path, str(f.size) if f.size >= 0 else "-", f.sha256)
            for f in prov.inputs), caption="Inputs"))
    if images:
        out.append(Table(("Picture", "SHA-256"), tuple(
            (name, hashlib.sha256(data).hexdigest()) for name, data in images),
            caption="Pictures in this report"))
    return out


__all__ = ["SUMS_FILE", "InputFile", "Provenance", "about_blocks", "file_sha256",
           "generation_time", "input_files", "provenance", "sums_text", "text_input",
           "utc_text"]
