"""Shared pieces of the monitor tests: the bundled sample through ``pipeline.run`` (what
``make demo`` writes), flow records in the flow-file format (docs/flow-format.md) and the
unplanned flows injected into the sample's traffic.

The sample's addresses come from ``sample/shop-inventory.json``: frontend 10.244.1.10, catalog
10.244.1.20, recommendations 10.244.1.25 (Service 10.96.41.25:8081), checkout 10.244.1.30,
card-vault 10.244.1.60 (Service 10.96.52.60:5432, the restricted pci store).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segmenter import pipeline
from segmenter.monitor import MonitorOptions

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample"
INVENTORY = str(SAMPLE / "shop-inventory.json")
T0 = 1795715500.0  # after the sample's own traffic
HEADER = {"format": "segmenter-flows", "generator": "test", "sources": ["test"],
          "stats": {"dns": 0, "flows": 0, "packets": 0, "skipped": {}}, "version": 1}


@dataclass(frozen=True)
class Demo:
    out: Path

    @property
    def flows(self) -> Path:
        return self.out / "flows.jsonl"

    @property
    def plan(self) -> str:
        return str(self.out / "plan.json")

    def policies(self, target: str = "kubernetes") -> str:
        return str(self.out / target)


def make_demo(out: Path) -> Demo:
    pipeline.run([str(SAMPLE / "shop.pcapng")], [INVENTORY], out,
                 config=str(SAMPLE / "segmenter.yaml"))
    return Demo(out)


def record(client: str, server: str, port: int, *, t: float, tls: bool = False,
           proto: str = "TCP", client_port: int = 40000, **extra: Any) -> dict[str, Any]:
    """A flow record as the capture writes one."""
    rec = {"record": "flow", "proto": proto, "client": client, "client_port": client_port,
           "server": server, "server_port": port, "first_seen": t, "last_seen": t + 1.0,
           "packets_to_server": 3, "bytes_to_server": 300, "packets_to_client": 3,
           "bytes_to_client": 300, "direction": "handshake", "handshake": True, "resets": 0,
           "tls": tls, "sni": None, "outer": None}
    rec.update(extra)
    return rec


def line(obj: dict[str, Any]) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")) + "\n"


INTO_RESTRICTED = record("10.244.1.10", "10.244.1.60", 5432, t=T0, tls=True)
EXFILTRATION = record("10.244.1.60", "203.0.113.66", 443, t=T0 + 10, tls=True,
                      client_port=40001)
LATERAL = record("10.244.1.20", "10.96.41.25", 8081, t=T0 + 20, client_port=40002)
PLAINTEXT_TO_STORE = record("10.244.1.30", "10.96.52.60", 5432, t=T0 + 30, client_port=40003)
INJECTED = (INTO_RESTRICTED, EXFILTRATION, LATERAL, PLAINTEXT_TO_STORE)

FRONTEND = "shop/Deployment/frontend"
CATALOG = "shop/Deployment/catalog"
RECOMMENDATIONS = "shop/Deployment/recommendations"
CHECKOUT = "shop/Deployment/checkout"
VAULT = "payments/StatefulSet/card-vault"
EXTERNAL = "external:203.0.113.66"

# (kind, client, server, protocol, port, severity): exactly what the injected flows give
# under Kubernetes enforcement of the policies `run` wrote.
EXPECTED = {
    ("unplanned-restricted", FRONTEND, VAULT, "TCP", 5432, "high"),
    ("policy-denied", FRONTEND, VAULT, "TCP", 5432, "high"),
    ("unplanned-restricted", VAULT, EXTERNAL, "TCP", 443, "high"),
    ("policy-denied", VAULT, EXTERNAL, "TCP", 443, "high"),
    ("new-external", VAULT, EXTERNAL, "TCP", 443, "medium"),
    ("drift", CATALOG, RECOMMENDATIONS, "TCP", 8081, "low"),
    ("policy-denied", CATALOG, RECOMMENDATIONS, "TCP", 8081, "low"),
    ("unplanned-restricted", CHECKOUT, VAULT, "TCP", 5432, "high"),
    ("policy-denied", CHECKOUT, VAULT, "TCP", 5432, "high"),
    ("plaintext-restricted", CHECKOUT, VAULT, "TCP", 5432, "high"),
}


def summary_of(alert: dict[str, Any]) -> tuple[str, str, str, str, int | None, str]:
    return (alert["kind"], alert["client"]["workload"], alert["server"]["workload"],
            alert["protocol"], alert["port"], alert["severity"])


def read_alerts(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def options(demo: Demo, sources: list[str], **kw: Any) -> MonitorOptions:
    if "policies" not in kw:
        # The sample's Kubernetes NetworkPolicies: every dataplane enforces them a little
        # differently, so the enforcement is named (as the gates require).
        kw["policies"] = (demo.policies(),)
        kw.setdefault("enforcement", "kubernetes")
    kw.setdefault("inventory", (INVENTORY,))
    return MonitorOptions(sources=tuple(sources), plan=demo.plan, **kw)
