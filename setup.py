"""Only what pyproject.toml cannot say: ``fairing-ml.pth`` goes to the top of the wheel
(site-packages), so that ``import kubeflow.fairing`` works beside the Kubeflow SDK's
regular ``kubeflow`` package (see _fairing_kubeflow.py). Everything else is in pyproject.toml."""

import os

from setuptools import setup
from setuptools.command.build_py import build_py

PTH = "fairing-ml.pth"


class BuildWithPth(build_py):
    def run(self):
        super().run()
        self.copy_file(PTH, os.path.join(self.build_lib, PTH), preserve_mode=0)

    def get_outputs(self, include_bytecode=1):
        return [*super().get_outputs(include_bytecode), os.path.join(self.build_lib, PTH)]


setup(cmdclass={"build_py": BuildWithPth})
