"""A user's first hour on the local backend: the job's output shows, remote exceptions
come back with their message, options are checked when given, settings come from one
place (pyproject.toml [tool.fairing], environment), and the CLI reads the same settings."""

import subprocess
import sys
import textwrap

import pytest

import fairing
from fairing import ConfigurationError, RemoteError, config

pytestmark = pytest.mark.usefixtures("no_leftovers")


@pytest.fixture(autouse=True)
def fresh_config(monkeypatch, tmp_path_factory):
    # no user file or FAIRING_* variable of the machine leaks into these tests
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("xdg")))
    for var in ("FAIRING_BACKEND", "FAIRING_REGISTRY", "FAIRING_BASE_IMAGE", "FAIRING_NAMESPACE"):
        monkeypatch.delenv(var, raising=False)
    config.reset()
    yield
    config.reset()


def _script(path, body: str) -> None:
    path.write_text(textwrap.dedent(body))


def _run(*argv, cwd, env=None):
    import os

    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), **(env or {})}
    return subprocess.run([sys.executable, *argv], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env=full_env)


def test_a_scripts_remote_function_shows_the_jobs_prints(workdir):
    _script(workdir / "main.py", """
        from fairing import config

        def train(n):
            for i in range(n):
                print("epoch", i, flush=True)
            return n * 10

        remote_train = config.fn(train)
        print("result", remote_train(3))
    """)
    proc = _run("main.py", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["epoch 0", "epoch 1", "epoch 2", "result 30"]
    assert "fairing:" not in proc.stdout  # fairing's own progress is on events, not stdout


def test_quiet_turns_the_jobs_output_off(workdir):
    _script(workdir / "main.py", """
        import fairing

        @fairing.train(quiet=True)
        def train():
            print("secret chatter", flush=True)
            return 1

        print("result", train())
    """)
    proc = _run("main.py", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["result 1"]


def test_the_job_output_goes_to_stdout_and_to_on_event(workdir, capsys):
    events = []

    @fairing.train(on_event=events.append)
    def shout():
        print("hello from the job", flush=True)

    shout()
    assert "hello from the job\n" in capsys.readouterr().out
    assert [e.line for e in events if isinstance(e, fairing.events.LogLine)] == ["hello from the job"]


def test_an_exception_whose_init_takes_two_arguments_is_a_remote_error(workdir):
    class PairError(Exception):
        def __init__(self, left, right):
            super().__init__(f"{left} does not match {right}")

    @fairing.train(quiet=True)
    def fails():
        raise PairError("shape (3, 2)", "shape (2, 3)")

    with pytest.raises(RemoteError) as info:
        fails()
    err = info.value
    assert err.remote_type.endswith("PairError")
    assert "shape (3, 2) does not match shape (2, 3)" in str(err)
    assert ", in fails\n" in err.remote_traceback


def test_an_exception_only_the_job_can_import_is_a_remote_error(workdir, tmp_path_factory):
    job_dir = tmp_path_factory.mktemp("jobonly")
    (job_dir / "jobonly_errors.py").write_text("class QuotaExceeded(Exception):\n    pass\n")

    @fairing.train(quiet=True, input_files=["jobonly_errors.py"])
    def fails():
        import jobonly_errors

        raise jobonly_errors.QuotaExceeded("GPU quota of 0 reached")

    # packaged from job_dir, but not importable here
    fails.input_files = {str(job_dir / "jobonly_errors.py"): "jobonly_errors.py"}
    assert "jobonly_errors" not in sys.modules
    with pytest.raises(RemoteError, match="jobonly_errors.QuotaExceeded: GPU quota of 0 reached") as info:
        fails()
    assert ", in fails\n" in info.value.remote_traceback


def test_a_recreatable_exception_is_the_users_own(workdir):
    @fairing.train(quiet=True)
    def fails():
        raise KeyError("no such column: price")

    with pytest.raises(KeyError, match="no such column: price"):
        fails()


# -- options checked when given ---------------------------------------------------------


@pytest.mark.parametrize("call, closest", [
    (lambda: config.set_builder("append", base_image="python:3.11", registry="localhost:5000", pusj=True), "'push'"),
    (lambda: config.set_deployer("tfjob", worker_cont=2), "'worker_count'"),
    (lambda: config.set_preprocessor("python", entry_pont="train.py"), "'entry_point'"),
    (lambda: config.set_backend("local", pyhton="/usr/bin/python3"), "'python'"),
    (lambda: config.set_options(timout=60), "'timeout'"),
    (lambda: fairing.TrainJob(print, backend="local", registy="localhost:5000"), None),
    (lambda: fairing.train(backend="kubernetes", registy="localhost:5000"), "'registry'"),
    (lambda: fairing.get_backend("kubernetes", base_imag="python:3.11"), "'base_image'"),
])
def test_a_misspelled_option_is_refused_when_given(workdir, call, closest):
    with pytest.raises(ConfigurationError, match="Unknown option") as info:
        call()
    message = str(info.value)
    assert "Valid options:" in message
    if closest:
        assert f"Did you mean {closest}?" in message


def test_a_missing_required_option_names_where_to_set_it(workdir):
    (workdir / "t.py").write_text("")
    config.set_preprocessor("python", entry_point="t.py")
    config.set_builder("append")
    with pytest.raises(ConfigurationError, match=r"missing a required argument.*base_image.*FAIRING_BASE_IMAGE.*\[tool.fairing\]"):
        config.run()


# -- settings from one place --------------------------------------------------------------


def test_the_api_and_the_cli_run_a_project_from_its_tool_fairing_section(workdir):
    (workdir / "pyproject.toml").write_text('[project]\nname = "demo"\n\n[tool.fairing]\nbackend = "local"\n')
    _script(workdir / "train.py", """
        import os, sys
        print("trained in", os.path.basename(os.getcwd()) != "", "runtime", os.environ.get("FAIRING_RUNTIME"))
    """)
    proc = _run("-m", "fairing", "run", "train.py", cwd=workdir, env={"FAIRING_BACKEND": ""})
    assert proc.returncode == 0, proc.stderr
    assert "trained in True runtime 1" in proc.stdout
    _script(workdir / "submit.py", """
        import fairing
        fairing.TrainJob("train.py").run()
    """)
    proc = _run("submit.py", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["trained in True runtime 1"]


def test_a_bad_setting_in_the_project_file_is_refused_with_the_closest_name(workdir):
    (workdir / "pyproject.toml").write_text('[tool.fairing]\nregistery = "localhost:5000"\n')
    with pytest.raises(ConfigurationError, match=r"Unknown setting 'registery' in .*pyproject.toml \[tool.fairing\]\. "
                                                 r"Did you mean 'registry'\?"):
        fairing.TrainJob(print)


def test_blank_lines_show_between_output_but_not_at_the_end():
    import io

    from fairing.events import LogLine
    from fairing.output import JobOutput

    out = io.StringIO()
    show = JobOutput(out)
    for line, source in (("a", ""), ("", ""), ("b", ""), ("x", "worker-1"), ("", "worker-1"), ("", "")):
        show(LogLine(line, source))
    assert out.getvalue() == "a\n\nb\n[worker-1] x\n"


@pytest.fixture
def offline_kubeconfig(tmp_path, monkeypatch):
    """A kubeconfig for a cluster that is never contacted (making a backend connects nowhere)."""
    path = tmp_path / "kubeconfig"
    path.write_text(textwrap.dedent("""
        apiVersion: v1
        kind: Config
        clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
        users: [{name: u, user: {token: t}}]
        contexts: [{name: x, context: {cluster: c, user: u, namespace: from-kubeconfig}}]
        current-context: x
    """))
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")  # the append builder is chosen
    return str(path)


def test_the_kubernetes_backend_forwards_builder_options_and_keeps_a_given_builder(workdir, offline_kubeconfig):
    from fairing.builders.append import AppendBuilder

    backend = fairing.get_backend("kubernetes", kubeconfig=offline_kubeconfig, registry="127.0.0.1:5000/team",
                                  base_image="127.0.0.1:5000/python:3.11", insecure=["127.0.0.1:5000"],
                                  python_version="3.11", platform="linux/arm64")
    assert isinstance(backend.builder, AppendBuilder)
    assert (backend.builder.python_version, str(backend.builder.platform)) == ("3.11", "linux/arm64")
    assert backend.deployer.kube.namespace == "from-kubeconfig"

    mine = AppendBuilder("127.0.0.1:5000/python:3.11", "127.0.0.1:5000/mine")
    job = fairing.TrainJob(print, backend="kubernetes", builder=mine, kubeconfig=offline_kubeconfig)
    assert job._backend.make(builder=job.builder).builder is mine  # no registry needed: the builder is given
    with pytest.raises(ConfigurationError, match=r"python_version= choose a builder, but builder=AppendBuilder\(...\) was given too"):
        fairing.get_backend("kubernetes", kubeconfig=offline_kubeconfig, builder=mine, python_version="3.11")


def test_settings_reach_the_kubernetes_backend(workdir, offline_kubeconfig, monkeypatch):
    (workdir / "fairing.toml").write_text('registry = "127.0.0.1:5000/team"\nbase_image = "127.0.0.1:5000/py:3"\n'
                                          'insecure_registries = ["127.0.0.1:5000"]\n')
    monkeypatch.setenv("FAIRING_NAMESPACE", "from-env")
    monkeypatch.setenv("FAIRING_BACKEND", "kubernetes")
    backend = fairing.get_backend(kubeconfig=offline_kubeconfig)
    assert backend.builder.registry == "127.0.0.1:5000/team" and str(backend.builder.base).endswith("py:3")
    assert backend.deployer.kube.namespace == "from-env"


def test_a_given_builder_is_not_handed_the_builder_settings(workdir, offline_kubeconfig, monkeypatch):
    from fairing.builders.append import AppendBuilder

    monkeypatch.setenv("FAIRING_INSECURE_REGISTRIES", "127.0.0.1:5000")
    monkeypatch.setenv("FAIRING_REGISTRY", "127.0.0.1:5000/team")
    mine = AppendBuilder("127.0.0.1:5000/python:3.11", "127.0.0.1:5000/mine")
    job = fairing.TrainJob(print, backend="kubernetes", builder=mine, kubeconfig=offline_kubeconfig)
    assert job._backend.make(builder=job.builder).builder is mine


def test_in_a_notebook_the_jobs_output_is_the_cells_unless_quiet(tmp_path):
    import nbformat
    import papermill

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("import fairing\n\n"
                                  "def talk(word):\n    print('the job says', word, flush=True)\n    return word"),
        nbformat.v4.new_code_cell("fairing.train(talk)('hello')"),
        nbformat.v4.new_code_cell("fairing.train(talk, quiet=True)('psst')"),
    ]
    path = tmp_path / "talk.ipynb"
    nbformat.write(nb, str(path))
    out = papermill.execute_notebook(str(path), str(tmp_path / "out.ipynb"), cwd=str(tmp_path), kernel_name="python3",
                                     progress_bar=False)

    def text(cell):  # streams, and displays (the notebook renderer shows the job's log as one)
        return "".join("".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/plain", ""))
                       for o in cell.get("outputs", []))

    assert "the job says hello" in text(out.cells[1])
    assert "the job says" not in text(out.cells[2])


def test_the_cli_shows_the_jobs_output_once(tmp_path):
    """The CLI renders the job's lines itself; the API's default output to stdout must not add them again."""
    import os
    import subprocess
    import sys

    (tmp_path / "job.py").write_text("print('exactly once', flush=True)\n")
    proc = subprocess.run([sys.executable, "-m", "fairing", "run", "job.py"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("exactly once") == 1, proc.stdout
