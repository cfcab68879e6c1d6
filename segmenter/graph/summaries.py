"""Graph summaries as Parquet files: what one capture node's flows add up to, per edge and per
time window, written in an open columnar format that an existing engine aggregates.

A summary (:class:`~segmenter.graph.fold.GraphSummary`, folded with a ``window``) is written as
one Parquet file (docs/scale.md): one row per (client node, server node, protocol, port, DNS-name
hint, window) with its totals -- the table DuckDB, Spark or Trino add up with a ``GROUP BY`` --
and, in the file's key-value metadata under ``segmenter.summary`` (JSON), what is not per edge:
the blocked flows, the addresses each node was seen at, the addresses that stayed external,
the flows left out for a special address, the identity tally and the node's DNS answers (the
graph decides DNS-named sets with every node's answers). Those grow with the addresses and
workloads, never with the flows.

Every total is a sum, a minimum, a maximum, an "or" or a union, so summaries merge in any order
or grouping (:func:`merge_summaries` in this process, :func:`duckdb_summary` through DuckDB,
embedded) into the summary of all their flows, and the graph of that summary is the graph of
all the flows (:func:`~segmenter.graph.build.graph_from_summary`).

pyarrow and duckdb are the optional extra ``segmenter[scale]``: imported only here, only when
used, with a one-line error naming the extra when missing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Final

from segmenter.errors import InputError
from segmenter.fileio import atomic_write_bytes
from segmenter.flowfile import dns_record, parse_record
from segmenter.graph.fold import GraphSummary, add_edge
from segmenter.graph.identity import add_tally
from segmenter.model import DnsAnswer, Transport

SUMMARY_FORMAT: Final = "segmenter-summary"
SUMMARY_VERSION: Final = 1
META_KEY: Final = b"segmenter.summary"
# Columns of the edge table, in order (docs/scale.md).
COLUMNS: Final = ("node", "window", "client", "server", "protocol", "port", "hint", "flows",
                  "packets", "bytes", "first_seen", "last_seen", "tls", "sampled", "sources",
                  "via")
# A "via" entry: the Service a flow went through and the address it was DNATed from, either
# possibly empty, joined by a space (neither a Service name nor an address holds one).
_VIA_SEP: Final = " "


def _arrow() -> tuple[Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError("graph summaries need pyarrow: pip install 'segmenter[scale]'") from None
    return pa, pq


def _schema(pa: Any) -> Any:
    return pa.schema([
        ("node", pa.string()), ("window", pa.int64()), ("client", pa.string()),
        ("server", pa.string()), ("protocol", pa.string()), ("port", pa.int32()),
        ("hint", pa.string()), ("flows", pa.int64()), ("packets", pa.int64()),
        ("bytes", pa.int64()), ("first_seen", pa.float64()), ("last_seen", pa.float64()),
        ("tls", pa.bool_()), ("sampled", pa.bool_()), ("sources", pa.list_(pa.string())),
        ("via", pa.list_(pa.string())),
    ])


def _via_text(via: tuple[str | None, str | None]) -> str:
    return f"{via[0] or ''}{_VIA_SEP}{via[1] or ''}"


def _via_pair(text: str) -> tuple[str | None, str | None]:
    service, _, address = text.partition(_VIA_SEP)
    return (service or None, address or None)


# -- writing ------------------------------------------------------------------------------------

def summary_meta(summary: GraphSummary, dns: Iterable[DnsAnswer], node: str) -> dict[str, Any]:
    """What a summary holds besides its edges, as the JSON of the file's metadata (sorted)."""
    identity = summary.identity
    return {
        "format": SUMMARY_FORMAT, "version": SUMMARY_VERSION, "node": node,
        "window": summary.window, "flows": summary.flows,
        "blocked": [[*key, flows, first, last, sorted(sources), sorted(policies), sampled]
                    for key, (flows, first, last, sources, policies, sampled)
                    in summary.blocked.rows()],
        "addresses": {n: sorted(a) for n, a in sorted(summary.addresses.items())},
        "external": [list(row) for row in summary.external.rows()],
        "special": {name: [n, sorted(a)] for name, (n, a) in sorted(summary.special.items())},
        "identity": {
            "identified": identity.identified, "checked": identity.checked,
            "unaddressed": identity.unaddressed,
            "disagree": sorted([*k, t.flows, t.first] for k, t in identity.disagree.items()),
            "unresolved": sorted([*k, t.flows, t.first] for k, t in identity.unresolved.items()),
            "names": {n: sorted(v) for n, v in sorted(identity.names.items())},
        },
        "dns": sorted((dns_record(d) for d in dns),
                      key=lambda r: (r["ts"], r["client"], r["server"], r["name"])),
    }


