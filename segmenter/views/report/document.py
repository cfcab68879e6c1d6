"""A small document model (headings, paragraphs, bullets, tables, images) rendered to Markdown
and to self-contained HTML (pictures as ``data:`` URIs, no external resource)."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from segmenter.analysis.findings import Finding


@dataclass(frozen=True)
class Heading:
    level: int
    text: str
    anchor: str = ""


@dataclass(frozen=True)
class Para:
    """Text with `code` spans; ``kind`` ok / warn / fail / info renders as a callout."""

    text: str
    kind: str = ""


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    # Per row: "", "ok", "warn" or "fail" (row colour in HTML, a marker in Markdown).
    marks: tuple[str, ...] = ()
    caption: str = ""


@dataclass(frozen=True)
class Image:
    name: str  # file name beside report.md
    data: bytes  # PNG
    alt: str
    caption: str = ""


@dataclass(frozen=True)
class Code:
    """Preformatted text (a policy's YAML, a configuration snippet), shown as it is."""

    text: str
    language: str = ""


Block = Heading | Para | Bullets | Table | Image | Code


@dataclass
class Report:
    title: str
    blocks: list[Block] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)  # problems an assessor must see
    enforcement: str = ""  # the target whose enforcement judged the policies
    # What the sections were built from (the segmentation test, its matrix ...), by name: not
    # rendered; for tests, notebooks and checks that the parts agree.
    evidence: dict[str, Any] = field(default_factory=dict, compare=False)

    def images(self) -> list[Image]:
        return [b for b in self.blocks if isinstance(b, Image)]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


_INLINE = re.compile(r"`(?P<code>[^`]+)`|\*\*(?P<bold>[^*]+)\*\*"
                     r"|\[(?P<text>[^\]]+)\]\((?P<href>#[a-z0-9-]+)\)")


def _inline_html(text: str, *, wrap: bool = False) -> str:
    """Escape ``text``, keeping the Markdown it uses: `code`, **bold**, [links](#anchor).
    ``wrap``: allow line breaks after ``/`` (long workload ids in table cells)."""
    def esc(part: str) -> str:
        escaped = html.escape(part)
        return escaped.replace("/", "/<wbr>") if wrap else escaped

    out, last = [], 0
    for m in _INLINE.finditer(text):
        out.append(esc(text[last:m.start()]))
        if m.group("code") is not None:
            out.append(f"<code>{esc(m.group('code'))}</code>")
        elif m.group("bold") is not None:
            out.append(f"<strong>{esc(m.group('bold'))}</strong>")
        else:
            out.append(f'<a href="{m.group("href")}">{esc(m.group("text"))}</a>')
        last = m.end()
    out.append(esc(text[last:]))
    return "".join(out)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


_MARK_TEXT = {"ok": "✅ ", "warn": "⚠️ ", "fail": "❌ ", "info": "ℹ️ "}


def render_markdown(report: Report) -> str:
    """The report as GitHub-flavoured Markdown; images as files beside it."""
    out: list[str] = [f"# {report.title}", ""]
    for block in report.blocks:
        if isinstance(block, Heading):
            anchor = f'<a id="{block.anchor}"></a>\n' if block.anchor else ""
            out += [f"{anchor}{'#' * block.level} {block.text}", ""]
        elif isinstance(block, Para):
            prefix = ("> " + _MARK_TEXT.get(block.kind, "")) if block.kind else ""
            out += [prefix + block.text, ""]
        elif isinstance(block, Bullets):
            out += [f"- {item}" for item in block.items] + [""]
        elif isinstance(block, Table):
            if block.caption:
                out += [f"*{block.caption}*", ""]
            marks = block.marks or ("",) * len(block.rows)
            out.append("| " + " | ".join(_md_cell(h) for h in block.headers) + " |")
            out.append("|" + "---|" * len(block.headers))
            for row, mark in zip(block.rows, marks, strict=True):
                cells = [_md_cell(c) for c in row]
                if mark in {"fail", "warn"} and cells:
                    cells[0] = _MARK_TEXT[mark] + cells[0]
                out.append("| " + " | ".join(cells) + " |")
            out.append("")
        elif isinstance(block, Code):
            fence = "````" if "```" in block.text else "```"
            out += [f"{fence}{block.language}", block.text.rstrip("\n"), fence, ""]
        else:
            out += [f"![{block.alt}]({block.name})", ""]
            if block.caption:
                out += [f"*{block.caption}*", ""]
    return "\n".join(out).rstrip("\n") + "\n"


_CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0;color:#1b1b1b;
background:#fafafa;line-height:1.45}
main{max-width:1200px;margin:0 auto;padding:24px 32px;background:#fff;box-sizing:border-box}
.scroll{overflow-x:auto}td{overflow-wrap:break-word}
h1{font-size:1.7em;border-bottom:3px solid #c62828;padding-bottom:.3em}
h2{font-size:1.35em;margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
h3{font-size:1.1em;margin-top:1.5em}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.86em;width:100%}
th,td{border:1px solid #d0d0d0;padding:4px 7px;text-align:left;vertical-align:top}
th{background:#eceff1}
tr.fail td{background:#ffebee}tr.warn td{background:#fff8e1}tr.ok td{background:#f1f8e9}
td.blank{min-width:9em;background:repeating-linear-gradient(0deg,#fff,#fff 1.3em,#eee 1.3em,
#eee 1.35em)}
caption{caption-side:top;text-align:left;font-style:italic;color:#555;padding:.2em 0}
code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.92em;background:#f3f3f3;
padding:0 .25em;border-radius:3px}
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #e0e0e0}
figcaption{color:#555;font-size:.9em;font-style:italic}
pre{background:#f6f8fa;border:1px solid #e0e0e0;padding:.6em .8em;overflow-x:auto;
font-size:.8em;line-height:1.35;white-space:pre-wrap;overflow-wrap:anywhere}
pre code{background:none;padding:0}
.callout{padding:.6em .9em;border-left:4px solid #90a4ae;background:#f5f7f8;margin:.8em 0}
.callout.ok{border-color:#2e7d32;background:#f1f8e9}
.callout.warn{border-color:#f9a825;background:#fffde7}
.callout.fail{border-color:#c62828;background:#ffebee}
nav ol{columns:2;font-size:.92em}
@page{size:A4 landscape;margin:12mm}
@media print{body{background:#fff}main{padding:0;max-width:none}h2{page-break-after:avoid}
table{font-size:.74em}
tr{page-break-inside:avoid}.scroll{overflow:visible}}
"""


def render_html(report: Report) -> str:
    """The report as one self-contained HTML file (CSS inline, images as data: URIs)."""
    body: list[str] = []
    toc = [b for b in report.blocks if isinstance(b, Heading) and b.level == 2 and b.anchor]
    if toc:
        body.append("<nav><strong>Contents</strong><ol>" + "".join(
            f'<li><a href="#{b.anchor}">{html.escape(b.text.replace("`", ""))}</a></li>'
            for b in toc)
            + "</ol></nav>")
    for block in report.blocks:
        if isinstance(block, Heading):
            anchor = f' id="{block.anchor}"' if block.anchor else ""
            body.append(f"<h{block.level}{anchor}>{_inline_html(block.text)}</h{block.level}>")
        elif isinstance(block, Para):
            if block.kind:
                body.append(f'<div class="callout {block.kind}">{_inline_html(block.text)}</div>')
            else:
                body.append(f"<p>{_inline_html(block.text)}</p>")
        elif isinstance(block, Bullets):
            body.append("<ul>" + "".join(f"<li>{_inline_html(i)}</li>" for i in block.items)
                        + "</ul>")
        elif isinstance(block, Table):
            marks = block.marks or ("",) * len(block.rows)
            parts = ['<div class="scroll"><table>']
            if block.caption:
                parts.append(f"<caption>{html.escape(block.caption)}</caption>")
            parts.append("<thead><tr>" + "".join(f"<th>{html.escape(h)}</th>"
                                                 for h in block.headers) + "</tr></thead><tbody>")
            for row, mark in zip(block.rows, marks, strict=True):
                cls = f' class="{mark}"' if mark else ""
                cells = "".join('<td class="blank"></td>' if c == "" and h in _BLANK_COLUMNS
                                else f"<td>{_inline_html(c, wrap=True)}</td>"
                                for h, c in zip(block.headers, row, strict=True))
                parts.append(f"<tr{cls}>{cells}</tr>")
            parts.append("</tbody></table></div>")
            body.append("".join(parts))
        elif isinstance(block, Code):
            body.append(f"<pre><code>{html.escape(block.text.rstrip(chr(10)))}</code></pre>")
        else:
            uri = "data:image/png;base64," + base64.b64encode(block.data).decode("ascii")
            caption = f"<figcaption>{html.escape(block.caption)}</figcaption>" \
                if block.caption else ""
            body.append(f'<figure><img src="{uri}" alt="{html.escape(block.alt)}" '
                        f'data-name="{html.escape(block.name)}">{caption}</figure>')
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{html.escape(report.title)}</title><style>{_CSS}</style></head>"
            f"<body><main><h1>{html.escape(report.title)}</h1>\n" + "\n".join(body)
            + "\n</main></body></html>\n")


def blocks_from_markdown(text: str, *, anchor_prefix: str = "", shift: int = 0) -> list[Block]:
    """A small Markdown document as blocks: ATX headings (``##``; ``shift`` added to their
    level, each anchored ``anchor_prefix`` + its slug), paragraphs (lines joined), ``-``
    bullets (continuation lines indented) and fenced code. Enough for the notes the package
    ships; anything else reads as a paragraph."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    para: list[str] = []
    bullets: list[str] = []

    def flush() -> None:
        if para:
            blocks.append(Para(" ".join(p.strip() for p in para)))
            para.clear()
        if bullets:
            blocks.append(Bullets(tuple(bullets)))
            bullets.clear()

    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        heading = re.match(r"(#{1,6}) +(.*)", line)
        if line.startswith("```"):
            flush()
            end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")),
                       len(lines))
            blocks.append(Code("\n".join(lines[i + 1:end]) + "\n", line[3:].strip()))
            i = end + 1
            continue
        if heading:
            flush()
            title = heading.group(2).strip()
            blocks.append(Heading(min(6, len(heading.group(1)) + shift), title,
                                  f"{anchor_prefix}{_slug(title)}" if anchor_prefix else ""))
        elif stripped.startswith("- "):
            if para:
                flush()
            bullets.append(stripped[2:])
        elif stripped and line.startswith("  ") and bullets:
            bullets[-1] += " " + stripped
        elif not stripped:
            flush()
        else:
            if bullets:
                flush()
            para.append(line)
        i += 1
    flush()
    return blocks


def html_fragment(blocks: Sequence[Block]) -> str:
    """Blocks as an HTML fragment with its own small style (for notebook displays)."""
    report = Report("", list(blocks))
    page = render_html(report)
    inner = page.split("<main><h1></h1>\n", 1)[1].rsplit("\n</main>", 1)[0]
    style = ("<style>.sg-report table{border-collapse:collapse;font-size:12px;margin:4px 0 10px}"
             ".sg-report th,.sg-report td{border:1px solid #ccc;padding:2px 6px;text-align:left;"
             "vertical-align:top}.sg-report th{background:#eceff1}"
             ".sg-report tr.fail td{background:#ffebee}.sg-report tr.warn td{background:#fff8e1}"
             ".sg-report .callout{padding:4px 8px;border-left:4px solid #90a4ae;margin:6px 0}"
             ".sg-report .callout.ok{border-color:#2e7d32}.sg-report .callout.fail"
             "{border-color:#c62828}.sg-report .callout.warn{border-color:#f9a825}</style>")
    return f'{style}<div class="sg-report">{inner}</div>'


_BLANK_COLUMNS = frozenset({"Justification", "Approver", "Date", "Ticket", "Register entry",
                            "Mitigation"})
