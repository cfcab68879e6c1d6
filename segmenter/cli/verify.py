"""``segmenter verify``: the gate a pipeline or a cron job runs on the policies (files, or the
ones in force with ``--cluster``), and ``verify --explain`` for one connection."""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any

from segmenter import pipeline
from segmenter.analysis.enforcement import Enforcement
from segmenter.analysis.findings import Finding, Severity, exit_status, failing
from segmenter.analysis.policies import PolicyDocs
from segmenter.cli import options
from segmenter.cli.common import EXIT_DENIED, EXIT_OK
from segmenter.errors import InputError
from segmenter.model import Inventory
from segmenter.targets import get_target

DESCRIPTION = """\
Replay every observed flow against policies (folders/files of YAML, or --cluster for the
policies in force) and, with --plan, check every restricted and connected workload: isolated
for ingress and egress, and reachable only by its planned peers and ports (probes from every
other workload, the nodes, the API server, the external addresses seen and the internet, and
from the workload out to each of them).

The policies are judged under the enforcement of the target their documents are written for
({owned} objects); Kubernetes NetworkPolicies alone need --enforcement, or --cluster
(detected from the API groups the cluster serves). An empty set, a set holding no policy, or
objects of two targets is an error.

Findings and their severities: unisolated (restricted: critical, connected: medium),
over-permissive (restricted: high, connected: medium), unchecked (no pod to probe; high /
medium), denied-flow (high), invalid-policy (medium).

Exit status: 0 nothing at or above --fail-on; 1 findings at or above --fail-on (default high:
an observed flow denied, a restricted workload not isolated or reachable beyond the plan);
2 bad input (one line on stderr). With --explain: 0 allowed, 1 denied, 2 bad input."""


def _rejected(docs: PolicyDocs) -> None:
    for problem in docs.rejected:  # a warning: held back if bad input stops the command later
        logging.getLogger("segmenter.cli").warning("rejected %s", problem)


def _zone_of(plan_path: str | None) -> tuple[Any, dict[str, str]]:
    from segmenter.planner import load_plan

    if not plan_path:
        return None, {}
    plan = load_plan(plan_path)
    zone_of: dict[str, str] = {}
    for scope in plan.classes:
        for zone, members in scope.zones:
            for m in members:
                zone_of.setdefault(m.node, f"{scope.data_class}:{zone}")
    return plan, zone_of


def cmd_verify(args: argparse.Namespace) -> int:
    from segmenter.analysis.verify import over_permissiveness

    inventory = pipeline.read_inventory(args.inventory)
    if args.policies and args.cluster:
        raise InputError("give --policies or --cluster, not both")
    named = options.named_enforcement(args)
    docs = pipeline.policies_to_judge(args.policies or (), cluster=args.cluster,
                                      context=args.context, kubeconfig=args.kubeconfig,
                                      target=get_target(named) if named else None)
    _rejected(docs)
    enforcement = pipeline.enforcement_for(docs, named)
    if args.explain:
        return _explain(args, inventory, docs, enforcement)
    if not args.flows:
        raise InputError("give --flows FLOWS (or --explain SRC DST PORT)")
    plan, zone_of = _zone_of(args.plan)
    traffic = pipeline.open_traffic(args.flows)
    result = pipeline.verify_gate(traffic, inventory, docs, enforcement, plan)
    results = result.verdicts
    notes = pipeline.policy_notes(traffic, inventory, docs, node_local_dns=result.node_local_dns)
    rank = {"restricted": 0, "connected": 1}

    def order(r: Any) -> tuple[int, str, str]:
        zones = [zone_of.get(r.client, ""), zone_of.get(r.server, "")]
        best = min((rank.get(z.split(":")[-1], 9) for z in zones), default=9)
        return (best, r.client, r.server)

    denied = sorted(results.denied, key=order)
    groups, capped = over_permissiveness(inventory, docs.manifests, results.groups,
                                         enforcement=enforcement.name, zone_of=zone_of,
                                         max_workloads=args.max_workloads)
    fail_on: Severity = args.fail_on
    code = exit_status(result.findings, fail_on)
    if args.format == "json":
        print(json.dumps({
            "enforcement": enforcement.name,
            "enforcement_from": enforcement.why,
            "policies": docs.label,
            "flows": results.flows,
            # One entry per (client, server, protocol, port, verdict), with its flows.
            "denied": [{"client": r.client, "server": r.server,
                        "protocol": str(r.transport), "port": r.port, "flows": r.flows,
                        "client_zone": zone_of.get(r.client), "server_zone": zone_of.get(r.server),
                        "egress": vars(r.verdict.egress), "ingress": vars(r.verdict.ingress)}
                       for r in denied],
            "isolation": result.isolation.as_dict() if result.isolation else None,
            "over_permissiveness": [vars(g) | {"extra": list(g.extra)} for g in groups],
            "capped": capped,
            "findings": [f.as_dict() for f in result.findings],
            "fail_on": str(fail_on),
            "failed": bool(code),
            "notes": notes,
        }, indent=1, sort_keys=True))
        return code
    print(f"verify {docs.label} under {enforcement.name} enforcement ({enforcement.why})")
    for r in denied:
        side = r.verdict.egress if not r.verdict.egress.allowed else r.verdict.ingress
        where = " / ".join(z for z in (zone_of.get(r.client), zone_of.get(r.server)) if z)
        print(f"DENIED {r.client} -> {r.server} {r.transport}/{r.port}"
              f"{f' [{where}]' if where else ''} ({r.flows} flow{'s' if r.flows != 1 else ''}): "
              f"{side.policy or '-'} {side.rule or ''} ({side.reason})")
    for note in notes:
        print(f"note: {note}")
    print(f"{results.flows - results.denied_flows} of {results.flows} observed flows allowed "
          f"under {enforcement.name} enforcement; {results.denied_flows} denied")
    _print_isolation(result, plan)
    if groups:
        print("over-permissiveness (workload pairs x ports allowed vs observed, by server "
              f"{'zone' if zone_of else 'namespace'}"
              f"{'; capped at ' + str(args.max_workloads) + ' workloads' if capped else ''}):")
        for g in groups:
            ratio = f"{g.allowed / g.observed:.1f}x" if g.observed else "-"
            print(f"  {g.group:<28} allowed {g.allowed:>6}  observed {g.observed:>6}  {ratio}")
            for extra in g.extra[:3]:
                print(f"    allowed, never observed: {extra}")
    _print_findings(result.findings, fail_on)
    return code


