"""Follow pod IP assignments and deletions during a capture window (``inventory --live --watch``).

A capture lasts minutes to hours; meanwhile pods are rolled out, CronJobs run, and a pod IP that
belonged to one workload is handed to another. A single inventory taken before or after the
capture attributes such flows to the wrong workload. :func:`watch_inventory` lists the cluster
once (like :func:`segmenter.cluster.live.live_inventory`), then follows the pods with the API's
watch (``kubernetes.watch.Watch().stream`` over ``list_pod_for_all_namespaces``) until the
window ends, and writes into a directory:

``inventory-<RFC 3339>.json``
    Snapshots, each a ``kubectl get -o json`` style ``List`` written atomically: at the start
    (every object listed), after each batch of pod changes (at most one per ``min_interval``
    seconds: only the pods that changed), and at the end (every object, every pod seen during
    the window, deleted ones included). Names sort in time order.
    ``load_inventory(sorted(glob("DIR/inventory-*.json")))`` merges them into one inventory in
    which each pod carries the interval during which it held its IP; the end snapshot alone
    holds the same pods. Pods get two annotations from the watcher:
    ``watch.segmenter.io/ip-assigned-at`` (when the watch first saw the pod's IP, for IPs
    assigned during the window) and ``watch.segmenter.io/deleted-at`` (when the watch saw the
    pod deleted); the parser uses them as the start and end of the pod's hold on its IP and
    drops them from the pod's annotations.
``events.jsonl``
    One JSON object a line, in the order received: every ``ADDED``/``MODIFIED``/``DELETED`` pod
    event (``time``, ``namespace``, ``name``, ``uid``, ``podIP``, ``podIPs``, ``phase``,
    ``node``, ``hostNetwork``, ``deletionTimestamp``, ``resourceVersion``, ``source``), plus
    ``START``, ``END``, ``RELIST`` and ``RECONNECT`` records that say when the watcher was
    following the cluster and when it had to catch up.

A watch request ends when the server's ``timeout_seconds`` expire; the next one resumes from the
last resourceVersion seen (events and BOOKMARKs). When that resourceVersion has expired (``410
Gone``, as an HTTP status or as an ``ERROR`` event), the pods are listed again and the
differences are recorded as events with ``"source": "relist"`` (a pod missing from the new list
was deleted while unobserved: its ``deleted-at`` is the re-list time, an upper bound). A broken
connection is retried with backoff until the window ends. Ctrl-C ends the window early; the end
snapshot is still written.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final

from segmenter.cluster.fields import DELETED_ANNOTATION, IP_ASSIGNED_ANNOTATION
from segmenter.errors import InputError, InventoryError
from segmenter.fileio import atomic_write_text, dump_json, ensure_folder

logger = logging.getLogger(__name__)

SNAPSHOT_PREFIX: Final = "inventory-"
EVENTS_FILE: Final = "events.jsonl"
DEFAULT_MIN_INTERVAL: Final = 10.0
# Longest single watch request; the API server ends a watch after its own timeout anyway.
MAX_WATCH_SECONDS: Final = 300
MAX_BACKOFF: Final = 30.0
POD_EVENTS: Final = frozenset({"ADDED", "MODIFIED", "DELETED"})


def rfc3339(ts: float) -> str:
    """Epoch seconds as RFC 3339 UTC with milliseconds (truncated).

    >>> rfc3339(1700000400.25)
    '2023-11-14T22:20:00.250Z'
    """
    return _rfc3339_ms(math.floor(ts * 1000))


def _rfc3339_ms(ms: int) -> str:
    seconds, milli = divmod(ms, 1000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{milli:03d}Z"


def snapshot_paths(directory: str | Path) -> list[str]:
    """The snapshots of a watch directory, oldest first (give them to ``load_inventory``)."""
    return sorted(str(p) for p in Path(directory).glob(f"{SNAPSHOT_PREFIX}*.json"))


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``2h`` or ``1h30m`` as seconds.

    >>> parse_duration("1h30m")
    5400.0
    """
    value = text.strip().lower()
    try:
        seconds = float(value)
    except ValueError:
        number = r"(\d+(?:\.\d+)?)"
        parts = re.fullmatch(f"(?:{number}h)?(?:{number}m)?(?:{number}s)?", value)
        if not value or parts is None:
            raise ValueError(f"not a duration: {text!r} (e.g. 600, 90s, 15m, 2h)") from None
        hours, minutes, secs = (float(g) if g else 0.0 for g in parts.groups())
        seconds = hours * 3600 + minutes * 60 + secs
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"a duration must be positive: {text!r}")
    return seconds


