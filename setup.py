"""Only for the start-up hook: everything else is in pyproject.toml.

`otel_bridge.pth` must sit at the top of site-packages, the one place Python runs code from
before `opentelemetry-instrument` imports `opentelemetry.propagate` (which exits on an unknown
name in OTEL_PROPAGATORS). setuptools has no declarative way to put a file there.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

PTH = Path("otel_bridge") / "propagation" / "otel_bridge.pth"


class BuildPyWithPth(build_py):
    def run(self) -> None:
        super().run()
        shutil.copyfile(PTH, Path(self.build_lib) / PTH.name)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return [*super().get_outputs(include_bytecode), str(Path(self.build_lib) / PTH.name)]


setup(cmdclass={"build_py": BuildPyWithPth})
