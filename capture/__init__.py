"""Packet captures -> flow records (the ``flows.jsonl`` flow file, docs/flow-format.md).

Standalone: needs only the standard library and scapy (for its pcap / pcapng readers), so that it
runs in a capture container next to tcpdump. Entry points: ``capture.ingest.ingest`` (files),
``capture.agent.run_agent`` (the live agent, docs/capture-agent.md),
``capture.flowfile.merge_flow_files`` and ``python -m capture``.
"""

__version__ = "0.1.0"
