"""Only the optional C accelerators of capture.pcapfast and capture.sources.hubble_fast; all
metadata lives in pyproject.toml.

``capture._fastloop`` and ``capture._jsonlines`` are built when a C compiler and the Python
headers are available (``pip install -e .`` compiles them in place); if a build fails, the
install still succeeds: ``capture.pcapfast`` uses its pure-Python loop, and the Hubble source
reads its lines one by one.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("capture._fastloop", ["capture/_fastloop.c"], optional=True),
        Extension("capture._jsonlines", ["capture/_jsonlines.c"], optional=True),
    ],
)
