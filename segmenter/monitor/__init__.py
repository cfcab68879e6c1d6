"""``segmenter monitor``: judge traffic continuously against the plan and the policies in force,
and stream alerts a log pipeline collects (docs/monitor.md).

Modules: :mod:`.follow` (growing files, folders and standard input, across rotation),
:mod:`.judge` (one flow record against the policies and the plan), :mod:`.alerts` (kinds,
severities, the JSON Lines form, deduplication), :mod:`.inputs` (the policies and inventory,
kept current), :mod:`.state` (checkpoint and alert file), :mod:`.metrics` (Prometheus),
:mod:`.review` (learned proposals and rule hygiene) and :mod:`.service` (the loop).
"""

from segmenter.monitor.alerts import AlertKind, Severity
from segmenter.monitor.service import Monitor, MonitorOptions, MonitorResult, run_monitor

__all__ = ["AlertKind", "Monitor", "MonitorOptions", "MonitorResult", "Severity", "run_monitor"]
