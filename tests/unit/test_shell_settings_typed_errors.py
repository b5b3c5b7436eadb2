"""Shell escapes refused however they are reached (before submit, and by the job's shell),
%%writefile kept in the job's directory, settings read only from the project and the user
file (and named), and option values checked when given."""

from __future__ import annotations

import os
import warnings

import nbformat
import pytest

from fairing import ConfigurationError, PackagingError
from fairing.preprocessors.notebook import convert_notebook
from fairing.runtime import shell
from fairing.settings import project_file, resolve


def _nb(*cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    return nb


# -- shell escapes, before submit -------------------------------------------------------------

ESCAPES = [
    "ip = get_ipython()\nip.system('rm -rf data')",
    "ip = get_ipython()\nip.run_cell_magic('bash', '', 'rm -rf data')",
    "shell = get_ipython()\nalias = shell\nalias.getoutput('kubectl delete ns prod')",
    "g = get_ipython\ng().system('ls')",
    "get_ipython().run_line_magic('sx', 'ls')",
    "ip = get_ipython()\nip.run_line_magic('system', 'ls')",
    "from IPython import get_ipython as gi\ngi().system('ls')",
    "import IPython\nIPython.get_ipython().system('ls')",
    "with_ip = (ip := get_ipython())\nip.system('ls')",
    "x = 1\n%time get_ipython().system('ls')",
    "%%time\nip = get_ipython()\nip.system('ls')",
]


@pytest.mark.parametrize("source", ESCAPES)
def test_shell_commands_are_refused_however_the_shell_is_reached(source):
    with pytest.raises(PackagingError) as err:
        convert_notebook(_nb("x = 1", source))
    message = str(err.value)
    assert message.startswith("Cell 2, line ") and "allow_shell=True" in message
    convert_notebook(_nb("x = 1", source), allow_shell=True)  # allowed: converted as written


def test_getattr_on_the_shell_cannot_be_checked_and_is_refused():
    with pytest.raises(PackagingError, match=r"Cell 1, line 2 .*getattr\(\) on IPython's shell"):
        convert_notebook(_nb("ip = get_ipython()\nrun = getattr(ip, 'sys' + 'tem')\nrun('ls')"))


@pytest.mark.parametrize("target", ["../escape.txt", "/tmp/escape.txt", "~/escape.txt", "out/../../x.txt",
                                    "-a ../log.txt"])
def test_writefile_outside_the_jobs_directory_is_refused_before_submit(target):
    with pytest.raises(PackagingError, match=r"Cell 1, line 1 .*would write outside the job's directory"):
        convert_notebook(_nb(f"%%writefile {target}\nhello\n"))


def test_writefile_below_the_jobs_directory_converts():
    assert "writefile" in convert_notebook(_nb("%%writefile out/notes.txt\nhello\n")).script


# -- shell escapes, in the job ----------------------------------------------------------------


@pytest.fixture
def job_shell(tmp_path):
    job = tmp_path / "job"
    job.mkdir()
    shell.configure(allow_shell=False, job_dir=job)
    cwd = os.getcwd()
    os.chdir(job)
    try:
        yield shell.get_ipython(), job
    finally:
        os.chdir(cwd)
        shell.configure(allow_shell=False, job_dir=cwd)


def test_the_jobs_shell_refuses_shell_commands_unless_allowed(job_shell):
    ip, job = job_shell
    marker = job / "ran"
    for call in (lambda: ip.system(f"touch {marker}"), lambda: ip.getoutput(f"touch {marker}"),
                 lambda: ip.run_cell_magic("bash", "", f"touch {marker}"),
                 lambda: ip.run_line_magic("sx", f"touch {marker}"),
                 lambda: getattr(ip, "system")(f"touch {marker}")):
        with pytest.raises(shell.ShellNotAllowed, match="allow_shell=True"):
            call()
    assert not marker.exists()
    shell.configure(allow_shell=True)
    ip.system(f"touch {marker}")
    assert marker.exists()


def test_the_jobs_writefile_stays_in_the_jobs_directory(job_shell, tmp_path):
    ip, job = job_shell
    ip.run_cell_magic("writefile", "out.txt", "fine\n")
    assert (job / "out.txt").read_text() == "fine\n"
    os.symlink(tmp_path, job / "up")  # a link inside that leads out
    for line in ("../escape.txt", str(tmp_path / "escape.txt"), "up/escape.txt", "-a ../escape.txt"):
        with pytest.raises(shell.OutsideJobDirectory, match="outside the job's directory"):
            ip.run_cell_magic("writefile", line, "no\n")
    os.chdir(tmp_path)  # %cd elsewhere first
    with pytest.raises(shell.OutsideJobDirectory):
        ip.run_cell_magic("writefile", "escape.txt", "no\n")
    assert not (tmp_path / "escape.txt").exists()


# -- settings files ---------------------------------------------------------------------------


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    for var in [k for k in os.environ if k.startswith("FAIRING_")]:
        monkeypatch.delenv(var)
    return tmp_path


@pytest.mark.parametrize("marker", ["pyproject.toml", ".git", ".hg"])
def test_a_fairing_toml_above_the_projects_root_is_not_read(isolated, marker):
    (isolated / "fairing.toml").write_text('backend = "kubernetes"\nregistry = "evil.example:5000"\n'
                                           'insecure_registries = ["evil.example:5000"]\n')
    project = isolated / "proj"
    (project / "src").mkdir(parents=True)
    if marker == "pyproject.toml":
        (project / marker).write_text('[project]\nname = "p"\n')
    else:
        (project / marker).mkdir()
    s = resolve(cwd=project / "src")
    assert (s.backend, s.registry, s.insecure_registries, s.files) == (None, None, (), ())
    assert project_file(project / "src") is None
    assert "settings files: none" in s.describe()
    # one inside the project, between the current directory and the root, is read and named
    (project / "fairing.toml").write_text('registry = "team.example:5000"\n')
    s = resolve(cwd=project / "src")
    assert s.registry == "team.example:5000" and s.files == (str(project / "fairing.toml"),)
    assert f"settings files: {project / 'fairing.toml'}" in s.describe()
    assert s.files_note() == f"settings from {project / 'fairing.toml'}"


def test_without_a_project_root_only_the_current_directory_is_read(isolated):
    (isolated / "fairing.toml").write_text('registry = "parent.example:5000"\n')
    (isolated / "here").mkdir()
    assert resolve(cwd=isolated / "here").registry is None
    (isolated / "here" / "fairing.toml").write_text('registry = "here.example:5000"\n')
    assert resolve(cwd=isolated / "here").registry == "here.example:5000"


def test_the_user_file_and_the_project_file_are_named_and_their_errors_too(isolated):
    user = isolated / "xdg" / "fairing" / "config.toml"
    user.parent.mkdir(parents=True)
    user.write_text('namespace = "ml"\n')
    (isolated / "proj").mkdir()
    (isolated / "proj" / "pyproject.toml").write_text('[tool.fairing]\nregistry = "r.example:5000"\n')
    s = resolve(cwd=isolated / "proj")
    assert s.files == (str(user), f"{isolated / 'proj' / 'pyproject.toml'} [tool.fairing]")
    user.write_text('namespace = 3\n')
    with pytest.raises(ConfigurationError, match=f"namespace in {user} must be a non-empty string"):
        resolve(cwd=isolated / "proj")


# -- option values checked when given ---------------------------------------------------------


def test_a_list_where_one_registry_string_is_expected_is_refused_when_given(tmp_path):
    import fairing
    from fairing import config

    script = tmp_path / "train.py"
    script.write_text("print(1)\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        with pytest.raises(ConfigurationError, match=r"registry= .* takes one string.*got list \['r.io'\]"):
            fairing.TrainJob(str(script), docker_registry=["r.io"], backend="kubernetes", requirements=[])
    with pytest.raises(ConfigurationError, match="takes one string"):
        config.set_builder("append", registry=["r.io"], base_image="python:3.11-slim")
    from fairing.builders.append import AppendBuilder

    with pytest.raises(ConfigurationError, match="registry must be one string"):
        AppendBuilder(base_image="python:3.11-slim", registry=["r.io"])  # type: ignore[arg-type]


def test_a_kubeflow_fairing_name_for_another_part_is_not_suggested_back():
    from fairing import config

    for kind, name, option in (("deployer", "job", "base_docker_image"), ("builder", "append", "pod_spec_mutators"),
                               ("deployer", "job", "docker_registry")):
        with pytest.raises(ConfigurationError) as err:
            getattr(config, f"set_{kind}")(name, **{option: "x"})
        message = str(err.value)
        assert f"Did you mean {option!r}" not in message and "does not apply here" in message
