"""The one compiled part: the content-defined chunk scan that runs without the GIL
(src/strongroom/chunking/_gearcut.c).  Optional: where it cannot be built (no compiler or
Python headers), strongroom uses fastcdc-py's own scan, which finds the same cuts holding
the GIL (strongroom/chunking/cdc.py).  Everything else is in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "strongroom.chunking._gearcut",
            ["src/strongroom/chunking/_gearcut.c"],
            extra_compile_args=["-O3"],
            optional=True,
        )
    ]
)
