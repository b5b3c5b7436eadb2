"""The notebooks the notebook tests make: the README flow with every construct the
conversion must keep, and small jobs that stream, fail or run until interrupted."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat

LOCAL_SETUP = ("import fairing\nfrom fairing import config\n\nconfig.set_backend('local')\n"
               "config.set_preprocessor('notebook', allow_shell=True)\nconfig.set_options(timeout=600)")


def cluster_setup(*, base_image: str, registry: str, namespace: str, kubeconfig: str) -> str:
    """The README flow's first cell for the Kubernetes cluster (append builder, Job deployer)."""
    return ("import fairing\nfrom fairing import config\n\n"
            f"config.set_builder('append', base_image={base_image!r}, registry={registry!r}, insecure=True)\n"
            f"config.set_deployer('job', namespace={namespace!r}, kubeconfig={kubeconfig!r})\n"
            "config.set_preprocessor('notebook', allow_shell=True)\nconfig.set_options(timeout=900)")


def readme_flow(setup: str = LOCAL_SETUP) -> list[str]:
    """The README flow; every cell prints ``RESULT`` lines, and the job must print the same."""
    return [
        setup,
        "%matplotlib inline",
        "%%writefile helper.py\ndef double(x):\n    return 2 * x\n",
        "import helper\nprint('RESULT helper', helper.double(21))",
        "%%time\ntotal = sum(range(1000))\nprint('RESULT total', total)",
        "!echo RESULT shell {total}",
        'text = """\n!this line is not a shell escape\n%neither is this a magic\n"""\nprint("RESULT text", repr(text))',
        "def train(C=1.0):\n    print(f'training with C={C}')\n    return round(C * 3, 2)",
        "remote_train = config.fn(train)\nscore = remote_train(C=0.5)\nprint('RESULT score', score)",
        "result = config.run()\nprint('RESULT run', result)",
        "config = {'C': 0.5, 'name': 'a user variable named config'}\nprint('RESULT config', config)",
    ]


README_FLOW = readme_flow()
RUN_CELL = README_FLOW.index("result = config.run()\nprint('RESULT run', result)")
#: What the flow prints, in the kernel and in the job alike.
README_RESULTS = [
    "RESULT helper 42", "RESULT total 499500", "RESULT shell 499500",
    "RESULT text '\\n!this line is not a shell escape\\n%neither is this a magic\\n'",
    "RESULT score 1.5", "RESULT run None", "RESULT config {'C': 0.5, 'name': 'a user variable named config'}",
]

#: A job that prints while it runs: logs must appear before it ends, the bar must redraw live.
STREAMING = [
    "import fairing\n\n@fairing.train(backend='local', timeout=300)\ndef stream(n):\n"
    "    import sys, time\n    for i in range(n):\n        print(f'step {i} of {n}', flush=True)\n        time.sleep(1)\n"
    "    for p in range(0, 101, 25):\n        sys.stdout.write(f'\\rprogress {p}%'); sys.stdout.flush(); time.sleep(0.5)\n"
    "    print()\n    return n",
    "value = stream(6)\nprint('RESULT value', value)",
]

#: A job that fails: the error box must name the cause.
FAILING = [
    "import fairing\n\n@fairing.train(backend='local', timeout=300)\ndef broken():\n"
    "    print('loading the data')\n    raise ValueError('the column \"price\" is missing from the data')",
    "broken()",
]

#: A job that runs until the kernel is interrupted; it records its pid so the test can check it is gone.
INTERRUPTED = [
    "import fairing\n\n@fairing.train(backend='local', timeout=600)\ndef forever(pid_file):\n"
    "    import os, time\n    open(pid_file, 'w').write(str(os.getpid()))\n    print('started', flush=True)\n"
    "    while True:\n        time.sleep(0.5)",
    "forever(PID_FILE)",
]


def write_notebook(path: Path, cells: list[str]) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))
    return path


def result_lines(text: str) -> list[str]:
    return [line.rstrip("\r") for line in re.findall(r"^RESULT .*$", text, flags=re.M)]


def stream_text(cell) -> str:
    """What a cell of an executed notebook printed."""
    return "".join("".join(o.get("text", "")) for o in cell.get("outputs", []) if o["output_type"] == "stream")


def display_text(cell) -> str:
    """The text of a cell's displays (fairing's status line and job log are displays)."""
    return "\n".join("".join(o["data"].get("text/plain", "")) for o in cell.get("outputs", [])
                     if o["output_type"] in ("display_data", "execute_result"))