def _edge_rows(summary: GraphSummary, node: str) -> dict[str, list[Any]]:
    columns: dict[str, list[Any]] = {c: [] for c in COLUMNS}
    order = sorted(summary.edges, key=lambda k: (k[5] if k[5] is not None else -1, k[0], k[1],
                                                  k[2].value, -1 if k[3] is None else k[3],
                                                  k[4] or ""))
    for key in order:
        client, server, transport, port, hint, window = key
        slot = summary.edges[key]
        for name, value in zip(COLUMNS, (
                node, window, client, server, transport.value, port, hint, slot[0], slot[1],
                slot[2], float(slot[3]), float(slot[4]), bool(slot[5]), bool(slot[8]),
                sorted(slot[7]), sorted(_via_text(v) for v in slot[6] or ())), strict=True):
            columns[name].append(value)
    return columns


def write_summary(path: str | Path, summary: GraphSummary, dns: Iterable[DnsAnswer], *,
                  node: str) -> int:
    """Write ``summary`` (of capture node ``node``, with its DNS answers) as a Parquet file,
    atomically; returns the number of edge rows."""
    pa, pq = _arrow()
    columns = _edge_rows(summary, node)
    meta = json.dumps(summary_meta(summary, dns, node), sort_keys=True,
                      separators=(",", ":")).encode()
    table = pa.table(columns, schema=_schema(pa).with_metadata({META_KEY: meta}))
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    atomic_write_bytes(path, sink.getvalue().to_pybytes())
    return len(columns["client"])


# -- reading ------------------------------------------------------------------------------------

def _parquet_meta(path: str, pq: Any) -> tuple[Any, dict[str, Any]]:
    """A summary file's Parquet schema and its ``segmenter.summary`` metadata, checked."""
    if Path(path).is_dir():
        raise InputError("is a directory, expected a graph summary (.parquet)", path=path)
    try:
        schema = pq.read_schema(path)
    except FileNotFoundError:
        raise InputError("no such file", path=path) from None
    except (OSError, ValueError) as exc:
        raise InputError(f"not a Parquet file ({str(exc).splitlines()[0]})", path=path) from None
    raw = (schema.metadata or {}).get(META_KEY)
    if raw is None:
        raise InputError("a Parquet file without segmenter.summary metadata: not a graph "
                         "summary (segmenter summarize writes them)", path=path)
    try:
        meta = json.loads(raw)
    except ValueError:
        raise InputError("segmenter.summary metadata is not JSON", path=path,
                         record="metadata") from None
    if not isinstance(meta, dict) or meta.get("format") != SUMMARY_FORMAT:
        raise InputError(f"segmenter.summary metadata is not a {SUMMARY_FORMAT}", path=path,
                         record="metadata")
    if meta.get("version") != SUMMARY_VERSION:
        raise InputError(f"graph summary version {meta.get('version')!r}; this segmenter "
                         f"reads version {SUMMARY_VERSION}", path=path, record="metadata")
    missing = [c for c in COLUMNS if c not in schema.names]
    if missing:
        raise InputError(f"graph summary without the column(s) {', '.join(missing)}",
                         path=path)
    return schema, meta


