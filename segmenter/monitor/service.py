"""The monitor's loop: follow the sources, judge every flow record, write alerts, checkpoint.

Each turn of the loop is one batch: what every source appended since the last turn (at most a
few MiB per file), judged record by record in file order; the batch's alerts are written and
synced, then the checkpoint is written (:mod:`.state`). Between turns the loop waits
``poll_interval`` seconds unless input is waiting, and looks at the policies and the inventory
(:mod:`.inputs`): a change applies from the next record.

Time: deduplication, learning and rule-hygiene windows run on flow time (the records'
``first_seen`` / ``last_seen``), not on the clock of the machine, so replaying old files gives
the alerts a live run gave; the latest flow time read is the watermark that closes windows.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import IO, Any, Final

from segmenter.analysis.enforcement import resolve_enforcement
from segmenter.analysis.policies import PolicyDocs
from segmenter.analysis.verify import FlowChecker
from segmenter.config import CompileOptions, load_config
from segmenter.errors import InputError
from segmenter.flowfile import parse_record
from segmenter.graph.io import load_graph
from segmenter.model import DnsAnswer, Flow, Inventory, Transport
from segmenter.monitor.alerts import AlertKind, Side, Sighting, Windows, alert_document, dumps
from segmenter.monitor.follow import Follower, Poll
from segmenter.monitor.inputs import Watched, watch_inventory, watch_policies
from segmenter.monitor.judge import Judge, Judgement, PlanView
from segmenter.monitor.records import Chunk
from segmenter.monitor.review import review_folder, write_hygiene, write_proposal
from segmenter.monitor.state import AlertSink, StateDir
from segmenter.planner import load_plan
from segmenter.targets import Target

logger = logging.getLogger(__name__)

DEFAULT_WINDOW: Final = 3600.0  # deduplication, seconds of flow time
DEFAULT_LEARN_WINDOW: Final = 86400.0
DEFAULT_HYGIENE_WINDOW: Final = 30 * 86400.0
DEFAULT_REFRESH: Final = 30.0
POLL_INTERVAL: Final = 0.2
_TRANSPORTS: Final = {t.value: t for t in Transport}


def _tls_formats() -> dict[str, bool]:
    from capture.sources import SOURCES

    return {s.name: s.knows_tls for s in SOURCES}


@dataclass(frozen=True)
class MonitorOptions:
    """Everything ``segmenter monitor`` is told (see docs/monitor.md)."""

    sources: tuple[str, ...]
    plan: str
    graph: str | None = None  # default: graph.json beside the plan
    policies: tuple[str, ...] = ()
    cluster: bool = False
    context: str | None = None
    kubeconfig: str | None = None
    inventory: tuple[str, ...] = ()
    enforcement: str | None = None  # default: the target the policies are written for
    alerts: str | None = None  # default: standard output
    once: bool = False
    metrics_port: int | None = None
    state: str | None = None
    window: float = DEFAULT_WINDOW
    review_dir: str | None = None
    learn_window: float = DEFAULT_LEARN_WINDOW
    hygiene_window: float = DEFAULT_HYGIENE_WINDOW
    config: str | None = None  # segmenter.yaml: compile options of learned proposals
    refresh: float = DEFAULT_REFRESH
    poll_interval: float = POLL_INTERVAL


@dataclass
class MonitorResult:
    records: int = 0
    flows: int = 0
    alerts: Counter[str] = field(default_factory=Counter)
    errors: int = 0
    proposals: list[str] = field(default_factory=list)
    hygiene: list[str] = field(default_factory=list)

    @property
    def alert_count(self) -> int:
        return sum(self.alerts.values())


class Monitor:
    """One monitor: its inputs, judge, follower, alert sink and state."""

    def __init__(self, options: MonitorOptions, *, stdin: IO[bytes] | None = None,
                 alert_stream: IO[str] | None = None,
                 on_alert: Callable[[dict[str, Any]], None] | None = None) -> None:
        if not options.policies and not options.cluster:
            raise InputError("give --policies DIR... or --cluster")
        self.options = options
        self.on_alert = on_alert
        self.result = MonitorResult()
        self.tls_formats = _tls_formats()
        plan = load_plan(options.plan)
        graph_path = options.graph or _beside(options.plan, "graph.json")
        self.graph = load_graph(graph_path)
        self.view = PlanView(plan, self.graph)
        self.compile_options: CompileOptions | None = (
            load_config(options.config).compile if options.config else None)
        self.policies: Watched[PolicyDocs] = watch_policies(
            options.policies, cluster=options.cluster, context=options.context,
            kubeconfig=options.kubeconfig, refresh=options.refresh)
        self.inventory: Watched[Inventory] = watch_inventory(
            options.inventory, cluster=options.cluster, context=options.context,
            kubeconfig=options.kubeconfig, refresh=options.refresh)
        for problem in self.policies.value.rejected:
            logger.warning("policy left out (invalid): %s", problem)
        self.target = self._target(self.policies.value)
        self.judge = Judge(self.view, self._checker(), self.target.name)
        self.windows = Windows(options.window)
        self.state_dir = StateDir(options.state) if options.state else None
        try:
            saved = self.state_dir.load() if self.state_dir else None
            if options.review_dir:
                review_folder(options.review_dir)
            self.sink = AlertSink(options.alerts, alert_stream)
            self.follower = Follower(list(options.sources), state=(saved or {}).get("follower"),
                                     once=options.once, stdin=stdin)
        except BaseException:
            if self.state_dir:
                self.state_dir.close()
            raise
        self.watermark = float("-inf")
        self.snapshot_keys: set[tuple[str, ...]] = set()
        self.drift: dict[tuple[str, str, str, int | None], dict[str, Any]] = {}
        self.learn_start: float | None = None
        self.hygiene_start: float | None = None
        self.metrics = None
        if saved:
            self._restore(saved)
        if options.metrics_port is not None:
            from segmenter.monitor.metrics import Metrics

            self.metrics = Metrics()
            self.metrics.serve(options.metrics_port)
        self.latest: dict[str, float] = {}  # per source, the latest flow time read
        self._pending: tuple[Flow, Judgement] | None = None

    # -- inputs ------------------------------------------------------------------------------

    def _target(self, docs: PolicyDocs) -> Target:
        # The gates' rule (analysis/enforcement.py): the documents' own target, --enforcement
        # for Kubernetes NetworkPolicies alone; an empty set or two targets' objects refused.
        return resolve_enforcement(docs, self.options.enforcement).target

    def _checker(self) -> FlowChecker:
        inventory = self.inventory.value
        namespaces = {ns.name: ns.labels for ns in inventory.namespaces}
        engine = self.target.evaluator(self.policies.value.manifests, namespaces)
        return FlowChecker(inventory, engine, self.view.dns)

    def _reload(self, *, force: bool = False) -> None:
        changed = False
        docs = self.policies.poll(force=force)
        if docs is not None:
            self.target = self._target(docs)
            changed = True
            if self.metrics:
                self.metrics.reloads.labels(input="policies").inc()
        if self.inventory.poll(force=force) is not None:
            changed = True
            if self.metrics:
                self.metrics.reloads.labels(input="inventory").inc()
        if changed:
            self.judge.set_checker(self._checker(), self.target.name)

    # -- checkpoint --------------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        return {
            "follower": self.follower.to_state(),
            "windows": self.windows.to_state(),
            "watermark": self.watermark if self.watermark > float("-inf") else None,
            "known_external": sorted(self.judge.known_external - self.view.external_addresses),
            "dns_names": {a: list(n) for a, n in sorted(self.judge.names.items())},
            "snapshot_keys": sorted(list(k) for k in self.snapshot_keys),
            "drift": [{"edge": list(edge), **item}
                      for edge, item in sorted(self.drift.items(), key=lambda kv: str(kv[0]))],
            "learn_start": self.learn_start,
            "hygiene_start": self.hygiene_start,
            "hygiene_used": sorted(([p, r] for p, r in self.judge.used), key=str),
            "alerts": self.sink.position(),
        }

    def _restore(self, saved: Mapping[str, Any]) -> None:
        self.sink.restore(saved.get("alerts"))
        self.windows.restore(saved.get("windows") or ())
        if saved.get("watermark") is not None:
            self.watermark = float(saved["watermark"])
        self.judge.known_external.update(saved.get("known_external") or ())
        for address, names in (saved.get("dns_names") or {}).items():
            for name in names:
                self.judge.learn_dns(DnsAnswer("", "", name, (address,)))
        self.snapshot_keys = {tuple(k) for k in saved.get("snapshot_keys") or ()}
        for item in saved.get("drift") or ():
            client, server, protocol, port = item["edge"]
            self.drift[(client, server, protocol, port)] = {
                k: v for k, v in item.items() if k != "edge"}
        self.learn_start = saved.get("learn_start")
        self.hygiene_start = saved.get("hygiene_start")
        self.judge.used = {(p, r) for p, r in saved.get("hygiene_used") or ()}

    def checkpoint(self) -> None:
        self.sink.sync()
        if self.state_dir is not None:
            self.state_dir.save(self._state())

    # -- the loop ----------------------------------------------------------------------------

    def run(self, stop: threading.Event | None = None) -> MonitorResult:
        """Follow the sources until ``stop`` is set (or, ``once``, until what exists is
        read); returns what was read and written."""
        stop = stop or threading.Event()
        try:
            while True:
                batch = self.follower.poll()
                self._batch(batch)
                if self.options.once and not batch.more:
                    break
                if batch.ended:
                    break
                if stop.is_set():
                    break
                self._reload()
                if not batch.more:
                    stop.wait(self.options.poll_interval)
            self._finish()
        finally:
            self.close()
        return self.result

    def _batch(self, batch: Poll) -> None:
        lines: list[str] = []
        records: Counter[str] = Counter()
        alerts: Counter[tuple[str, str]] = Counter()
        flows = 0
        errors_before = self.follower.errors
        for chunk in batch.chunks:
            records[chunk.source] += len(chunk.records)
            flows += self._chunk(chunk, lines, alerts)
        for doc in self.windows.close_before(self.watermark):
            self._emit(doc, lines, alerts)
        self._review_windows()
        self.sink.write(lines)
        if batch.chunks or lines:
            self.checkpoint()
        if self.metrics is not None:
            self.metrics.batch(records, flows, alerts, self.follower.errors - errors_before)
            now = time.time()
            for source, ts in self.latest.items():
                self.metrics.lag_seconds.labels(source=source).set(max(0.0, now - ts))
            for source, size in self.follower.lag_bytes().items():
                self.metrics.lag_bytes.labels(source=source).set(size)
        self.result.records += sum(records.values())
        self.result.errors = self.follower.errors
        self.result.flows += flows  # last: a caller waiting on it sees everything else done

    def _emit(self, doc: dict[str, Any], lines: list[str],
              alerts: Counter[tuple[str, str]]) -> None:
        lines.append(dumps(doc))
        self.result.alerts[doc["kind"]] += 1
        zones = [doc["client"]["zone"], doc["server"]["zone"]]
        alerts[(doc["kind"], min(zones, key=_ZONE_ORDER.index))] += 1
        if self.on_alert is not None:
            self.on_alert(doc)

    def _chunk(self, chunk: Chunk, lines: list[str], alerts: Counter[tuple[str, str]]) -> int:
        """Judge one chunk's records; the number of flow records judged.

        The loop runs once per record: a record of a connection already judged (the cache
        hit) that is planned, allowed and needs no TLS or novelty check costs a few dictionary
        lookups; everything else goes through :meth:`_slow`.
        """
        judge = self.judge
        cache_get = judge.cache.get
        epoch = judge.epoch
        agent = chunk.format.name == "flows" and bool(chunk.origin)
        # A capture agent's records go through the snapshot ledger, unless no snapshot is
        # pending and this is a numbered file.
        slow_all = agent and (chunk.snapshot or bool(self.snapshot_keys))
        watermark = self.watermark
        flows = 0
        for rec in chunk.records:
            get = rec.get
            if get("record") != "flow":
                self._other(rec, chunk)
                continue
            first = get("first_seen")
            last = get("last_seen")
            j = cache_get((get("proto"), get("client"), get("server"), get("server_port")))
            if (j is not None and not slow_all and type(first) is float and type(last) is float
                    and j.stable[0] <= first <= j.stable[1]):  # type: ignore[index]
                flows += 1
                if j.epoch != epoch:
                    judge.use(j)
                if last > watermark:  # noqa: PLR1730 - max() is a call on the hot path
                    watermark = last
                if j.quiet:
                    continue
            elif not self._slow(rec, chunk, agent):
                continue
            else:
                flows += 1
                j = None
            self.watermark = max(watermark, self.watermark)
            self._alerts(rec, chunk, j, lines, alerts)
            watermark = self.watermark
        self.watermark = max(watermark, self.watermark)
        if self.learn_start is None and flows:
            self.learn_start = self._first_time(chunk)
        if self.hygiene_start is None and flows:
            self.hygiene_start = self._first_time(chunk)
        if flows:
            self.latest[chunk.source] = max(self.latest.get(chunk.source, float("-inf")),
                                            self.watermark)
        return flows

    @staticmethod
    def _first_time(chunk: Chunk) -> float:
        return min(float(r["first_seen"]) for r in chunk.records
                   if r.get("record") == "flow" and type(r.get("first_seen")) in (float, int))

    def _other(self, rec: dict[str, Any], chunk: Chunk) -> None:
        """A record that is not a flow: DNS answers name outside addresses."""
        if rec.get("record") == "dns":
            parsed = self._parse(rec, chunk)
            if isinstance(parsed, DnsAnswer):
                self.judge.learn_dns(parsed)

    def _slow(self, rec: dict[str, Any], chunk: Chunk, agent: bool) -> bool:
        """A record the fast path could not take: checked, deduplicated against the capture
        agent's snapshots, judged (and cached); False when it is skipped."""
        parsed = self._parse(rec, chunk)
        if not isinstance(parsed, Flow):
            return False
        assert parsed.client is not None
        assert parsed.server is not None
        if agent:
            key = (chunk.origin, parsed.transport.value, parsed.client,
                   str(parsed.client_port), parsed.server, str(parsed.server_port),
                   repr(parsed.first_seen))
            if chunk.snapshot:
                if key in self.snapshot_keys:
                    return False  # judged from an earlier snapshot of the same agent
                self.snapshot_keys.add(key)
            elif key in self.snapshot_keys:
                self.snapshot_keys.discard(key)
                return False  # an active flow judged from a snapshot, now ended
        j = self.judge.judge(parsed.transport, parsed.client, parsed.server,
                             parsed.server_port, parsed.first_seen)
        self.judge.use(j)
        self.watermark = max(self.watermark, parsed.last_seen)
        self._pending = (parsed, j)
        return True

    def _alerts(self, rec: dict[str, Any], chunk: Chunk, j: Judgement | None,
                lines: list[str], alerts: Counter[tuple[str, str]]) -> None:
        """The alerts of one flow record (after the fast path found it needs a look)."""
        judge = self.judge
        if j is None:
            assert self._pending is not None
            parsed, j = self._pending
            assert parsed.client is not None
            assert parsed.server is not None
            client, server, port = parsed.client, parsed.server, parsed.server_port
            protocol = parsed.transport.value
            first, last = parsed.first_seen, parsed.last_seen
        else:
            client, server, port = rec["client"], rec["server"], rec["server_port"]
            protocol, first, last = rec["proto"], rec["first_seen"], rec["last_seen"]
        novel = j.watch_external and judge.novel_external(server)
        if j.quiet and not novel:
            return
        tls = rec.get("tls") is True
        sources = rec.get("sources")
        tls_known = sources is None or any(self.tls_formats.get(s, False) for s in sources)
        found = judge.kinds(j, tls=tls, tls_known=tls_known, novel=novel)
        if not found:
            return
        sighting = Sighting(float(first), float(last), chunk.path)
        for alert_kind, severity, reason in found:
            if alert_kind is AlertKind.DRIFT:
                self._learn(j, rec, sighting)
            make = functools.partial(
                alert_document, kind=alert_kind, severity=severity,
                client=Side(j.client, client, rec.get("client_port"), j.client_zone.value),
                server=Side(j.server, server, port, j.server_zone.value, j.domain),
                protocol=protocol, port=j.edge[3], zones=j.zones, verdict=j.verdict,
                planned=j.planned, tls=tls if tls_known else None, reason=reason,
                sighting=sighting, observed=rec.get("verdict"))
            for doc in self.windows.sight(alert_kind, j.edge, sighting, make):
                self._emit(doc, lines, alerts)

    def _parse(self, rec: dict[str, Any], chunk: Chunk) -> Any:
        """The record checked; a bad one is the run's error with ``--once``, else logged and
        skipped (None)."""
        try:
            parsed = parse_record(rec)
            if isinstance(parsed, Flow) and (parsed.client is None or parsed.server is None):
                # Fail closed: a connection the monitor cannot place is not let through
                # unjudged. Address-less records (Calico OSS Goldmane) are placed by identity
                # in the graph, not here.
                raise InputError("a flow with an end that has no address: the monitor judges "
                                 "connections by address (follow a source that records them)")
            return parsed
        except InputError as exc:
            where = f"{chunk.path}: a {chunk.format.name} record: {exc.message}"
            if self.options.once:
                raise InputError(where) from None
            self.follower.errors += 1
            logger.error("%s; skipped", where)
            return None

    def _learn(self, j: Judgement, rec: dict[str, Any], sighting: Sighting) -> None:
        item = self.drift.get(j.edge)
        if item is None:
            self.drift[j.edge] = {"record": dict(rec), "count": 1,
                                  "first": sighting.first_seen, "last": sighting.last_seen}
        else:
            item["count"] += 1
            item["first"] = min(item["first"], sighting.first_seen)
            item["last"] = max(item["last"], sighting.last_seen)

    # -- review windows ----------------------------------------------------------------------

    def _review_windows(self, *, final: bool = False) -> None:
        options = self.options
        if options.review_dir is None:
            return
        end = self.watermark
        if self.learn_start is not None and (final or end >= self.learn_start
                                              + options.learn_window):
            if self.drift:
                self.result.proposals.append(write_proposal(
                    options.review_dir, start=self.learn_start, end=end, drift=self.drift,
                    graph=self.graph, plan=self.view.plan, inventory=self.inventory.value,
                    in_force=self.policies.value, target=self.target, dns=self.view.dns,
                    options=self.compile_options))
            self.drift = {}
            self.learn_start = None if final else end
        if self.hygiene_start is not None and (final or end >= self.hygiene_start
                                                + options.hygiene_window):
            engine = self.judge.checker.engine
            self.result.hygiene.append(write_hygiene(
                options.review_dir, start=self.hygiene_start, end=end,
                in_force=engine.rules_in_force(), used=set(self.judge.used),
                enforcement=self.target.name, label=self.policies.value.label))
            self.judge.new_hygiene_window()
            self.hygiene_start = None if final else end

    def _finish(self) -> None:
        """The end of a run: with ``--once`` and no state, nothing comes after it: the open
        windows are closed and the review windows end here."""
        if self.options.once and self.state_dir is None:
            lines: list[str] = []
            alerts: Counter[tuple[str, str]] = Counter()
            for doc in self.windows.close_all():
                self._emit(doc, lines, alerts)
            self.sink.write(lines)
            if self.watermark > float("-inf"):
                self._review_windows(final=True)
            if self.metrics is not None:
                self.metrics.batch(Counter(), 0, alerts, 0)
        self.checkpoint()

    def close(self) -> None:
        self.follower.close()
        self.sink.close()
        if self.metrics is not None:
            self.metrics.close()
        if self.state_dir is not None:
            self.state_dir.close()


_ZONE_ORDER: Final = ["restricted", "connected", "infrastructure", "external", "general"]


def _beside(path: str, name: str) -> str:
    import os

    return os.path.join(os.path.dirname(os.path.abspath(path)), name)


def run_monitor(options: MonitorOptions, *, stop: threading.Event | None = None,
                stdin: IO[bytes] | None = None) -> MonitorResult:
    """Run a monitor (``segmenter monitor``)."""
    monitor = Monitor(options, stdin=stdin)
    return monitor.run(stop)


__all__ = ["Monitor", "MonitorOptions", "MonitorResult", "run_monitor"]
