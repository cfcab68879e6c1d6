"""Which segmenter this is: its version and the commit it was built from (``segmenter
--version``, the evidence report's provenance).

The version is the installed distribution's (``importlib.metadata``: pyproject.toml's
``version``). The commit is found, in order:

1. ``segmenter/_build_info.json``, written into the package when a wheel or an sdist is built
   from a git checkout (``setup.py``'s ``build_py`` and ``sdist``): an installed package knows
   its commit without git;
2. the commit pip recorded when it installed from a VCS URL (``direct_url.json``, PEP 610:
   ``vcs_info.commit_id``);
3. the git checkout the package is imported from (an editable install, a source tree):
   ``git rev-parse HEAD``, marked ``dirty`` when tracked files differ from it.

None of them: the commit is unknown, and said so (never guessed).
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any, Final

DISTRIBUTION: Final = "segmenter"
BUILD_INFO: Final = "_build_info.json"  # beside this module, in a built package only
_PACKAGE_DIR: Final = Path(__file__).resolve().parent
_UNKNOWN_VERSION: Final = "0+unknown"


@dataclass(frozen=True)
class BuildInfo:
    """The version, and the commit (40 hex digits, "" when unknown) with where it came from."""

    version: str
    commit: str = ""
    dirty: bool = False  # tracked files differed from the commit (a checkout only)
    commit_from: str = ""  # "build", "pip", "git checkout"

    def describe(self) -> str:
        """``0.1.0 (commit 84cbb88..., git checkout, uncommitted changes)``."""
        if not self.commit:
            return f"{self.version} (commit unknown: not built from a git checkout)"
        extra = ", uncommitted changes" if self.dirty else ""
        return f"{self.version} (commit {self.commit}, {self.commit_from}{extra})"

    def as_dict(self) -> dict[str, Any]:
        return {"version": self.version, "commit": self.commit or None, "dirty": self.dirty,
                "commit_from": self.commit_from or None}


def _is_commit(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 40 and all(
        c in "0123456789abcdef" for c in value)


@cache
def package_version() -> str:
    """The installed distribution's version (no git: cheap enough for ``import segmenter``)."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return _UNKNOWN_VERSION


def _from_build_file(folder: Path) -> BuildInfo | None:
    try:
        data = json.loads((folder / BUILD_INFO).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not _is_commit(data.get("commit")):
        return None
    return BuildInfo("", str(data["commit"]), bool(data.get("dirty")), "build")


def _from_pip() -> BuildInfo | None:
    try:
        text = metadata.distribution(DISTRIBUTION).read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        return None
    try:
        data = json.loads(text or "")
    except ValueError:
        return None
    vcs = data.get("vcs_info") if isinstance(data, dict) else None
    commit = vcs.get("commit_id") if isinstance(vcs, dict) else None
    return BuildInfo("", str(commit), False, "pip") if _is_commit(commit) else None


def git_commit(folder: Path) -> tuple[str, bool] | None:
    """(HEAD commit, dirty) of the git work tree holding ``folder``; None outside one or without
    git. Dirty: a tracked file differs from HEAD (untracked files do not count)."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True,
                                  text=True, timeout=10, check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None or not _is_commit(commit):
        return None
    status = git("status", "--porcelain", "--untracked-files=no")
    return commit, bool(status)


def _from_git(folder: Path) -> BuildInfo | None:
    found = git_commit(folder)
    if found is None:
        return None
    return BuildInfo("", found[0], found[1], "git checkout")


@cache
def build_info() -> BuildInfo:
    """This segmenter's version and commit (computed once per process)."""
    version = package_version()
    for found in (_from_build_file(_PACKAGE_DIR), _from_pip(), _from_git(_PACKAGE_DIR)):
        if found is not None:
            return BuildInfo(version, found.commit, found.dirty, found.commit_from)
    return BuildInfo(version)


def write_build_file(package_dir: Path, source_dir: Path) -> bool:
    """Record the commit of the git checkout ``source_dir`` in ``package_dir``'s build file
    (for setup.py); False when ``source_dir`` is not a git checkout (nothing written)."""
    found = git_commit(source_dir)
    if found is None:
        return False
    (package_dir / BUILD_INFO).write_text(
        json.dumps({"commit": found[0], "dirty": found[1]}, sort_keys=True) + "\n",
        encoding="utf-8")
    return True


__all__ = ["BUILD_INFO", "BuildInfo", "build_info", "git_commit", "package_version",
           "write_build_file"]
