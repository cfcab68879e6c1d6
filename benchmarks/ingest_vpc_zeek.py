"""Flow-log ingest throughput and peak memory: AWS VPC Flow Logs and Zeek conn.log.

Generates, with a fixed seed:

* an AWS VPC flow log of ``--records`` records (default 1,000,000) in a custom version-5 format
  with its header line: connections between pods on two node interfaces, each reported in both
  directions at both interfaces (4 records per connection and window), some over two windows,
  with tcp-flags, pkt-srcaddr / pkt-dstaddr and a few NODATA records;
* a Zeek conn.log of as many connections, TSV with its header (and the same as JSON lines with
  ``--json``).

Each measurement runs in a fresh subprocess (so that its peak memory, the maximum resident set
size, is its own; its speed is CPU time, so that other load on the machine does not skew the
ratio) and is printed with its ratio to a baseline measured in the same run on the same
file: a plain parse that folds nothing (``csv.reader`` splitting every line into fields;
``json.loads`` per line for JSON). Ours is ``capture.ingest.ingest`` end to end -- detect, read,
fold into connections, sort and write the flow file (to /dev/null).

    .venv/bin/python benchmarks/ingest_vpc_zeek.py             # 1M records each
    .venv/bin/python benchmarks/ingest_vpc_zeek.py --records 200000 --json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

AWS_HEADER = ("version account-id interface-id srcaddr dstaddr srcport dstport protocol "
              "packets bytes start end action log-status tcp-flags type pkt-srcaddr pkt-dstaddr "
              "flow-direction")
ZEEK_FIELDS = ("ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto",
               "service", "duration", "orig_bytes", "resp_bytes", "conn_state", "local_orig",
               "local_resp", "missed_bytes", "history", "orig_pkts", "orig_ip_bytes",
               "resp_pkts", "resp_ip_bytes", "tunnel_parents")
SERVICES = [(5432, 6), (6379, 6), (8080, 6), (443, 6), (53, 17), (9092, 6), (3306, 6)]
T0 = 1_700_000_000


def _pod(rng: random.Random, subnet: int) -> str:
    return f"10.{subnet}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def make_aws(path: Path, records: int, seed: int = 1) -> int:
    """Write the AWS flow log; return the number of distinct connections."""
    rng = random.Random(seed)
    lines = [AWS_HEADER]
    conns = 0
    n = 0
    while n < records:
        client, server = _pod(rng, 1), _pod(rng, 2)
        cport = rng.randrange(32768, 61000)
        sport, proto = rng.choice(SERVICES)
        node_c, node_s = f"192.168.1.{rng.randrange(1, 60)}", f"192.168.2.{rng.randrange(1, 60)}"
        eni_c, eni_s = f"eni-c{rng.randrange(60):015x}", f"eni-s{rng.randrange(60):015x}"
        windows = 2 if rng.random() < 0.2 else 1
        conns += 1
        for w in range(windows):
            start = T0 + rng.randrange(3600) + 60 * w
            end = start + rng.randrange(1, 59)
            p1, p2 = rng.randrange(1, 40), rng.randrange(1, 40)
            b1, b2 = p1 * rng.randrange(60, 1400), p2 * rng.randrange(60, 1400)
            f1, f2 = (3, 19) if (proto == 6 and w == 0) else (0, 0)
            for eni, d1, d2 in ((eni_c, "egress", "ingress"), (eni_s, "ingress", "egress")):
                lines.append(f"5 123456789012 {eni} {node_c} {node_s} {cport} {sport} {proto} "
                             f"{p1} {b1} {start} {end} ACCEPT OK {f1} IPv4 {client} {server} "
                             f"{d1}")
                lines.append(f"5 123456789012 {eni} {node_s} {node_c} {sport} {cport} {proto} "
                             f"{p2} {b2} {start} {end} ACCEPT OK {f2} IPv4 {server} {client} "
                             f"{d2}")
                n += 2
        if rng.random() < 0.01:
            lines.append(f"5 123456789012 {eni_c} - - - - - - - {T0} {T0 + 60} - NODATA - - - "
                         "- -")
            n += 1
        if len(lines) > 100_000:
            _append(path, lines)
            lines = []
    _append(path, lines)
    return conns


def _append(path: Path, lines: list[str]) -> None:
    with path.open("a") as f:
        f.write("\n".join(lines) + "\n")


def _zeek_rows(records: int, seed: int = 2) -> list[list[object]]:
    rng = random.Random(seed)
    rows: list[list[object]] = []
    for n in range(records):
        sport, proto = rng.choice(SERVICES)
        tcp = proto == 6
        op, rp = rng.randrange(1, 40), rng.randrange(1, 40)
        rows.append([
            T0 + n * 0.003, f"C{n:017x}", _pod(rng, 1), rng.randrange(32768, 61000),
            _pod(rng, 2), sport, "tcp" if tcp else "udp", "-" if tcp else "dns",
            round(rng.random() * 3, 6), op * 100, rp * 300, "SF", "T", "T", 0,
            "ShADadFf" if tcp else "Dd", op, op * 140, rp, rp * 340, "-",
        ])
    return rows


def make_zeek_tsv(path: Path, records: int) -> None:
    head = ["#separator \\x09", "#set_separator\t,", "#empty_field\t(empty)",
            "#unset_field\t-", "#path\tconn", "#open\t2023-11-14-22-13-20",
            "#fields\t" + "\t".join(ZEEK_FIELDS)]
    body = ["\t".join(map(str, row)) for row in _zeek_rows(records)]
    path.write_text("\n".join([*head, *body, "#close\t2023-11-14-23-13-20"]) + "\n")


def make_zeek_json(path: Path, records: int) -> None:
    with path.open("w") as f:
        for row in _zeek_rows(records):
            obj = {k: v for k, v in zip(ZEEK_FIELDS, row, strict=True) if v != "-"}
            f.write(json.dumps(obj) + "\n")


# -- measurements (each in its own process) ----------------------------------------------------

def _measure(kind: str, path: str) -> dict[str, float]:
    # CPU time of this process, not wall time: the ratio should not depend on what else the
    # machine runs meanwhile (the process does no waiting but for its own reads).
    start = time.process_time()
    if kind == "ingest":
        from capture.ingest import ingest

        stats = ingest([path], os.devnull)
        count = stats.flows
    elif kind in ("csv-space", "csv-tab"):
        count = 0
        with open(path, newline="") as f:
            for row in csv.reader(f, delimiter=" " if kind == "csv-space" else "\t"):
                if row and not row[0].startswith("#"):
                    count += 1
    elif kind == "json-lines":
        count = 0
        with open(path) as f:
            for line in f:
                json.loads(line)
                count += 1
    else:
        raise SystemExit(f"unknown measurement {kind}")
    seconds = time.process_time() - start
    return {"seconds": seconds, "count": count, "peak_mib": _peak_kib() / 1024}


def _peak_kib() -> int:
    """This process's peak resident set size. (getrusage's ru_maxrss is not used: on Linux it
    keeps the high-water mark of the process before its exec, here the parent's.)"""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _run(kind: str, path: Path) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--measure", kind, str(path)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def _report(title: str, path: Path, records: int, baseline: str, per: int) -> None:
    base = _run(baseline, path)
    ours = _run("ingest", path)
    size = path.stat().st_size / (1 << 20)
    print(f"\n{title}: {records:,} records, {per:,} distinct connections, {size:,.0f} MiB")
    print(f"  {'':34} {'records/s':>12} {'CPU s':>8} {'peak MiB':>9}")
    for name, m in ((f"baseline ({baseline}, folds nothing)", base),
                    (f"capture ingest ({ours['count']:,.0f} flows)", ours)):
        print(f"  {name:34} {records / m['seconds']:>12,.0f} {m['seconds']:>8.2f} "
              f"{m['peak_mib']:>9.0f}")
    print(f"  ratio ingest / baseline: time x{ours['seconds'] / base['seconds']:.2f}, "
          f"records/s x{base['seconds'] / ours['seconds']:.2f}, "
          f"peak memory x{ours['peak_mib'] / base['peak_mib']:.2f}")
    if per:
        grown = (ours["peak_mib"] - base["peak_mib"]) * (1 << 20) / per
        print(f"  peak memory above the baseline: {grown:,.0f} bytes per distinct connection")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--json", action="store_true", help="also Zeek's JSON form")
    parser.add_argument("--measure", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(_measure(*args.measure)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        aws = Path(tmp) / "vpc-flows.log"
        conns = make_aws(aws, args.records)
        records = sum(1 for _ in aws.open()) - 1
        _report("AWS VPC flow log (v5 custom format)", aws, records, "csv-space", conns)
        aws.unlink()
        zeek = Path(tmp) / "conn.log"
        make_zeek_tsv(zeek, args.records)
        _report("Zeek conn.log (TSV)", zeek, args.records, "csv-tab", args.records)
        zeek.unlink()
        if args.json:
            zeek_json = Path(tmp) / "conn.json"
            make_zeek_json(zeek_json, args.records)
            _report("Zeek conn.log (JSON)", zeek_json, args.records, "json-lines",
                    args.records)


if __name__ == "__main__":
    main()
