"""The distribution fairing is installed as, and what may be installed beside it.

- :data:`DISTRIBUTION` is the name on PyPI (``pip install fairing-ml``); the import name
  stays ``fairing``. PyPI's ``fairing`` is Kubeflow's own 2019 package (0.5.3), which owns
  the same ``fairing/`` directory: installed into the same site-packages, one overwrites
  the other's files and uninstalling either deletes the other's. :func:`conflict` says so,
  and ``import fairing`` raises it as :class:`~fairing.errors.ConflictingInstallError`.
- ``kubeflow.fairing`` (Kubeflow Fairing's import path) is a namespace portion. The
  Kubeflow SDK (PyPI ``kubeflow``) ships a regular ``kubeflow/__init__.py``; when the two
  are installed in different ``sys.path`` entries (a ``--user`` install over an image's
  SDK, or the reverse), that regular package hides the portion. The top-level module
  ``_fairing_kubeflow`` (a finder last on ``sys.meta_path``) finds it then; the
  ``fairing-ml.pth`` file installs that finder at interpreter start (in site directories:
  a ``--target`` directory on ``PYTHONPATH`` gets it once ``fairing`` is imported).
"""

from __future__ import annotations

import os
from typing import Optional

__all__ = ["DISTRIBUTION", "conflict", "extra"]

#: The name to ``pip install``.
DISTRIBUTION = "fairing-ml"
#: Kubeflow's old distribution that owns the same ``fairing/`` directory.
KUBEFLOW_DISTRIBUTION = "fairing"
#: A file only Kubeflow's ``fairing`` has (0.5.x; this project never had a fairing/constants).
_KUBEFLOW_FILE = "fairing/constants/constants.py"

_HERE = os.path.dirname(os.path.abspath(__file__))


def extra(name: str) -> str:
    """The shell words that install extra ``name``: ``pip install 'fairing-ml[docker]'``."""
    return f"pip install '{DISTRIBUTION}[{name}]'"


def _old_fairing(site_dir: str) -> Optional[str]:
    """The metadata directory of Kubeflow's ``fairing`` distribution in ``site_dir``, if any."""
    from importlib import metadata

    for dist in metadata.distributions(path=[site_dir]):
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        # by its files, not only its name: this project was itself called 'fairing' before it
        # was fairing-ml, and an old editable install of it (a fairing.egg-info in a checkout,
        # 0.1.0) is no conflict; Kubeflow's has its fairing/constants/constants.py
        if name == KUBEFLOW_DISTRIBUTION and any(
                str(f).replace(os.sep, "/") == _KUBEFLOW_FILE for f in (dist.files or ())):
            return f"{name} {dist.version}" + (f" ({dist._path})" if hasattr(dist, "_path") else "")  # type: ignore[attr-defined]
    return None


def conflict() -> Optional[str]:
    """What is wrong when Kubeflow's ``fairing`` distribution shares this ``fairing/``
    directory's site-packages, else None (checked only there: one directory's metadata, a
    few ms, and only when a ``fairing-*`` metadata directory is in it)."""
    site_dir = os.path.dirname(_HERE)
    try:
        names = os.listdir(site_dir)
    except OSError:
        return None
    if not any(n.lower().startswith(("fairing-", "fairing.")) and n.endswith((".dist-info", ".egg-info"))
               for n in names):
        return None  # a checkout, or only this distribution (fairing_ml-*.dist-info)
    found = _old_fairing(site_dir)
    if not found:
        return None
    return (f"Kubeflow's old 'fairing' package ({found}) is installed in {site_dir}, where this fairing "
            f"({DISTRIBUTION}) is too: both own the fairing/ directory, so their files are mixed and removing "
            f"either deletes the other's. Fix: pip uninstall -y fairing {DISTRIBUTION} && pip install {DISTRIBUTION} "
            "(fairing-ml runs Kubeflow Fairing's code through 'from kubeflow import fairing').")
