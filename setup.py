"""The optional C accelerator of capture.pcapfast, and the commit the package is built from;
all other metadata lives in pyproject.toml.

``capture._fastloop`` is built when a C compiler and the Python headers are available
(``pip install -e .`` compiles it in place); if the build fails, the install still succeeds and
``capture.pcapfast`` uses its pure-Python loop.

A wheel or sdist built from a git checkout carries ``segmenter/_build_info.json`` (the commit,
and whether tracked files differed from it), so that ``segmenter --version`` and the evidence
report name the commit of an installed package too (``segmenter/version.py``).
"""

import importlib.util
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

ROOT = Path(__file__).resolve().parent


def _write_build_file(package_dir: Path) -> None:
    # segmenter/version.py by path: importing the package would need its dependencies.
    spec = importlib.util.spec_from_file_location("_segmenter_version",
                                                  ROOT / "segmenter" / "version.py")
    if spec is None or spec.loader is None:
        raise RuntimeError("segmenter/version.py not found beside setup.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    # Outside a git checkout (building from an sdist) the sdist's own file was copied as
    # package data and stays.
    module.write_build_file(package_dir, ROOT)


class BuildPyWithCommit(build_py):
    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "segmenter"
        if not self.dry_run and target.is_dir():
            _write_build_file(target)


class SdistWithCommit(sdist):
    def make_release_tree(self, base_dir: str, files: list[str]) -> None:
        super().make_release_tree(base_dir, files)
        _write_build_file(Path(base_dir) / "segmenter")


setup(
    ext_modules=[
        Extension(
            "capture._fastloop",
            ["capture/_fastloop.c", "capture/_fastflows.c", "capture/_fastparse.c",
             "capture/_fastwrite.c"],
            depends=["capture/_fastloop.h"],
            optional=True,
        ),
    ],
    cmdclass={"build_py": BuildPyWithCommit, "sdist": SdistWithCommit},
)
