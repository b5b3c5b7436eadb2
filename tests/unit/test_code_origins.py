"""Where a pickled function's code came from (fairing.preprocessors.origins): the target, the
functions of its module it calls, nothing else; a name two places use is left out."""

from __future__ import annotations

from fairing.preprocessors.origins import code_origins


def helper(v):
    return 1 / v


def unrelated():
    return "never shipped"


def target(x):
    def inner(y):
        return helper(y)
    return inner(x)


def test_the_target_its_nested_functions_and_what_it_calls():
    found = code_origins(target)
    assert sorted(found) == ["helper", "inner", "target"]
    assert found["helper"]["file"].endswith("test_code_origins.py")
    assert found["helper"]["lines"] == ["def helper(v):", "    return 1 / v"]
    assert found["inner"]["first"] == found["target"]["first"] + 1


def test_a_class_target_and_a_clashing_name():
    class Model:
        def train(self):
            def step():
                return 1
            return step()

        def predict(self):
            def step():  # the same name elsewhere: a traceback could not tell them apart
                return 2
            return step()

    found = code_origins(Model)
    assert {"train", "predict"} <= set(found) and "step" not in found


def test_code_without_a_file_is_left_out():
    namespace: dict = {}
    exec("def made():\n    return 1\n", namespace)
    assert code_origins(namespace["made"]) == {}
    assert code_origins(lambda: 1)["<lambda>"]["lines"][0].strip().startswith("assert code_origins(lambda")
