"""The typed reader of Hubble flow logs: the same fold as the line-by-line reader of
``capture.sources.hubble``, several times faster on the lines most exports are made of.

A Hubble export is mostly the endpoint objects of both ends (their labels, workloads), which
repeat from line to line: building a dict of every line (orjson) costs more than everything
else. Here runs of whole lines are decoded by msgspec into typed structs of only the fields
the fold reads, each endpoint kept as its raw bytes -- parsed once per distinct endpoint --,
and the struct is folded by ``HubbleFold``'s own ``fold_event``, ``fold_nodes``, ``extras``
and ``dns_answer``.

Exactness comes first. Whatever this reader cannot read exactly as the line-by-line reader
does goes to that reader, which also gives the one-line error of a bad record:

* a run of lines that ``capture._jsonlines.scan`` finds suspect (several values on a line, a
  value over several lines, a number orjson would refuse, deep nesting), that is not UTF-8, or
  that msgspec refuses -- a field of another type than the struct says (``null`` where an
  object is expected, a port out of range) -- is read line by line;
* a line whose struct holds anything else than the common case (no ``IP`` or ``l4``, ICMP, a
  socket trace, the time or node name only in the envelope, an endpoint that is not an object,
  a value the fold would refuse) is read alone, line by line, before anything of it is folded.

Without msgspec or without the C extension (``capture/_jsonlines.c``), ``AVAILABLE`` is false
and every line is read line by line. tests/capture/test_source_hubble_fast.py checks that both
readers give byte-identical flow files on drawn records and on the real exports of the corpus.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Annotated, Any

from capture.errors import CaptureError
from capture.sources.base import Opened, Sink
from capture.sources.hubble_fold import (
    _AUDIT,
    _DROP,
    _ERROR,
    _EXTRA_FIELDS,
    _ONE_A,
    _ONE_B,
    _ONE_RESET,
    _PASS,
    _PASS_FROM_A,
    _PASS_FROM_B,
    _PASSED,
    _SYN_A,
    _SYN_B,
    _SYNACK_A,
    _SYNACK_B,
    R_HANDSHAKE,
    R_REPORTED,
    Conn,
    ConnKey,
    HubbleFold,
)
from capture.sources.reading import _damaged
from capture.sources.recordfold import _ADDRESSES, address, json_objects, loads, rfc3339_ns

try:  # optional accelerators: without them every line is read by orjson, one at a time
    import msgspec
    from msgspec import UNSET, Meta, Raw, Struct, UnsetType

    from capture._jsonlines import scan

    AVAILABLE = True
except ImportError:  # pragma: no cover - depends on the environment
    AVAILABLE = False

CHUNK = 1 << 22  # bytes read at a time: a run of about 3,500 lines of an export
WHAT = "Hubble flow"
ENDPOINTS_KEPT = 1 << 16  # distinct endpoint objects remembered (then forgotten and re-parsed)

FoldObjects = Callable[[HubbleFold, Iterable[tuple[int, dict[str, Any]]], str, Sink], int]

if AVAILABLE:
    # What the fold reads of a flow (flow.proto ``message Flow``), typed as strictly as the
    # fold reads it; everything else is skipped unread. Fields it reads loosely are ``Any``.
    # gc=False: thousands of structs a run, none in a reference cycle; tracking them by the
    # cyclic garbage collector doubled the decoding time.
    Port = Annotated[int, Meta(ge=0, le=65535)]

    class _Flags(Struct, gc=False):
        SYN: bool = False
        ACK: bool = False
        RST: bool = False

    class _Ports(Struct, gc=False):
        source_port: Port = 0
        destination_port: Port = 0

    class _TcpPorts(_Ports, gc=False):
        flags: _Flags | UnsetType = UNSET

    class _L4(Struct, gc=False):
        TCP: _TcpPorts | UnsetType = UNSET
        UDP: _Ports | UnsetType = UNSET
        SCTP: _Ports | UnsetType = UNSET

    class _IP(Struct, gc=False):
        source: str | UnsetType = UNSET
        destination: str | UnsetType = UNSET

    class _EventType(Struct, gc=False):
        type: int = 0

    class _Flow(Struct, gc=False):
        IP: _IP | UnsetType = UNSET
        l4: _L4 | UnsetType = UNSET
        source: Raw | UnsetType = UNSET
        destination: Raw | UnsetType = UNSET
        event_type: _EventType | UnsetType = UNSET
        Type: Any = UNSET
        time: Any = UNSET
        node_name: Any = UNSET
        is_reply: Any = UNSET
        reply: Any = UNSET
        l7: Any = UNSET
        traffic_direction: Any = UNSET
        verdict: Any = UNSET
        trace_observation_point: Any = ""
        source_names: Any = UNSET
        destination_names: Any = UNSET
        source_service: Any = UNSET
        destination_service: Any = UNSET
        egress_allowed_by: Any = UNSET
        ingress_allowed_by: Any = UNSET
        egress_denied_by: Any = UNSET
        ingress_denied_by: Any = UNSET

    class _BareFlow(_Flow, gc=False):
        """``hubble observe -o json``: the flow alone on its line."""

        flow: Any = UNSET  # set: not a bare flow after all (the line reader decides)

    class _Envelope(Struct, gc=False):
        """``hubble observe -o jsonpb`` and the exporter: ``{"flow": {...}, ...}``."""

        flow: _Flow | UnsetType = UNSET

    _ENVELOPE_DECODER = msgspec.json.Decoder(_Envelope)
    _BARE_DECODER = msgspec.json.Decoder(_BareFlow)
    _DECODE_ERRORS = (msgspec.DecodeError, RecursionError)

# What HubbleFold._end reads of an endpoint object: its quick keys as end a and as end b
# (side, identity, ID, number of labels, number of fields), the rest of its key in
# HubbleFold.ends (pod name, identity, ID, labels, fields), whether its ID is set, and what
# HubbleFold._ident says of it; _EMPTY for an absent or empty one (it says nothing).
Endpoint = tuple[tuple[Any, ...], tuple[Any, ...], tuple[Any, ...], bool, tuple[int, bool]]
_EMPTY: Endpoint = ((), (), (), False, (0, False))
# Errors that mean "the line reader decides" (it raises them as a malformed record, or not).
_FOLD_ERRORS = (KeyError, TypeError, ValueError, AttributeError, IndexError)


def fold_file(fold: HubbleFold, opened: Opened, sink: Sink, fold_objects: FoldObjects) -> int:
    """Fold the events of one file into ``fold``, as ``fold_objects`` (the line-by-line
    reader) would; returns the number of flow events read."""
    return _Reader(fold, opened, sink, fold_objects).run()


class _Reader:
    def __init__(self, fold: HubbleFold, opened: Opened, sink: Sink,
                 fold_objects: FoldObjects) -> None:
        self.fold = fold
        self.opened = opened
        self.sink = sink
        self.fold_objects = fold_objects
        # Raw bytes of an endpoint object -> what it says (None: leave its line to the line
        # reader). Kept on the fold: the files of one ingest share their endpoints.
        self.endpoints: dict[bytes, Endpoint | None] = fold.raw_endpoints
        self.seconds: dict[str, int] = {}  # "2023-11-14T22:13:20." -> its ns since the epoch

    # -- reading -----------------------------------------------------------------------------

    def run(self) -> int:
        """Read the file in runs of whole lines; the line cut by a run's end is read alone."""
        flows = 0
        number = 0  # lines read so far
        carry = b""  # the start of a line that the last chunk cut
        stream = self.opened.open()
        try:
            with stream:
                while True:
                    chunk = stream.read(CHUNK)
                    if not chunk:
                        break
                    start = 0
                    if carry:
                        end = chunk.find(b"\n")
                        if end < 0:
                            carry += chunk
                            continue
                        number += 1
                        flows += self._lines([(number, carry + chunk[: end + 1])])
                        start = end + 1
                    last = chunk.rfind(b"\n") + 1
                    if last > start:
                        got, lines = self._run(memoryview(chunk)[start:last], number)
                        flows += got
                        number += lines
                    carry = chunk[max(last, start) :]
        except OSError as exc:
            raise CaptureError(f"cannot read: {exc.strerror or exc}",
                               path=self.opened.path) from exc
        if carry and stream.error is None:  # a last line without its line end
            number += 1
            flows += self._lines([(number, carry)])
        if stream.error is not None:  # damaged compressed data: a cut line is not a line
            _damaged(self.sink, self.opened, number + 1, stream.error)
        return flows

    def _lines(self, lines: Iterable[tuple[int, bytes]]) -> int:
        """The line-by-line reader on ``lines`` (line number, bytes with the line end)."""
        return self.fold_objects(
            self.fold, json_objects(lines, self.opened.path, self.sink, what=WHAT),
            self.opened.path, self.sink)

    def _run(self, run: memoryview, before: int) -> tuple[int, int]:
        """Fold a run of whole lines, the first of them line ``before + 1``: the number of flow
        events and of lines."""
        newlines, values, suspect, non_ascii = scan(run)
        records: list[Any] | None = None
        if not suspect and non_ascii:
            try:
                str(run, "utf-8")
            except UnicodeDecodeError:
                suspect = True
        if not suspect:
            decoder = _ENVELOPE_DECODER if run[:8].tobytes() == b'{"flow":' else _BARE_DECODER
            try:
                records = decoder.decode_lines(run)
            except _DECODE_ERRORS:
                records = None
            if records is not None and len(records) != values:
                records = None  # cannot happen when scan is right; then trust the line reader
        if records is None:
            return self._lines(_numbered(run, before)), newlines
        flows = fast = 0
        lines: list[tuple[int, bytes]] | None = None  # the non-blank lines, when needed
        add = self._add
        for i, record in enumerate(records):
            if type(record) is _Envelope:
                flow = record.flow
            else:
                flow = record if record.flow is UNSET else UNSET
            if flow is not UNSET and add(flow):
                fast += 1
                continue
            if lines is None:
                lines = [(n, line) for n, line in _numbered(run, before) if not line.isspace()]
            flows += self._lines([lines[i]])
        self.sink.input_records += fast  # the line reader counts the records it reads
        return flows + fast, newlines

    # -- folding -----------------------------------------------------------------------------

    def _add(self, f: Any) -> bool:
        """Fold one flow struct as ``HubbleFold.add`` folds its dict; False, with nothing
        folded, when the line reader must read it."""
        fold = self.fold
        ip = f.IP
        l4 = f.l4
        if ip is UNSET or l4 is UNSET or f.Type == "SOCK":
            return False
        tcp = l4.TCP
        flags = None
        if tcp is not UNSET:
            proto, ports, flags = "TCP", tcp, tcp.flags
        elif l4.UDP is not UNSET:
            proto, ports = "UDP", l4.UDP
        elif l4.SCTP is not UNSET:
            proto, ports = "SCTP", l4.SCTP
        else:
            return False
        stamp, raw_node = f.time, f.node_name
        if type(stamp) is not str or not stamp or type(raw_node) is not str or not raw_node:
            return False  # in the envelope, or not a string: the line reader decides
        src_text, dst_text = ip.source, ip.destination
        if src_text is UNSET or dst_text is UNSET:
            return False
        verdict, point = f.verdict, f.trace_observation_point
        if (verdict is not UNSET and verdict is not None and type(verdict) is not str) or (
                point is not None and type(point) is not str):
            return False  # unhashable: the line reader raises
        reply = f.is_reply
        if reply is UNSET or reply is None:
            reply = True if f.reply is True else None
        elif reply is not True and reply is not False:
            return False
        l7 = f.l7
        if l7 is UNSET:
            l7 = None
        elif l7 and type(l7) is not dict:
            return False
        src = _ADDRESSES.get(src_text)
        dst = _ADDRESSES.get(dst_text)
        seconds = self.seconds
        # The time stamp: its seconds once per second seen, then only the nanoseconds (what
        # rfc3339_ns gives for ``YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ``).
        base = seconds.get(stamp[:20])
        fraction = stamp[20:29]
        if base is None or len(stamp) != 30 or stamp[29] != "Z" or not (
                fraction.isdigit() and fraction.isascii()):
            base = None
        try:
            if src is None:
                src = address(src_text)
            if dst is None:
                dst = address(dst_text)
            if base is None:
                t = rfc3339_ns(stamp)
                if len(stamp) == 30 and stamp[29] == "Z" and stamp[19] == "." and \
                        fraction.isdigit() and fraction.isascii() and len(seconds) < 1 << 16:
                    seconds[stamp[:20]] = t - int(fraction)
            else:
                t = base + int(fraction)
        except ValueError:
            return False
        endpoints = self.endpoints
        s_ep: Endpoint | None
        d_ep: Endpoint | None
        raw = f.source
        if raw is UNSET:
            s_ep = _EMPTY
        else:
            key = bytes(raw)
            s_ep = endpoints.get(key) or self._endpoint(key)
            if s_ep is None:
                return False
        raw = f.destination
        if raw is UNSET:
            d_ep = _EMPTY
        else:
            key = bytes(raw)
            d_ep = endpoints.get(key) or self._endpoint(key)
            if d_ep is None:
                return False
        extras: dict[str, Any] | None = None
        if f.source_names is not UNSET or f.destination_names is not UNSET or \
                f.source_service is not UNSET or f.destination_service is not UNSET or \
                f.egress_allowed_by is not UNSET or f.ingress_allowed_by is not UNSET or \
                f.egress_denied_by is not UNSET or f.ingress_denied_by is not UNSET:
            extras = {k: v for k in _EXTRA_FIELDS if (v := getattr(f, k)) is not UNSET}
            try:  # on a scratch connection first: nothing is folded from a line that fails
                fold.extras(Conn(0), extras, 0, 1)
            except _FOLD_ERRORS:
                return False
        if l7 and (dns := l7.get("dns")) is not None:
            try:  # changes nothing before it can fail
                fold.dns_answer(dns, l7, reply=reply, src=src, dst=dst, t=t)
            except _FOLD_ERRORS:
                return False

        # Which end of the packet is the client, and how sure that is (as HubbleFold.add).
        syn = ack = rst = False
        if flags is not None and flags is not UNSET:
            syn, ack, rst = flags.SYN, flags.ACK, flags.RST
        src_is_client: bool | None = None
        rank = 0
        if reply is not None:
            src_is_client, rank = not reply, R_REPORTED
        elif l7 and l7.get("type") in ("REQUEST", "RESPONSE"):
            src_is_client, rank = l7["type"] == "REQUEST", R_REPORTED
        elif syn:
            src_is_client, rank = not ack, R_HANDSHAKE
        else:
            direction = f.traffic_direction
            s_id, d_id = s_ep[3], d_ep[3]
            if direction in ("EGRESS", "INGRESS") and s_id != d_id:
                src_is_client, rank = (direction == "EGRESS") == s_id, R_REPORTED

        node = fold.node_names.get(raw_node)
        if node is None:
            node = fold.node_names[raw_node] = raw_node.rpartition("/")[2]
        event_type = f.event_type
        vantage = (node, 0 if event_type is UNSET else event_type.type, point)
        if verdict is UNSET:
            verdict = None

        # HubbleFold.fold_event, inlined (a million calls a file); the property test of
        # tests/capture/test_source_hubble_fast.py keeps the two the same.
        sport, dport = ports.source_port, ports.destination_port
        src_is_a = src < dst or (src == dst and sport <= dport)
        conn_key: ConnKey = ((proto, src, sport, dst, dport) if src_is_a
                             else (proto, dst, dport, src, sport))
        conns = fold.conns
        conn = conns.get(conn_key)
        if conn is None:
            conn = conns[conn_key] = Conn(t)
        elif t < conn.first:
            conn.first = t
        elif t > conn.last:
            conn.last = t
        if src_is_client is not None:
            if src_is_client == src_is_a:
                conn.rank_a = max(conn.rank_a, rank)
            else:
                conn.rank_b = max(conn.rank_b, rank)
        bits = conn.bits
        if verdict in _PASSED or verdict == "AUDIT":
            bits |= (_PASS_FROM_A if src_is_a else _PASS_FROM_B) | _PASS
            if verdict == "AUDIT":
                bits |= _AUDIT
        elif verdict == "DROPPED":
            bits |= _DROP
        elif verdict == "ERROR":
            bits |= _ERROR
        if syn:
            if ack:
                bits |= _SYNACK_A if src_is_a else _SYNACK_B
            else:
                bits |= _SYN_A if src_is_a else _SYN_B
        conn.bits = bits
        number = fold.vantages.get(vantage)
        if number is None:
            number = fold.vantages[vantage] = len(fold.vantages)
        counts = conn.counts
        counts[number] = counts.get(number, 0) + (_ONE_A if src_is_a else _ONE_B) + \
            (_ONE_RESET if rst else 0)

        s, d = (0, 1) if src_is_a else (1, 0)
        # HubbleFold._end of both ends, and fold_nodes.
        seen = conn.seen
        src_local = dst_local = False
        if s_ep is not _EMPTY:
            quick = s_ep[0] if src_is_a else s_ep[1]
            known = seen.get(quick)
            if known is None:
                ends_key = (src, *s_ep[2])
                known = fold.ends.get(ends_key)
                if known is None:
                    known = fold.ends[ends_key] = s_ep[4]
                seen[quick] = known
            src_local = known[1]
        if d_ep is not _EMPTY:
            quick = d_ep[1] if src_is_a else d_ep[0]
            known = seen.get(quick)
            if known is None:
                ends_key = (dst, *d_ep[2])
                known = fold.ends.get(ends_key)
                if known is None:
                    known = fold.ends[ends_key] = d_ep[4]
                seen[quick] = known
            dst_local = known[1]
        if src_local or dst_local:
            fold.fold_nodes(conn, node, s, src_local, d, dst_local)
        if extras is not None:
            fold.extras(conn, extras, s, d)
        return True

    def _endpoint(self, raw: bytes) -> Endpoint | None:
        """What an endpoint object says, as ``HubbleFold._end`` reads it; None when its line
        must go to the line reader (not an object, or the fold would refuse it)."""
        endpoints = self.endpoints
        if raw in endpoints:
            return endpoints[raw]
        if len(endpoints) >= ENDPOINTS_KEPT:
            endpoints.clear()
        info: Endpoint | None
        try:
            ep = loads(raw)
            if not ep:
                info = _EMPTY
            elif type(ep) is not dict:
                info = None
            else:
                labels = ep.get("labels")
                identity, endpoint_id, pod = ep.get("identity"), ep.get("ID"), ep.get("pod_name")
                hash((identity, endpoint_id, pod))
                # What _end would store for it: HubbleFold._ident, whose result depends on the
                # object alone (its numbering on the order seen, which no output shows).
                count, fields = len(labels) if labels else 0, len(ep)
                fold = self.fold
                info = (fold._intern((0, identity, endpoint_id, count, fields)),
                        fold._intern((1, identity, endpoint_id, count, fields)),
                        (pod, identity, endpoint_id, count, fields), bool(endpoint_id),
                        fold._ident(ep))
        except _FOLD_ERRORS:
            info = None
        endpoints[raw] = info
        return info


def _numbered(run: memoryview, before: int) -> Iterator[tuple[int, bytes]]:
    """(line number, bytes with the line end) of each line of a run of whole lines."""
    for number, line in enumerate(run.tobytes().split(b"\n")[:-1], before + 1):
        yield number, line + b"\n"
