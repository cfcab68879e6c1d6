"""Generated traffic for the streaming and summary tests: a day of a cluster whose pods come and
go (IP reuse over time: ``segmenter.synthetic.pod_timeline``), its flows
(``day_of_flows``), and on top what flow records of every source carry (docs/flow-format.md,
version 2): identities of the ends (right, wrong, or an end named without an address), verdicts
of dropped flows with the policies said to decide them, sources and sampling, TLS; flows with a
special address (loopback, multicast, the cloud metadata service); DNS answers that put external
addresses in named sets (several names for one address too, so that the client's own answer
decides). Everything comes from the seed.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from pathlib import Path

from capture.flowfile import make_header, render, write_lines
from segmenter.flowfile import dns_record, flow_record
from segmenter.model import (
    DnsAnswer,
    EndpointIdentity,
    Flow,
    FlowVerdict,
    Inventory,
    Labels,
    Pod,
    Transport,
)
from segmenter.synthetic import day_of_flows, pod_timeline

SOURCES = (("hubble",), ("calico",), ("hubble", "zeek"), ())
NAMES = ("api.stripe.example", "cdn.partner.example", "mail.partner.example")


@dataclasses.dataclass(frozen=True)
class Generated:
    inventory: Inventory
    flows: list[Flow]
    dns: list[DnsAnswer]


def _pod_at(pods: Sequence[Pod], ip: str, ts: float) -> Pod | None:
    for pod in pods:
        if ip in pod.ips and (pod.start or 0) <= ts <= (pod.end or float("inf")):
            return pod
    return None


def generated_traffic(seed: int, *, pods: int = 120, flows: int = 600,
                      variety: bool = True) -> Generated:
    """A day of ``flows`` flows over ``pods`` pods (see the module docstring)."""
    rng = random.Random(seed)
    inventory, all_pods = pod_timeline(pods, rng)
    plain = day_of_flows(flows, all_pods, inventory.services, inventory.nodes, rng)
    if not variety:
        return Generated(inventory, plain, [])
    internet = sorted({f.server for f in plain if f.server and f.server.startswith("93.184.")})
    # Two names share the first address: the client's own answer decides its set.
    named = {NAMES[0]: internet[0:3], NAMES[1]: internet[2:5], NAMES[2]: internet[5:6]}
    dns: list[DnsAnswer] = []
    out: list[Flow] = []
    for base in plain:
        flow = base
        roll = rng.random()
        assert flow.server is not None and flow.client is not None
        if flow.server in internet and rng.random() < 0.7:
            choices = [n for n, ips in named.items() if flow.server in ips]
            if choices:
                name = rng.choice(choices)
                when = flow.first_seen - rng.uniform(0.5, 3000)
                dns.append(DnsAnswer(flow.client, "10.96.0.10", name,
                                     tuple(sorted(named[name])), (), when))
        if roll < 0.08:
            flow = dataclasses.replace(flow, sources=rng.choice(SOURCES),
                                       sampled=rng.random() < 0.5, tls=rng.random() < 0.5)
        elif roll < 0.12:
            flow = dataclasses.replace(flow, verdict=rng.choice(
                [FlowVerdict.DROPPED, FlowVerdict.AUDIT, FlowVerdict.FORWARDED]),
                sources=("calico",), policies=(f"default/ns-0{rng.randrange(3)}/deny deny",))
        elif roll < 0.18:
            pod = _pod_at(all_pods, flow.client, flow.first_seen)
            if pod is not None:
                how = rng.choice(["right", "pod-only", "wrong-workload", "gone"])
                endpoint = EndpointIdentity(
                    namespace=pod.namespace,
                    pod=pod.name if how != "gone" else f"{pod.name}-gone",
                    labels=pod.labels if how != "gone" else Labels.of({"app": "elsewhere"}),
                    workload_kind=None if how in ("pod-only", "gone") else "Deployment",
                    workload_name={"right": pod.owner.name, "wrong-workload": "app-99999"}.get(
                        how))
                addressless = rng.random() < 0.3
                flow = dataclasses.replace(
                    flow, client=None if addressless else flow.client,
                    client_endpoint=endpoint, client_port=None, sources=("calico",))
        elif roll < 0.20:
            flow = dataclasses.replace(flow, server_endpoint=EndpointIdentity(
                entity="world", names=(rng.choice(NAMES),)), sources=("hubble",))
        elif roll < 0.22:
            special = rng.choice(["127.0.0.1", "224.0.0.251", "169.254.169.254", "ff02::1"])
            flow = dataclasses.replace(flow, server=special,
                                       transport=Transport.UDP if ":" in special
                                       else flow.transport)
        out.append(flow)
    return Generated(inventory, out, dns)


def write_flows(path: Path, flows: Sequence[Flow], dns: Sequence[DnsAnswer] = ()) -> Path:
    """A flow file as ``capture`` writes it (records sorted, keys sorted)."""
    records = [flow_record(f) for f in flows] + [dns_record(d) for d in dns]
    version = 2 if any("sources" in r or "verdict" in r or "client_endpoint" in r
                       or "server_endpoint" in r or "sampled" in r for r in records) else 1
    header = make_header([path.name], 0, {}, len(flows), len(dns), version=version)
    write_lines(str(path), render(header, records))
    return path
