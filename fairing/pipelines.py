"""A fairing function as a Kubeflow Pipelines (KFP v2) container component.

>>> train_op = component(train, outputs=["model.json"], registry="...", base_image="...")
>>> evaluate_op = component(evaluate, input_artifacts={"model": "model.json"}, ...)
>>> @dsl.pipeline
... def pipeline(scale: float = 2.0) -> float:
...     model = train_op(scale=scale).outputs["model"]
...     return evaluate_op(model=model, x=3.0).outputs["result"]

The mapping, checked when the component is made (``ConfigurationError`` otherwise):

- the image is fairing's build of the function (its requirements, input files and local
  modules, as for a job), pushed and pinned by digest, so it must be a registry image: the
  builder of a cluster backend, or ``builder=`` one that pushes (append, docker, cluster);
- the command runs fairing's runtime (``python3 -m fairing_runtime.component``, see
  ``fairing/runtime/component.py``) with the component's inputs as the function's keyword
  arguments; each parameter is annotated (or has a default of) ``str``, ``int``, ``float``,
  ``bool``, ``dict`` or ``list``, which become KFP's parameter types;
- the return value is the output parameter ``result`` when annotated with one of those types,
  none for ``-> None``, else the output artifact ``result`` holding the value pickled with
  cloudpickle; a missing return annotation is refused (KFP types its outputs when the
  pipeline is compiled, before anything runs);
- ``outputs=`` files (or directories) the function writes in its working directory (or
  under ``$FAIRING_OUTPUTS``) become output artifacts, named after the file's stem
  (``"model.json"`` -> ``model``) or as given (``{"weights": "out/w.bin"}``);
- ``input_artifacts={"model": "model.json"}``: the input artifact ``model`` (another
  component's output) is copied to ``model.json`` in the working directory before the call.

``kfp`` (the ``pipelines`` extra) is imported when a component is made, not before.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import keyword
import posixpath
import types
import typing
from typing import Any, Callable, Iterable, Mapping, Optional, Union

from .errors import ConfigurationError
from .runtime.component import COMMAND

__all__ = ["component"]

RETURN_NAME = "result"
_UNIONS = (Union, getattr(types, "UnionType", Union))
_PARAMETER_TYPES = {str: "str", int: "int", float: "float", bool: "bool", dict: "dict", list: "list"}
_KFP_HINT = "pip install 'fairing-ml[pipelines]' (kfp 2.x)"


def _kfp():
    try:
        import kfp
        from kfp import dsl
    except ImportError:
        raise ConfigurationError(f"Pipelines components need the kfp package: {_KFP_HINT}.") from None
    if not kfp.__version__.startswith("2."):
        raise ConfigurationError(f"fairing makes KFP v2 components, but kfp {kfp.__version__} is installed: "
                                 f"{_KFP_HINT}.")
    return dsl


def _parameter_type(annotation: Any, where: str) -> str:
    origin = typing.get_origin(annotation) or annotation
    if origin in _PARAMETER_TYPES:
        return _PARAMETER_TYPES[origin]
    name = getattr(annotation, "__name__", None) or repr(annotation)
    raise ConfigurationError(f"{where} is {name}; a Pipelines parameter is str, int, float, bool, dict or list "
                             "(pass anything else as a file: an input artifact)")


def _check_name(name: str, what: str) -> None:
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        raise ConfigurationError(f"{what} {name!r} is not a valid name: use a Python identifier "
                                 "(letters, digits and _)")


def _relative_file(path: Any, what: str) -> str:
    text = str(path)
    norm = posixpath.normpath(text.replace("\\", "/"))
    if not text or posixpath.isabs(norm) or norm == "." or norm.startswith("../") or norm == "..":
        raise ConfigurationError(f"{what} {text!r} must be a path relative to the working directory, inside it")
    return norm


def _output_artifacts(outputs: Union[Iterable, Mapping]) -> dict:
    if isinstance(outputs, (str, bytes)) or hasattr(outputs, "__fspath__"):
        outputs = [outputs]
    if isinstance(outputs, Mapping):
        named = {name: _relative_file(path, f"output {name!r}") for name, path in outputs.items()}
    else:
        named = {}
        for path in outputs:
            file = _relative_file(path, "output")
            stem = posixpath.basename(file.rstrip("/")).split(".", 1)[0].replace("-", "_")
            if stem in named:
                raise ConfigurationError(f"outputs {named[stem]!r} and {file!r} would both be the artifact {stem!r}; "
                                         f"name them: outputs={{'{stem}': {named[stem]!r}, 'other': {file!r}}}")
            named[stem] = file
    for name in named:
        _check_name(name, "output artifact")
    return named


def _signature_of(target: Any):
    """(parameters, return annotation) of a function, or of a class's __init__ and train()."""
    if inspect.isclass(target):
        if not callable(getattr(target, "train", None)):
            raise ConfigurationError(f"A class becomes a component through its train() method; "
                                     f"{target.__qualname__} has none.")
        hints = typing.get_type_hints(target.train)
        params = list(inspect.signature(target).parameters.values())
        init_hints = typing.get_type_hints(target.__init__)
        return [(p, init_hints.get(p.name, p.annotation)) for p in params], hints.get("return", inspect._empty)
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # unresolvable forward references: the raw annotations
        hints = getattr(target, "__annotations__", {})
    params = list(inspect.signature(target).parameters.values())
    return [(p, hints.get(p.name, p.annotation)) for p in params], hints.get("return", inspect._empty)


