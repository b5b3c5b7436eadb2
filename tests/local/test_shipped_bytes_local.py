"""On the local backend, for real: a notebook job cannot reach the shell or write outside its
directory by routes the converter cannot see, a refused context leaves no trace of the secret in
events or on disk, and the build stage names the settings files used."""

from __future__ import annotations

import uuid

import nbformat
import pytest

import fairing
from fairing import FairingError, SecretInContextError
from fairing.events import Stage


def _notebook(path, *cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, str(path))
    return path


@pytest.fixture
def settled(workdir, tmp_path_factory, monkeypatch):
    """A project of its own, with no settings but its own, and a temporary directory and a cache
    of its own (other test runs on this machine share /tmp): nothing may be left in them."""
    import tempfile

    private = tmp_path_factory.mktemp("tmp")
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(workdir / "xdg"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(workdir / "cache"))
    for var in ("FAIRING_BACKEND", "FAIRING_REGISTRY", "FAIRING_BASE_IMAGE", "FAIRING_NAMESPACE"):
        monkeypatch.delenv(var, raising=False)
    (workdir / "pyproject.toml").write_text('[project]\nname = "p"\n[tool.fairing]\nbackend = "local"\n')
    yield workdir
    assert not [p.name for p in private.iterdir() if p.name.startswith("fairing-local-")]


def test_a_shell_reached_through_a_helper_is_refused_in_the_job(settled):
    marker = settled / f"ran-{uuid.uuid4().hex}"
    nb = _notebook(settled / "escape.ipynb",
                   "def run(sh, cmd):\n    return sh.system(cmd)",  # the converter sees no shell call here
                   f"run(get_ipython(), 'touch {marker}')")
    handle = fairing.TrainJob(str(nb), requirements=[], quiet=True).submit()
    try:
        with pytest.raises(FairingError) as err:
            handle.result(timeout=120)
    finally:
        handle.delete()
    assert "ShellNotAllowed" in str(err.value) and "allow_shell=True" in str(err.value)
    assert not marker.exists()


def test_writefile_to_a_computed_path_outside_the_job_is_refused_in_the_job(settled):
    name = f"escaped-{uuid.uuid4().hex}.txt"
    nb = _notebook(settled / "write.ipynb", f"target = '../{name}'", "%%writefile {target}\nout of the job\n")
    handle = fairing.TrainJob(str(nb), requirements=[], quiet=True).submit()
    try:
        with pytest.raises(FairingError) as err:
            handle.result(timeout=120)
    finally:
        handle.delete()
    assert "OutsideJobDirectory" in str(err.value)
    assert not list(settled.parent.glob(name)) and not list(settled.glob(name))


def test_a_refused_context_leaves_no_trace_of_the_secret_and_the_build_stage_names_the_settings(settled):
    token = "ghp_" + uuid.uuid4().hex + "abcd"
    (settled / "train.py").write_text(f"import os\nKEY = '{token}'\nprint('ran')\n")
    events: list = []
    with pytest.raises(SecretInContextError) as err:
        fairing.TrainJob("train.py", requirements=[], on_event=events.append).submit()
    assert "train.py" in str(err.value) and "(line 2)" in str(err.value)
    assert token not in str(err.value) and not any(token in repr(e) for e in events)
    assert [(e.name, e.status) for e in events if isinstance(e, Stage)] == [("package", "started"),
                                                                         ("package", "failed")]
    # clean: the build stage names the file its settings came from
    (settled / "train.py").write_text("print('ran')\n")
    events.clear()
    handle = fairing.TrainJob("train.py", requirements=[], on_event=events.append, quiet=True).submit()
    try:
        handle.result(timeout=120)
    finally:
        handle.delete()
    build = next(e for e in events if isinstance(e, Stage) and e.name == "build" and e.status == "started")
    assert build.detail == f"settings from {settled / 'pyproject.toml'} [tool.fairing]"
