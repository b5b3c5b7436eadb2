"""fairing functions as Kubeflow Pipelines components, run by KFP's own local Docker runner.

The component images are fairing's append builds on the test base image, pushed to the
loopback registry (nothing is pulled from a public registry); ``kfp.local`` with
``DockerRunner`` pulls them into the real Docker engine and runs the pipeline's steps.
"""

import subprocess
import sys
import uuid
from typing import Optional

import cloudpickle
import pytest
import yaml

from fairing import ConfigurationError
from fairing.builders.append import AppendBuilder
from fairing.pipelines import component

# on the worker of the tests that build on and remove from the Docker engine (test_docker_builder.py)
pytestmark = pytest.mark.xdist_group("docker-engine")


def train(scale: float, points: int = 3) -> float:
    """Fits y = w * x to y = scale * x on a few points; writes the model, returns w."""
    import json

    xs = [float(x) for x in range(1, points + 1)]
    ys = [scale * x for x in xs]
    w = sum(x * y for x, y in zip(xs, ys)) / sum(x * x for x in xs)
    with open("model.json", "w") as fh:
        json.dump({"w": w}, fh)
    return w


def evaluate(x: float) -> dict:
    """Reads the first step's model (its artifact, copied to model.json) and predicts."""
    import json

    with open("model.json") as fh:
        w = json.load(fh)["w"]
    return {"x": x, "prediction": w * x}


def describe(flag: bool, count: int, tags: list, conf: dict, name: str = "it's \"quoted\" $HOME",
             note: Optional[str] = None, ratio: "float | None" = None) -> dict:
    return {"flag": flag, "count": count, "tags": tags, "conf": conf, "name": name, "note": repr(note),
            "ratio": ratio,
            "types": [type(v).__name__ for v in (flag, count, tags, conf, name)]}


class Trainer:
    """A class with train(): its __init__'s parameters are the component's inputs."""

    def __init__(self, lr: float, steps: int = 2):
        self.lr, self.steps = lr, steps

    def train(self) -> float:
        return self.lr * self.steps


class Unpicklable:
    def __init__(self, value):
        self.value = value


def make_object() -> Unpicklable:
    return Unpicklable(7)


@pytest.fixture
def builder(registry, base_image, tmp_path):
    with AppendBuilder(base_image, registry.address, repository=f"pipelines/{uuid.uuid4().hex[:8]}",
                       cache_dir=tmp_path / "cache") as b:
        yield b


def test_names_and_types_are_checked_when_the_component_is_made(builder):
    def untyped(x):
        return x

    def no_return(x: float):
        return x

    def frame(df: "set") -> None:
        pass

    def star(*args: int) -> None:
        pass

    def clash(model: str) -> None:
        pass

    def result(result: int) -> int:
        return result

    with pytest.raises(ConfigurationError, match="'x' of .*untyped has no type annotation"):
        component(untyped, builder=builder)
    with pytest.raises(ConfigurationError, match="no return annotation.*-> None for no output"):
        component(no_return, builder=builder)
    with pytest.raises(ConfigurationError, match="'df' of .*frame is set; a Pipelines parameter is str, int"):
        component(frame, builder=builder)
    with pytest.raises(ConfigurationError, match="named parameters"):
        component(star, builder=builder)
    with pytest.raises(ConfigurationError, match="'model' names both a parameter and a output artifact"):
        component(clash, outputs=["model.pkl"], builder=builder)
    with pytest.raises(ConfigurationError, match="'result' names both a parameter and a return value"):
        component(result, builder=builder)
    with pytest.raises(ConfigurationError, match="'model-v2' is not a valid name"):
        component(train, outputs={"model-v2": "model.json"}, builder=builder)
    with pytest.raises(ConfigurationError, match="must be a path relative to the working directory"):
        component(train, outputs=["/etc/passwd"], builder=builder)
    with pytest.raises(ConfigurationError, match="would both be the artifact 'model'"):
        component(train, outputs=["model.json", "out/model.pkl"], builder=builder)
    with pytest.raises(ConfigurationError, match="Did you mean 'outputs'"):
        component(train, outptus=["model.json"], builder=builder)
    with pytest.raises(ConfigurationError, match="the builder LocalBuilder makes LocalDir"):
        component(train, backend="local")


def test_import_fairing_does_not_import_kfp():
    code = "import sys, fairing, fairing.pipelines; print('kfp' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"