def _inputs(target: Any) -> list[tuple[str, str, Any]]:
    """[(name, parameter type, default or inspect._empty)] of the target's parameters."""
    params, _ = _signature_of(target)
    out = []
    for param, annotation in params:
        where = f"Parameter {param.name!r} of {getattr(target, '__qualname__', target)}"
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise ConfigurationError(f"{where} is *{param.name} or **{param.name}; a component's inputs are "
                                     "named parameters")
        if param.kind == param.POSITIONAL_ONLY:
            raise ConfigurationError(f"{where} is positional-only; a component passes its inputs by name")
        if annotation is inspect._empty:
            if param.default is inspect._empty or param.default is None:
                raise ConfigurationError(f"{where} has no type annotation; annotate it (str, int, float, bool, "
                                         "dict or list)")
            annotation = type(param.default)
        if typing.get_origin(annotation) in _UNIONS:  # Optional[X], X | None
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            annotation = args[0] if len(args) == 1 else annotation
        _check_name(param.name, "Parameter")
        out.append((param.name, _parameter_type(annotation, where), param.default))
    return out


def _return(target: Any) -> Optional[tuple[str, Optional[str]]]:
    """('parameter', type) | ('artifact', None) | None for ``-> None``."""
    _, annotation = _signature_of(target)
    what = getattr(target, "__qualname__", target)
    if annotation is inspect._empty:
        raise ConfigurationError(
            f"{what} has no return annotation; KFP types a component's outputs before it runs: annotate it "
            "(-> float for an output parameter, -> None for no output, -> object for an artifact holding the "
            "pickled value)")
    if annotation is None or annotation is type(None):
        return None
    origin = typing.get_origin(annotation) or annotation
    if origin in _PARAMETER_TYPES:
        return "parameter", _PARAMETER_TYPES[origin]
    return "artifact", None


_OPTIONS = ("outputs", "input_artifacts", "requirements", "input_files", "base_dir", "env", "name", "builder",
            "backend", "on_event")


def component(target: Optional[Callable] = None, *, outputs: Union[Iterable, Mapping] = (),
              input_artifacts: Optional[Mapping[str, str]] = None, requirements: Any = None,
              input_files: Any = (), base_dir: Any = None, env: Optional[Mapping[str, str]] = None,
              name: Optional[str] = None, builder: Any = None, backend: Any = None, on_event: Any = None,
              **backend_options: Any) -> Any:
    """``target`` (a function, or a class with ``train()``) as a KFP v2 container component.

    Builds and pushes the image now (with ``builder``, else the backend's builder made with
    ``backend_options``: ``registry=``, ``base_image=``...) and returns a
    ``kfp.dsl.ContainerComponent``: call it inside a ``@dsl.pipeline`` with the function's
    arguments and the ``input_artifacts``' names. Used as ``@component(outputs=[...])``
    without ``target``, it is a decorator. See this module's docstring for the mapping.
    """
    if target is None:
        return lambda t: component(t, outputs=outputs, input_artifacts=input_artifacts, requirements=requirements,
                                   input_files=input_files, base_dir=base_dir, env=env, name=name,
                                   builder=builder, backend=backend, on_event=on_event, **backend_options)
    for key in backend_options:  # a misspelling of component()'s own options is named here, the rest by the backend
        close = difflib.get_close_matches(key, _OPTIONS, n=1, cutoff=0.75)
        if close:
            raise ConfigurationError(f"Unknown option {key!r} for component(). Did you mean {close[0]!r}? "
                                     f"Its options: {', '.join(_OPTIONS)}, and the backend's (registry=, "
                                     "base_image=...).")
    if not callable(target):
        raise ConfigurationError(f"component() takes a function or a class with train(); got {target!r}")
    artifacts_out = _output_artifacts(outputs)
    if not isinstance(input_artifacts or {}, Mapping):
        raise ConfigurationError("input_artifacts maps each input artifact's name to the file it becomes in the "
                                 "working directory: input_artifacts={'model': 'model.json'}")
    artifacts_in = {n: _relative_file(p, f"input artifact {n!r}") for n, p in (input_artifacts or {}).items()}
    for n in artifacts_in:
        _check_name(n, "input artifact")
    shared = {}
    for n, path in artifacts_in.items():  # one would overwrite the other (an output may update an input's file)
        if path in shared:
            raise ConfigurationError(f"The input artifacts {shared[path]!r} and {n!r} both become the file {path!r} "
                                     "in the working directory; give each a file of its own")
        shared[path] = n
    params = _inputs(target)
    returned = _return(target)
    names: dict[str, str] = {}
    for kind, group in (("parameter", [p[0] for p in params]), ("input artifact", list(artifacts_in)),
                        ("output artifact", list(artifacts_out)),
                        ("return value", [RETURN_NAME] if returned else [])):
        for n in group:
            if n in names:
                raise ConfigurationError(f"{n!r} names both a {names[n]} and a {kind} of the component; rename one "
                                         f"(the return value is the output {RETURN_NAME!r})")
            names[n] = kind
    if name is not None:
        _check_name(name, "Component name")
    dsl = _kfp()
    image = _build(target, requirements=requirements, input_files=input_files, base_dir=base_dir, env=env,
                   builder=builder, backend=backend, on_event=on_event, backend_options=backend_options)
    return _container_component(dsl, target, str(image), params, artifacts_in, artifacts_out, returned,
                                name or target.__name__)


