"""What the monitor judges against, kept current: the policies in force, the inventory.

Policies come from files and folders (re-read when one of their files changes) or from the
cluster (``--cluster``: every target's kinds, re-read through the API every ``refresh``
seconds, :func:`segmenter.analysis.policies.from_cluster`); a change takes effect at the next
record, without a restart. The inventory comes from dumps (re-read when they change) or, with
``--cluster`` and no dump, from the cluster (re-read every ``refresh`` seconds; a pod that
disappeared keeps its address, ended at the time it was last seen, so late records of it still
resolve to its workload).

A change that cannot be read (a half-edited YAML file, the API server unreachable for a
moment) keeps what was in force and is logged: a monitor does not stop because of it. The first
read must succeed: then any error is the command's (exit 2).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Final, Generic, TypeVar

from segmenter.analysis.policies import PolicyDocs, from_cluster, from_paths
from segmenter.cluster.dump import load_inventory
from segmenter.errors import SegmenterError
from segmenter.model import Inventory, Pod

logger = logging.getLogger(__name__)

T = TypeVar("T")
GONE_POD_KEEP: Final = 3600.0  # seconds a pod that disappeared from the cluster is kept


def files_signature(paths: Sequence[str]) -> str:
    """What changes when a file under ``paths`` is added, removed or written."""
    parts: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            for folder, dirs, files in os.walk(path):
                dirs.sort()
                for name in sorted(files):
                    parts.append(_stat_text(os.path.join(folder, name)))
        else:
            parts.append(_stat_text(path))
    return hashlib.blake2b("\n".join(parts).encode(), digest_size=16).hexdigest()


def _stat_text(path: str) -> str:
    try:
        st = os.stat(path)
    except OSError:
        return f"{path} -"
    return f"{path} {st.st_ino} {st.st_size} {st.st_mtime_ns}"


def manifests_digest(docs: PolicyDocs) -> str:
    text = json.dumps(docs.manifests, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


class Watched(Generic[T]):
    """One input, read once at the start and again when it may have changed."""

    def __init__(self, name: str, read: Callable[[], T], signature: Callable[[T], str],  # noqa: PLR0917
                 probe: Callable[[], str] | None, refresh: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self._read = read
        self._signature = signature
        self._probe = probe  # a cheap signature to compare before reading (files)
        self.refresh = refresh
        self.clock = clock
        self.reloads = 0
        self.errors = 0
        probe_before = probe() if probe else ""
        self.value: T = read()  # the first read must succeed: its errors are the command's
        self.signature = signature(self.value)
        self.probed = probe_before
        self.checked = clock()

    def poll(self, *, force: bool = False) -> T | None:
        """The new value when it changed since the last read, else None."""
        now = self.clock()
        if not force and now - self.checked < self.refresh:
            return None
        self.checked = now
        if self._probe is not None:
            probed = self._probe()
            if probed == self.probed:
                return None
            self.probed = probed
        try:
            value = self._read()
        except SegmenterError as exc:
            self.errors += 1
            logger.warning("%s: cannot read the new version (%s); keeping the one in force",
                           self.name, exc.one_line())
            return None
        signature = self._signature(value)
        if signature == self.signature:
            return None
        self.value, self.signature = value, signature
        self.reloads += 1
        logger.warning("%s changed: judging with the new version from now on", self.name)
        return value


def watch_policies(paths: Sequence[str], *, cluster: bool, context: str | None,
                   kubeconfig: str | None, refresh: float,
                   clock: Callable[[], float] = time.monotonic) -> Watched[PolicyDocs]:
    if cluster:
        return Watched("the policies in the cluster",
                       lambda: from_cluster(context=context, kubeconfig=kubeconfig),
                       manifests_digest, None, refresh, clock)
    names = list(paths)
    return Watched(f"the policies in {', '.join(names)}", lambda: from_paths(names),
                   manifests_digest, lambda: files_signature(names), min(refresh, 2.0), clock)


def watch_inventory(paths: Sequence[str], *, cluster: bool, context: str | None,
                    kubeconfig: str | None, refresh: float,
                    clock: Callable[[], float] = time.monotonic,
                    wall: Callable[[], float] = time.time) -> Watched[Inventory]:
    if paths:
        names = list(paths)
        return Watched(f"the inventory {', '.join(names)}", lambda: load_inventory(names),
                       _inventory_digest, lambda: files_signature(names), min(refresh, 2.0),
                       clock)
    if not cluster:
        raise SegmenterError("give --inventory DUMP... (or --cluster to read the cluster's)")
    from segmenter.cluster.live import live_inventory

    held: list[Inventory] = []

    def read() -> Inventory:
        fresh = live_inventory(context=context, kubeconfig=kubeconfig)
        merged = keep_gone_pods(held[0] if held else None, fresh, wall())
        held[:] = [merged]
        return merged

    return Watched("the cluster's inventory", read, _inventory_digest, None, refresh, clock)


def keep_gone_pods(old: Inventory | None, new: Inventory, now: float) -> Inventory:
    """``new`` plus the pods of ``old`` it lacks, ended at ``now`` (when they were last known
    to exist, at the latest), for ``GONE_POD_KEEP`` seconds."""
    if old is None:
        return new
    present = {(p.namespace, p.name) for p in new.pods}
    kept: list[Pod] = []
    for pod in old.pods:
        if (pod.namespace, pod.name) in present:
            continue
        end = pod.end if pod.end is not None else now
        if now - end <= GONE_POD_KEEP:
            kept.append(dataclasses.replace(pod, end=end))
    if not kept:
        return new
    return dataclasses.replace(new, pods=(*new.pods, *kept))


def _inventory_digest(inventory: Inventory) -> str:
    text = repr((inventory.namespaces, inventory.nodes, inventory.pods, inventory.services,
                 inventory.endpoint_slices, inventory.workloads))
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