def _add_meta(summary: GraphSummary, meta: dict[str, Any], dns: list[DnsAnswer],
              path: str) -> None:
    """Add a file's non-edge parts to ``summary`` (and its DNS answers to ``dns``)."""
    part = "metadata"
    try:
        window = meta["window"]
        if window != summary.window:
            raise InputError(f"a summary of {window} s windows, others of {summary.window} s: "
                             "summarize every node with the same --window", path=path)
        part = "metadata: blocked"
        for row in meta["blocked"]:
            (client, server, protocol, port, verdict, win, flows, first, last, sources,
             policies, sampled) = row
            summary.blocked.add_row((client, server, protocol, port, verdict, win), int(flows),
                                    float(first), float(last), sources=sources,
                                    policies=policies, sampled=bool(sampled))
        part = "metadata: addresses"
        for node, addresses in meta["addresses"].items():
            summary.addresses[node].update(str(a) for a in addresses)
        part = "metadata: external"
        for address, flows, first, example, asked in meta["external"]:
            summary.external.add(str(address), int(flows), float(first), str(example),
                                 bool(asked))
        part = "metadata: special"
        for name, (flows, addresses) in meta["special"].items():
            mine = summary.special.setdefault(name, [0, set()])
            mine[0] += int(flows)
            mine[1].update(addresses)
        part = "metadata: identity"
        identity = meta["identity"]
        tally = summary.identity
        tally.identified += int(identity["identified"])
        tally.checked += int(identity["checked"])
        tally.unaddressed += int(identity["unaddressed"])
        for row in identity["disagree"]:
            add_tally(tally.disagree, tuple(row[:5]), int(row[5]), float(row[6]))
        for row in identity["unresolved"]:
            add_tally(tally.unresolved, tuple(row[:3]), int(row[3]), float(row[4]))
        for node, names in identity["names"].items():
            tally.names[node].update(names)
        part = "metadata: dns"
        for record in meta["dns"]:
            answer = parse_record(record)
            if not isinstance(answer, DnsAnswer):
                raise TypeError("not a DNS answer")
            dns.append(answer)
        summary.flows += int(meta["flows"])
    except InputError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InputError(f"malformed summary ({type(exc).__name__}: {exc})", path=path,
                         record=part) from None


# The columns an edge row is read from, in this order (the node is not part of an edge).
ROW_COLUMNS: Final = ("client", "server", "protocol", "port", "hint", "window", "flows",
                      "packets", "bytes", "first_seen", "last_seen", "tls", "sampled", "sources",
                      "via")
_REQUIRED: Final = (0, 1, 2, 6, 7, 8, 9, 10)  # of ROW_COLUMNS: never null


def _add_rows(summary: GraphSummary, rows: Iterable[Sequence[Any]], where: str,
              first_row: int = 1, *, windows: bool = True) -> None:
    """Add edge rows (values in :data:`ROW_COLUMNS` order) to ``summary`` (without
    ``windows``: added up over all time)."""
    edges = summary.edges
    protocols = {t.value: t for t in Transport}
    for number, row in enumerate(rows, start=first_row):
        try:
            if any(row[i] is None for i in _REQUIRED):
                null = next(ROW_COLUMNS[i] for i in _REQUIRED if row[i] is None)
                raise ValueError(f"{null} is null")
            (client, server, protocol, port, hint, window, flows, packets, nbytes, first, last,
             tls, sampled, sources, via) = row
            transport = protocols.get(protocol)
            if transport is None:
                raise ValueError(f"protocol {protocol!r}")
            key = (client, server, transport, port, hint, window if windows else None)
            slot = [int(flows), int(packets), int(nbytes), float(first), float(last),
                    bool(tls), {_via_pair(v) for v in via} if via else None,
                    set(sources or ()), bool(sampled)]
        except (TypeError, ValueError) as exc:
            raise InputError(f"malformed edge row ({exc})", path=where,
                             record=f"row {number}") from None
        add_edge(edges, key, slot)


