"""The options that cannot be warm: each a ConfigurationError naming what warm=True runs.
The worker's protocol: tests/local/test_warm_worker_local.py; the cluster: tests/e2e/test_warm.py."""

from __future__ import annotations

import pytest

from fairing import ConfigurationError
from fairing.backends import BackendChoice


@pytest.mark.parametrize("options, says", [
    ({"warm": True, "deployer": "tfjob"}, "TFJob, PyTorchJob, TrainJob"),
    ({"warm": True, "deployer": "pytorchjob"}, "TFJob, PyTorchJob, TrainJob"),
    ({"warm": True, "ttl_seconds_after_finished": 5}, "do not apply to a warm worker"),
    ({"warm_idle": 5}, "give warm=True"),
])
def test_options_that_cannot_be_warm_are_a_configuration_error(options, says):
    with pytest.raises(ConfigurationError, match=says):
        BackendChoice("kubernetes", {"registry": "registry.example/team", "base_image": "python:3.11",
                                     **options}).make()


def test_an_endpoint_cannot_be_warm():
    import fairing

    class Model:
        def predict(self, x):
            return x

    with pytest.raises(ConfigurationError, match="endpoint cannot be warm"):
        fairing.PredictionEndpoint(Model, backend="kubernetes", warm=True, registry="registry.example/team",
                                   base_image="python:3.11")


def test_warm_idle_must_be_positive():
    from fairing.deployers.warm import WarmDeployer

    for bad in (0, -1, "600", True, float("nan"), float("inf"), 1e10, 7 * 86400 + 1):  # 1e10: select() overflows
        with pytest.raises(ConfigurationError, match="warm_idle"):
            WarmDeployer(idle=bad)


def test_the_warm_settings_are_read_checked_and_reach_the_kubernetes_backend(tmp_path):
    from fairing.backends import backend_factory
    from fairing.settings import resolve

    settings = resolve(cwd=tmp_path, environ={"FAIRING_WARM": "1", "FAIRING_WARM_IDLE": "30"})
    assert settings.warm is True and settings.warm_idle == 30.0
    _factory, kwargs = backend_factory("kubernetes", {}, settings=settings)
    assert kwargs["warm"] is True and kwargs["warm_idle"] == 30.0
    _factory, kwargs = backend_factory("local", {}, settings=settings)
    assert "warm" not in kwargs  # only the kubernetes backends take it
    assert resolve(cwd=tmp_path, environ={"FAIRING_WARM": "off"}).warm is False


@pytest.mark.parametrize("var, value", [("FAIRING_WARM", "maybe"), ("FAIRING_WARM_IDLE", "-5"),
                                        ("FAIRING_WARM_IDLE", "ten minutes"), ("FAIRING_WARM_IDLE", "inf"),
                                        ("FAIRING_WARM_IDLE", "nan"), ("FAIRING_WARM_IDLE", "1e10"),
                                        ("FAIRING_WARM_IDLE", "604801")])
def test_a_bad_warm_setting_is_a_configuration_error_naming_it(tmp_path, var, value):
    from fairing.settings import resolve

    with pytest.raises(ConfigurationError, match=var.lower().replace("fairing_", "")):
        resolve(cwd=tmp_path, environ={var: value})


def test_fairing_run_warm_cannot_detach_and_needs_a_kubernetes_backend(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    (tmp_path / "train.py").write_text("open('ran', 'w')\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}

    def fairing_run(*args):
        return subprocess.run([sys.executable, "-m", "fairing", "run", "train.py", "--warm", *args], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=120)

    detached = fairing_run("--detach", "--backend", "kubernetes")
    assert detached.returncode == 2 and "cannot --detach" in detached.stderr
    local = fairing_run("--backend", "local")
    assert local.returncode == 2 and "Unknown option 'warm'" in local.stderr and "local backend" in local.stderr
    assert not (tmp_path / "ran").exists()


def _deployer(tmp_path):
    from types import SimpleNamespace

    from fairing.deployers.warm import WarmDeployer

    return WarmDeployer(kube=SimpleNamespace(namespace="team"), idle=60, token_dir=tmp_path / "tokens")


def test_a_token_file_replaced_by_a_link_is_not_followed_nor_sent(tmp_path):
    deployer = _deployer(tmp_path)
    secret = tmp_path / "id_rsa"
    secret.write_text("k" * 64)  # readable by this user: a link would send it to whoever answers as the worker
    directory = deployer._token_dir()
    (directory / "fairing-warm-1").symlink_to(secret)
    assert deployer._token("fairing-warm-1") is None
    (directory / "fairing-warm-2").write_text("a" * 64)
    assert deployer._token("fairing-warm-2") == "a" * 64
    assert oct(directory.stat().st_mode & 0o777) == "0o700"


@pytest.mark.parametrize("swap", ["world-writable", "link"])
def test_a_token_directory_others_can_write_or_a_link_is_refused(tmp_path, swap):
    import os

    deployer = _deployer(tmp_path)
    directory = tmp_path / "tokens" / "team"
    if swap == "link":
        (tmp_path / "elsewhere").mkdir(mode=0o700)
        (tmp_path / "tokens").mkdir(mode=0o700)
        directory.symlink_to(tmp_path / "elsewhere")
    else:
        directory.mkdir(parents=True)
        os.chmod(directory, 0o777)
    with pytest.raises(ConfigurationError, match="token directory"):
        deployer._token("fairing-warm-1")
