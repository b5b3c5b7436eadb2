"""Kubeflow Fairing 1.0.2 spellings (fairing.compat), option checking, and the settings'
sources and precedence (fairing.settings): pure values, no services."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest

import fairing
from fairing import ConfigurationError, compat
from fairing._registry import accepted_options, check_options, make
from fairing.backends import backend_factory
from fairing.builders import BUILDERS
from fairing.deployers import DEPLOYERS
from fairing.images.base_python import python_in_layer_names
from fairing.preprocessors import PREPROCESSORS
from fairing.settings import Settings, resolve

ROOT = Path(__file__).resolve().parents[2]


def _future(fn, *args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = fn(*args, **kwargs)
    return value, [str(w.message) for w in caught if issubclass(w.category, FutureWarning)]


# -- compat ------------------------------------------------------------------------------


def test_old_builder_spellings_become_new_ones_with_a_warning_naming_them():
    (factory, kwargs, run), messages = _future(
        make, "builder", BUILDERS, "append",
        {"base_image": "b:1", "registry": "r:5000", "push": True, "image_name": "housing"})
    assert factory.__name__ == "AppendBuilder"
    assert kwargs == {"base_image": "b:1", "registry": "r:5000", "repository": "housing"}
    assert run == {}
    assert any("image_name= is Kubeflow Fairing's spelling; use repository=" in m for m in messages)
    assert any("push= is Kubeflow Fairing's option and has no effect here" in m for m in messages)


def test_what_cannot_be_honoured_is_a_typed_error_saying_so():
    with pytest.raises(ConfigurationError, match=r"push=False \(Kubeflow Fairing\) cannot be honoured .* always pushes"):
        make("builder", BUILDERS, "append", {"push": False})
    with pytest.raises(ConfigurationError, match="client_configuration= .* has no counterpart .* kubeconfig="):
        make("deployer", DEPLOYERS, "job", {"client_configuration": object()})
    with pytest.raises(ConfigurationError, match="runs=3 .* one submit runs one job"):
        make("deployer", DEPLOYERS, "tfjob", {"runs": 3})


def test_tfjob_counts_become_replicas_from_kubeflow_fairings_defaults():
    (_f, kwargs, _r), messages = _future(make, "deployer", DEPLOYERS, "tfjob",
                                         {"worker_count": 2, "chief_count": 1, "ps_count": 1})
    assert kwargs == {"replicas": {"Chief": 1, "PS": 1, "Worker": 2}}
    assert any("use replicas={'Chief': 1, 'PS': 1, 'Worker': 2}" in m for m in messages)
    (_f, kwargs, _r), _ = _future(make, "deployer", DEPLOYERS, "tfjob", {"ps_count": 1})
    assert kwargs == {"replicas": {"PS": 1, "Worker": 1}}
    (_f, kwargs, _r), _ = _future(make, "deployer", DEPLOYERS, "pytorchjob", {"worker_count": 3})
    assert kwargs == {"replicas": {"Master": 1, "Worker": 3}}
    with pytest.raises(ConfigurationError, match="not both"):
        make("deployer", DEPLOYERS, "tfjob", {"worker_count": 2, "replicas": {"Worker": 1}})


def test_deployer_cleanup_and_stream_log_become_run_options():
    (_f, kwargs, run), _ = _future(make, "deployer", DEPLOYERS, "job",
                                   {"cleanup": False, "stream_log": False, "config_file": "/k", "job_name": "h"})
    assert kwargs == {"kubeconfig": "/k", "name_prefix": "h"}
    assert run == {"cleanup": "never", "quiet": True}


def test_python_command_becomes_entry_point_and_args():
    (_f, kwargs, _r), messages = _future(make, "preprocessor", PREPROCESSORS, "python",
                                         {"command": ["python", "train.py", "--epochs", "3"], "input_files": ["d"]})
    assert kwargs == {"entry_point": "train.py", "args": ["--epochs", "3"], "input_files": ["d"]}
    assert any("command= is Kubeflow Fairing's spelling; use entry_point=" in m for m in messages)
    with pytest.raises(ConfigurationError, match="does not run Python"):
        make("preprocessor", PREPROCESSORS, "python", {"command": ["bash", "run.sh"]})


def test_output_map_adds_input_files_at_their_own_path_only():
    (kwargs, _run), _ = _future(compat.translate, "task", "*",
                                {"input_files": ["a.py"], "output_map": {"model.dat": "/app/model.dat"}})
    assert kwargs == {"input_files": ["a.py", "model.dat"]}
    with pytest.raises(ConfigurationError, match="fairing keeps input files at their own relative path"):
        compat.translate("task", "*", {"output_map": {"model.dat": "/opt/model.dat"}})


def test_kubeflow_fairing_in_place_mutators_are_refused_with_todays_names():
    def add_gcp_credentials(kube_manager, pod_spec, namespace):
        pass

    with pytest.raises(ConfigurationError, match=r"Kubeflow Fairing's signature .* fairing.deployers.mutators"):
        compat.translate("task", "*", {"pod_spec_mutators": [add_gcp_credentials]})


def test_resource_mutator_stand_in():
    mutate, messages = _future(compat.get_resource_mutator, cpu=1, memory=2, gpu=1)
    spec = mutate({"containers": [{"name": "main"}]})
    assert spec["containers"][0]["resources"] == {
        "requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"cpu": "1", "memory": "2Gi", "nvidia.com/gpu": "1"}}
    assert messages


def test_backend_classes_map_to_backend_names(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    backend, messages = _future(fairing.backends.KubeflowBackend, namespace="team-a")
    assert compat.backend_spec(backend) == ("kubeflow", {"namespace": "team-a"})
    assert any("use backend='kubeflow', namespace='team-a'" in m for m in messages)
    for cls, name in ((compat.KubernetesBackend, "kubernetes"), (compat.KubeflowGKEBackend, "gke"),
                      (compat.KubeflowAWSBackend, "aws")):
        assert _future(cls)[0].backend_name == name
    with pytest.raises(ConfigurationError, match="AzureBackend .* has no counterpart"):
        compat.AzureBackend()
    with pytest.raises(ConfigurationError, match="build_context_source= .* has no counterpart"):
        compat.KubernetesBackend(build_context_source=object())


def test_every_mapping_is_in_the_docs_table():
    doc = (ROOT / "docs" / "kubeflow-fairing.md").read_text()
    for (kind, name), rules in compat.TABLE.items():
        where = {"task": "`TrainJob`, `PredictionEndpoint`"}.get(kind, f"{kind} `{name}`" if name != "*" else f"every {kind}")
        for old, rule in rules.items():
            assert f"| {where} | `{old}` | {rule.describe()} |" in doc, (kind, name, old)
    for (kind, name), rule in compat.NAMES.items():
        today = f"`{rule.new}`" if isinstance(rule, compat.Rename) else rule.describe()
        assert f"| {kind} `{name}` | {today} |" in doc, (kind, name)


# -- option checking --------------------------------------------------------------------


def test_options_are_followed_through_forwarding():
    from fairing.backends.kubernetes import kubernetes_backend

    names = accepted_options(kubernetes_backend)
    assert {"registry", "insecure", "python_version", "mutators", "backoff_limit"} <= names
    assert {"replicas", "mutators", "namespace"} <= accepted_options(fairing.deployers.training.TFJobDeployer)
    with pytest.raises(ConfigurationError, match=r"Unknown option 'backof_limit' for k8s\. Did you mean 'backoff_limit'\?"):
        check_options(kubernetes_backend, ["backof_limit"], "k8s")


def test_an_unknown_part_name_suggests_the_closest():
    with pytest.raises(ConfigurationError, match="Unknown builder 'apend'. Did you mean 'append'"):
        make("builder", BUILDERS, "apend", {})


# -- settings ----------------------------------------------------------------------------


@pytest.fixture
def places(tmp_path, monkeypatch):
    user = tmp_path / "xdg"
    project = tmp_path / "project"
    (user / "fairing").mkdir(parents=True)
    (project / "src").mkdir(parents=True)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(user))
    for var in ("FAIRING_BACKEND", "FAIRING_REGISTRY", "FAIRING_BASE_IMAGE", "FAIRING_NAMESPACE",
                "FAIRING_INSECURE_REGISTRIES", "FAIRING_CA_BUNDLE", "FAIRING_PLATFORM", "FAIRING_PYTHON_VERSION"):
        monkeypatch.delenv(var, raising=False)
    return user / "fairing" / "config.toml", project


def test_precedence_arguments_environment_project_user(places, monkeypatch):
    user, project = places
    user.write_text('registry = "user:5000"\nbase_image = "user/base:1"\nnamespace = "user-ns"\nplatform = "linux/arm64"\n')
    (project / "pyproject.toml").write_text('[project]\nname = "p"\n[tool.fairing]\nregistry = "project:5000"\n'
                                            'base_image = "project/base:1"\nca_bundle = "ca.pem"\n')
    monkeypatch.setenv("FAIRING_REGISTRY", "env:5000")
    monkeypatch.setenv("FAIRING_INSECURE_REGISTRIES", "env:5000, other:5000")
    s = resolve({"registry": "arg:5000", "namespace": None}, cwd=project / "src")
    assert (s.registry, s.base_image, s.namespace, s.platform) == ("arg:5000", "project/base:1", "user-ns", "linux/arm64")
    assert s.insecure_registries == ("env:5000", "other:5000")
    assert s.ca_bundle == str(project / "ca.pem")  # relative to the file
    assert s.sources["registry"] == "argument" and s.sources["insecure_registries"] == "FAIRING_INSECURE_REGISTRIES"
    assert s.sources["base_image"].endswith("pyproject.toml [tool.fairing]")
    assert s.sources["namespace"] == str(user)


def test_fairing_toml_wins_over_pyproject_in_the_same_directory(places):
    _user, project = places
    (project / "pyproject.toml").write_text('[tool.fairing]\nregistry = "py:5000"\n')
    (project / "fairing.toml").write_text('registry = "toml:5000"\n')
    assert resolve(cwd=project).registry == "toml:5000"


def test_settings_fill_only_what_a_part_takes(places):
    s = Settings(registry="r:5000", base_image="b:1", namespace="ns", insecure_registries=("r:5000",))
    from fairing.builders.append import AppendBuilder
    from fairing.builders.local import LocalBuilder
    from fairing.deployers.job import JobDeployer

    assert s.options_for(AppendBuilder) == {"registry": "r:5000", "base_image": "b:1", "insecure": ["r:5000"]}
    assert s.options_for(LocalBuilder) == {}
    assert s.options_for(JobDeployer) == {"namespace": "ns"}
    factory, kwargs = backend_factory("kubernetes", {"registry": "mine:5000"}, settings=s)
    assert kwargs == {"registry": "mine:5000", "base_image": "b:1", "namespace": "ns", "insecure": ["r:5000"]}
    factory, kwargs = backend_factory(None, {}, settings=Settings(backend="local", registry="r:5000"))
    assert (factory.__name__, kwargs) == ("local_backend", {})


@pytest.mark.parametrize("text, message", [
    ('registery = "x"\n', r"Unknown setting 'registery' in .*fairing.toml\. Did you mean 'registry'\?"),
    ('backend = "kubernetess"\n', r"backend 'kubernetess' in .*fairing.toml is not a backend\. Did you mean 'kubernetes'"),
    ('insecure_registries = "a,b"\n', None),
    ('insecure_registries = [1]\n', r"insecure_registries in .* must be a list of host\[:port\] strings"),
    ('platform = "amd64"\n', r"In .*fairing.toml: platform must look like 'linux/amd64'"),
    ('python_version = "three"\n', r"python_version in .* must be like '3.11'"),
    ('registry = \n', r"is not valid TOML"),
])
def test_bad_settings_are_refused_with_where_they_are(places, text, message):
    _user, project = places
    (project / "fairing.toml").write_text(text)
    if message is None:
        assert resolve(cwd=project).insecure_registries == ("a", "b")
        return
    with pytest.raises(ConfigurationError, match=message):
        resolve(cwd=project)


def test_other_fairing_variables_are_not_settings(places, monkeypatch):
    _user, project = places
    monkeypatch.setenv("FAIRING_RUNTIME", "1")
    monkeypatch.setenv("FAIRING_TEST_REGISTRY", "127.0.0.1:1")
    assert resolve(cwd=project).values() == {}


# -- base image Python from file names ---------------------------------------------------


@pytest.mark.parametrize("members, expected", [
    ([("usr/bin/python3.11", ""), ("usr/bin/python3", "python3.11")], "3.11"),
    ([("./usr/local/bin/python3", "python3.12")], "3.12"),
    ([("usr/lib/python3.9/os.py", ""), ("usr/local/lib/python3.12/os.py", "")], "3.12"),  # /usr/local first
    ([("usr/lib/python3.10/", ""), ("usr/lib/python3.9/", "")], "3.10"),
    ([("usr/lib/python3/dist-packages/x.py", ""), ("etc/python3.11/sitecustomize.py", "")], None),
])
def test_python_from_layer_file_names(members, expected):
    assert python_in_layer_names(members) == expected


def test_the_warning_points_at_the_users_line():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        make("builder", BUILDERS, "append", {"image_name": "x"}); line = sys._getframe().f_lineno  # noqa: E702
    assert caught[0].filename == __file__ and caught[0].lineno == line


def test_old_part_names():
    (factory, _kwargs, _run), messages = _future(make, "deployer", DEPLOYERS, "kfserving", {})
    assert factory.__name__ == "InferenceServiceDeployer"
    assert any("'kfserving' is Kubeflow Fairing's name; use 'kserve'" in m for m in messages)
    with pytest.raises(ConfigurationError, match="The builder 'podman' .* base_url="):
        make("builder", BUILDERS, "podman", {})
    with pytest.raises(ConfigurationError, match="context_source=GCSContextSource.* is a Kubeflow Fairing context"):
        class GCSContextSource:
            pass

        make("builder", BUILDERS, "cluster", {"context_source": GCSContextSource()})


def test_backends_called_directly_check_their_options():
    from fairing.backends.cloud import aws_backend
    from fairing.backends.kubernetes import kubeflow_backend, kubernetes_backend
    from fairing.backends.local import local_backend

    for factory, wrong, right in ((kubernetes_backend, "registy", "registry"), (kubeflow_backend, "servce_account",
                                  "service_account"), (aws_backend, "regin", "region"), (local_backend, "envv", "env")):
        with pytest.raises(ConfigurationError, match=rf"Unknown option '{wrong}' for {factory.__name__}\(\)\. "
                                                     rf"Did you mean '{right}'\?"):
            factory(**{wrong: "x"})


def test_builders_and_deployers_made_directly_check_their_options():
    from fairing.builders.append import AppendBuilder
    from fairing.builders.local import LocalBuilder
    from fairing.deployers.local import LocalDeployer
    from fairing.deployers.training import TFJobDeployer

    cases = ((AppendBuilder, ("b:1", "r:5000"), "pltform", "platform"),
             (LocalBuilder, (), "pyhton", "python"), (LocalDeployer, (), "evn", "env"),
             (TFJobDeployer, ({"Worker": 1},), "mutator", "mutators"))
    for cls, args, wrong, right in cases:
        with pytest.raises(ConfigurationError, match=rf"Unknown option '{wrong}' for {cls.__name__}\(\)\. "
                                                     rf"Did you mean '{right}'\?"):
            cls(*args, **{wrong: 1})
    assert isinstance(LocalDeployer(env={"A": "1"}), LocalDeployer)


def test_settings_read_the_environment_fairing_is_pointed_at(tmp_path):
    from fairing import environment

    (tmp_path / "cfg" / "fairing").mkdir(parents=True)
    (tmp_path / "cfg" / "fairing" / "config.toml").write_text('namespace = "from-user-file"\n')
    world = environment.Environment.from_os({"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
                                             "FAIRING_REGISTRY": "injected:5000"})
    with environment.use(world):
        s = resolve(cwd=tmp_path)
    assert (s.registry, s.namespace) == ("injected:5000", "from-user-file")