@dataclass
class WatchResult:
    """What a watch recorded (the command prints it)."""

    directory: str
    snapshots: list[str] = field(default_factory=list)
    events: int = 0  # pod events received (watch and re-list)
    pods: int = 0  # distinct pods seen
    ip_assignments: int = 0  # pods whose IP appeared during the window
    deletions: int = 0
    relists: int = 0
    reconnects: int = 0
    start: float = 0.0
    end: float = 0.0
    interrupted: bool = False


# --------------------------------------------------------------------------------------------
# Recording: pure bookkeeping over raw API objects, with an injected clock value per call.


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _status(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    status = obj.get("status")
    return status if isinstance(status, Mapping) else {}


def _spec(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = obj.get("spec")
    return spec if isinstance(spec, Mapping) else {}


def _pod_ips(obj: Mapping[str, Any]) -> tuple[str, ...]:
    status = _status(obj)
    ips = {e["ip"] for e in status.get("podIPs") or () if isinstance(e, Mapping) and e.get("ip")}
    if status.get("podIP"):
        ips.add(str(status["podIP"]))
    return tuple(sorted(str(ip) for ip in ips))


def _pod_key(obj: Mapping[str, Any]) -> str:
    meta = _meta(obj)
    uid = meta.get("uid")
    return str(uid) if uid else f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def _clean(obj: Mapping[str, Any], kind: str, api_version: str) -> dict[str, Any]:
    """A copy with ``kind`` and ``apiVersion`` set and ``metadata.managedFields`` dropped."""
    out = dict(obj)
    out.setdefault("kind", kind)
    out.setdefault("apiVersion", api_version)
    meta = _meta(obj)
    if "managedFields" in meta:
        out["metadata"] = {k: v for k, v in meta.items() if k != "managedFields"}
    return out


def _items(pages: Iterable[Mapping[str, Any]]) -> Iterator[dict[str, Any]]:
    """The objects of list pages, each with its ``kind`` and ``apiVersion``."""
    for page in pages:
        list_kind = str(page.get("kind") or "List")
        kind = list_kind[: -len("List")] if list_kind.endswith("List") else list_kind
        api_version = str(page.get("apiVersion") or "v1")
        for item in page.get("items") or ():
            if isinstance(item, Mapping):
                yield _clean(item, kind or str(item.get("kind", "")), api_version)


def _object_key(obj: Mapping[str, Any]) -> tuple[str, str, str, str]:
    meta = _meta(obj)
    return (
        str(obj.get("kind", "")),
        str(meta.get("namespace", "")),
        str(meta.get("name", "")),
        str(meta.get("uid", "")),
    )


def _fingerprint(obj: Mapping[str, Any]) -> str:
    """What the inventory parser reads of a pod that can change while it runs."""
    meta = _meta(obj)
    status = _status(obj)
    spec = _spec(obj)
    return json.dumps(
        [
            meta.get("labels"),
            meta.get("annotations"),
            meta.get("ownerReferences"),
            meta.get("deletionTimestamp"),
            spec.get("nodeName"),
            spec.get("hostNetwork"),
            status.get("phase"),
            _pod_ips(obj),
        ],
        sort_keys=True,
        default=str,
    )


@dataclass
class _PodState:
    obj: dict[str, Any]
    fingerprint: str
    ip_assigned_at: float | None = None
    deleted_at: float | None = None

    def annotated(self) -> dict[str, Any]:
        """The object with the watcher's observations as annotations."""
        if self.ip_assigned_at is None and self.deleted_at is None:
            return self.obj
        out = dict(self.obj)
        meta = dict(_meta(self.obj))
        annotations = dict(meta.get("annotations") or {})
        if self.ip_assigned_at is not None:
            annotations[IP_ASSIGNED_ANNOTATION] = rfc3339(self.ip_assigned_at)
        if self.deleted_at is not None:
            annotations[DELETED_ANNOTATION] = rfc3339(self.deleted_at)
        meta["annotations"] = annotations
        out["metadata"] = meta
        return out


class WatchRecorder:
    """Pod state, snapshots and the event log of one watch directory.

    Every method takes ``now`` (epoch seconds) from the caller, so the bookkeeping is
    deterministic under a fake clock.
    """

    def __init__(self, directory: str | Path, *, min_interval: float = DEFAULT_MIN_INTERVAL):
        self.directory = Path(directory)
        self.min_interval = min_interval
        self.objects: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        self.pods: dict[str, _PodState] = {}
        self.dirty: set[str] = set()
        self.resource_version = ""
        self.result = WatchResult(directory=str(self.directory))
        self._last_write = -math.inf
        self._last_name_ms = -1
        self._log: IO[str] | None = None

    # -- files --------------------------------------------------------------------------------

    def check(self) -> None:
        """Refuse a file, or a directory that already holds a recording (nothing is created)."""
        if self.directory.exists() and not self.directory.is_dir():
            raise InputError("not a directory", path=str(self.directory))
        existing = snapshot_paths(self.directory) if self.directory.is_dir() else []
        if existing or (self.directory / EVENTS_FILE).exists():
            raise InputError(
                "already holds a watch recording (inventory-*.json, events.jsonl); "
                "give an empty or new directory",
                path=str(self.directory),
            )

    def _open(self) -> None:
        self.check()
        ensure_folder(self.directory)
        try:
            self._log = (self.directory / EVENTS_FILE).open("x", encoding="utf-8", buffering=1)
        except OSError as exc:
            raise InputError(
                f"cannot write: {exc.strerror or exc}", path=str(self.directory)
            ) from None

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def _write_event(self, record: Mapping[str, Any]) -> None:
        if self._log is not None:
            self._log.write(json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n")

    def _snapshot(self, items: list[dict[str, Any]], now: float) -> str:
        ms = max(math.floor(now * 1000), self._last_name_ms + 1)  # names strictly increasing
        self._last_name_ms = ms
        path = self.directory / f"{SNAPSHOT_PREFIX}{_rfc3339_ms(ms)}.json"
        document = {
            "apiVersion": "v1",
            "kind": "List",
            "metadata": {"resourceVersion": self.resource_version},
            "items": sorted(items, key=_object_key),
        }
        atomic_write_text(path, dump_json(document))
        self._last_write = now
        self.result.snapshots.append(str(path))
        logger.info("wrote %s (%d objects)", path, len(items))
        return str(path)

    # -- pod bookkeeping ----------------------------------------------------------------------

    def start(self, pages: list[Mapping[str, Any]], now: float) -> str:
        """Record the initial list of every resource; write the start snapshot."""
        self._open()
        self.result.start = now
        for obj in _items(pages):
            if obj.get("kind") == "Pod":
                self.pods[_pod_key(obj)] = _PodState(obj, _fingerprint(obj))
            else:
                self.objects[_object_key(obj)] = obj
        self.resource_version = _list_resource_version(pages, "PodList")
        self._write_event(
            {
                "type": "START",
                "time": rfc3339(now),
                "pods": len(self.pods),
                "resourceVersion": self.resource_version,
            }
        )
        return self._snapshot([*self.objects.values(), *(s.obj for s in self.pods.values())], now)

    def event(
        self, kind: str, raw: Mapping[str, Any], now: float, *, source: str = "watch"
    ) -> None:
        """Apply one ADDED, MODIFIED or DELETED pod event received at ``now``."""
        obj = _clean(raw, "Pod", "v1")
        rv = _meta(obj).get("resourceVersion")
        if source == "watch" and rv:
            self.resource_version = str(rv)
        key = _pod_key(obj)
        state = self.pods.get(key)
        ips = _pod_ips(obj)
        fingerprint = _fingerprint(obj)
        assigned = False
        if state is None:
            state = self.pods[key] = _PodState(obj, fingerprint)
            assigned = bool(ips) and source == "watch"
            changed = True
        else:
            old_ips = _pod_ips(state.obj)
            if ips and not old_ips and source == "watch":
                assigned = True
            elif ips and old_ips and ips != old_ips:
                logger.info(
                    "pod %s/%s changed its IP from %s to %s",
                    _meta(obj).get("namespace"),
                    _meta(obj).get("name"),
                    ", ".join(old_ips),
                    ", ".join(ips),
                )
            changed = fingerprint != state.fingerprint
            state.obj, state.fingerprint = obj, fingerprint
        if assigned and state.ip_assigned_at is None:
            state.ip_assigned_at = now
            self.result.ip_assignments += 1
        if kind == "DELETED" and state.deleted_at is None:
            state.deleted_at = now
            self.result.deletions += 1
            changed = True
        if changed:
            self.dirty.add(key)
        self.result.events += 1
        self._write_event(_event_record(kind, obj, now, source))

    def bookmark(self, raw: Mapping[str, Any]) -> None:
        rv = _meta(raw).get("resourceVersion")
        if rv:
            self.resource_version = str(rv)

    def relist(self, pages: Sequence[Mapping[str, Any]], now: float, reason: str) -> None:
        """Catch up after an expired resourceVersion: diff the new list against the state."""
        self.result.relists += 1
        seen: set[str] = set()
        pods = [obj for obj in _items(pages) if obj.get("kind") == "Pod"]
        new_rv = _list_resource_version(pages, "PodList")
        self._write_event(
            {
                "type": "RELIST",
                "time": rfc3339(now),
                "reason": reason,
                "pods": len(pods),
                "resourceVersion": new_rv,
            }
        )
        for obj in pods:
            key = _pod_key(obj)
            seen.add(key)
            state = self.pods.get(key)
            if state is None:
                self.event("ADDED", obj, now, source="relist")
            elif state.deleted_at is None and _fingerprint(obj) != state.fingerprint:
                self.event("MODIFIED", obj, now, source="relist")
        for key in sorted(self.pods):
            state = self.pods[key]
            if key not in seen and state.deleted_at is None:
                self.event("DELETED", state.obj, now, source="relist")
        self.resource_version = new_rv

    def note(self, kind: str, now: float, reason: str) -> None:
        self._write_event(
            {
                "type": kind,
                "time": rfc3339(now),
                "reason": reason,
                "resourceVersion": self.resource_version,
            }
        )

    def maybe_flush(self, now: float) -> str | None:
        """Write a change snapshot when pods changed and ``min_interval`` has passed."""
        if self.dirty and now - self._last_write >= self.min_interval:
            return self.flush(now)
        return None

    def flush(self, now: float) -> str | None:
        if not self.dirty:
            return None
        items = [self.pods[key].annotated() for key in sorted(self.dirty)]
        self.dirty.clear()
        return self._snapshot(items, now)

    def finish(self, now: float, pages: list[Mapping[str, Any]] | None) -> str:
        """Write the end snapshot: every object (re-listed ones win) and every pod seen."""
        if pages is not None:
            for obj in _items(pages):
                if obj.get("kind") != "Pod":
                    self.objects[_object_key(obj)] = obj
        self.dirty.clear()
        self.result.end = now
        self.result.pods = len(self.pods)
        self._write_event(
            {
                "type": "END",
                "time": rfc3339(now),
                "pods": len(self.pods),
                "resourceVersion": self.resource_version,
                "interrupted": self.result.interrupted,
            }
        )
        return self._snapshot(
            [*self.objects.values(), *(s.annotated() for s in self.pods.values())], now
        )


def _list_resource_version(pages: Iterable[Mapping[str, Any]], kind: str) -> str:
    for page in pages:
        if page.get("kind") == kind:
            meta = _meta(page)
            if meta.get("resourceVersion"):
                return str(meta["resourceVersion"])
    return ""


def _event_record(kind: str, obj: Mapping[str, Any], now: float, source: str) -> dict[str, Any]:
    meta = _meta(obj)
    status = _status(obj)
    spec = _spec(obj)
    return {
        "type": kind,
        "time": rfc3339(now),
        "source": source,
        "namespace": meta.get("namespace"),
        "name": meta.get("name"),
        "uid": meta.get("uid"),
        "resourceVersion": meta.get("resourceVersion"),
        "podIP": status.get("podIP"),
        "podIPs": list(_pod_ips(obj)),
        "phase": status.get("phase"),
        "node": spec.get("nodeName"),
        "hostNetwork": bool(spec.get("hostNetwork", False)),
        "deletionTimestamp": meta.get("deletionTimestamp"),
    }


# --------------------------------------------------------------------------------------------
# Following the cluster


def watch_inventory(
    output_dir: str | Path,
    *,
    duration: float,
    context: str | None = None,
    kubeconfig: str | None = None,
    min_interval: float = DEFAULT_MIN_INTERVAL,
    page_size: int = 500,
    request_timeout: float = 60.0,
    clock: Callable[[], float] = time.time,
) -> WatchResult:
    """List the cluster, follow its pods for ``duration`` seconds, record into ``output_dir``.

    ``clock`` gives the wall-clock times written into snapshots and events (the window itself
    is measured with ``time.monotonic``). Raises :class:`InventoryError` when the cluster cannot
    be read (unreachable, credentials, RBAC: list and watch on pods, list on the rest) and
    :class:`InputError` when ``output_dir`` already holds a recording.
    """
    if duration <= 0:
        raise ValueError("duration must be positive")
    if min_interval < 0:
        raise ValueError("min_interval must not be negative")
    from segmenter.cluster.client import connect
    from segmenter.cluster.live import RESOURCES, list_documents, parse_live_documents

    recorder = WatchRecorder(output_dir, min_interval=min_interval)
    recorder.check()
    try:
        api_client, host = connect(context=context, kubeconfig=kubeconfig,
                                   request_timeout=request_timeout)
        with api_client:
            pages = list_documents(
                api_client, host=host, page_size=page_size, request_timeout=request_timeout
            )
            parse_live_documents(pages, host=host, context=context)  # fail early on bad objects
            deadline = time.monotonic() + duration
            recorder.start(pages, clock())
            follower = _Follower(
                api_client,
                host,
                recorder,
                deadline=deadline,
                clock=clock,
                page_size=page_size,
                request_timeout=request_timeout,
            )
            try:
                follower.run()
            except KeyboardInterrupt:
                recorder.result.interrupted = True
                logger.warning("interrupted: the watch window ends early")
            except BaseException:
                recorder.flush(clock())  # keep what was seen
                raise
            others: list[Mapping[str, Any]] | None = None
            if not recorder.result.interrupted:
                try:
                    others = list_documents(
                        api_client,
                        host=host,
                        page_size=page_size,
                        request_timeout=request_timeout,
                        resources=tuple(r for r in RESOURCES if r.plural != "pods"),
                    )
                except InventoryError as exc:
                    logger.warning(
                        "could not list the cluster again at the end of the window (%s); the "
                        "end snapshot keeps the objects listed at the start",
                        exc,
                    )
            recorder.finish(clock(), others)
    finally:
        recorder.close()
    return recorder.result


class _Follower:
    """The watch loop: stream, resume, re-list on 410, reconnect on transport errors."""

    def __init__(
        self,
        api_client: Any,
        host: str,
        recorder: WatchRecorder,
        *,
        deadline: float,
        clock: Callable[[], float],
        page_size: int,
        request_timeout: float,
    ):
        from kubernetes import client

        self.core = client.CoreV1Api(api_client)
        self.api_client = api_client
        self.host = host
        self.recorder = recorder
        self.deadline = deadline
        self.clock = clock
        self.page_size = page_size
        self.request_timeout = request_timeout
        # One watch request lasts at most this long, so pending changes are written about every
        # min_interval seconds even when no further event arrives.
        self.tick = min(max(recorder.min_interval, 1.0), MAX_WATCH_SECONDS)

    def run(self) -> None:
        from kubernetes.client.exceptions import ApiException

        from segmenter.cluster.client import is_transport_error as _is_transport_error
        from segmenter.cluster.client import transport_reason as _reason

        failures = 0
        while True:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                return
            try:
                self._stream(max(1, math.ceil(min(remaining, self.tick))))
                failures = 0
            except ApiException as exc:
                status = int(exc.status or 0)
                if status == 410:
                    try:
                        self._relist(f"410 Gone: {_exception_text(exc)}")
                    except InventoryError as error:
                        if not error.message.startswith("cannot reach the cluster"):
                            raise
                        failures += 1  # the watch will get 410 again and re-list again
                        self._reconnect(error.message, failures)
                        continue
                    failures = 0
                    continue
                if status in (0, 429) or status >= 500:
                    failures += 1
                    self._reconnect(f"{status} {_exception_text(exc)}", failures)
                    continue
                raise self._fatal(exc) from None
            except InventoryError:
                raise
            except Exception as exc:
                if not _is_transport_error(exc):
                    raise
                failures += 1
                self._reconnect(_reason(exc), failures)
            self.recorder.maybe_flush(self.clock())

    def _stream(self, timeout: int) -> None:
        from kubernetes import watch

        recorder = self.recorder
        watcher = watch.Watch()
        # A plain function (no docstring, no return annotation) makes Watch yield the events
        # as the JSON the API server sent, instead of building a V1Pod model per event.
        stream = watcher.stream(
            lambda **kwargs: self.core.list_pod_for_all_namespaces(**kwargs),  # noqa: PLW0108
            resource_version=recorder.resource_version,
            timeout_seconds=timeout,
            allow_watch_bookmarks=True,
            _request_timeout=(self.request_timeout, timeout + self.request_timeout),
        )
        try:
            for event in stream:
                if not isinstance(event, Mapping):
                    logger.warning("skipped a watch line that is not a JSON event")
                    continue
                kind = event.get("type")
                raw = event.get("raw_object", event.get("object"))
                if not isinstance(raw, Mapping):
                    logger.warning("skipped a %s watch event without an object", kind)
                elif kind in POD_EVENTS:
                    recorder.event(str(kind), raw, self.clock())
                elif kind == "BOOKMARK":
                    recorder.bookmark(raw)
                else:
                    logger.warning("skipped a watch event of unknown type %r", kind)
                recorder.maybe_flush(self.clock())
                if time.monotonic() >= self.deadline:
                    watcher.stop()
                    break
        finally:
            stream.close()

    def _relist(self, reason: str) -> None:
        from segmenter.cluster.live import RESOURCES, list_resource

        logger.warning(
            "the watch of pods at %s lost its place (%s); listing the pods again", self.host, reason
        )
        (pods,) = [r for r in RESOURCES if r.plural == "pods"]
        pages = list_resource(
            self.api_client,
            pods,
            host=self.host,
            page_size=self.page_size,
            request_timeout=self.request_timeout,
        )
        self.recorder.relist(pages or [], self.clock(), reason)

    def _reconnect(self, reason: str, failures: int) -> None:
        self.recorder.result.reconnects += 1
        self.recorder.note("RECONNECT", self.clock(), reason)
        delay = 0.0 if failures <= 1 else min(MAX_BACKOFF, 0.5 * 2 ** (failures - 2))
        delay = max(0.0, min(delay, self.deadline - time.monotonic()))
        logger.warning(
            "the watch of pods at %s broke (%s); resuming%s",
            self.host,
            reason,
            f" in {delay:.1f} s" if delay else "",
        )
        if delay:
            time.sleep(delay)

    def _fatal(self, exc: Any) -> InventoryError:
        from segmenter.cluster.live import watch_error

        return watch_error(exc, self.host)


def _exception_text(exc: Any) -> str:
    from segmenter.cluster.client import status_message as _status_message

    return _status_message(exc) or str(getattr(exc, "reason", "") or "").strip()


# --------------------------------------------------------------------------------------------
# Command


def summary(result: WatchResult) -> str:
    """A few lines saying what a watch wrote."""
    span = max(0.0, result.end - result.start)
    lines = [
        f"wrote {result.directory}: {len(result.snapshots)} snapshots and {EVENTS_FILE} "
        f"({rfc3339(result.start)} to {rfc3339(result.end)}, {span:.0f} s"
        + (", interrupted" if result.interrupted else "")
        + ")",
        f"{result.events} pod events: {result.pods} pods seen, {result.ip_assignments} IPs "
        f"assigned, {result.deletions} pods deleted; {result.relists} re-lists, "
        f"{result.reconnects} reconnects",
        f"use them with: --inventory {Path(result.directory) / (SNAPSHOT_PREFIX + '*.json')}",
    ]
    return "\n".join(lines)
