"""Only the optional C accelerator of capture.pcapfast; all metadata lives in pyproject.toml.

``capture._fastloop`` is built when a C compiler and the Python headers are available
(``pip install -e .`` compiles it in place); if the build fails, the install still succeeds and
``capture.pcapfast`` uses its pure-Python loop.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("capture._fastloop", ["capture/_fastloop.c"], optional=True),
    ],
)
