"""The README's command-line block, executed exactly as written."""

import os
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _cli_block() -> str:
    readme = (REPO / "README.md").read_text()
    match = re.search(r"<!-- cli-usage[^>]*-->\n```sh\n(.*?)```", readme, re.S)
    assert match, "README.md has no cli-usage block"
    return match.group(1)


def test_readme_cli_block_runs_as_written(tmp_path):
    cache = tmp_path / "cache"
    env = {**os.environ, "XDG_CACHE_HOME": str(cache), "TMPDIR": str(tmp_path),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", _cli_block()], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    # the run, the followed log, the attached log and the kept log each show the accuracy
    assert proc.stdout.count("test accuracy: ") == 4, proc.stdout
    assert re.search(r"^job-\S+\s+local\s+local\s+(Running|Succeeded)\s+\S+\s+\S*train_sklearn.py", proc.stdout, re.M)
    assert "deleted job-" in proc.stderr
    assert not list((cache / "fairing" / "jobs").iterdir())  # nothing left but the kept log
    assert [p.name for p in (cache / "fairing" / "logs").iterdir()][0].endswith(".log")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("fairing-local-")]
