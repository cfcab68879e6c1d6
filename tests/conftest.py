"""Shared options and fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CORPORA = SHARED / "corpora"
SAMPLE = REPO / "sample"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true",
                     help="rewrite tests/golden/*/expected from the current output")


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``make demo``'s run, built through the pipeline once for the session; tests read it
    (or copy from it) and never write into it."""
    from segmenter import pipeline

    out = tmp_path_factory.mktemp("demo") / "output"
    pipeline.run([str(SAMPLE / "shop.pcapng")], [str(SAMPLE / "shop-inventory.json")], out,
                 config=str(SAMPLE / "segmenter.yaml"))
    return out