def _build(target, *, requirements, input_files, base_dir, env, builder, backend, on_event, backend_options):
    from .artifacts import RegistryImage, produced_by
    from .backends import BackendChoice
    from .events import emitter, run_stage
    from .preprocessors.function import FunctionPreprocessor

    if builder is None:
        builder = BackendChoice(backend, backend_options).make().builder
    elif backend is not None or backend_options:
        given = sorted(backend_options) + (["backend"] if backend is not None else [])
        raise ConfigurationError(f"Give a builder or a backend with its options, not both (got builder= and {given}).")
    produces = produced_by(builder)
    if produces != (RegistryImage,):
        made = " or ".join(getattr(t, "__name__", str(t)) for t in produces) or "nothing"
        raise ConfigurationError(
            f"A Pipelines component runs an image from a registry, pinned by digest; the builder "
            f"{type(builder).__name__} makes {made}. Use a cluster backend (backend='kubernetes', registry=..., "
            "base_image=...) or builder=AppendBuilder(base_image, registry).")
    preprocessor = FunctionPreprocessor(target, input_files=input_files, requirements=requirements,
                                        base_dir=base_dir, env=env)
    emit = emitter(on_event)
    context = run_stage(emit, "package", lambda: dataclasses.replace(preprocessor.context(), entrypoint=COMMAND))
    return run_stage(emit, "build", lambda: builder.build(context, on_event=on_event))


def _container_component(dsl, target, image, params, artifacts_in, artifacts_out, returned, name):
    from kfp.dsl import Artifact, Input, Output, OutputPath

    python_types = {v: k for k, v in _PARAMETER_TYPES.items()}
    signature = []
    for pname, ptype, default in params:
        signature.append(inspect.Parameter(pname, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                           annotation=python_types[ptype],
                                           **({} if default is inspect._empty else {"default": default})))
    required = [p for p in signature if p.default is inspect._empty]
    optional = [p for p in signature if p.default is not inspect._empty]
    extra = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Input[Artifact])
             for n in artifacts_in]
    extra += [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Output[Artifact])
              for n in artifacts_out]
    if returned is not None:
        annotation = OutputPath(python_types[returned[1]]) if returned[0] == "parameter" else Output[Artifact]
        extra.append(inspect.Parameter(RETURN_NAME, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=annotation))
    ordered = required + extra + optional  # parameters with defaults last, as Python requires
    ptypes = {p[0]: p[1] for p in params}
    optional_none = {p[0] for p in params if p[2] is None}

    def spec(*placeholders):
        values = dict(zip([p.name for p in ordered], placeholders))
        args: list = ["--executor-input", "{{$}}"]  # KFP's executor input, filled in by the runner
        for pname in ptypes:
            flag = ["--param", pname, ptypes[pname], values[pname]]
            # a parameter that defaults to None is optional: passed only when the pipeline gives it
            args += [dsl.IfPresentPlaceholder(input_name=pname, then=flag)] if pname in optional_none else flag
        for aname, file in artifacts_in.items():
            args += ["--input-artifact", aname, file, values[aname].path]
        for aname, file in artifacts_out.items():
            args += ["--output-artifact", aname, file, values[aname].path]
        if returned is not None and returned[0] == "parameter":
            args += ["--return-parameter", returned[1], values[RETURN_NAME]]
        elif returned is not None:
            args += ["--return-artifact", values[RETURN_NAME].path]
        return dsl.ContainerSpec(image=image, command=list(COMMAND), args=args)

    spec.__name__ = name
    spec.__qualname__ = name
    spec.__doc__ = inspect.getdoc(target) if inspect.getdoc(target) and "Args:" in inspect.getdoc(target) else None
    spec.__signature__ = inspect.Signature(ordered)
    return dsl.container_component(spec)
