"""Entrypoint inside the job: run the payload, report the outcome, exit with its status.

Exit codes: 0 success, 1 the user's code raised, 2 the runtime could not load the payload
(version mismatch, missing file), 3 the result could not be pickled, 4 the output files
could not be sent.
"""

import json
import os
import platform
import runpy
import sys
import traceback

from . import MODULES_DIR, PAYLOAD_FILE, RUNTIME_DIR
from . import outputs
from .result import MAP_CALLS, MESSAGE_LIMIT, TRIAL_CALL, _dumps, encode, key_from_env

_KEY = b""  # the per-job result key, read (and removed from the environment) before the user's code runs


def _cloudpickle_version():
    try:
        import cloudpickle
    except ImportError:
        return None
    return cloudpickle.__version__


def _write(envelope: dict) -> int:
    """Send the outputs and write the envelope; 4 when the outputs could not be sent, else 0
    (2 when there is no result key: nothing the submitter could trust can be written)."""
    if not _KEY:
        sys.stderr.write("fairing runtime: no result key (FAIRING_RESULT_KEY_FILE or FAIRING_RESULT_KEY); "
                         "the result is not sent\n")
        return 2
    line = encode(envelope, _KEY)
    code = 0
    try:
        where, _files, large = outputs.send(line, limit=MESSAGE_LIMIT, required=bool(envelope.get("ok")))
    except outputs.OutputsError as exc:
        where, large, code = None, False, 4
        line = encode({**_base(), "ok": False, "error": "outputs", "message": str(exc)}, _KEY)
        sys.stderr.write(f"fairing runtime: {exc}\n")
    if where is not None:
        # the outputs' reference (or directory); a result too large for the termination
        # message went with them, and only this small envelope says where
        line = encode({**_base(), "large": True, "outputs": where} if large else {**envelope, "outputs": where}, _KEY)
    target = os.environ.get("FAIRING_RESULT_FILE")
    if target:
        with open(target, "w") as fh:
            fh.write(line)
    if os.environ.get("FAIRING_RESULT_LOG") == "1":
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout.write("\n" + line + "\n")
        sys.stdout.flush()
    return code


def _base() -> dict:
    return {"python": platform.python_version(), "cloudpickle": _cloudpickle_version()}


def _runtime_error(kind: str, message: str) -> int:
    _write({**_base(), "ok": False, "error": kind, "message": message})
    sys.stderr.write(f"fairing runtime: {message}\n")
    return 2


def _load_function(spec: dict):
    want_py = spec.get("python")
    have_py = "%d.%d" % sys.version_info[:2]
    if want_py and want_py != have_py:
        raise _Mismatch(
            f"the function was pickled with Python {want_py} but the job runs Python {have_py}; "
            f"use a base image with Python {want_py}, or submit from Python {have_py}"
        )
    have_cp = _cloudpickle_version()
    want_cp = spec.get("cloudpickle")
    if have_cp is None:
        raise _Mismatch(f"cloudpickle is not installed in the image; add cloudpickle=={want_cp} to its requirements")
    if want_cp and want_cp != have_cp:
        raise _Mismatch(
            f"the function was pickled with cloudpickle {want_cp} but the job has cloudpickle {have_cp}; "
            f"pin cloudpickle=={want_cp} in the image"
        )
    import pickle

    if os.path.isdir(MODULES_DIR):  # the user's local modules, imported by name from the payload
        sys.path.insert(0, os.path.abspath(MODULES_DIR))
    with open(spec["pickle"], "rb") as fh:
        return pickle.load(fh)


class _Mismatch(Exception):
    pass


def _run(spec: dict):
    kind = spec["kind"]
    if kind == "function":
        call = _load_function(spec)
        target, args, kwargs = call["target"], call["args"], call["kwargs"]
        if MAP_CALLS in kwargs:  # one input of a map: the job's completion index picks it
            args, kwargs = kwargs[MAP_CALLS][int(os.environ["JOB_COMPLETION_INDEX"])]
        if TRIAL_CALL in kwargs:  # a Katib trial: its parameters come from the environment
            from . import trial

            return trial.run(target, kwargs[TRIAL_CALL], os.environ)
        if call.get("is_class"):
            return target(*args, **kwargs).train()
        return target(*args, **kwargs)
    if kind == "script":
        from . import shell

        shell.configure(allow_shell=spec.get("allow_shell") is True, job_dir=os.getcwd())
        sys.argv = [spec["path"], *spec.get("args", [])]
        sys.path.insert(0, os.path.dirname(os.path.abspath(spec["path"])))
        runpy.run_path(spec["path"], run_name="__main__")
        return None
    if kind == "notebook":
        import papermill

        out = spec.get("output", spec["path"][: -len(".ipynb")] + ".output.ipynb")
        papermill.execute_notebook(spec["path"], out, parameters=spec.get("parameters") or {}, progress_bar=False,
                                   kernel_name=spec.get("kernel"), language=spec.get("language"))
        with open(out) as fh:
            return json.load(fh)
    raise _Mismatch(f"unknown payload kind {kind!r}; the submitting fairing is newer than this runtime")


