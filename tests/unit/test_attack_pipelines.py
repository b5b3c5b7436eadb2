"""Hostile component() arguments (issue 29): each a ConfigurationError when the component is made,
before anything is built."""

import typing

import pytest

from fairing.errors import ConfigurationError
from fairing.pipelines import component


def train(x: int, scale: typing.Optional[float] = None, *, tags: typing.List[int] = [1]) -> float:  # noqa: B006
    return 1.0


@pytest.mark.parametrize("outputs", [["../x"], ["a/../../x"], ["/etc/passwd"], [""], ["."], {"m": "/abs"},
                                     ["a/model.txt", "b/model.txt"], {"not valid": "m.txt"}, {"class": "m.txt"}])
def test_bad_outputs(outputs):
    with pytest.raises(ConfigurationError):
        component(train, outputs=outputs)


@pytest.mark.parametrize("artifacts", [{"m": "../m"}, {"m": "/tmp/m"}, {"m": "a/../../m"}, {"1m": "m"},
                                       ["m"], {"x": "m.txt"}])
def test_bad_input_artifacts(artifacts):
    with pytest.raises(ConfigurationError):
        component(train, input_artifacts=artifacts)


def test_odd_signatures():
    def star(*args) -> None: ...
    def kw(**kw) -> None: ...
    def posonly(a: int, /) -> None: ...
    def unannotated(a) -> None: ...
    def noreturn(a: int): ...
    def setparam(a: set) -> None: ...
    def union(a: typing.Union[int, str]) -> None: ...
    for f in (star, kw, posonly, unannotated, noreturn, setparam, union):
        with pytest.raises(ConfigurationError):
            component(f)


def test_output_named_like_the_return_value():
    from fairing.pipelines import RETURN_NAME
    with pytest.raises(ConfigurationError):
        component(train, outputs={RETURN_NAME: "m.txt"})


def test_artifacts_sharing_a_file():
    # builder=object() is refused later (no image); the refusal wanted is about the shared file
    with pytest.raises(ConfigurationError, match="m.txt"):
        component(train, input_artifacts={"a": "m.txt", "b": "./m.txt"}, builder=object())
