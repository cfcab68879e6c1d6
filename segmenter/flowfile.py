"""Read flow files (``flows.jsonl``, format versions 1 and 2; see ``docs/flow-format.md``).

Every line is checked; the first bad one raises :class:`~segmenter.errors.InputError` naming the
file and the line. ``.gz`` files are read transparently.
"""

from __future__ import annotations

import gzip
import io
import ipaddress
import logging
import math
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from capture.flowfile import union_interfaces
from segmenter.documents import (
    MAX_DEPTH,
    MAX_EPOCH,
    MIN_EPOCH,
    fast_json_loads,
    parse_json_line,
)
from segmenter.errors import InputError, type_name
from segmenter.model import (
    DirectionBasis,
    DnsAnswer,
    EndpointIdentity,
    Flow,
    FlowVerdict,
    Labels,
    Transport,
)

logger = logging.getLogger(__name__)

FORMAT: Final = "segmenter-flows"
VERSION: Final = 2
DIRECTIONS: Final = {d.value: d for d in DirectionBasis}
VERDICTS: Final = {v.value: v for v in FlowVerdict}
_ENDPOINT_STRINGS: Final = ("namespace", "pod", "workload_kind", "workload_name", "node",
                            "entity", "service")
_ENDPOINT_KEYS: Final = frozenset({*_ENDPOINT_STRINGS, "labels", "names"})
_PORTED: Final = frozenset({Transport.TCP, Transport.UDP, Transport.SCTP})
_TRANSPORTS: Final = {t.value: t for t in Transport} | {t.value.lower(): t for t in Transport}
_MAX_COUNT: Final = 2**63  # counters are 64-bit where flow records come from
# What _RecordReader._plain_flow reads without the full checks.
_PLAIN_TRANSPORTS: Final = {t.value: t for t in Transport if t in _PORTED}
_PLAIN_DIRECTIONS: Final = dict(DIRECTIONS)
_PLAIN_COUNTS: Final = ("packets_to_server", "bytes_to_server", "packets_to_client",
                        "bytes_to_client", "resets")
_EMPTY_LIST: Final[list[Any]] = []
_NUMBERS: Final = frozenset({int, float})
_new_object: Final = object.__new__
_set_attribute: Final = object.__setattr__


@dataclass(frozen=True)
class Traffic:
    """A parsed flow file: its header, flow records and DNS records, in file order."""

    header: Mapping[str, Any]
    flows: tuple[Flow, ...] = ()
    dns: tuple[DnsAnswer, ...] = ()
    paths: tuple[str, ...] = field(default=(), compare=False)


class _Bad(Exception):
    pass


def _open(path: str) -> io.BufferedIOBase:
    if path.endswith(".gz"):
        return gzip.open(path, "rb")
    return open(path, "rb")


def read_flow_file(path: str | Path) -> Traffic:
    """Read and validate one flow file."""
    path = str(path)
    flows: list[Flow] = []
    dns: list[DnsAnswer] = []
    records = _Records(path)
    for record in records:
        if type(record) is DnsAnswer:
            dns.append(record)
        else:
            flows.append(record)  # type: ignore[arg-type]
    assert records.header is not None
    records.warn_unknown()
    return Traffic(header=records.header, flows=tuple(flows), dns=tuple(dns), paths=(path,))


