"""Run a function payload as a Kubeflow Pipelines container component.

``python3 -m fairing_runtime.component [options]``: the command of the component that
``fairing.pipelines.component`` makes. The pipeline's runner (a KFP backend, or
``kfp.local``) fills in the values and paths; this module turns them into the function's
arguments and its files, calls it, and writes what KFP reads back:

    --param NAME TYPE VALUE          an input parameter: TYPE is str, int, float, bool, dict or list
    --input-artifact NAME FILE PATH  the artifact at PATH is copied to FILE in the working directory
    --output-artifact NAME FILE PATH FILE (written by the function, in the working directory or
                                     under $FAIRING_OUTPUTS) is copied to PATH
    --return-parameter TYPE PATH     the return value, as KFP's output parameter file
    --return-artifact PATH           the return value, pickled (it is not a JSON value)
    --executor-input JSON            KFP's executor input (``{{$}}``): the output artifacts are listed in
                                     its executor output file, which is where a runner that does not
                                     track them itself (kfp.local) reads them from

Exit codes as the runtime's: 0 success, 1 the function raised (its traceback on stderr),
2 the payload could not be loaded or an argument was malformed, 4 an output was missing.
"""

import json
import os
import shutil
import sys
import traceback

from . import RUNTIME_DIR

#: The component's command (and its image's entrypoint).
COMMAND = ("python3", "-m", "fairing_runtime.component")
PARAMETER_TYPES = ("str", "int", "float", "bool", "dict", "list")


class _Usage(Exception):
    pass


def _value(name, kind, text):
    if kind == "str":
        return text
    try:
        value = json.loads(text)
    except ValueError:
        if kind == "bool" and text in ("True", "False"):
            return text == "True"
        raise _Usage(f"input {name!r}: {text[:80]!r} is not a {kind}") from None
    if kind == "float" and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    expected = {"int": int, "float": float, "bool": bool, "dict": dict, "list": list}[kind]
    if not isinstance(value, expected) or (kind != "bool" and isinstance(value, bool)):
        raise _Usage(f"input {name!r}: {text[:80]!r} is not a {kind}")
    return value


def _parse(argv):
    spec = {"params": {}, "inputs": [], "outputs": [], "return": None}
    arity = {"--executor-input": 1, "--param": 3, "--input-artifact": 3, "--output-artifact": 3,
             "--return-parameter": 2,
             "--return-artifact": 1}
    i = 0
    while i < len(argv):
        flag = argv[i]
        if flag not in arity:
            raise _Usage(f"unexpected argument {flag!r}; see python3 -m fairing_runtime.component's docstring")
        values = argv[i + 1:i + 1 + arity[flag]]
        if len(values) < arity[flag]:
            raise _Usage(f"{flag} takes {arity[flag]} values, got {values}")
        i += 1 + arity[flag]
        if flag == "--executor-input":
            try:
                spec["executor_input"] = json.loads(values[0])
            except ValueError:
                raise _Usage(f"--executor-input is not JSON: {values[0][:80]!r}") from None
        elif flag == "--param":
            name, kind, text = values
            if kind not in PARAMETER_TYPES:
                raise _Usage(f"input {name!r}: unknown type {kind!r}")
            spec["params"][name] = _value(name, kind, text)
        elif flag == "--input-artifact":
            spec["inputs"].append(values[1:])
        elif flag == "--output-artifact":
            spec["outputs"].append(values[1:])
        elif flag == "--return-parameter":
            spec["return"] = ("parameter", *values)
        else:
            spec["return"] = ("artifact", None, values[0])
    return spec


def _copy(src, dest):
    parent = os.path.dirname(os.path.abspath(dest))
    os.makedirs(parent, exist_ok=True)
    if os.path.isdir(src):
        if os.path.isdir(dest):
            shutil.rmtree(dest)
        elif os.path.exists(dest):
            os.remove(dest)
        shutil.copytree(src, dest, symlinks=True)
    else:
        shutil.copyfile(src, dest)


def _write_return(value, kind, ptype, path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if kind == "artifact":
        import cloudpickle

        with open(path, "wb") as fh:
            cloudpickle.dump(value, fh)
        return
    if ptype == "float" and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    expected = {"str": str, "int": int, "float": float, "bool": bool, "dict": dict, "list": list}[ptype]
    if not isinstance(value, expected) or (ptype in ("int", "float") and isinstance(value, bool)):
        raise _Usage(f"the function is declared to return {ptype} but returned {type(value).__name__} "
                     f"{str(value)[:80]!r}")
    with open(path, "w") as fh:
        fh.write(value if ptype == "str" else json.dumps(value))


def main(argv=None):
    from .__main__ import _load_function, _Mismatch

    argv = sys.argv[1:] if argv is None else argv
    if argv[:3] == list(COMMAND):
        # the image's entrypoint is this command, so that a runner that passes the component's command as
        # the container's arguments (kfp.local's DockerRunner) runs the same as one that replaces the
        # entrypoint with it (KFP on Kubernetes)
        argv = argv[3:]
    try:
        spec = _parse(argv)
        with open(os.path.join(RUNTIME_DIR, "payload.json")) as fh:
            call = _load_function(json.load(fh))
    except (_Usage, _Mismatch, OSError) as exc:
        sys.stderr.write(f"fairing component: {exc}\n")
        return 2
    os.environ.setdefault("FAIRING_OUTPUTS", os.path.abspath(os.path.join(RUNTIME_DIR, "outputs")))
    os.makedirs(os.environ["FAIRING_OUTPUTS"], exist_ok=True)
    for file, path in spec["inputs"]:
        try:
            _copy(path, file)
        except OSError as exc:
            sys.stderr.write(f"fairing component: the input artifact for {file!r} could not be copied: {exc}\n")
            return 2
    try:
        target = call["target"]
        value = target(**spec["params"]).train() if call.get("is_class") else target(**spec["params"])
    except BaseException:  # the user's code: its traceback is the step's log
        traceback.print_exc()
        return 1
    try:
        if spec["return"] is not None:
            kind, ptype, path = spec["return"]
            _write_return(value, kind, ptype, path)
        for file, path in spec["outputs"]:
            candidates = [file, os.path.join(os.environ["FAIRING_OUTPUTS"], file)]
            found = next((c for c in candidates if os.path.exists(c)), None)
            if found is None:
                raise _Usage(f"the output {file!r} was not written: the function must write it in its working "
                             f"directory ({os.getcwd()}) or under $FAIRING_OUTPUTS")
            _copy(found, path)
    except (_Usage, OSError) as exc:
        sys.stderr.write(f"fairing component: {exc}\n")
        return 4
    except Exception as exc:  # the return value could not be pickled
        sys.stderr.write(f"fairing component: the return value could not be saved: {type(exc).__name__}: {exc}\n")
        return 4
    try:
        _executor_output(spec.get("executor_input"))
    except (OSError, TypeError, AttributeError) as exc:
        sys.stderr.write(f"fairing component: the executor output could not be written: {exc}\n")
        return 4
    return 0


def _executor_output(executor_input):
    """Lists the output artifacts (as the executor input gave them) in KFP's executor output file."""
    outputs = (executor_input or {}).get("outputs") or {}
    path = outputs.get("outputFile")
    if not path:
        return
    artifacts = {name: {"artifacts": [{k: a[k] for k in ("name", "uri", "metadata") if k in a}
                                      for a in group.get("artifacts", [])]}
                 for name, group in (outputs.get("artifacts") or {}).items()}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as fh:
        json.dump({"artifacts": artifacts}, fh)


if __name__ == "__main__":
    sys.exit(main())
