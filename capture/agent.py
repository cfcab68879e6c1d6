"""The live capture agent: interfaces -> flow files, written periodically (docs/capture-agent.md).

``run_agent(iface, out_dir)`` opens packet sockets (``capture.links``: Linux ``AF_PACKET``,
optionally with a BPF filter) on one interface, on ``any`` (every interface of the node) or on
the interfaces matching patterns, followed as pods come and go, and hands every frame's raw
bytes and kernel time stamp to the same header-only decoder and ``FlowTable`` that ``capture
ingest`` uses; a packet seen on several interfaces is counted once (``Agent.packet_on``). A
frame is folded into its flow and dropped at once: no packet and no payload is ever kept (only
the few bytes a TLS ClientHello split over segments needs, until its SNI is read, as in ingest)
and nothing but flow and DNS records is ever written.

Files, in ``out_dir`` (``<host>`` is the agent's name: ``--host``, ``$SEGMENTER_AGENT_HOST``
or the host name):

* ``flows-<host>-<seq>.jsonl`` (``seq`` = 000001, 000002, ...; continued after a restart): one
  per flush that has something to say. It holds the flows that *ended* since the previous
  one -- TCP closed (FIN / RST) and quiet for ``CLOSED_LINGER`` seconds, idle for more than
  300 s (``capture.table.IDLE_NS``), or evicted because the table was full -- and the DNS
  answers seen for the first time. The file written on shutdown (SIGTERM / SIGINT, the end of
  ``duration``, ``stop_event``) also holds every flow still active. Every flow record is in
  exactly one of these files.
* ``flows-<host>-active.jsonl``: a snapshot of the flows still active at the last flush,
  replaced at every flush and removed on shutdown, so that the files present in ``out_dir``
  never hold the same flow twice. It is deleted *before* a numbered file is written and
  rewritten after it: whatever instant the directory is read (or the agent is killed), merging
  all its ``*.jsonl`` files (``capture.flowfile.merge_flow_files``, ``segmenter``) counts every
  flow once. An agent that finds a snapshot left by a predecessor that was killed renames it to
  the next numbered file (its flows ended with that agent).

Each numbered file's header ``stats`` count the packets read since the previous numbered file,
so that merged files sum to what was read; the snapshot counts none. Headers carry an extra
``agent`` object (host, interface, kind, seq, evictions, kernel drops, receive buffer) that
readers ignore. With ``retention`` the oldest numbered files beyond a size or an age are
deleted (``capture.retention``); with ``serve`` the finished ones are served read-only over HTTP
(``capture.serve``) for ``segmenter collect``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import itertools
import logging
import os
import re
import signal
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Protocol

from capture.decode import LINKTYPE_ETHERNET, Decoded, decode
from capture.errors import CaptureError
from capture.flowfile import dumps, make_header, ordered_lines, read_flow_file, write_lines
from capture.links import CookedSource, LiveSource, Rcvbuf, parse_ifaces
from capture.retention import Pruned, Retention, prune
from capture.serve import FlowFileServer, close_quietly, parse_allow
from capture.table import FRAGMENT_TIMEOUT_NS, IDLE_NS, NS, DnsKey, FlowState, FlowTable

log = logging.getLogger("capture.agent")

FLUSH_INTERVAL = 60.0  # seconds between flushes
MAX_FLOWS = 100_000  # flows tracked at once; beyond, the least recently seen one is evicted
CLOSED_LINGER = 10.0  # a closed TCP flow ends once quiet this long (its last ACKs, a stray RST)
POLL = 0.25  # longest wait for packets before the stop event and the clock are looked at
OWNER_IDLE_NS = NS  # a direction seen on several interfaces stays with the first for this long
SKIP_OTHER_INTERFACE = "other-interface"  # stats.skipped: a packet counted where seen first

SNAPSHOT = "active"
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class AgentStats:
    """What an agent run read and wrote."""

    iface: str
    host: str
    out_dir: str
    packets: int  # frames read from the interface
    skipped: dict[str, int]  # reason -> frames not folded into any flow
    flows: int  # flow records written to the numbered flow files
    dns: int  # DNS records written
    evicted: int  # flows ended early because ``max_flows`` were tracked
    files: tuple[str, ...]  # the numbered flow files written, in order (the last on shutdown)
    kernel_drops: int = 0  # frames the kernel dropped because the agent fell behind
    seconds: float = 0.0
    stopped_by: str = ""  # "SIGTERM", "SIGINT", "duration", "stop_event"
    recovered: tuple[str, ...] = field(default=(), compare=False)  # predecessors' snapshots
    pruned: int = 0  # old numbered files deleted by --max-bytes / --max-age
    rcvbuf: int = 0  # bytes of socket receive buffer the capture got (0: not known)
    net_admin: bool = False  # the buffer could go beyond net.core.rmem_max (CAP_NET_ADMIN)


class PacketSource(Protocol):
    """Where frames come from: the live socket, or a test's fake."""

    linktype: int

    def read(self, timeout: float) -> Sequence[tuple[bytes, int]]:
        """Frames (raw bytes, time stamp in ns since the epoch) that arrive within ``timeout``
        seconds; an empty sequence when none did."""
        ...

    def drops(self) -> int:
        """Frames dropped by the kernel since the previous call."""
        ...

    def close(self) -> None: ...