class _Records:
    """The records of one flow file, every line checked, in file order (an iterable, read once):
    the first bad line raises :class:`InputError` naming the file and the line."""

    def __init__(self, path: str, reader: _RecordReader | None = None) -> None:
        self.path = path
        self.reader = reader if reader is not None else _RecordReader()
        self.header: dict[str, Any] | None = None
        self.unknown: Counter[str] = Counter()
        self.dns = 0

    def __iter__(self) -> Iterator[Flow | DnsAnswer]:
        path = self.path
        reader = self.reader
        flow = reader.flow
        lineno = 0
        offset = 0  # of the line in the (uncompressed) file, for a byte that is not UTF-8
        header = self.header = None
        loads = fast_json_loads
        try:
            with _open(path) as handle:
                for lineno, raw in enumerate(handle, start=1):
                    # orjson straight away, as parse_json_line does, without a call per line;
                    # what it refuses goes through parse_json_line for the error's words.
                    data = None
                    if loads is not None:
                        try:
                            data = loads(raw)
                        except ValueError:
                            pass
                        else:
                            if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH:
                                data = None  # parse_json_line checks the nesting
                    if data is None:
                        if not raw.strip():
                            offset += len(raw)
                            continue
                        data = parse_json_line(raw, path=path, offset=offset,
                                               record=f"line {lineno}")
                    offset += len(raw)
                    if type(data) is not dict:
                        raise _Bad(f"expected a JSON object, got {type_name(data)}")
                    if header is None:
                        header = self.header = _check_header(data)
                        continue
                    kind = data.get("record")
                    if kind == "flow":
                        yield flow(data)
                    elif kind == "dns":
                        self.dns += 1
                        yield reader.dns(data)
                    elif isinstance(kind, str):
                        self.unknown[kind] += 1  # a newer minor revision may add record types
                    else:
                        raise _Bad('"record" must be "flow" or "dns"')
        except _Bad as exc:
            raise InputError(str(exc), path=path, record=f"line {lineno}") from None
        except FileNotFoundError:
            raise InputError("no such file", path=path) from None
        except IsADirectoryError:
            raise InputError("is a directory, expected a flow file", path=path) from None
        except (OSError, EOFError) as exc:
            raise InputError(f"cannot read: {exc}", path=path, record=f"line {lineno}") from None
        if self.header is None:
            raise InputError("empty file: expected a segmenter-flows header on line 1",
                             path=path)

    def warn_unknown(self) -> None:
        for kind, count in sorted(self.unknown.items()):
            logger.warning("%s: skipped %d record(s) of unknown type %r", self.path, count, kind)


