"""The Kubeflow-Fairing-style one-liner and the CLI, on the local backend."""

import subprocess
import sys
import textwrap

import pytest

from fairing import ConfigurationError, config

pytestmark = pytest.mark.usefixtures("no_leftovers")


@pytest.fixture(autouse=True)
def fresh_config():
    config.reset()
    yield
    config.reset()


def test_one_liner_runs_a_script_in_any_call_order(workdir):
    (workdir / "train.py").write_text("print('score', 0.9)\n")
    events = []
    config.set_options(on_event=events.append, timeout=60)
    config.set_preprocessor("python", entry_point="train.py")
    config.set_backend("local")
    assert config.run() is None
    assert any(getattr(e, "line", None) == "score 0.9" for e in events)


def test_fn_runs_a_function_as_a_job(workdir):
    def square(x):
        import os

        return x * x, os.environ.get("FAIRING_RUNTIME")

    assert config.fn(square)(7) == (49, "1")


def test_inside_a_job_config_calls_are_no_ops(workdir, monkeypatch):
    monkeypatch.setenv("FAIRING_RUNTIME", "1")
    config.set_builder("no-such-builder")
    assert config.run() is None
    assert config.fn(len)([1, 2]) == 2


def test_unknown_names_are_clear_errors(workdir):
    (workdir / "t.py").write_text("")
    config.set_preprocessor("python", entry_point="t.py")
    with pytest.raises(ConfigurationError, match="Unknown builder 'no-such-builder'. Choose one of"):
        config.set_builder("no-such-builder")  # checked when given, not at run()


def test_cli_runs_a_script_with_args_and_streams_logs(workdir):
    (workdir / "job.py").write_text(textwrap.dedent("""
        import sys
        print("got", sys.argv[1:])
    """))
    out = subprocess.run([sys.executable, "-m", "fairing", "run", "job.py", "--", "--epochs", "3"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "got ['--epochs', '3']" in out.stdout
    assert "fairing: build finished" in out.stderr and "succeeded" in out.stderr


def test_cli_reports_a_failing_job(workdir):
    (workdir / "bad.py").write_text("raise ValueError('bad input')\n")
    out = subprocess.run([sys.executable, "-m", "fairing", "run", "bad.py"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 1
    # the traceback is the job's output (stdout when piped), once; stderr has fairing's one error line
    assert (out.stdout + out.stderr).count("raise ValueError('bad input')") == 1, out.stdout + out.stderr
    assert "fairing: error: the job " in out.stderr and "raised ValueError: bad input" in out.stderr
    missing = subprocess.run([sys.executable, "-m", "fairing", "run", "nope.py"], capture_output=True, text=True)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