class MultiPacketSource(Protocol):
    """Frames of several interfaces (``capture.links.CookedSource``): ``read`` also gives the
    index of the interface each frame came through."""

    linktype: int
    multi: bool

    def read(self, timeout: float) -> Sequence[tuple[bytes, int, int]]: ...

    def drops(self) -> int: ...

    def close(self) -> None: ...


def agent_host(host: str | None = None) -> str:
    """The agent's name in file names: ``host``, ``$SEGMENTER_AGENT_HOST`` or the host name,
    reduced to ``[A-Za-z0-9._-]``."""
    name = host or os.environ.get("SEGMENTER_AGENT_HOST") or socket.gethostname()
    return _NAME_UNSAFE.sub("_", name).strip("._-") or "agent"


def flow_file_name(host: str, seq: int) -> str:
    return f"flows-{host}-{seq:06d}.jsonl"


def snapshot_name(host: str) -> str:
    return f"flows-{host}-{SNAPSHOT}.jsonl"


# -- the flow table side ----------------------------------------------------------------------


class Agent:
    """Folds frames into a bounded flow table and writes flow files into ``out_dir``.

    ``packet`` is the per-frame callback; ``flush`` writes; ``run`` drives both from a
    ``PacketSource`` until stopped. ``clock`` (ns since the epoch, the time base of the frames'
    time stamps) and ``monotonic`` (seconds) are there for tests.
    """

    def __init__(
        self,
        out_dir: str,
        *,
        iface: str = "",
        host: str | None = None,
        linktype: int = LINKTYPE_ETHERNET,
        flush_interval: float = FLUSH_INTERVAL,
        max_flows: int = MAX_FLOWS,
        linger: float = CLOSED_LINGER,
        retention: Retention | None = None,
        clock: Callable[[], int] = time.time_ns,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not flush_interval > 0:
            raise ValueError(f"flush_interval must be positive, not {flush_interval!r}")
        if max_flows < 1:
            raise ValueError(f"max_flows must be at least 1, not {max_flows!r}")
        self.out_dir = os.path.abspath(os.fspath(out_dir))
        self.iface = iface
        self.host = agent_host(host)
        self.source_name = f"{self.host}:{iface}" if iface else self.host
        self.linktype = linktype
        self.flush_interval = float(flush_interval)
        self.max_flows = max_flows
        self.linger_ns = int(linger * NS)
        self.clock = clock
        self.monotonic = monotonic
        self.table = FlowTable()
        # Active flows, least recently seen first: every flow in the table's dictionaries.
        self.lru: OrderedDict[FlowState, None] = OrderedDict()
        self.pending: list[FlowState] = []  # ended (evicted, or kept after a failed write)
        self.pending_dns: dict[DnsKey, int] = {}
        self.dns_seen: dict[DnsKey, None] = {}  # answers written (bounded; oldest forgotten)
        self.flush_needed = False
        self.seq = 0
        self.files: list[str] = []
        self.recovered: list[str] = []
        # Totals, and counts since the last numbered file.
        self.packets = 0
        self.skipped: dict[str, int] = {}
        self.flows_written = 0
        self.dns_written = 0
        self.evicted = 0
        self.kernel_drops = 0
        self._file_packets = 0
        self._file_evicted = 0
        self._file_drops = 0
        self._snapshot_dirty = False
        self._write_failed = False  # no early flushes until a periodic one succeeds again
        self._lock_fd: int | None = None
        # Several interfaces at once (packet_on): direction -> [interface index, last seen].
        self.owners: dict[object, list[int]] = {}
        self.max_owners = 4 * max_flows
        self.retention = retention if retention is not None else Retention()
        self.pruned: list[Pruned] = []
        self.rcvbuf: Rcvbuf | None = None  # what the packet source got (set by run)

    # -- set-up ----------------------------------------------------------------------------------

    def open(self) -> None:
        """Create ``out_dir``, take its lock for this host name, continue the numbering after
        the files already there and rename a snapshot left by a killed predecessor."""
        try:
            os.makedirs(self.out_dir, exist_ok=True)
        except OSError as exc:
            raise CaptureError(f"cannot create the output directory: {exc.strerror or exc}",
                               path=self.out_dir) from exc
        if not os.path.isdir(self.out_dir):
            raise CaptureError("not a directory", path=self.out_dir)
        lock = os.path.join(self.out_dir, f".flows-{self.host}.lock")
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise CaptureError(f"cannot write in the output directory: {exc.strerror or exc}",
                               path=self.out_dir) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise CaptureError(
                    f"another agent named {self.host!r} is writing here; give each agent its"
                    " own --host or output directory", path=self.out_dir) from exc
            raise CaptureError(f"cannot lock the output directory: {exc.strerror or exc}",
                               path=self.out_dir) from exc
        self._lock_fd = fd
        pattern = re.compile(rf"flows-{re.escape(self.host)}-(\d+)\.jsonl")
        stale = re.compile(rf"\.flows-{re.escape(self.host)}-.*\.tmp")
        for name in os.listdir(self.out_dir):
            m = pattern.fullmatch(name)
            if m:
                self.seq = max(self.seq, int(m.group(1)))
            elif stale.fullmatch(name):  # a write interrupted by a crash
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(self.out_dir, name))
        snap = self._path(snapshot_name(self.host))
        if os.path.exists(snap):
            self._recover(snap)
        self._prune()

    def _prune(self) -> None:
        """Delete the oldest numbered files beyond ``--max-bytes`` / ``--max-age``."""
        if not self.retention.bounded:
            return
        gone = prune(self.out_dir, self.host, self.retention, self.clock() / NS,
                     snapshot_name(self.host))
        for p in gone:
            log.info("deleted %s (%d bytes): %s", p.name, p.size,
                     "older than --max-age" if p.reason == "age" else "beyond --max-bytes")
        self.pruned.extend(gone)

    def _recover(self, snap: str) -> None:
        self.seq += 1
        target = self._path(flow_file_name(self.host, self.seq))
        os.replace(snap, target)  # atomic: its flows are never in two files, nor in none
        try:
            ff = read_flow_file(target)
            header = dict(ff.header)
            agent = header.get("agent")
            header["agent"] = {**(agent if isinstance(agent, dict) else {}), "kind": "recovered",
                               "seq": self.seq}
            write_lines(target, [dumps(header), *(dumps(r) for r in ff.records)])
            count = len(ff.flows)
        except CaptureError as exc:
            log.warning("kept the snapshot of an earlier run as it was: %s", exc)
            count = -1
        self.recovered.append(target)
        log.warning("an earlier agent %r stopped without its final flush: its snapshot of %s"
                    " active flows is now %s", self.host, "?" if count < 0 else count,
                    os.path.basename(target))

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _path(self, name: str) -> str:
        return os.path.join(self.out_dir, name)

    # -- packets ---------------------------------------------------------------------------------

    def packet(self, data: bytes, t: int) -> None:
        """Fold one captured frame (``t``: ns since the epoch). The frame is not kept."""
        self.packets += 1
        self._file_packets += 1
        # What FlowTable.add_frame does, keeping the flow the frame went to.
        d = decode(self.linktype, data, len(data))
        if isinstance(d, str):
            self.table.skip(d)
            return
        self._fold(d, data, t)

    def packet_on(self, data: bytes, t: int, ifindex: int) -> None:
        """Fold one frame seen on interface ``ifindex`` of several captured at once, counting
        a packet that crosses two of them (forwarded from one pod's veth to another's, or from
        a veth to the uplink) once.

        Each *direction* of a conversation (its addresses and ports as sent; a later IP
        fragment by its datagram) belongs to the interface that saw a packet of it first: its
        packets are folded as seen there, and the same packets seen on another interface are
        counted as skipped (``other-interface``). Ownership passes to another interface only
        after ``OWNER_IDLE_NS`` without a packet on the owner: a packet's sightings on a node's
        interfaces are microseconds apart, so none is counted twice or missed. A direction,
        not the whole conversation: where eBPF redirects deliver into a pod without crossing
        its host-side veth (Cilium's BPF host routing), each pod's veth sees only what its pod
        sends, so the request is owned by one veth and the reply by the other
        (docs/capture-agent.md).
        """
        self.packets += 1
        self._file_packets += 1
        d = decode(self.linktype, data, len(data))
        if isinstance(d, str):
            self.table.skip(d)
            return
        frag = d.frag
        key = (d.proto, d.src, d.dst, d.ports) if frag is None or not frag[1] else frag[0]
        owners = self.owners
        own = owners.get(key)
        if own is None:
            owners[key] = [ifindex, t]
            if len(owners) > self.max_owners:
                self._purge_owners(t)
        elif own[0] == ifindex:
            own[1] = max(own[1], t)
        elif t - own[1] > OWNER_IDLE_NS:
            own[0] = ifindex
            own[1] = t
        else:
            self.table.skip(SKIP_OTHER_INTERFACE)
            return
        self._fold(d, data, t)

    def _purge_owners(self, now: int) -> None:
        """Forget the directions idle for ``OWNER_IDLE_NS``; all of them if that is not enough
        (the next packet of each then picks its interface again)."""
        limit = now - OWNER_IDLE_NS
        owners = self.owners
        for key in [k for k, own in owners.items() if own[1] < limit]:
            del owners[key]
        if len(owners) > self.max_owners:
            owners.clear()

    def _fold(self, d: Decoded, data: bytes, t: int) -> None:
        table = self.table
        done = table.done
        ended = len(done)
        fl = table.add(d, data, t)
        lru = self.lru
        if len(done) != ended:  # this frame ended an earlier flow (idle, TCP reopen)
            for old in done[ended:]:
                lru.pop(old, None)
            if len(done) + len(self.pending) >= self.max_flows and not self._write_failed:
                self.flush_needed = True
        if fl is None:
            return
        self._snapshot_dirty = True
        if fl in lru:
            lru.move_to_end(fl)
        elif fl.a.packets + fl.b.packets == 1:  # a new flow (else: a late fragment of an ended one)
            lru[fl] = None
            if len(lru) > self.max_flows:
                self._evict()

    def _evict(self) -> None:
        victim, _ = self.lru.popitem(last=False)
        self.table.remove(victim)
        self.pending.append(victim)
        if not self._file_evicted:
            log.warning("flow table full (%d flows): evicting the least recently seen flows"
                        " into the next flow file", self.max_flows)
        self.evicted += 1
        self._file_evicted += 1
        if len(self.pending) + len(self.table.done) >= self.max_flows and not self._write_failed:
            self.flush_needed = True  # bound what waits for the next file too

    def add_drops(self, count: int) -> None:
        if count:
            log.warning("the kernel dropped %d frames: the agent fell behind", count)
            self.kernel_drops += count
            self._file_drops += count

    # -- flushing --------------------------------------------------------------------------------

    def _expire(self, now: int) -> list[FlowState]:
        """Active flows that ended by now: closed and quiet for the linger time, or idle."""
        linger = self.linger_ns
        out: list[FlowState] = []
        for fl in self.lru:  # least recently seen first: stop at the first recent one
            quiet = now - fl.last
            if quiet < linger:
                break
            if fl.closed or quiet > IDLE_NS:
                out.append(fl)
        lru = self.lru
        for fl in out:
            del lru[fl]
            self.table.remove(fl)
        return out

    def _take_dns(self) -> dict[DnsKey, int]:
        answers = self.pending_dns
        self.pending_dns = {}
        fresh = self.table.dns
        self.table.dns = {}
        seen = self.dns_seen
        for key, t in fresh.items():
            if key not in seen and (key not in answers or t < answers[key]):
                answers[key] = t
        return answers

    def flush(self, *, final: bool = False) -> str | None:
        """Write the ended flows (all flows when ``final``) and new DNS answers to the next
        numbered file, then (unless ``final``) the snapshot of the active ones. Returns the
        numbered file written, if any. A failed periodic write keeps everything for the next
        flush (logged); a failed final write raises ``CaptureError``."""
        self.flush_needed = False
        now = self.clock()
        ended = self.pending
        self.pending = []
        ended.extend(self.table.take_done())
        if final:
            ended.extend(self.lru)
            for fl in self.lru:
                self.table.remove(fl)
            self.lru.clear()
        else:
            ended.extend(self._expire(now))
        answers = self._take_dns()
        path = None
        if ended or answers or final:
            # First the snapshot goes (it may hold flows that end in this file), then the file
            # comes: at no instant are both there.
            self._unlink_snapshot()
            try:
                path = self._write_numbered(ended, answers, now, final=final)
            except CaptureError as exc:
                if final:
                    raise
                log.error("%s; keeping %d flows for the next flush", exc, len(ended))
                self.pending = ended + self.pending
                self.pending_dns = answers
                self._write_failed = True
                return None
            self._write_failed = False
            self.table.drop_fragments(set(ended))
            self._prune()
        if self.owners:
            self._purge_owners(now)
        if not final:
            try:
                self._write_snapshot(now)
            except CaptureError as exc:
                log.error("%s (snapshot of the active flows)", exc)
        return path

    def _agent_header(self, kind: str, now: int, seq: int | None) -> dict[str, Any]:
        return {
            "host": self.host,
            "iface": self.iface,
            "kind": kind,
            "seq": seq,
            "written": now / NS,
            "active": len(self.lru),
            "evicted": self._file_evicted if kind != "snapshot" else 0,
            "kernel_drops": self._file_drops if kind != "snapshot" else 0,
            **({"rcvbuf": self.rcvbuf.granted, "net_admin": self.rcvbuf.forced}
               if self.rcvbuf is not None else {}),
        }

    def _write_numbered(
        self, ended: list[FlowState], answers: dict[DnsKey, int], now: int, *, final: bool
    ) -> str:
        seq = self.seq + 1
        path = self._path(flow_file_name(self.host, seq))
        table = self.table
        # Fragments that waited for their datagram's first fragment for longer than
        # reassembly would (all of them in the last file) are skipped in this file.
        table.expire_fragments(None if final else now - FRAGMENT_TIMEOUT_NS)
        skipped = table.skipped
        header = make_header([self.source_name], self._file_packets, skipped, len(ended),
                             len(answers))
        header["agent"] = self._agent_header("final" if final else "periodic", now, seq)
        write_lines(path, itertools.chain(
            [dumps(header)],
            ordered_lines(table.flow_items(ended), table.flow_line),
            ordered_lines(table.dns_items(answers), FlowTable.dns_line),
        ))
        self.seq = seq
        self.files.append(path)
        self.flows_written += len(ended)
        self.dns_written += len(answers)
        for reason, count in skipped.items():
            self.skipped[reason] = self.skipped.get(reason, 0) + count
        table.skipped = {}
        self._file_packets = 0
        self._file_evicted = 0
        self._file_drops = 0
        seen = self.dns_seen
        for key in answers:
            seen[key] = None
        limit = max(self.max_flows, 1024)
        if len(seen) > limit:
            for key in list(itertools.islice(seen, len(seen) - limit)):
                del seen[key]
        log.info("wrote %s: %d flows, %d DNS answers (%d active)", os.path.basename(path),
                 len(ended), len(answers), len(self.lru))
        return path

    def _write_snapshot(self, now: int) -> None:
        path = self._path(snapshot_name(self.host))
        if not self.lru:
            self._unlink_snapshot()
            return
        if not self._snapshot_dirty and os.path.exists(path):
            return
        table = self.table
        header = make_header([self.source_name], 0, {}, len(self.lru), 0)
        header["agent"] = self._agent_header("snapshot", now, None)
        write_lines(path, itertools.chain(
            [dumps(header)], ordered_lines(table.flow_items(self.lru), table.flow_line)))
        self._snapshot_dirty = False

    def _unlink_snapshot(self) -> None:
        try:
            os.unlink(self._path(snapshot_name(self.host)))
        except FileNotFoundError:
            pass
        except OSError as exc:  # pragma: no cover - a directory that turned read-only
            raise CaptureError(f"cannot remove the snapshot: {exc.strerror or exc}",
                               path=self._path(snapshot_name(self.host))) from exc
        self._snapshot_dirty = True

    # -- the loop --------------------------------------------------------------------------------

    def run(
        self,
        source: PacketSource | MultiPacketSource,
        *,
        duration: float | None = None,
        stop_event: threading.Event | None = None,
        stop_reason: Callable[[], str | None] | None = None,
    ) -> AgentStats:
        """Read ``source`` until ``stop_event`` is set or ``duration`` seconds have passed,
        flushing every ``flush_interval`` seconds (sooner when ended flows pile up); then write
        the final file. The final file is written even when reading fails (the error is then
        raised after it)."""
        stop = stop_event if stop_event is not None else threading.Event()
        self.linktype = source.linktype
        self.rcvbuf = getattr(source, "rcvbuf", None)
        multi = bool(getattr(source, "multi", False))
        mono = self.monotonic
        start = mono()
        deadline = None if duration is None else start + duration
        next_flush = start + self.flush_interval
        why = "stop_event"
        try:
            while not stop.is_set():
                now = mono()
                if deadline is not None and now >= deadline:
                    why = "duration"
                    break
                until = next_flush if deadline is None else min(next_flush, deadline)
                frames: Sequence[Any] = source.read(min(max(until - now, 0.0), POLL))
                if multi:
                    for data, t, ifindex in frames:
                        self.packet_on(data, t, ifindex)
                        if self.flush_needed:  # ended flows reached max_flows: write them now
                            self.flush()
                else:
                    for data, t in frames:
                        self.packet(data, t)
                        if self.flush_needed:
                            self.flush()
                now = mono()
                if now >= next_flush or self.flush_needed:
                    self.add_drops(source.drops())
                    self.flush()
                    next_flush = now + self.flush_interval
            else:
                why = (stop_reason() if stop_reason is not None else None) or "stop_event"
        finally:
            with contextlib.suppress(Exception):
                self.add_drops(source.drops())
            self.flush(final=True)
        stats = AgentStats(
            iface=self.iface,
            host=self.host,
            out_dir=self.out_dir,
            packets=self.packets,
            skipped=dict(sorted(self.skipped.items())),
            flows=self.flows_written,
            dns=self.dns_written,
            evicted=self.evicted,
            files=tuple(self.files),
            kernel_drops=self.kernel_drops,
            seconds=mono() - start,
            stopped_by=why,
            recovered=tuple(self.recovered),
            pruned=len(self.pruned),
            rcvbuf=self.rcvbuf.granted if self.rcvbuf is not None else 0,
            net_admin=self.rcvbuf.forced if self.rcvbuf is not None else False,
        )
        log.info("stopped (%s): %d packets, %d flows and %d DNS answers in %d files, %d evicted,"
                 " %d dropped by the kernel", why, stats.packets, stats.flows, stats.dns,
                 len(stats.files), stats.evicted, stats.kernel_drops)
        return stats


