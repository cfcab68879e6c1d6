"""Compliance evidence report: Markdown, a self-contained HTML file and, on request, PDF, that an
assessor can read without anything else (docs/report.md).

``segmenter report --graph G --plan P --policies DIR|--cluster [--flows F --inventory DUMP
--config segmenter.yaml] -o OUTDIR`` writes ``report.md`` (pictures beside it as PNG files),
``report.html`` (pictures embedded as ``data:`` URIs, no external resource), ``report.pdf``
with ``--pdf``, and ``SHA256SUMS`` of them all. Sections:

1. about the report: the tool's version and commit, the UTC generation time, the command line,
   the full SHA-256 of every input (:mod:`.provenance`); then the summary and its findings;
2. the scope statement per data class, and scope advice: clients of a restricted store are
   candidates for the processor role (:mod:`.scope_advice`);
3. the network and data-flow diagram (PCI DSS 1.2.3, 1.2.4);
4. coverage and learning: what each traffic source and node covers, whether the capture was
   still learning (:mod:`.coverage`);
5. the allowed-flow register, its justifications read from segmenter.yaml (1.2.5;
   :mod:`.register`), and the declared flows;
6. encryption in transit (1.2.6; HIPAA 164.312(e)(1)); default deny (1.3.1, 1.3.2); the
   isolation of the in-scope workloads (:mod:`.isolation`);
7. the segmentation test, TCP and UDP, in and out (11.4.5, 11.4.6; :mod:`.segmentation`);
8. the observed flows replayed; the cluster as it is: the policy engine and who may change the
   policies (:mod:`.cluster`);
9. the mapping to PCI DSS v4.0.1 and HIPAA 164.312 with the status of each; exceptions,
   assumptions and limits;
10. appendices: the policy text and how segmenter reads policies (:mod:`.appendix`).

Markdown and HTML are deterministic: the same inputs and generation time (``generated_at``,
or ``SOURCE_DATE_EPOCH``) give the same bytes.
"""


from segmenter.views.report.build import build_report, write_report
from segmenter.views.report.document import (
    Bullets,
    Heading,
    Image,
    Para,
    Report,
    Table,
    html_fragment,
    render_html,
    render_markdown,
)

__all__ = [
    "Bullets",
    "Heading",
    "Image",
    "Para",
    "Report",
    "Table",
    "build_report",
    "html_fragment",
    "render_html",
    "render_markdown",
    "write_report",
]
