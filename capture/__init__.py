"""Packet captures -> flow records (the ``flows.jsonl`` flow file, docs/flow-format.md).

Standalone: needs only the standard library and scapy (for its reference readers and the live
agent's socket), so that it runs in a capture container next to tcpdump; the ``zstandard``
package reads zstd-compressed captures where it is installed (``segmenter[zstd]``). Entry
points: ``capture.ingest.ingest`` (files and pipes), ``capture.agent.run_agent`` (the live
agent, docs/capture-agent.md), ``capture.flowfile.merge_flow_files`` and ``python -m capture``.
"""

__version__ = "0.1.0"
