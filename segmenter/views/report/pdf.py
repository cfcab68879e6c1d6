"""The report as PDF, printed from its self-contained HTML.

Two renderers, tried in this order (``auto``):

- **headless Chromium** (or Chrome) where one is installed: the browser assessors read the HTML
  with, so the PDF looks as the page does (``--print-to-pdf``, no header or footer). Found as
  ``$SEGMENTER_CHROMIUM``, else ``chromium``, ``chromium-browser``, ``google-chrome`` or
  ``google-chrome-stable`` on the PATH. It runs on a copy of the page in a temporary folder,
  with a throw-away profile, and never fetches anything (the page has no external resource).
- **WeasyPrint** (``pip install 'segmenter[pdf]'``): a maintained pure-Python HTML/CSS to PDF
  engine (Pango for text), for machines without a browser.

None available, or a renderer that fails: :class:`PdfError` (exit 2), naming what to install.
Renderers stamp the clock's time as the document's creation and modification dates (the
``/CreationDate`` and ``/ModDate`` of its information dictionary, PDF 1.7 section 14.3.3): given
the report's generation time, those are set to it, in place and at the same length so that the
cross-reference offsets stay right, and the PDF is byte-identical for the same inputs and time as
the Markdown and HTML are (checked for Chromium, which writes nothing else that varies).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from segmenter.errors import SegmenterError

RENDERERS: Final = ("chromium", "weasyprint")
AUTO: Final = "auto"
_BROWSERS: Final = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
_TIMEOUT: Final = 180.0
INSTALL_HINT: Final = ("install Chromium (apt-get install chromium) or WeasyPrint "
                       "(pip install 'segmenter[pdf]')")


class PdfError(SegmenterError):
    """The PDF could not be made: no renderer, or the renderer failed."""


def chromium_path() -> str | None:
    """The browser to print with, or None."""
    given = os.environ.get("SEGMENTER_CHROMIUM")
    if given:
        return given if Path(given).is_file() else None
    for name in _BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return None


def _weasyprint_available() -> bool:
    try:
        import weasyprint  # type: ignore[import-not-found]  # noqa: F401
    except (ImportError, OSError):  # OSError: the package without its Pango libraries
        return False
    return True


def available_renderer(choice: str = AUTO) -> str | None:
    """The renderer ``choice`` names (or the first available for ``auto``), None when none is
    installed."""
    for name in RENDERERS if choice == AUTO else (choice,):
        if name == "chromium" and chromium_path() is not None:
            return name
        if name == "weasyprint" and _weasyprint_available():
            return name
    return None


def render_pdf(page: str, *, renderer: str = AUTO, timeout: float = _TIMEOUT,
               created: datetime | None = None) -> tuple[bytes, str]:
    """``page`` (a self-contained HTML document) as PDF bytes, and the renderer used.
    ``created``: the document's creation and modification dates (aware; else the renderer's
    clock).

    Raises:
        PdfError: no renderer available, or it failed or wrote no PDF.
    """
    chosen = available_renderer(renderer)
    if chosen is None:
        wanted = "a PDF renderer" if renderer == AUTO else renderer
        raise PdfError(f"--pdf needs {wanted}: {INSTALL_HINT}")
    data = _weasyprint(page) if chosen == "weasyprint" else _chromium(page, timeout)
    if not data.startswith(b"%PDF-"):
        raise PdfError(f"{chosen} wrote no PDF")
    return (data if created is None else stamp_dates(data, created)), chosen


# A date of the information dictionary, as a literal string (PDF 1.7 section 7.9.4: D:, then
# YYYY[MM[DD[HH[mm[SS]]]]], then an optional offset: Z, or +HH'mm' with or without the last ').
_INFO_DATE: Final = re.compile(rb"/(?:CreationDate|ModDate)\s*\((D:\d{4,14}[Z+\-0-9']*)\)")


def stamp_dates(data: bytes, when: datetime) -> bytes:
    """``data`` with every creation and modification date of its information dictionary set to
    ``when`` (in UTC), each written at its old length (the offsets of the cross-reference
    table stay right); a date of a length no form of ``when`` has is left as it was.

    >>> stamp_dates(b"<</CreationDate (D:20261207233901+00'00')>>",
    ...             datetime.fromisoformat("2026-12-01T00:00:00+00:00"))
    b"<</CreationDate (D:20261201000000+00'00')>>"
    """
    digits = when.astimezone(UTC).strftime("%Y%m%d%H%M%S")
    forms = {len(f): f for f in (f"D:{digits}", f"D:{digits}Z", f"D:{digits}+00'00",
                                 f"D:{digits}+00'00'")}

    def put(match: re.Match[bytes]) -> bytes:
        old = match.group(1)
        new = forms.get(len(old))
        if new is None:
            return match.group(0)
        return match.group(0).replace(old, new.encode("ascii"), 1)

    return _INFO_DATE.sub(put, data)


def _chromium(page: str, timeout: float) -> bytes:
    browser = chromium_path()
    assert browser is not None
    with tempfile.TemporaryDirectory(prefix="segmenter-pdf-") as tmp:
        folder = Path(tmp)
        source, target = folder / "report.html", folder / "report.pdf"
        source.write_text(page, encoding="utf-8")
        args = [browser, "--headless", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-extensions", f"--user-data-dir={folder / 'profile'}",
                "--no-pdf-header-footer", "--print-to-pdf-no-header",
                f"--print-to-pdf={target}", source.as_uri()]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            # Chromium refuses to run as root with its sandbox; the page is our own, local and
            # without scripts or external resources.
            args.insert(1, "--no-sandbox")
        try:
            done = subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                                  check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            raise PdfError(f"cannot run {browser}: {exc}") from None
        if done.returncode != 0 or not target.is_file():
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise PdfError(f"{browser} failed to print the report (exit {done.returncode}): "
                           f"{last}")
        return target.read_bytes()


def _weasyprint(page: str) -> bytes:
    from weasyprint import HTML

    try:
        data = HTML(string=page).write_pdf()
    except Exception as exc:  # the renderer's own failures, whatever their type
        raise PdfError(f"weasyprint failed to print the report: {exc}") from None
    if not isinstance(data, bytes):
        raise PdfError("weasyprint wrote no PDF")
    return data


__all__ = ["AUTO", "INSTALL_HINT", "RENDERERS", "PdfError", "available_renderer",
           "chromium_path", "render_pdf", "stamp_dates"]
