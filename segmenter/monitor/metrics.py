"""Prometheus metrics of a monitor, through ``prometheus_client`` (the ``monitor`` extra).

* ``segmenter_monitor_records_read_total{source}``: records read (flows and DNS answers);
* ``segmenter_monitor_flows_evaluated_total``: flow records judged;
* ``segmenter_monitor_alerts_total{kind, zone}``: alerts written (``zone``: the most
  restrictive of the two ends);
* ``segmenter_monitor_input_errors_total``: lines and files that could not be read (logged,
  skipped);
* ``segmenter_monitor_reloads_total{input}``: policy and inventory changes taken into account;
* ``segmenter_monitor_lag_seconds{source}``: the wall clock minus the latest flow time read;
* ``segmenter_monitor_lag_bytes{source}``: bytes appended to the source's files, not yet read.

Counters are updated once per batch, not per record (the hot loop stays free of locks).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from segmenter.errors import InputError


class Metrics:
    """The metrics of one monitor, in their own registry (several monitors in one process,
    as tests run them, do not collide)."""

    def __init__(self) -> None:
        try:
            from prometheus_client import CollectorRegistry, Counter, Gauge
        except ImportError:
            raise InputError("--metrics-port needs prometheus_client: pip install "
                             "'segmenter[monitor]'") from None
        self.registry = CollectorRegistry()
        r = self.registry
        self.records = Counter("segmenter_monitor_records_read", "Records read",
                               ["source"], registry=r)
        self.flows = Counter("segmenter_monitor_flows_evaluated", "Flow records judged",
                             registry=r)
        self.alerts = Counter("segmenter_monitor_alerts", "Alerts written", ["kind", "zone"],
                              registry=r)
        self.errors = Counter("segmenter_monitor_input_errors",
                              "Lines and files that could not be read", registry=r)
        self.reloads = Counter("segmenter_monitor_reloads",
                               "Policy and inventory changes taken into account", ["input"],
                               registry=r)
        self.lag_seconds = Gauge("segmenter_monitor_lag_seconds",
                                 "Wall clock minus the latest flow time read", ["source"],
                                 registry=r)
        self.lag_bytes = Gauge("segmenter_monitor_lag_bytes",
                               "Bytes appended to the source and not read yet", ["source"],
                               registry=r)
        self.server: Any = None

    def serve(self, port: int, address: str = "0.0.0.0") -> None:
        from prometheus_client import start_http_server

        try:
            self.server, _thread = start_http_server(port, addr=address, registry=self.registry)
        except OSError as exc:
            raise InputError(f"cannot serve metrics on port {port}: {exc.strerror or exc}"
                             ) from None

    @property
    def port(self) -> int:
        """The port metrics are served on (the one given, or the one picked for 0)."""
        return int(self.server.server_port) if self.server is not None else 0

    def batch(self, records: Counter[str], flows: int, alerts: Counter[tuple[str, str]],
              errors: int) -> None:
        for source, n in records.items():
            self.records.labels(source=source).inc(n)
        if flows:
            self.flows.inc(flows)
        for (kind, zone), n in alerts.items():
            self.alerts.labels(kind=kind, zone=zone).inc(n)
        if errors:
            self.errors.inc(errors)

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server = None