def _load_serve_target(spec: dict):
    return _load_function(spec)["target"]


def main() -> int:
    global _KEY
    try:
        _KEY = key_from_env()
    except (OSError, ValueError) as exc:
        return _runtime_error("payload", f"cannot read the result key: {exc}")
    try:
        with open(PAYLOAD_FILE) as fh:
            spec = json.load(fh)
    except OSError as exc:
        return _runtime_error("payload", f"cannot read {PAYLOAD_FILE}: {exc}")
    _ORIGINS.update(spec.get("origins") or {})
    if spec["kind"] == "serve":
        from .serving import serve

        try:
            return serve(spec, _load_serve_target)
        except _Mismatch as exc:
            return _runtime_error("mismatch", str(exc))
    # where the job writes the files that come back (see outputs.py)
    os.environ.setdefault("FAIRING_OUTPUTS", os.path.abspath(os.path.join(RUNTIME_DIR, "outputs")))
    os.makedirs(os.environ["FAIRING_OUTPUTS"], exist_ok=True)
    try:
        value = _run(spec)
    except _Mismatch as exc:
        return _runtime_error("mismatch", str(exc))
    except SystemExit as exc:
        if exc.code in (None, 0):
            value = None
        else:
            return _report_exception(exc)
    except BaseException as exc:  # the user's code: report whatever it raised
        return _report_exception(exc)
    try:
        return _write({**_base(), "ok": True, "value": value})
    except Exception as exc:
        return _runtime_error("result", f"the return value could not be pickled: {type(exc).__name__}: {exc}") + 1


_ORIGINS: dict = {}  # code name -> where it came from (fairing.preprocessors.origins), for tracebacks
_HERE = os.path.dirname(os.path.abspath(__file__))


def _ours(filename: str) -> bool:
    """A frame of the runtime itself, or of runpy running a script: not the user's."""
    return os.path.dirname(os.path.abspath(filename)) == _HERE or filename in ("<frozen runpy>",) or \
        os.path.basename(filename) == "runpy.py"


def _user_frames(te: "traceback.TracebackException") -> None:
    """Drop the runtime's leading frames and put back the file (or ``Cell In[3]``) and source
    lines of code that came pickled as ``<dynamic-code>``; in place, with the chained ones."""
    seen = set()
    while te is not None and id(te) not in seen:
        seen.add(id(te))
        frames = list(te.stack)
        while frames and _ours(frames[0].filename):
            frames.pop(0)
        fixed = []
        for frame in frames:
            origin = _ORIGINS.get(frame.name) if frame.filename == "<dynamic-code>" else None
            if origin is not None and frame.lineno is not None:
                index = frame.lineno - origin["first"]
                line = origin["lines"][index] if 0 <= index < len(origin["lines"]) else None
                frame = traceback.FrameSummary(origin["file"], frame.lineno, frame.name, lookup_line=False,
                                               line=line)
            fixed.append(frame)
        te.stack = traceback.StackSummary.from_list(fixed)
        for chained in (te.__cause__, te.__context__):
            if chained is not None:
                _user_frames(chained)
        break


def _format_exception(exc: BaseException) -> str:
    te = traceback.TracebackException(type(exc), exc, exc.__traceback__)
    _user_frames(te)
    text = "".join(te.format())
    # as IPython shows a cell: "Cell In[3], line 2, in fit"
    import re

    return re.sub(r'File "(Cell In\[\d+\])", line', r"\1, line", text)


#: The longest exception message the envelope carries (the traceback in the log has it whole).
_MESSAGE_MAX = 10_000


def _message(exc: BaseException) -> str:
    """``str(exc)``, short enough to travel, and a note when the exception's own ``__str__`` raises."""
    try:
        text = str(exc)
    except Exception as err:  # the user's __str__ is broken: the job's failure is still reported
        return f"<{type(exc).__name__}.__str__ raised {type(err).__name__}>"
    return text if len(text) <= _MESSAGE_MAX else text[:_MESSAGE_MAX] + f"... ({len(text)} characters)"


def _report_exception(exc: BaseException) -> int:
    tb = _format_exception(exc)
    sys.stderr.write(tb)
    envelope = {
        **_base(),
        "ok": False,
        "exc_type": f"{type(exc).__module__}.{type(exc).__qualname__}",
        "message": _message(exc),
        "traceback": tb,
    }
    exc.__traceback__ = None
    try:
        # pickled on its own, so that a class the submitter cannot recreate (importable only
        # here, or an __init__ that does not take its args) spoils only this, not the envelope
        envelope["exc_pickle"] = _dumps(exc)
    except Exception:  # it cannot travel: the submitter raises RemoteError from exc_type and message
        pass
    _write(envelope)
    return 1


if __name__ == "__main__":
    sys.exit(main())