def read_flow_files(paths: Sequence[str | Path]) -> Traffic:
    """Read several flow files into one; records are re-sorted as the format orders them.

    The merged header has the union of ``sources``, summed ``stats`` and the ``generator`` when
    all files agree on it.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    if not paths:
        raise InputError("no flow file given")
    return merge_traffic([read_flow_file(p) for p in paths])


def merge_traffic(files: Sequence[Traffic]) -> Traffic:
    """Several flow files' contents as one, records re-sorted as the format orders them (what
    :func:`read_flow_files` returns; a caller that also needs each file keeps the parts)."""
    if not files:
        raise InputError("no flow file given")
    if len(files) == 1:
        return files[0]
    flows = sorted(
        (f for ff in files for f in ff.flows),
        key=lambda f: (
            f.first_seen,
            f.transport.value,
            f.client or "",
            -1 if f.client_port is None else f.client_port,
            f.server or "",
            -1 if f.server_port is None else f.server_port,
        ),
    )
    dns = sorted(
        (d for ff in files for d in ff.dns), key=lambda d: (d.ts, d.client, d.server, d.name)
    )
    return Traffic(
        header=_merge_headers([ff.header for ff in files]),
        flows=tuple(flows),
        dns=tuple(dns),
        paths=tuple(p for ff in files for p in ff.paths),
    )


def iter_flows(paths: Sequence[str | Path]) -> Iterator[Flow]:
    """The flows of several files, file after file (no re-sorting)."""
    for path in paths:
        yield from read_flow_file(path).flows


def _merge_headers(headers: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    generators = {h.get("generator") for h in headers}
    sources = sorted({s for h in headers for s in h.get("sources") or ()})
    packets = flows = 0
    skipped: Counter[str] = Counter()
    for h in headers:
        stats = h.get("stats") or {}
        packets += int(stats.get("packets") or 0)
        flows += int(stats.get("flows") or 0)
        skipped.update({str(k): int(v) for k, v in (stats.get("skipped") or {}).items()})
    merged: dict[str, Any] = {
        "format": FORMAT,
        "version": max(int(h.get("version", 1)) for h in headers),
        "sources": sources,
        "stats": {"packets": packets, "flows": flows, "skipped": dict(sorted(skipped.items()))},
    }
    interfaces = union_interfaces(headers)
    if interfaces:
        merged["interfaces"] = {source: sorted(interfaces[source]) for source in sorted(interfaces)}
    if len(generators) == 1 and None not in generators:
        merged["generator"] = generators.pop()
    return merged


def _check_header(data: dict[str, Any]) -> dict[str, Any]:
    fmt = data.get("format")
    if fmt != FORMAT:
        if data.get("record") in ("flow", "dns"):
            raise _Bad(f'line 1 must be the header ("format": "{FORMAT}"), found a record')
        raise _Bad(f'not a flow file: "format" is {fmt!r}, expected "{FORMAT}"')
    version = data.get("version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise _Bad(f'"version" must be an integer, not {type_name(version)}')
    if version > VERSION:
        raise _Bad(
            f"flow file version {version} is newer than this reader (version {VERSION}); "
            "upgrade segmenter"
        )
    if version < 1:
        raise _Bad(f"unknown flow file version {version}")
    if "generator" in data and not isinstance(data["generator"], str):
        raise _Bad('"generator" must be a string')
    sources = data.get("sources", [])
    if not isinstance(sources, list) or not all(isinstance(s, str) for s in sources):
        raise _Bad('"sources" must be a list of strings')
    interfaces = data.get("interfaces", {})
    if not isinstance(interfaces, dict) or not all(
            isinstance(names, list) and all(isinstance(n, str) for n in names)
            for names in interfaces.values()):
        raise _Bad('"interfaces" must be an object of lists of interface names')
    stats = data.get("stats", {})
    if not isinstance(stats, dict):
        raise _Bad('"stats" must be an object')
    for key in ("packets", "flows"):
        if stats.get(key) is not None:
            _RecordReader.count(stats, key, "stats.")
    skipped = stats.get("skipped") or {}
    if not isinstance(skipped, dict):
        raise _Bad('"stats.skipped" must be an object of counts')
    for reason in skipped:
        _RecordReader.count(skipped, reason, "stats.skipped.")
    return data


def _names_an_end(endpoint: EndpointIdentity) -> bool:
    return any((endpoint.namespace, endpoint.pod, endpoint.workload_name, endpoint.entity))


class _RecordReader:
    """Validates records; caches the canonical form of each address (they repeat a lot)."""

    def __init__(self) -> None:
        self._ips: dict[str, str] = {}
        self._tuples: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._endpoints: dict[tuple[Any, ...], EndpointIdentity] = {}

    def ip(self, data: Mapping[str, Any], key: str) -> str:
        value = data.get(key)
        if not isinstance(value, str):
            raise _Bad(f'"{key}" must be an IP address string, not {type_name(value)}')
        canonical = self._ips.get(value)
        if canonical is None:
            try:
                canonical = str(ipaddress.ip_address(value))
            except ValueError:
                raise _Bad(f'"{key}": {value!r} is not an IP address') from None
            if len(self._ips) < 1_000_000:
                self._ips[value] = canonical
        return canonical

    def _canonical(self, value: str) -> str | None:
        """The canonical form of an address seen for the first time (None: not an address,
        which the full check of the record refuses with its own words)."""
        try:
            return self.ip({"address": value}, "address")
        except _Bad:
            return None

    @staticmethod
    def count(data: Mapping[str, Any], key: str, where: str = "") -> int:
        value = data.get(key, 0)
        if type(value) is not int or not 0 <= value < _MAX_COUNT:
            shown = value if type(value) is int else type_name(value)
            raise _Bad(f'"{where}{key}" must be a non-negative integer below 2**63, not {shown}')
        return value

    @staticmethod
    def time(data: Mapping[str, Any], key: str) -> float:
        value = data.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Bad(f'"{key}" must be a number (epoch seconds), not {type_name(value)}')
        try:
            seconds = float(value)
        except OverflowError:
            seconds = math.inf
        if not MIN_EPOCH <= seconds <= MAX_EPOCH:
            raise _Bad(f'"{key}" must be epoch seconds of a year from 1 to 9999, not {value}')
        return seconds

    @staticmethod
    def flag(data: Mapping[str, Any], key: str) -> bool:
        value = data.get(key, False)
        if not isinstance(value, bool):
            raise _Bad(f'"{key}" must be true or false, not {type_name(value)}')
        return value

    def end(self, data: Mapping[str, Any], key: str,
            endpoint: EndpointIdentity | None) -> str | None:
        """An end's address; null only when its ``*_endpoint`` names the end (version 2: flow
        logs that aggregate endpoints to names, Calico Goldmane and aggregated flows.log)."""
        if data.get(key) is None and endpoint is not None and _names_an_end(endpoint):
            return None
        if data.get(key) is None and key in data:
            raise _Bad(f'"{key}" is null, but "{key}_endpoint" does not name the end (it needs '
                       "a namespace, pod, workload_name or entity)")
        return self.ip(data, key)

    @staticmethod
    def port(data: Mapping[str, Any], key: str, transport: Transport) -> int | None:
        value = data.get(key)
        if value is None:
            # A client's (ephemeral) port may be unknown: flow logs aggregate over it (Calico,
            # Goldmane). The server's port is what a rule allows: required.
            if transport in _PORTED and key != "client_port":
                raise _Bad(f'"{key}" is required for {transport.value}')
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
            raise _Bad(f'"{key}" must be a port number 0-65535 or null, not {value!r}')
        return value

    def flow(self, data: Mapping[str, Any]) -> Flow:
        if type(data) is dict:
            fast = self._plain_flow(data)
            if fast is not None:
                return fast
        return self._flow(data)

    def _plain_flow(self, data: dict[str, Any]) -> Flow | None:
        """The record of a capture (addresses, ports, counts; no version-2 field) as a
        :class:`Flow` equal to what :meth:`_flow` makes of it, in a fifth of the time; None for
        anything else, which :meth:`_flow` then reads (and refuses, if it is wrong).

        Flow files hold millions of these, and a frozen dataclass of 22 fields costs more to
        construct than the line costs to parse: the parsed object, checked here field by field
        for exactly what :meth:`_flow` accepts, gives the Flow its ``__dict__`` (what
        ``dataclasses`` itself fills in, through ``object.__setattr__``).
        """
        get: Callable[..., Any] = data.get
        ips = self._ips
        raw_client, raw_server = get("client"), get("server")
        proto, raw_direction = get("proto"), get("direction", "handshake")
        if (type(raw_client) is not str or type(raw_server) is not str or type(proto) is not str
                or type(raw_direction) is not str):
            return None
        client = ips.get(raw_client) or self._canonical(raw_client)
        server = ips.get(raw_server) or self._canonical(raw_server)
        transport = _PLAIN_TRANSPORTS.get(proto)
        direction = _PLAIN_DIRECTIONS.get(raw_direction)
        first_seen = get("first_seen")
        last_seen = get("last_seen")
        client_port = get("client_port")
        server_port = get("server_port")
        if (client is None or server is None or transport is None or direction is None
                or type(server_port) is not int or not 0 <= server_port <= 65535
                or not (client_port is None
                        or (type(client_port) is int and 0 <= client_port <= 65535))
                or type(first_seen) not in _NUMBERS or type(last_seen) not in _NUMBERS
                # compared before float(): an integer too large for a float is refused there
                or not MIN_EPOCH <= first_seen <= last_seen <= MAX_EPOCH):
            return None
        first_seen = float(first_seen)
        last_seen = float(last_seen)
        for key in _PLAIN_COUNTS:
            value = get(key, 0)
            if type(value) is not int or not 0 <= value < _MAX_COUNT:
                return None
        handshake = get("handshake", False)
        tls = get("tls", False)
        sni = get("sni")
        outer = get("outer")
        sources = get("sources")
        policies = get("policies")
        if (type(handshake) is not bool or type(tls) is not bool
                or not (sni is None or type(sni) is str)
                or not (outer is None or (type(outer) is list
                                          and all(type(o) is str for o in outer)))
                or get("client_endpoint") is not None or get("server_endpoint") is not None
                or get("verdict") is not None or get("sampled", False) is not False
                or not (sources is None or sources == _EMPTY_LIST)
                or not (policies is None or policies == _EMPTY_LIST)):
            return None
        flow: Flow = _new_object(Flow)
        _set_attribute(flow, "__dict__", {
            "transport": transport, "client": client, "server": server,
            "client_port": client_port, "server_port": server_port,
            "first_seen": first_seen, "last_seen": last_seen,
            "packets_to_server": get("packets_to_server", 0),
            "bytes_to_server": get("bytes_to_server", 0),
            "packets_to_client": get("packets_to_client", 0),
            "bytes_to_client": get("bytes_to_client", 0),
            "direction": direction, "handshake": handshake, "resets": get("resets", 0),
            "tls": tls, "sni": sni, "client_endpoint": None, "server_endpoint": None,
            "verdict": None, "sampled": False, "sources": (), "policies": ()})
        return flow

    def _flow(self, data: Mapping[str, Any]) -> Flow:
        proto = data.get("proto")
        transport = _TRANSPORTS.get(proto) if isinstance(proto, str) else None
        if transport is None:
            raise _Bad(f'"proto" must be one of TCP, UDP, SCTP, ICMP, ICMPv6, not {proto!r}')
        first_seen = self.time(data, "first_seen")
        last_seen = self.time(data, "last_seen")
        if last_seen < first_seen:
            raise _Bad('"last_seen" is before "first_seen"')
        raw_direction = data.get("direction", "handshake")
        direction = DIRECTIONS.get(raw_direction) if isinstance(raw_direction, str) else None
        if direction is None:
            raise _Bad(
                f'"direction" must be one of {", ".join(sorted(DIRECTIONS))}, '
                f'not {raw_direction!r}'
            )
        sni = data.get("sni")
        if sni is not None and not isinstance(sni, str):
            raise _Bad(f'"sni" must be a string or null, not {type_name(sni)}')
        outer = data.get("outer")
        if outer is not None and (
            not isinstance(outer, list) or not all(isinstance(o, str) for o in outer)
        ):
            raise _Bad('"outer" must be a list of addresses or null')
        client_endpoint = self.endpoint(data, "client_endpoint")
        server_endpoint = self.endpoint(data, "server_endpoint")
        return Flow(
            transport=transport,
            client=self.end(data, "client", client_endpoint),
            server=self.end(data, "server", server_endpoint),
            client_port=self.port(data, "client_port", transport),
            server_port=self.port(data, "server_port", transport),
            first_seen=first_seen,
            last_seen=last_seen,
            packets_to_server=self.count(data, "packets_to_server"),
            bytes_to_server=self.count(data, "bytes_to_server"),
            packets_to_client=self.count(data, "packets_to_client"),
            bytes_to_client=self.count(data, "bytes_to_client"),
            direction=direction,
            handshake=self.flag(data, "handshake"),
            resets=self.count(data, "resets"),
            tls=self.flag(data, "tls"),
            sni=sni,
            client_endpoint=client_endpoint,
            server_endpoint=server_endpoint,
            verdict=self.verdict(data),
            sampled=self.flag(data, "sampled"),
            sources=self.strings(data, "sources"),
            policies=self.strings(data, "policies"),
        )

    def strings(self, data: Mapping[str, Any], key: str) -> tuple[str, ...]:
        value = data.get(key)
        if not value:
            if value is None or value == []:
                return ()
            raise _Bad(f'"{key}" must be a list of strings')
        # Interned: a million records share a handful of source and policy lists.
        try:
            known = self._tuples.get(tuple(value))
        except TypeError:  # unhashable items: refused below
            known = None
        if known is not None and type(value) is list:
            return known
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _Bad(f'"{key}" must be a list of strings')
        found = tuple(value)
        return self._tuples.setdefault(found, found)

    @staticmethod
    def verdict(data: Mapping[str, Any]) -> FlowVerdict | None:
        value = data.get("verdict")
        if value is None:
            return None
        verdict = VERDICTS.get(value) if isinstance(value, str) else None
        if verdict is None:
            raise _Bad(f'"verdict" must be one of {", ".join(VERDICTS)} or null, not {value!r}')
        return verdict

    def endpoint(self, data: Mapping[str, Any], key: str) -> EndpointIdentity | None:
        value = data.get(key)
        if value is None:
            return None
        # Interned: a flow log's million records name a few hundred ends. An object equal to
        # one read before (same keys in the same order, same values) is that one.
        try:
            get = value.get
            labels, names = get("labels"), get("names")
            cache_key = (tuple(value.items()) if labels is None and names is None else
                         (tuple(value), get("namespace"), get("pod"), get("workload_kind"),
                          get("workload_name"), get("node"), get("entity"), get("service"),
                          None if labels is None else tuple(labels.items()),
                          None if names is None else tuple(names)))
            known = self._endpoints.get(cache_key)
        except (AttributeError, TypeError):  # not an object, or unhashable: checked below
            cache_key, known = None, None
        if known is not None:
            return known
        found = self._endpoint(value, key)
        if cache_key is not None:
            self._endpoints[cache_key] = found
        return found

    def _endpoint(self, value: Any, key: str) -> EndpointIdentity:
        if not isinstance(value, dict):
            raise _Bad(f'"{key}" must be an object or null, not {type_name(value)}')
        unknown = set(value) - _ENDPOINT_KEYS
        if unknown:
            raise _Bad(f'"{key}" has unknown field(s) {", ".join(sorted(unknown))}')
        for field_name in _ENDPOINT_STRINGS:
            if value.get(field_name) is not None and not isinstance(value[field_name], str):
                raise _Bad(f'"{key}.{field_name}" must be a string')
        labels = value.get("labels") or {}
        if not isinstance(labels, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
            raise _Bad(f'"{key}.labels" must be an object of strings')
        return EndpointIdentity(
            namespace=value.get("namespace"),
            pod=value.get("pod"),
            workload_kind=value.get("workload_kind"),
            workload_name=value.get("workload_name"),
            labels=Labels.of(labels),
            node=value.get("node"),
            entity=value.get("entity"),
            names=self.strings(value, "names"),
            service=value.get("service"),
        )

    def dns(self, data: Mapping[str, Any]) -> DnsAnswer:
        name = data.get("name")
        if not isinstance(name, str) or not name:
            raise _Bad('"name" must be a non-empty string')
        answers = data.get("answers", [])
        if not isinstance(answers, list):
            raise _Bad('"answers" must be a list of addresses')
        cnames = data.get("cnames", [])
        if not isinstance(cnames, list) or not all(isinstance(c, str) for c in cnames):
            raise _Bad('"cnames" must be a list of names')
        return DnsAnswer(
            client=self.ip(data, "client"),
            server=self.ip(data, "server"),
            name=name.lower().rstrip("."),
            answers=tuple(self.ip({"answers[]": a}, "answers[]") for a in answers),
            cnames=tuple(c.lower().rstrip(".") for c in cnames),
            ts=self.time(data, "ts"),
        )


_STREAM_READER = _RecordReader()


def parse_record(data: Mapping[str, Any]) -> Flow | DnsAnswer | None:
    """One record of a flow file, already parsed as JSON (a stream's, record by record): a
    :class:`Flow`, a :class:`DnsAnswer`, or None for a record type this version does not know.

    Raises:
        InputError: a malformed record (the message says which field).
    """
    kind = data.get("record")
    try:
        if kind == "flow":
            return _STREAM_READER.flow(data)
        if kind == "dns":
            return _STREAM_READER.dns(data)
    except _Bad as exc:
        raise InputError(str(exc)) from None
    if isinstance(kind, str):
        return None
    raise InputError('"record" must be "flow" or "dns"')


# -- streaming ------------------------------------------------------------------------------


class FlowStream:
    """Flow files read as a stream: what :func:`read_flow_files` reads, without holding the
    flows. A first pass reads the header and the DNS answers (every line that may be a DNS
    record is parsed; the rest only looked at), each iteration reads the flows again, file
    after file, in file order (not re-sorted: what is built from them must not depend on their
    order). Memory holds the DNS answers and one flow at a time.

    Bad input is refused as :func:`read_flow_files` refuses it, naming the same file and line:
    when the first pass meets a bad line, every file up to it is checked in full first. A file
    that changes between passes is an error.
    """

    def __init__(self, paths: Sequence[str | Path]) -> None:
        if isinstance(paths, (str, Path)):
            paths = [paths]
        if not paths:
            raise InputError("no flow file given")
        self.paths = tuple(str(p) for p in paths)
        self._reader = _RecordReader()
        headers: list[dict[str, Any]] = []
        dns: list[DnsAnswer] = []
        self._dns_counts: list[int] = []
        self._stats: list[tuple[int, int]] = []
        for index, path in enumerate(self.paths):
            try:
                header, answers = _scan_dns(path, self._reader)
            except (InputError, _Bad, OSError, EOFError, ValueError):
                # The first bad line of these files, as read_flow_files finds it.
                for earlier in self.paths[:index + 1]:
                    for _ in _Records(earlier):
                        pass
                raise
            headers.append(header)
            dns.extend(answers)
            self._dns_counts.append(len(answers))
            self._stats.append(_file_stat(path))
        if len(self.paths) == 1:
            self.header: Mapping[str, Any] = headers[0]
            self.dns: tuple[DnsAnswer, ...] = tuple(dns)
        else:
            self.header = _merge_headers(headers)
            self.dns = tuple(sorted(dns, key=lambda d: (d.ts, d.client, d.server, d.name)))
        self._warned = False

    @property
    def flows(self) -> FlowStream:
        """The flows (this stream: iterable again and again)."""
        return self

    def __iter__(self) -> Iterator[Flow]:
        for path, dns, stat in zip(self.paths, self._dns_counts, self._stats, strict=True):
            records = _Records(path, self._reader)
            for record in records:
                if type(record) is not DnsAnswer:
                    yield record  # type: ignore[misc]
            if records.dns != dns or _file_stat(path) != stat:
                raise InputError("changed while it was being read (read it again once it is "
                                 "complete)", path=path)
            if not self._warned:
                records.warn_unknown()
        self._warned = True

    def chunks(self, size: int = 4096) -> Iterator[list[Flow]]:
        """The flows in lists of ``size``, for passes that hand each list to several folds."""
        chunk: list[Flow] = []
        for flow in self:
            chunk.append(flow)
            if len(chunk) >= size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk


def _file_stat(path: str) -> tuple[int, int]:
    try:
        stat = Path(path).stat()
    except OSError:
        return (-1, -1)
    return (stat.st_size, stat.st_mtime_ns)


# A DNS record's line holds "dns" (its "record" value), unless the writer escaped those letters.
_DNS_MARKS: Final = (b"dns", b"\\u")


def _scan_dns(path: str, reader: _RecordReader) -> tuple[dict[str, Any], list[DnsAnswer]]:
    """The header and DNS answers of one flow file; raises on the first bad line it parses
    (the caller then finds the first bad line of all)."""
    header: dict[str, Any] | None = None
    answers: list[DnsAnswer] = []
    mark, escaped = _DNS_MARKS
    try:
        with _open(path) as handle:
            for lineno, raw in enumerate(handle, start=1):
                if header is not None:
                    if mark not in raw and escaped not in raw:
                        continue
                    data = parse_json_line(raw, path=path, record=f"line {lineno}")
                    if type(data) is dict and data.get("record") == "dns":
                        answers.append(reader.dns(data))
                    continue
                if not raw.strip():
                    continue
                data = parse_json_line(raw, path=path, record=f"line {lineno}")
                if type(data) is not dict:
                    raise _Bad("not a flow file")
                header = _check_header(data)
    except FileNotFoundError:
        raise InputError("no such file", path=path) from None
    except IsADirectoryError:
        raise InputError("is a directory, expected a flow file", path=path) from None
    if header is None:
        raise InputError("empty file: expected a segmenter-flows header on line 1", path=path)
    return header, answers


def open_flow_stream(paths: Sequence[str | Path]) -> FlowStream:
    """Flow files as a :class:`FlowStream` (header and DNS answers read, flows on demand)."""
    return FlowStream(paths)


# -- writing (tests, benchmarks and summaries make flow records from flows) --------------------


def endpoint_record(endpoint: EndpointIdentity) -> dict[str, Any]:
    """An end's identity as a flow file writes it (docs/flow-format.md; empty fields left out)."""
    out: dict[str, Any] = {}
    for key in _ENDPOINT_STRINGS:
        value = getattr(endpoint, key)
        if value is not None:
            out[key] = value
    if endpoint.labels:
        out["labels"] = endpoint.labels.as_dict()
    if endpoint.names:
        out["names"] = list(endpoint.names)
    return out


def flow_record(flow: Flow) -> dict[str, Any]:
    """A flow as a flow file's record (the inverse of the reader: reading it gives ``flow``)."""
    out: dict[str, Any] = {
        "record": "flow", "proto": flow.transport.value, "client": flow.client,
        "client_port": flow.client_port, "server": flow.server,
        "server_port": flow.server_port, "first_seen": flow.first_seen,
        "last_seen": flow.last_seen, "packets_to_server": flow.packets_to_server,
        "bytes_to_server": flow.bytes_to_server, "packets_to_client": flow.packets_to_client,
        "bytes_to_client": flow.bytes_to_client, "direction": flow.direction.value,
        "handshake": flow.handshake, "resets": flow.resets, "tls": flow.tls, "sni": flow.sni,
    }
    if flow.client_endpoint is not None:
        out["client_endpoint"] = endpoint_record(flow.client_endpoint)
    if flow.server_endpoint is not None:
        out["server_endpoint"] = endpoint_record(flow.server_endpoint)
    if flow.verdict is not None:
        out["verdict"] = flow.verdict.value
    if flow.sampled:
        out["sampled"] = True
    if flow.sources:
        out["sources"] = list(flow.sources)
    if flow.policies:
        out["policies"] = list(flow.policies)
    return out


def dns_record(answer: DnsAnswer) -> dict[str, Any]:
    """A DNS answer as a flow file's record."""
    return {"record": "dns", "client": answer.client, "server": answer.server,
            "name": answer.name, "answers": list(answer.answers),
            "cnames": list(answer.cnames), "ts": answer.ts}
