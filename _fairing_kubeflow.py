"""Makes ``import kubeflow.fairing`` work beside the Kubeflow SDK, however the two are installed.

fairing-ml's ``kubeflow/fairing`` is a namespace portion; the Kubeflow SDK (PyPI
``kubeflow``) ships a regular ``kubeflow/__init__.py``. In one site-packages the portion
lands inside the SDK's package and imports as usual; in different ``sys.path`` entries
(``pip install --user`` over an image's SDK, or the reverse) the regular package hides it.
:class:`Finder`, last on ``sys.meta_path``, finds ``kubeflow.fairing`` then, and only then:
whenever the usual import finds it, that import wins.

Installed at interpreter start by ``fairing-ml.pth`` (site directories process ``.pth``
files), and by ``import fairing`` (for a ``--target`` directory on ``PYTHONPATH``). A
top-level module of the standard library only, so that the ``.pth`` costs well under a
millisecond and never imports fairing.
"""

import importlib.abc
import importlib.util
import os
import sys

#: This distribution's portion, beside this module in its site directory (or checkout).
PORTION = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kubeflow", "fairing")


class Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname != "kubeflow.fairing" or not os.path.isfile(os.path.join(PORTION, "__init__.py")):
            return None  # its submodules come through the __path__ of the package found here
        return importlib.util.spec_from_file_location(fullname, os.path.join(PORTION, "__init__.py"),
                                                      submodule_search_locations=[PORTION])


def install():
    """Put :class:`Finder` last on ``sys.meta_path``, once."""
    if not any(type(f).__name__ == "Finder" and type(f).__module__ == __name__ for f in sys.meta_path):
        sys.meta_path.append(Finder())


install()
