"""The agent's live packet sources: one named interface as it frames (``LiveSource``), or every
pod interface of a node -- the Linux ``any`` device, or interface name patterns followed as pods
come and go (``CookedSource``; docs/capture-agent.md, "Which interfaces").

``--iface any`` is one ``AF_PACKET`` socket that is bound to no interface (``sll_ifindex`` 0):
the kernel hands it every frame of every interface of the network namespace, in the order its
taps saw them. ``--iface 'cali*' --iface 'lxc*'`` (or several exact names) is one socket bound
to each matching interface; the set is kept up to date from netlink link notifications
(``RTMGRP_LINK``), with a rescan of ``/sys/class/net`` every ``RESCAN`` seconds as a safety net,
so that interfaces made for new pods are picked up and removed ones dropped without a restart.

Both use ``SOCK_DGRAM`` sockets, as libpcap does for ``any``: the kernel strips each device's
own link header (Ethernet on veths, none on tunnels and WireGuard) and gives the packet from its
network header with a ``sockaddr_ll`` saying where it was seen. Each frame is handed on with a
Linux cooked v2 header (LINKTYPE_LINUX_SLL2, https://www.tcpdump.org/linktypes/LINKTYPE_LINUX_SLL2.html:
protocol, interface index, ARPHRD type, packet type, link address) that the decoder reads like a
capture's, and with the index of the interface it came through, which the agent needs to count a
packet seen on two interfaces once (``capture.agent.Agent.packet_on``).

A ``--filter`` is compiled for raw IP (DLT_RAW): a ``SOCK_DGRAM`` packet socket runs its filter
on the packet from its network header (net/packet/af_packet.c, ``packet_rcv``), so link-level
primitives (``ether host``, ``vlan``) do not apply and libpcap refuses them.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import logging
import select
import socket
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from capture.decode import LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL2, LINKTYPE_RAW
from capture.errors import CaptureError
from capture.table import NS

log = logging.getLogger("capture.agent")

ANY = "any"
RESCAN = 2.0  # seconds between rescans of /sys/class/net, besides netlink notifications
SNAPLEN = 262144  # bytes read per frame (tcpdump's default): GSO / GRO frames stay whole
BATCH = 1024  # most frames read from one socket in a row
RCVBUF_ANY = 8 << 20  # receive buffer asked for the one socket of ``any``
RCVBUF_IFACE = 2 << 20  # ... and for each socket of a followed interface (there may be hundreds)
SYS_CLASS_NET = "/sys/class/net"
RMEM_MAX = "/proc/sys/net/core/rmem_max"
IFNAMSIZ = 16  # linux/if.h: names are at most 15 bytes

# Linux constants (linux/if_ether.h, linux/if_packet.h, asm-generic/socket.h, linux/rtnetlink.h).
ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_STATISTICS = 6
PACKET_OUTGOING = 4
SO_ATTACH_FILTER = 26
SO_RCVBUFFORCE = 33
SO_TIMESTAMPNS = 35  # also SCM_TIMESTAMPNS, the control message type
ARPHRD_ETHER = 1
ARPHRD_LOOPBACK = 772
# Devices whose frames start with the IP header (tun, WireGuard, PPP, IP-in-IP / SIT tunnels).
ARPHRD_RAW_IP = frozenset({512, 519, 768, 769, 776, 0xFFFE})
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
RCVBUF = 8 << 20  # receive buffer asked for the socket of one named interface
RTMGRP_LINK = 1
_TIMESPEC = struct.Struct("qq")
_SLL2 = struct.Struct(">HHIHBB8s")  # 20 bytes
_ANC = socket.CMSG_SPACE(_TIMESPEC.size)
_GONE = frozenset({errno.ENETDOWN, errno.ENXIO, errno.ENODEV})
_PATTERN_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class IfaceSelection:
    """What ``--iface`` asked for: ``any``, or exact names and fnmatch patterns."""

    any: bool = False
    names: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()

    def describe(self) -> str:
        return ANY if self.any else ",".join((*self.names, *self.patterns))

    def matches(self, name: str) -> bool:
        return name in self.names or any(fnmatch.fnmatchcase(name, p) for p in self.patterns)

    @property
    def single(self) -> str | None:
        """The one exact interface name, when that is all that was asked for."""
        if not self.any and not self.patterns and len(self.names) == 1:
            return self.names[0]
        return None


def parse_ifaces(values: str | Sequence[str]) -> IfaceSelection:
    """``--iface`` values -> an ``IfaceSelection``; ``CaptureError`` for an empty or impossible
    name and for ``any`` given with others."""
    items = [values] if isinstance(values, str) else list(values)
    if not items:
        raise CaptureError("no interface given (--iface NAME, PATTERN or any)")
    names: list[str] = []
    patterns: list[str] = []
    for raw in items:
        value = raw.strip()
        if not value or len(value.encode()) >= IFNAMSIZ or "/" in value or any(
                c.isspace() for c in value):
            raise CaptureError(f"not an interface name or pattern: {raw!r}")
        if value == ANY:
            if len(items) > 1:
                raise CaptureError("--iface any already takes every interface: give it alone")
            return IfaceSelection(any=True)
        target = patterns if _PATTERN_CHARS & set(value) else names
        if value not in target:
            target.append(value)
    return IfaceSelection(names=tuple(names), patterns=tuple(patterns))


def interfaces() -> dict[str, int]:
    """The interfaces of this network namespace: name -> index."""
    return {name: index for index, name in socket.if_nameindex()}


def rmem_max() -> int | None:
    try:
        with open(RMEM_MAX, encoding="ascii") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class Rcvbuf:
    """The socket receive buffer a capture socket got."""

    asked: int
    granted: int  # bytes, as asked (the kernel reports twice this, for its bookkeeping)
    forced: bool  # SO_RCVBUFFORCE worked (CAP_NET_ADMIN); else capped by net.core.rmem_max


def set_rcvbuf(sock: socket.socket, size: int) -> Rcvbuf:
    """Ask for a ``size``-byte receive buffer: beyond ``net.core.rmem_max`` with
    ``SO_RCVBUFFORCE``, which needs CAP_NET_ADMIN; without it, ``SO_RCVBUF`` (capped)."""
    forced = True
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
    except OSError:
        forced = False
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2
    return Rcvbuf(size, granted, forced)


def log_rcvbuf(where: str, buf: Rcvbuf) -> None:
    if buf.forced or buf.granted >= buf.asked:
        return  # said in the agent's "capturing on" line
    limit = rmem_max()
    log.warning(
        "%s: socket receive buffer %d KiB, not the %d KiB asked: without CAP_NET_ADMIN the"
        " kernel caps it at net.core.rmem_max (%s); frames that arrive while a flow file is"
        " written may be dropped (counted as kernel_drops). Add NET_ADMIN to the container's"
        " capabilities or raise net.core.rmem_max", where, buf.granted >> 10, buf.asked >> 10,
        "unknown" if limit is None else f"{limit} bytes")


# -- the BPF filter -----------------------------------------------------------------------------


class RawIpFilter:
    """A tcpdump filter compiled once by libpcap (through scapy) for raw IP, attached to every
    socket of the source."""

    def __init__(self, expression: str) -> None:
        self.expression = expression
        try:
            from scapy.arch.common import compile_filter
            from scapy.error import Scapy_Exception
        except ImportError as exc:  # pragma: no cover - scapy is a dependency
            raise CaptureError(f"cannot use the capture filter {expression!r}: {exc}") from None
        try:
            # LINKTYPE_RAW (101): scapy turns it into libpcap's DLT_RAW.
            self.program: Any = compile_filter(expression, linktype=101)
        except (Scapy_Exception, ImportError, OSError) as exc:
            raise CaptureError(f"cannot use the capture filter {expression!r}: {exc}") from None

    def attach(self, sock: socket.socket) -> None:
        from scapy.libs.structures import sock_fprog

        program = self.program
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER,
                        bytes(sock_fprog(program.bf_len, program.bf_insns)))

    def close(self) -> None:
        from scapy.arch.common import free_filter

        if self.program is not None:
            free_filter(self.program)
            self.program = None


# -- the source ---------------------------------------------------------------------------------


class _Tap:
    """One packet socket: on an interface (``index`` > 0) or on all of them (``any``)."""

    __slots__ = ("index", "name", "sock")

    def __init__(self, sock: socket.socket, name: str, index: int) -> None:
        self.sock = sock
        self.name = name
        self.index = index

    def drops(self) -> int:
        try:
            _packets, drops = struct.unpack(
                "II", self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
        except OSError:
            return 0
        return int(drops)


class CookedSource:
    """Frames of every selected interface, each with a cooked v2 header and its interface index
    (``read`` gives (frame, time in ns, interface index) triples: ``multi`` is True).

    Raises ``CaptureError`` without CAP_NET_RAW, for an exact interface name that does not
    exist, and for a filter that cannot be compiled.
    """

    linktype = LINKTYPE_LINUX_SLL2
    multi = True

    def __init__(
        self,
        selection: IfaceSelection,
        *,
        bpf: str | None = None,
        rescan: float = RESCAN,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.selection = selection
        self.rescan_every = rescan
        self.monotonic = monotonic
        self.taps: dict[int, _Tap] = {}  # fd -> tap
        self.by_index: dict[int, _Tap] = {}
        self.names: dict[str, int] = {}  # interface name -> index, for frames of ``any``
        self.rcvbuf: Rcvbuf | None = None  # of the first socket: the others get the same
        self._drops = 0
        self._buf = bytearray(SNAPLEN)
        self._view = memoryview(self._buf)
        self._netlink: socket.socket | None = None
        self._next_scan = 0.0
        self._scan_needed = False
        self.filter = RawIpFilter(bpf) if bpf else None
        self.poller = select.epoll()
        try:
            if selection.any:
                self._open_any()
            else:
                present = interfaces()
                for name in selection.names:
                    if name not in present:
                        raise CaptureError(f"no such network interface: {name}")
                self._open_netlink()
                self._scan(initial=True)
        except BaseException:
            self.close()
            raise

    # -- sockets -----------------------------------------------------------------------------

    def _socket(self, protocol: int, where: str) -> socket.socket:
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, protocol)
        except PermissionError:
            raise CaptureError(
                f"not permitted to capture on {where}: the agent needs CAP_NET_RAW (run it as"
                " root, or see docs/capture-agent.md)") from None
        except OSError as exc:  # pragma: no cover - AF_PACKET is always there on Linux
            raise CaptureError(f"cannot capture on {where}: {exc.strerror or exc}") from None
        try:
            if self.filter is not None:
                self.filter.attach(sock)
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            buf = set_rcvbuf(sock, RCVBUF_ANY if self.selection.any else RCVBUF_IFACE)
            if self.rcvbuf is None:
                self.rcvbuf = buf
                log_rcvbuf(self.selection.describe(), buf)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise CaptureError(f"cannot capture on {where}: {exc.strerror or exc}") from None
        return sock

    def _add(self, sock: socket.socket, name: str, index: int) -> None:
        tap = _Tap(sock, name, index)
        self.taps[sock.fileno()] = tap
        self.by_index[index] = tap
        self.poller.register(sock.fileno(), select.EPOLLIN)
        tap.drops()  # reading the statistics resets them

    def _open_any(self) -> None:
        # Created with the protocol, never bound: the kernel's "any" (sll_ifindex 0).
        sock = self._socket(socket.htons(ETH_P_ALL), ANY)
        self.names = interfaces()
        self._add(sock, ANY, 0)

    def _follow(self, name: str, index: int) -> None:
        # Protocol 0 until bound: no frame of another interface gets in before the bind.
        sock = self._socket(0, name)
        try:
            sock.bind((name, ETH_P_ALL))
            if socket.if_nametoindex(name) != index:  # replaced in between: the next scan
                raise OSError(errno.ENODEV, "replaced")
        except OSError as exc:
            sock.close()
            if exc.errno in _GONE:  # gone (or replaced) since the scan: the next scan sees
                self._scan_needed = True
                return
            log.warning("cannot capture on %s: %s", name, exc.strerror or exc)
            return
        self._add(sock, name, index)
        log.info("following %s (interface %d)", name, index)

    def _drop(self, tap: _Tap, why: str) -> None:
        self._drops += tap.drops()
        fd = tap.sock.fileno()
        with contextlib.suppress(OSError, ValueError):
            self.poller.unregister(fd)
        tap.sock.close()
        self.taps.pop(fd, None)
        if self.by_index.get(tap.index) is tap:
            del self.by_index[tap.index]
        log.info("dropped %s (interface %d): %s", tap.name, tap.index, why)

    def _open_netlink(self) -> None:
        try:
            nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
            nl.bind((0, RTMGRP_LINK))
            nl.setblocking(False)
        except OSError as exc:
            log.warning("no netlink link notifications (%s): new interfaces are found by"
                        " rescanning every %gs", exc.strerror or exc, self.rescan_every)
            return
        self._netlink = nl
        self.poller.register(nl.fileno(), select.EPOLLIN)

    def _scan(self, *, initial: bool = False) -> None:
        """Follow the interfaces that match and are not followed yet; drop the ones gone."""
        self._scan_needed = False
        self._next_scan = self.monotonic() + self.rescan_every
        present = interfaces()
        for tap in list(self.taps.values()):
            if present.get(tap.name) != tap.index:
                self._drop(tap, "gone")
        for name, index in sorted(present.items(), key=lambda item: item[1]):
            if index not in self.by_index and self.selection.matches(name):
                self._follow(name, index)
        if initial and not self.taps:
            log.warning("no interface matches %s yet: waiting for one",
                        self.selection.describe())

    def interface_names(self) -> list[str]:
        return sorted(t.name for t in self.taps.values())

    # -- reading -----------------------------------------------------------------------------

    def read(self, timeout: float) -> list[tuple[bytes, int, int]]:
        if self._scan_needed or self.monotonic() >= self._next_scan:
            if self.selection.any:  # names of new interfaces (an old name may have a new index)
                self.names = interfaces()
                self._next_scan = self.monotonic() + self.rescan_every
            else:
                self._scan()
        try:
            events = self.poller.poll(max(timeout, 0.0))
        except InterruptedError:  # pragma: no cover - retried by Python (PEP 475)
            return []
        out: list[tuple[bytes, int, int]] = []
        sources = 0
        for fd, _mask in events:
            if self._netlink is not None and fd == self._netlink.fileno():
                self._drain_netlink()
                continue
            tap = self.taps.get(fd)
            if tap is not None:
                before = len(out)
                self._read_tap(tap, out)
                sources += len(out) != before
        if sources > 1:
            # Frames of several sockets: in the order the kernel time-stamped them, so that
            # the flow table sees a connection's packets in order whichever interface saw them.
            out.sort(key=lambda frame: frame[1])
        return out

    def _read_tap(self, tap: _Tap, out: list[tuple[bytes, int, int]]) -> None:
        sock = tap.sock
        view = self._view
        bufs = [self._buf]
        names = self.names
        index = tap.index
        pack = _SLL2.pack
        for _ in range(BATCH):
            try:
                size, anc, _flags, addr = sock.recvmsg_into(bufs, _ANC)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _GONE and not self.selection.any:
                    self._drop(tap, "gone")
                    self._scan_needed = True
                    return
                raise CaptureError(f"capture on {tap.name} failed: {exc.strerror or exc}"
                                   ) from None
            name, proto, pkttype, hatype, haddr = addr
            if hatype == ARPHRD_LOOPBACK and pkttype == PACKET_OUTGOING:
                continue  # loopback frames are seen going out and coming in: keep one
            if index == 0:
                ifindex = names.get(name)
                if ifindex is None:
                    ifindex = self._index_of(name)
            else:
                ifindex = index
            t = time.time_ns()
            for level, kind, data in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = _TIMESPEC.unpack_from(data)
                    t = sec * 1_000_000_000 + nsec
            out.append((pack(proto, 0, ifindex, hatype, pkttype, len(haddr), haddr)
                        + view[:size], t, ifindex))

    def _index_of(self, name: str) -> int:
        """The index of an interface a frame of ``any`` came through (a new one: look it up)."""
        try:
            index = socket.if_nametoindex(name)
        except OSError:
            index = 0  # gone already (or the kernel could not name it)
        if name:
            self.names[name] = index
        return index

    def _drain_netlink(self) -> None:
        nl = self._netlink
        assert nl is not None
        while True:
            try:
                if not nl.recv(65536):
                    break
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # ENOBUFS: notifications were lost; the rescan finds out
                break
        self._scan_needed = True

    def drops(self) -> int:
        drops = self._drops + sum(tap.drops() for tap in self.taps.values())
        self._drops = 0
        return drops

    def close(self) -> None:
        for tap in list(self.taps.values()):
            tap.sock.close()
        self.taps.clear()
        self.by_index.clear()
        if self._netlink is not None:
            self._netlink.close()
            self._netlink = None
        self.poller.close()
        if self.filter is not None:
            self.filter.close()


# -- one interface, as it frames -----------------------------------------------------------------


class _DropScapyNoise(logging.Filter):
    """scapy warns that it cannot guess a layer for loopback: the agent reads raw bytes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Unable to guess type" not in record.getMessage()