# -- the entry point ----------------------------------------------------------------------------


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[Callable[[], str | None]]:
    """In the main thread: SIGTERM and SIGINT set ``stop`` (the loop then writes the final
    file). Yields a function that names the signal received, if any."""
    received: list[str] = []

    def handler(signum: int, _frame: FrameType | None) -> None:
        received.append(signal.Signals(signum).name)
        stop.set()

    def reason() -> str | None:
        return received[0] if received else None

    if threading.current_thread() is not threading.main_thread():
        yield reason
        return
    saved = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield reason
    finally:
        for sig, old in saved.items():
            signal.signal(sig, old)


def run_agent(
    iface: str | Sequence[str],
    out_dir: str,
    *,
    bpf: str | None = None,
    flush_interval: float = FLUSH_INTERVAL,
    max_flows: int = MAX_FLOWS,
    duration: float | None = None,
    stop_event: threading.Event | None = None,
    host: str | None = None,
    promisc: bool = True,
    retention: Retention | None = None,
    serve: int | None = None,
    serve_address: str = "",
    serve_allow: Sequence[str] = (),
) -> AgentStats:
    """Capture on ``iface`` into flow files in ``out_dir`` until stopped.

    ``iface`` is an interface name, ``"any"`` (every interface of the network namespace), or
    a list of names and fnmatch patterns (``["cali*", "lxc*"]``) followed as interfaces come
    and go (``capture.links``). Stops when ``stop_event`` is set, after ``duration`` seconds,
    or -- when called from the main thread -- on SIGTERM / SIGINT; every way writes the final
    file first. ``bpf`` is a capture filter (tcpdump syntax; compiling it needs libpcap).
    ``host`` names the agent in file names (default ``$SEGMENTER_AGENT_HOST`` or the host
    name). ``retention`` bounds the files kept (``capture.retention``). ``serve`` is a port on
    which the finished flow files are served read-only (``capture.serve``), to clients in
    ``serve_allow`` (addresses or CIDRs; default any). Raises ``CaptureError`` (one line) for
    a missing interface, missing privileges, a bad filter, a port that cannot be used or an
    unusable ``out_dir``, before anything is captured.
    """
    if duration is not None and duration < 0:
        raise ValueError(f"duration must not be negative, not {duration!r}")
    selection = parse_ifaces(iface)
    try:
        allow = parse_allow(serve_allow)
    except ValueError as exc:
        raise CaptureError(f"--serve-allow: {exc}") from None
    label = selection.describe()
    agent = Agent(out_dir, iface=label, host=host, flush_interval=flush_interval,
                  max_flows=max_flows, retention=retention)
    stop = stop_event if stop_event is not None else threading.Event()
    single = selection.single
    source: PacketSource | MultiPacketSource
    if single is not None:
        source = LiveSource(single, bpf=bpf, promisc=promisc)
    else:
        source = CookedSource(selection, bpf=bpf)
    server: FlowFileServer | None = None
    try:
        agent.open()
        if serve is not None:
            server = FlowFileServer(agent.out_dir, serve, host=agent.host,
                                    address=serve_address, allow=allow)
            server.start()
        buf = getattr(source, "rcvbuf", None)
        log.info("capturing on %s%s as %r into %s (flush every %gs, at most %d flows, files"
                 " kept: %s, socket buffer %s)", label, f" ({bpf})" if bpf else "", agent.host,
                 agent.out_dir, agent.flush_interval, agent.max_flows,
                 agent.retention.describe(),
                 "?" if buf is None else f"{buf.granted >> 10} KiB"
                 + ("" if buf.forced else " (no CAP_NET_ADMIN)"))
        with _stop_on_signals(stop) as reason:
            return agent.run(source, duration=duration, stop_event=stop, stop_reason=reason)
    finally:
        close_quietly(server)
        source.close()
        agent.close()