def read_summary_meta(paths: Sequence[str]) -> tuple[GraphSummary, list[DnsAnswer]]:
    """The non-edge parts of summary files merged (edges left out), and their DNS answers."""
    _, pq = _arrow()
    if not paths:
        raise InputError("no graph summary given")
    metas = [(str(p), _parquet_meta(str(p), pq)[1]) for p in paths]
    summary = GraphSummary(metas[0][1].get("window"))
    dns: list[DnsAnswer] = []
    for path, meta in metas:
        _add_meta(summary, meta, dns, path)
    return summary, _unique_dns(dns)


def _unique_dns(dns: list[DnsAnswer]) -> list[DnsAnswer]:
    return sorted(set(dns), key=lambda d: (d.ts, d.client, d.server, d.name, d.answers,
                                           d.cnames))


def merge_summaries(paths: Sequence[str | Path], *, windows: bool = True
                    ) -> tuple[GraphSummary, list[DnsAnswer]]:
    """Summary files merged in this process (row batches through pyarrow): the summary of all
    their flows, and all their DNS answers. Without ``windows``, edges are added up over all
    time as they are read (what the graph needs; memory then follows the edges only)."""
    _, pq = _arrow()
    names = [str(p) for p in paths]
    summary, dns = read_summary_meta(names)
    for path in names:
        try:
            handle = pq.ParquetFile(path)
            done = 0
            for batch in handle.iter_batches(columns=list(ROW_COLUMNS), batch_size=65536):
                columns = [batch.column(name).to_pylist() for name in ROW_COLUMNS]
                _add_rows(summary, zip(*columns, strict=True), path, done + 1,
                          windows=windows)
                done += batch.num_rows
        except (OSError, ValueError) as exc:
            raise InputError(f"unreadable graph summary ({str(exc).splitlines()[0]})",
                             path=path) from None
    return summary, dns


# The edge table added up over every file: what an engine runs (docs/scale.md gives it for
# Spark and Trino too).
EDGE_QUERY: Final = """
SELECT client, server, protocol, port, hint, NULL AS "window",
       sum(flows) AS flows, sum(packets) AS packets, sum(bytes) AS bytes,
       min(first_seen) AS first_seen, max(last_seen) AS last_seen,
       bool_or(tls) AS tls, bool_or(sampled) AS sampled,
       list_distinct(flatten(list(sources))) AS sources,
       list_distinct(flatten(list(via))) AS via
FROM read_parquet($files)
GROUP BY client, server, protocol, port, hint
"""


def duckdb_summary(paths: Sequence[str | Path], *, threads: int | None = None
                   ) -> tuple[GraphSummary, list[DnsAnswer]]:
    """Summary files merged by DuckDB (embedded): the edge table added up by
    :data:`EDGE_QUERY` over all windows, the rest as :func:`merge_summaries` does. The graph
    of either is the same (windows are added up by the graph anyway)."""
    try:
        import duckdb
    except ImportError:
        raise InputError("the DuckDB engine needs duckdb: pip install 'segmenter[scale]'"
                         ) from None
    names = [str(p) for p in paths]
    merged, dns = read_summary_meta(names)
    summary = GraphSummary(None)  # the query adds windows up
    summary.blocked = merged.blocked
    summary.addresses = merged.addresses
    summary.external = merged.external
    summary.special = merged.special
    summary.identity = merged.identity
    summary.flows = merged.flows
    config: dict[str, str | bool | int | float | list[str]] = (
        {"threads": threads} if threads else {})
    try:
        with duckdb.connect(config=config) as con:
            result = con.execute(EDGE_QUERY, {"files": names})
            where = "the DuckDB query over " + ", ".join(names)
            done = 0
            while batch := result.fetchmany(65536):
                _add_rows(summary, batch, where, done + 1)
                done += len(batch)
    except duckdb.Error as exc:
        raise InputError(f"DuckDB could not read the graph summaries "
                         f"({str(exc).splitlines()[0]})", path=", ".join(names)) from None
    return summary, dns


__all__ = ["COLUMNS", "EDGE_QUERY", "ROW_COLUMNS", "duckdb_summary", "merge_summaries",
           "read_summary_meta", "summary_meta", "write_summary"]
