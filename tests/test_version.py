"""``segmenter --version``: the version and the commit, from a checkout and from an installed
wheel (which has no git to ask)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from segmenter.cli import main
from segmenter.version import BUILD_INFO, BuildInfo, build_info, git_commit

REPO = Path(__file__).resolve().parents[1]
COMMIT = re.compile(r"[0-9a-f]{40}")


def test_version_names_the_commit_of_this_checkout(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["--version"])
    assert stopped.value.code == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith(f"segmenter {build_info().version} (commit ")
    found = git_commit(REPO)
    if found is None:
        pytest.skip("the tests do not run from a git checkout")
    assert found[0] in out and "git checkout" in out
    assert ("uncommitted changes" in out) == found[1]


def test_unknown_commit_is_said_not_guessed() -> None:
    info = BuildInfo("1.2.3")
    assert info.describe() == "1.2.3 (commit unknown: not built from a git checkout)"
    assert info.as_dict() == {"version": "1.2.3", "commit": None, "dirty": False,
                              "commit_from": None}


def test_an_installed_wheel_knows_its_commit_without_git(tmp_path: Path) -> None:
    """The wheel built from this checkout carries the commit; unpacked outside any git work
    tree (as site-packages is), ``--version`` still names it."""
    if git_commit(REPO) is None:
        pytest.skip("the tests do not run from a git checkout: no commit to record")
    source = tmp_path / "src"
    # A copy of what the build reads, so that the build leaves nothing in the checkout.
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md", "LICENSE"):
        shutil.copy(REPO / name, source / name)
    for package in ("segmenter", "capture"):
        shutil.copytree(REPO / package, source / package,
                        ignore=shutil.ignore_patterns("__pycache__", "*.so", BUILD_INFO))
    # git reads the checkout's repository and work tree wherever it is asked from.
    git_env = {**os.environ, "GIT_DIR": _git_dir(), "GIT_WORK_TREE": str(REPO)}
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
         "-q", "-w", str(tmp_path / "dist")], capture_output=True, text=True, timeout=300,
        env=git_env, check=False)
    if built.returncode != 0 and "No module named pip" in built.stderr:
        pytest.skip("pip is not installed in this interpreter")
    assert built.returncode == 0, built.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("segmenter-*.whl"))
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
        recorded = json.loads(archive.read(f"segmenter/{BUILD_INFO}"))
        # The report's semantics note travels with the package (it is printed in every report).
        assert "segmenter/views/report/semantics.md" in archive.namelist()
    assert recorded["commit"] == git_commit(REPO)[0]  # type: ignore[index]
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env["PYTHONPATH"] = str(site)
    run = subprocess.run([sys.executable, "-c", "from segmenter.cli import main; main()",
                          "--version"], capture_output=True, text=True, cwd=tmp_path, env=env,
                         timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    assert f"(commit {recorded['commit']}, build" in run.stdout
    assert COMMIT.search(run.stdout)


def _git_dir() -> str:
    done = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--absolute-git-dir"],
                          capture_output=True, text=True, check=True)
    return done.stdout.strip()