def _pipeline(train_op, evaluate_op, object_op):
    from kfp import dsl

    @dsl.pipeline(name="fairing-two-steps")
    def two_steps(scale: float = 2.0, x: float = 10.0) -> dict:
        trained = train_op(scale=scale)
        object_op()
        return evaluate_op(x=x, model=trained.outputs["model"]).outputs["result"]

    return two_steps


def test_a_two_step_pipeline_runs_under_kfp_local_docker_and_compiles(builder, registry, docker_engine, tmp_path,
                                                                     monkeypatch):
    import kfp.local
    from kfp import compiler

    train_op = component(train, outputs=["model.json"], builder=builder)
    evaluate_op = component(evaluate, input_artifacts={"model": "model.json"}, builder=builder)
    object_op = component(make_object, builder=builder)
    describe_op = component(describe, builder=builder)
    trainer_op = component(Trainer, builder=builder)
    image = train_op.component_spec.implementation.container.image
    assert image.startswith(registry.address + "/pipelines/") and "@sha256:" in image
    pipeline = _pipeline(train_op, evaluate_op, object_op)

    out = tmp_path / "pipeline.yaml"
    compiler.Compiler().compile(pipeline, str(out))
    spec = yaml.safe_load(out.read_text())
    executors = spec["deploymentSpec"]["executors"]
    train_exec = next(e for k, e in executors.items() if "train" in k)["container"]
    assert train_exec["image"] == image and train_exec["command"] == ["python3", "-m", "fairing_runtime.component"]
    assert spec["components"]["comp-train"]["outputDefinitions"]["artifacts"]["model"]
    assert spec["components"]["comp-train"]["outputDefinitions"]["parameters"]["result"]["parameterType"] == \
        "NUMBER_DOUBLE"
    assert spec["components"]["comp-evaluate"]["inputDefinitions"]["artifacts"]["model"]
    assert spec["components"]["comp-make-object"]["outputDefinitions"]["artifacts"]["result"]

    monkeypatch.setenv("DOCKER_HOST", docker_engine.base_url)
    kfp.local.init(runner=kfp.local.DockerRunner(), pipeline_root=str(tmp_path / "root"))
    try:
        task = train_op(scale=3.0, points=4)
        assert task.outputs["result"] == 3.0
        with open(task.outputs["model"].path) as fh:
            assert fh.read() == '{"w": 3.0}'
        described = describe_op(flag=False, count=3, tags=["a", 1], conf={"k": [1.5]}, ratio=0.5)
        assert described.outputs["result"] == {"flag": False, "count": 3, "tags": ["a", 1], "conf": {"k": [1.5]},
                                               "name": "it's \"quoted\" $HOME", "note": "None", "ratio": 0.5,
                                               "types": ["bool", "int", "list", "dict", "str"]}
        assert trainer_op(lr=0.25).outputs["result"] == 0.5
        made = object_op()  # a return value that is not JSON: an artifact holding it, pickled
        with open(made.outputs["result"].path, "rb") as fh:
            assert cloudpickle.load(fh).value == 7
        run = pipeline(scale=1.5, x=4.0)
        assert run.output == {"x": 4.0, "prediction": 6.0}
    finally:
        for ref in {image, evaluate_op.component_spec.implementation.container.image,
                    object_op.component_spec.implementation.container.image,
                    describe_op.component_spec.implementation.container.image,
                    trainer_op.component_spec.implementation.container.image}:
            docker_engine.run("image", "rm", "-f", ref, check=False)


def test_a_failing_function_fails_its_step_with_its_traceback(builder, docker_engine, tmp_path, monkeypatch,
                                                               capfd):
    import kfp.local

    def broken(n: int) -> int:
        raise ValueError(f"bad n {n}")

    def no_file() -> None:
        pass

    broken_op = component(broken, builder=builder)
    missing_op = component(no_file, outputs=["model.json"], builder=builder)
    monkeypatch.setenv("DOCKER_HOST", docker_engine.base_url)
    kfp.local.init(runner=kfp.local.DockerRunner(), pipeline_root=str(tmp_path / "root"), raise_on_error=True)
    try:
        with pytest.raises(RuntimeError):
            broken_op(n=3)
        assert "ValueError: bad n 3" in capfd.readouterr().out
        with pytest.raises(RuntimeError):
            missing_op()
        assert "the output 'model.json' was not written" in capfd.readouterr().out
    finally:
        for op in (broken_op, missing_op):
            docker_engine.run("image", "rm", "-f", op.component_spec.implementation.container.image, check=False)
