"""Kubeflow Fairing 1.0.2's AppendBuilder, driven by bench_builders.py from its own venv.

Runs as a long-lived worker (as a notebook keeps Kubeflow Fairing imported: its import
takes seconds and is not counted): one JSON request per line on stdin
(``{"dir": ..., "registry": "localhost:PORT/bench", "image": ..., "base": ...}``), one
JSON answer per line on stdout (``{"ok": true}`` or the error). Its logging goes to stderr.
"""

import json
import logging
import os
import sys
import warnings

warnings.simplefilter("ignore")
logging.basicConfig(stream=sys.stderr, level=logging.ERROR)  # a script, not the library

from kubeflow.fairing.builders.append.append import AppendBuilder  # noqa: E402
from kubeflow.fairing.preprocessors.base import BasePreProcessor  # noqa: E402

print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    req = json.loads(line)
    try:
        os.chdir(req["dir"])
        files = sorted(os.path.relpath(os.path.join(d, f), ".") for d, _dirs, fs in os.walk(".") for f in fs)
        pre = BasePreProcessor(input_files=files, executable="main.py", path_prefix="/app")
        builder = AppendBuilder(registry=req["registry"], image_name=req["image"], base_image=req["base"],
                                preprocessor=pre)
        builder.build()
        print(json.dumps({"ok": True, "image": builder.image_tag}), flush=True)
    except Exception as exc:  # reported to the harness
        print(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"}), flush=True)