class LiveSource:
    """Frames from ``iface`` through scapy's ``L2ListenSocket`` (Linux ``AF_PACKET``).

    Raises ``CaptureError`` for an interface that does not exist, missing privileges
    (``CAP_NET_RAW``), a filter that cannot be compiled or an unsupported link type.
    """

    def __init__(self, iface: str, *, bpf: str | None = None, promisc: bool = True) -> None:
        self.iface = iface
        try:
            index = socket.if_nametoindex(iface)
        except (OSError, ValueError):
            raise CaptureError(f"no such network interface: {iface}") from None
        try:
            from scapy.arch.linux import L2ListenSocket
            from scapy.error import Scapy_Exception
        except ImportError as exc:  # pragma: no cover - not Linux
            raise CaptureError(f"live capture needs Linux: {exc}") from exc
        quiet = _DropScapyNoise()
        scapy_log = logging.getLogger("scapy.runtime")
        scapy_log.addFilter(quiet)
        try:
            # Promiscuous mode is set below, on the interface index: scapy's own way looks the
            # name up in its interface cache, which does not know interfaces made after import.
            self.sock = L2ListenSocket(iface=iface, promisc=False, filter=bpf or None)
        except PermissionError:
            raise CaptureError(
                f"not permitted to capture on {iface}: the agent needs CAP_NET_RAW (run it as"
                " root, or see docs/capture-agent.md)") from None
        except Scapy_Exception as exc:
            raise CaptureError(f"cannot use the capture filter {bpf!r}: {exc}") from None
        except ValueError:  # scapy: "Interface ... not found" (gone since the check above)
            raise CaptureError(f"no such network interface: {iface}") from None
        except OSError as exc:
            raise CaptureError(f"cannot capture on {iface}: {exc.strerror or exc}") from None
        finally:
            scapy_log.removeFilter(quiet)
        ins: socket.socket = self.sock.ins
        self.ins = ins
        hatype = ins.getsockname()[3]
        if hatype in (ARPHRD_ETHER, ARPHRD_LOOPBACK):
            self.linktype = LINKTYPE_ETHERNET
        elif hatype in ARPHRD_RAW_IP:
            self.linktype = LINKTYPE_RAW
        else:
            self.sock.close()
            raise CaptureError(f"cannot capture on {iface}: unsupported link type"
                               f" (ARPHRD {hatype})")
        # On loopback every frame is seen twice, going out and coming in: keep one (as libpcap).
        self.loopback = hatype == ARPHRD_LOOPBACK
        if promisc and not self.loopback:
            try:
                ins.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP,
                               struct.pack("IHH8s", index, PACKET_MR_PROMISC, 0, b""))
            except OSError as exc:
                log.warning("%s: no promiscuous mode (%s)", iface, exc.strerror or exc)
        # A large buffer rides out the pauses while a flow file is written; beyond
        # net.core.rmem_max only with CAP_NET_ADMIN (logged when it is missing).
        self.rcvbuf = set_rcvbuf(ins, RCVBUF)
        log_rcvbuf(iface, self.rcvbuf)
        ins.setblocking(False)
        self.drops()  # reading the statistics resets them
        recv = getattr(self.sock, "_recv_raw", None)
        self._recv: Callable[[socket.socket, int], tuple[bytes, Any, float | None]] = (
            recv if recv is not None else _recvfrom)

    def read(self, timeout: float) -> list[tuple[bytes, int]]:
        ins = self.ins
        if timeout > 0:
            try:
                ready, _, _ = select.select([ins], [], [], timeout)
            except InterruptedError:  # pragma: no cover - retried by Python (PEP 475)
                return []
            if not ready:
                return []
        out: list[tuple[bytes, int]] = []
        recv = self._recv
        loopback = self.loopback
        for _ in range(BATCH):
            try:
                data, addr, ts = recv(ins, SNAPLEN)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                raise CaptureError(f"capture on {self.iface} failed: {exc.strerror or exc}"
                                   ) from None
            if not data or (loopback and addr[2] == PACKET_OUTGOING):
                continue
            out.append((data, round(ts * NS) if ts is not None else time.time_ns()))
        return out

    def drops(self) -> int:
        try:
            _packets, drops = struct.unpack("II", self.ins.getsockopt(SOL_PACKET,
                                                                      PACKET_STATISTICS, 8))
        except OSError:  # pragma: no cover - always there on Linux
            return 0
        return int(drops)

    def close(self) -> None:
        self.sock.close()


def _recvfrom(sock: socket.socket, size: int) -> tuple[bytes, Any, float | None]:
    data, addr = sock.recvfrom(size)  # pragma: no cover - scapy without _recv_raw
    return data, addr, None  # pragma: no cover
