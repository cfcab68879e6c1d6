"""Graph summaries beyond one machine (segmenter.graph.summaries): per-node, per-window summaries
merge in any order into the summary of all the flows; written as Parquet, the DuckDB engine and
the in-process merge give the graph of all the flows; the CLI writes and reads them, and refuses
bad files in one line.

Traffic comes from ``tests/traffic.py`` (a generated day with IP reuse and flow records of every
source); the flows are dealt to simulated capture nodes at random.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segmenter import pipeline
from segmenter.cli import main
from segmenter.errors import InputError, SegmenterError
from segmenter.graph.build import build_graph
from segmenter.graph.fold import GraphFold, GraphSummary
from segmenter.graph.io import graph_to_dict
from segmenter.graph.summaries import _edge_rows, summary_meta, write_summary
from segmenter.model import Flow, Inventory
from tests.traffic import Generated, generated_traffic, write_flows

pytest.importorskip("pyarrow", reason="pyarrow (segmenter[scale]) is not installed")

WINDOW = 3600


def _fold(flows: list[Flow], made: Generated, window: int | None = WINDOW) -> GraphSummary:
    fold = GraphFold(made.inventory, made.dns, window=window)
    fold.add(flows)
    return fold.summary


def _canonical(summary: GraphSummary) -> tuple[Any, Any]:
    return summary_meta(summary, (), "all"), _edge_rows(summary, "all")


def _deal(flows: list[Flow], nodes: int, rng: random.Random) -> list[list[Flow]]:
    parts: list[list[Flow]] = [[] for _ in range(nodes)]
    for flow in flows:
        parts[rng.randrange(nodes)].append(flow)
    return parts


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), nodes=st.integers(1, 6), order_seed=st.integers(0, 1000),
       window=st.sampled_from([60, 900, 3600, 86400]))
def test_summaries_merge_in_any_order_into_the_summary_of_all_flows(
        seed: int, nodes: int, order_seed: int, window: int) -> None:
    made = generated_traffic(seed, pods=60, flows=250)
    rng = random.Random(order_seed)
    whole = _fold(made.flows, made, window)
    parts = [_fold(part, made, window) for part in _deal(made.flows, nodes, rng)]
    rng.shuffle(parts)
    # merged one after the other...
    chained = GraphSummary(window)
    for part in parts:
        chained.merge(part)
    # ...and as a tree of pairs, in another order
    rng.shuffle(parts)
    level = parts
    while len(level) > 1:
        pairs = []
        for i in range(0, len(level) - 1, 2):
            merged = GraphSummary(window)
            merged.merge(level[i + 1])
            merged.merge(level[i])
            pairs.append(merged)
        if len(level) % 2:
            pairs.append(level[-1])
        level = pairs
    assert _canonical(chained) == _canonical(whole)
    assert _canonical(level[0]) == _canonical(whole)


def _graph_or_error(make: Any) -> Any:
    try:
        return graph_to_dict(make())
    except SegmenterError as exc:
        return f"{type(exc).__name__}: {exc}"


def _node_files(tmp_path: Path, made: Generated, nodes: int, seed: int) -> list[str]:
    paths = []
    for i, part in enumerate(_deal(made.flows, nodes, random.Random(seed))):
        path = tmp_path / f"node-{i:03d}.parquet"
        write_summary(path, _fold(part, made), made.dns, node=f"node-{i:03d}")
        paths.append(str(path))
    return paths


@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), nodes=st.integers(1, 8), variety=st.booleans())
def test_duckdb_and_in_process_merges_give_the_graph_of_all_flows(
        tmp_path_factory: pytest.TempPathFactory, seed: int, nodes: int, variety: bool) -> None:
    pytest.importorskip("duckdb", reason="duckdb (segmenter[scale]) is not installed")
    made = generated_traffic(seed, pods=60, flows=300, variety=variety)
    paths = _node_files(tmp_path_factory.mktemp("summaries"), made, nodes, seed)
    direct = _graph_or_error(lambda: build_graph(made.flows, made.inventory, made.dns))
    in_process = _graph_or_error(lambda: pipeline.graph_from_summaries(
        paths, made.inventory, engine="python"))
    duck = _graph_or_error(lambda: pipeline.graph_from_summaries(
        paths, made.inventory, engine="duckdb"))
    assert duck == in_process == direct
    if isinstance(direct, dict):
        assert direct["edges"], "the traffic makes edges"


def _inventory_file(tmp_path: Path, inventory: Inventory) -> str:
    from segmenter.cluster.cache import inventory_to_dict

    path = tmp_path / "inventory.json"
    path.write_text(json.dumps(inventory_to_dict(inventory)))
    return str(path)


def test_cli_summarize_then_graph_from_summaries_writes_the_graph_of_the_flows(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    made = generated_traffic(11, pods=60, flows=300, variety=False)
    inventory = _inventory_file(tmp_path, made.inventory)
    parts = _deal(made.flows, 3, random.Random(1))
    summaries = []
    for i, part in enumerate(parts):
        flows = write_flows(tmp_path / f"flows-{i}.jsonl", part, made.dns)
        out = tmp_path / f"node-{i}.parquet"
        assert main(["summarize", "--flows", str(flows), "--inventory", inventory,
                     "--node", f"node-{i}", "--window", "900", "-o", str(out)]) == 0
        assert f"wrote {out}: {len(part)} flows in " in capsys.readouterr().out
        summaries.append(str(out))
    everything = write_flows(tmp_path / "all.jsonl", made.flows, made.dns)
    assert main(["graph", "--flows", str(everything), "--inventory", inventory,
                 "-o", str(tmp_path / "from-flows.json")]) == 0
    for engine in ("duckdb", "python", "auto"):
        if engine == "duckdb":
            pytest.importorskip("duckdb", reason="duckdb (segmenter[scale]) is not installed")
        out = tmp_path / f"from-summaries-{engine}.json"
        assert main(["graph", "--summaries", *summaries, "--inventory", inventory,
                     "--engine", engine, "-o", str(out)]) == 0
        assert out.read_bytes() == (tmp_path / "from-flows.json").read_bytes()


def _cli_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    try:
        status = main(argv)
    except SystemExit as exited:  # argparse's own errors
        status = int(exited.code or 0)
    assert status == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


def test_bad_summary_files_are_one_line_errors(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    made = generated_traffic(5, pods=60, flows=100, variety=False)
    inventory = _inventory_file(tmp_path, made.inventory)
    good = tmp_path / "good.parquet"
    write_summary(good, _fold(made.flows, made), made.dns, node="n")
    text = tmp_path / "flows.parquet"
    text.write_text('{"not": "parquet"}\n')
    plain = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"a": [1]}), plain)
    other_window = tmp_path / "other-window.parquet"
    write_summary(other_window, _fold(made.flows, made, 60), made.dns, node="m")
    bad_meta = tmp_path / "bad-meta.parquet"
    table = pq.read_table(good)
    meta = json.loads(table.schema.metadata[b"segmenter.summary"])
    meta["blocked"] = [["only", "three", "fields"]]
    pq.write_table(table.replace_schema_metadata(
        {b"segmenter.summary": json.dumps(meta).encode()}), bad_meta)
    cases = {
        str(tmp_path / "missing.parquet"): "missing.parquet: no such file",
        str(text): "flows.parquet: not a Parquet file",
        str(plain): "plain.parquet: a Parquet file without segmenter.summary metadata",
        str(other_window): "summaries of different windows",
        str(bad_meta): "bad-meta.parquet (metadata: blocked): malformed summary",
        str(tmp_path): "is a directory",
    }
    for bad, expected in cases.items():
        for engine in ("python", "duckdb"):
            files = [str(good), bad] if bad == str(other_window) else [bad]
            err = _cli_error(["graph", "--summaries", *files, "--inventory", inventory,
                              "--engine", engine, "-o", str(tmp_path / "g.json")], capsys)
            if expected == "summaries of different windows":
                assert "a summary of 60 s windows, others of 3600 s" in err, err
            else:
                assert expected in err, err
    assert not (tmp_path / "g.json").exists()
    err = _cli_error(["graph", "--summaries", str(good), "-o", str(tmp_path / "g.json")], capsys)
    assert "--summaries needs --inventory" in err
    err = _cli_error(["summarize", "--flows", str(text), "--inventory", inventory, "--node", "n",
                      "--window", "0", "-o", str(tmp_path / "s.parquet")], capsys)
    assert "--window must be a positive number of seconds" in err
    assert not (tmp_path / "s.parquet").exists()


def test_a_summary_is_byte_identical_for_the_same_flows_in_any_order(tmp_path: Path) -> None:
    made = generated_traffic(8, pods=60, flows=200)
    shuffled = list(made.flows)
    random.Random(2).shuffle(shuffled)
    write_summary(tmp_path / "a.parquet", _fold(made.flows, made), made.dns, node="n")
    write_summary(tmp_path / "b.parquet", _fold(shuffled, made), list(reversed(made.dns)),
                  node="n")
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()


def test_no_summary_is_an_error() -> None:
    with pytest.raises(InputError, match="no graph summary given"):
        pipeline.graph_from_summaries([], Inventory())
