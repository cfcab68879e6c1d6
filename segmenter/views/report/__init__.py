"""Compliance evidence report: Markdown and a self-contained HTML file an assessor can read.

``segmenter report --graph G --plan P --policies DIR [--flows F --inventory DUMP] -o OUTDIR``
writes ``report.md`` (pictures beside it as PNG files) and ``report.html`` (pictures embedded as
``data:`` URIs, no external resource). Sections, following policy-semantics.md §4.3:

1. the scope statement per data class: restricted and connected members with the reason each is
   there, security-impacting infrastructure, external peers, out-of-scope workloads and why;
2. the network and data-flow diagram (PCI DSS 1.2.3, 1.2.4) and how complete the observation is;
3. the allowed-flow register: every allowed flow that crosses a zone boundary, its evidence
   (flows, first and last seen), the policy that allows it, and columns to fill (1.2.5);
4. encryption in transit: plaintext flows to and from the restricted zone (1.2.6; HIPAA
   164.312(e)(1));
5. default deny per namespace, and workloads no policy isolates (1.3.1, 1.3.2);
6. segmentation test evidence: every path from out-of-scope workloads and external addresses
   into the restricted zone, checked with the project's evaluator (11.4.5);
7. the mapping to PCI DSS v4.0.1 and HIPAA 164.312 with the status of each;
8. exceptions, assumptions and limits.

The output is deterministic: nothing depends on the clock unless ``generated_at`` is given.
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
