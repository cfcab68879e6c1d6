"""``segmenter run`` never deletes or replaces what it did not write (issue 12, item 8).

Reproduction: run replaced its target folders whole, silently deleting a user's file in
``output/kubernetes/``. Now every file it writes is recorded in ``.segmenter-run.json`` with
its SHA-256, and a file at one of its paths that it did not write, or that changed since, is
refused before anything is written.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from segmenter import pipeline
from segmenter.cli import main
from segmenter.errors import InputError
from segmenter.targets import target_names
from tests.conftest import REPO

SAMPLE = REPO / "sample"
RUN = [str(SAMPLE / "shop.pcapng"), "--inventory", str(SAMPLE / "shop-inventory.json"),
       "--config", str(SAMPLE / "segmenter.yaml")]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run") / "output"
    assert main(["run", *RUN, "-o", str(out)]) == 0
    return out


@pytest.fixture
def output(first_run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "output"
    shutil.copytree(first_run, copy)
    return copy


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_manifest_lists_every_file_run_wrote_with_its_digest(first_run: Path) -> None:
    manifest = json.loads((first_run / pipeline.RUN_MANIFEST).read_text())
    assert manifest["format"] == "segmenter-run"
    written = {rel for rel in _files(first_run) if rel != pipeline.RUN_MANIFEST}
    assert set(manifest["files"]) == written
    assert {"flows.jsonl", "graph.json", "plan.json", "graph.png"} <= written
    for target in target_names():
        assert f"{target}/kustomization.yaml" in written
    for rel, digest in manifest["files"].items():
        assert hashlib.sha256((first_run / rel).read_bytes()).hexdigest() == digest


def test_a_second_run_into_its_own_folder_succeeds(output: Path) -> None:
    before = _files(output)
    assert main(["run", *RUN, "-o", str(output)]) == 0
    assert _files(output) == before  # deterministic, manifest included


def test_a_file_run_did_not_write_is_refused_and_kept(
        output: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mine = output / "kubernetes" / "payments" / "my-extra-policy.yaml"
    mine.write_text("# hand-written, not segmenter's\n")
    before = _files(output)
    assert main(["run", *RUN, "-o", str(output)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(mine) in err[0] and "was not written by segmenter run" in err[0]
    assert "--force" in err[0]
    assert _files(output) == before  # nothing written, nothing lost
    # --force replaces the folder whole: the file is gone, and the manifest no longer lists it.
    assert main(["run", *RUN, "-o", str(output), "--force"]) == 0
    assert not mine.exists()
    assert "kubernetes/payments/my-extra-policy.yaml" not in json.loads(
        (output / pipeline.RUN_MANIFEST).read_text())["files"]


def test_a_file_changed_since_run_wrote_it_is_refused(
        output: Path, capsys: pytest.CaptureFixture[str]) -> None:
    edited = output / "calico" / "20-payments" / "default-deny.yaml"
    edited.write_text(edited.read_text() + "# reviewed by the security team\n")
    assert main(["run", *RUN, "-o", str(output)]) == 2
    err = capsys.readouterr().err
    assert str(edited) in err and "changed since segmenter run wrote it" in err
    assert edited.read_text().endswith("# reviewed by the security team\n")


def test_a_folder_that_run_never_wrote_into_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "flows.jsonl").write_text("my own notes\n")
    assert main(["run", *RUN, "-o", str(tmp_path)]) == 2
    assert f"{tmp_path / 'flows.jsonl'}: was not written by segmenter run" in \
        capsys.readouterr().err
    assert (tmp_path / "flows.jsonl").read_text() == "my own notes\n"


def test_files_run_never_touches_are_left_alone(output: Path) -> None:
    """A README, a report folder, apply's backups: run neither replaces nor deletes them."""
    (output / "README.md").write_text("# my notes\n")
    (output / "report" / "calico").mkdir(parents=True)
    (output / "report" / "calico" / "report.md").write_text("evidence\n")
    assert main(["run", *RUN, "-o", str(output)]) == 0
    assert (output / "README.md").read_text() == "# my notes\n"
    assert (output / "report" / "calico" / "report.md").read_text() == "evidence\n"


def test_a_damaged_manifest_is_refused(output: Path) -> None:
    (output / pipeline.RUN_MANIFEST).write_text("{not json")
    with pytest.raises(InputError, match="unreadable record of a previous run"):
        pipeline.check_run_folder(output, list(pipeline.TARGETS.values()))


def test_make_demo_works_from_a_fresh_clone_twice(tmp_path: Path) -> None:
    """The repository's output/ (README.md and .gitignore, committed) receives run and one
    report per target, as `make demo` does; a second demo succeeds on the first's files."""
    committed = subprocess.run(["git", "ls-files", "output"], cwd=REPO, capture_output=True,
                               text=True, check=False).stdout.split()
    if not committed:
        pytest.skip("not a git checkout: no committed output/ to start from")
    out = tmp_path / "output"
    out.mkdir()
    for rel in committed:
        shutil.copy(REPO / rel, tmp_path / rel)
    for _ in range(2):
        assert main(["run", *RUN, "-o", str(out)]) == 0
        for target in target_names():
            assert main(["report", "--graph", str(out / "graph.json"), "--plan",
                         str(out / "plan.json"), "--policies", str(out / target),
                         "--enforcement", target, "--flows", str(out / "flows.jsonl"),
                         "--inventory", str(SAMPLE / "shop-inventory.json"),
                         "-o", str(out / "report" / target)]) == 0
    for rel in committed:
        assert (tmp_path / rel).read_bytes() == (REPO / rel).read_bytes()