def _print_isolation(result: pipeline.Verification, plan: Any) -> None:
    if plan is None:
        print("isolation not checked: give --plan plan.json to check that every restricted and "
              "connected workload is isolated and reachable only as planned")
        return
    check = result.isolation
    if check is None or not check.workloads:
        print("isolation: the plan has no restricted or connected workload: nothing in scope "
              "to check")
        return
    print(f"isolation of the in-scope workloads ({check.enforcement} enforcement; probes with "
          f"{check.peers} peers on {len(check.ports)} ports, both directions):")
    for w in check.workloads:
        print(f"  {w.scope:<22} {w.node}: {w.summary()}")


def _print_findings(findings: list[Finding], fail_on: Severity) -> None:
    above = failing(findings, fail_on)
    if not findings:
        print("findings: none")
        return
    print(f"findings: {len(findings)}, {len(above)} at or above --fail-on {fail_on}")
    for finding in findings:
        print(f"  {finding.line()}")


def _explain(args: argparse.Namespace, inventory: Inventory, docs: PolicyDocs,
             enforcement: Enforcement) -> int:
    from segmenter.analysis.explain import Names, parse_port

    src_text, dst_text, port_text = args.explain
    transport, port = parse_port(port_text)
    names = Names(inventory)
    src, dst = names.resolve(src_text), names.resolve(dst_text)
    engine = enforcement.target.evaluator(docs.manifests,
                                          {ns.name: ns.labels for ns in inventory.namespaces})
    verdict = engine.check(src.endpoint, dst.endpoint, transport, port)
    what = str(transport) if port is None else f"{transport}/{port}"
    print(f"{src.resolved} -> {dst.resolved} {what} under {enforcement.name} enforcement "
          f"({enforcement.why}): {'ALLOWED' if verdict.allowed else 'DENIED'}")
    for label, decision in (("egress ", verdict.egress), ("ingress", verdict.ingress)):
        print(f"  {label} {'allow' if decision.allowed else 'deny '}  "
              f"{decision.policy or '-'} {decision.rule or ''}: {decision.reason}")
    return EXIT_OK if verdict.allowed else EXIT_DENIED


def register(sub: Any) -> None:
    p = sub.add_parser(
        "verify", help="the gate: replay observed flows against policies and, with --plan, "
                       "check the isolation of the restricted zone (exit 1 on findings)",
        description=options.paragraphs(DESCRIPTION.format(owned=options.owned_kinds_text())),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--policies", nargs="+", help="YAML files or folders")
    p.add_argument("--cluster", action="store_true", help="the policies in force in the cluster")
    options.cluster(p, "--cluster")
    p.add_argument("--flows", nargs="+")
    p.add_argument("--inventory", nargs="+", required=True)
    p.add_argument("--plan", help="plan.json: check the isolation of every restricted and "
                                  "connected workload; order and group findings by zone")
    options.enforcement(p, detects_cluster=True)
    options.fail_on(p)
    p.add_argument("--explain", nargs=3, metavar=("SRC", "DST", "PORT"),
                   help="one connection: SRC/DST as namespace/name, namespace/Kind/name, a pod "
                        "namespace/pod-name or an IP; PORT as 5432/TCP (1-65535)")
    options.output_format(p)
    options.max_workloads(p, default=200, help_text="cap for the over-permissiveness probe")
    p.set_defaults(func=cmd_verify)


__all__ = ["register"]
