"""The job's stand-in for IPython: runs the ``get_ipython()`` calls of a converted notebook.

fairing converts a notebook with IPython's own input transformer
(``IPython.core.inputtransformer2.TransformerManager``), which turns ``%magic``,
``%%cell_magic`` and ``!cmd`` into ``get_ipython().run_line_magic(...)``,
``run_cell_magic(...)``, ``system(...)`` and ``getoutput(...)`` calls. The job has no
IPython (the runtime is standard library only, and the image need not have it), so
this module answers those calls for the magics that mean something in a batch job.
It is written here rather than taken from IPython because IPython's shell needs a
terminal or a kernel and a dozen dependencies; the converter
(``fairing.preprocessors.notebook``) refuses, before submit, every magic not in
:data:`LINE_MAGICS` / :data:`CELL_MAGICS`, so this list is the whole contract.

- ``%%writefile [-a] path`` writes (or appends) its body; ``%%time`` / ``%time`` /
  ``%%timeit`` / ``%timeit`` run the code once and print the time taken;
  ``%%capture [var]`` runs its body with the output captured;
- ``%%bash``, ``%%sh``, ``!cmd``, ``x = !cmd``, ``%system``, ``%sx`` run as subprocesses
  only when the user allowed shell commands (``allow_shell=True``, which the runtime
  passes to :func:`configure` from the payload). The converter refuses them before
  submit when it can see them; this shell refuses them in the job however they are
  reached (``ip = get_ipython(); ip.system(...)``, ``getattr(...)``, a helper called
  with the shell object), with :class:`ShellNotAllowed`;
- ``%%writefile`` writes only below the job's directory (:class:`OutsideJobDirectory`
  otherwise: ``../x``, an absolute path, a link that leads out, a ``%cd`` elsewhere);
- ``%env``, ``%set_env``, ``%cd``, ``%pwd`` act on the job's process;
- ``%pip install`` is a no-op: the converter made its packages requirements of the image;
- ``%matplotlib``, ``%config``, help (``obj?``), autoreload and the display cell magics
  (``%%html``, ``%%markdown``...) are no-ops.
"""

import os
import re
import subprocess
import sys
import time

__all__ = ["get_ipython", "display", "configure", "LINE_MAGICS", "CELL_MAGICS", "NOOP_LINE_MAGICS",
           "PYTHON_CELL_MAGICS", "SHELL_MAGICS", "UnsupportedInJob", "ShellNotAllowed", "OutsideJobDirectory"]

#: Line magics that do nothing in a job: display, help and interactive tools.
NOOP_LINE_MAGICS = frozenset({
    "matplotlib", "config", "pinfo", "pinfo2", "pdoc", "pdef", "psource", "who", "whos", "lsmagic",
    "autoreload", "aimport", "xmode", "precision", "pip", "load_ext", "reload_ext", "pprint",
})
#: Cell magics that only display something in a notebook.
DISPLAY_CELL_MAGICS = frozenset({"html", "markdown", "latex", "svg", "javascript", "js"})
#: Cell magics whose body is Python.
PYTHON_CELL_MAGICS = frozenset({"time", "timeit", "capture"})
#: Magics that run shell commands (allowed only when the user allows shell commands).
SHELL_MAGICS = frozenset({"bash", "sh", "system", "sx"})

LINE_MAGICS = NOOP_LINE_MAGICS | {"time", "timeit", "env", "set_env", "cd", "pwd", "system", "sx"}
CELL_MAGICS = DISPLAY_CELL_MAGICS | PYTHON_CELL_MAGICS | {"writefile", "bash", "sh"}


class UnsupportedInJob(RuntimeError):
    """A magic was called that the job's shell does not run."""


class ShellNotAllowed(UnsupportedInJob):
    """A shell command was asked for, and the notebook was not submitted with allow_shell=True."""


class OutsideJobDirectory(UnsupportedInJob):
    """``%%writefile`` was asked to write outside the job's directory."""


#: What the job allows: shell commands (from the payload's "allow_shell"), and the directory
#: %%writefile stays in (the working directory the job started in).
_STATE = {"allow_shell": False, "job_dir": os.path.realpath(os.getcwd())}


def configure(*, allow_shell, job_dir=None):
    """Set what the job allows (the runtime calls this before it runs a converted notebook)."""
    _STATE["allow_shell"] = allow_shell is True
    if job_dir is not None:
        _STATE["job_dir"] = os.path.realpath(job_dir)


def _check_shell(what):
    if not _STATE["allow_shell"]:
        raise ShellNotAllowed(
            f"{what} runs a shell command, and this notebook was submitted without allowing it. Allow it with "
            "NotebookPreprocessor(allow_shell=True) or config.set_preprocessor('notebook', allow_shell=True), or "
            "write the step in Python (subprocess.run([...]) states what runs).")


def _inside_job_dir(path):
    real = os.path.realpath(path)
    root = _STATE["job_dir"]
    if real != root and not real.startswith(root.rstrip(os.sep) + os.sep):
        raise OutsideJobDirectory(
            f"%%writefile {path} would write outside the job's directory ({root}): it leads to {real}. Write below "
            "the job's directory (a relative path such as 'out/file.txt'), and keep what must come back under "
            "$FAIRING_OUTPUTS.")


def _caller_namespaces(depth):
    frame = sys._getframe(depth + 1)
    return frame.f_globals, frame.f_locals


_EXPAND = re.compile(r"\$\$|\$\{([^}]*)\}|\$([A-Za-z_]\w*)|\{([^{}]*)\}")


def _var_expand(text, globals_, locals_):
    """IPython's expansion of ``$name``, ``${expr}`` and ``{expr}`` in shell lines; a field
    that does not evaluate is left as written, as IPython does."""
    def repl(match):
        if match.group(0) == "$$":
            return "$"
        expr = match.group(1) or match.group(2) or match.group(3)
        if not expr or not expr.strip():
            return match.group(0)
        try:
            return str(eval(expr, globals_, locals_))
        except Exception:
            return match.group(0)
    return _EXPAND.sub(repl, text)


def _report_time(started_cpu, started_wall):
    cpu = time.process_time() - started_cpu
    wall = time.perf_counter() - started_wall
    print(f"CPU times: total: {cpu:.3g} s\nWall time: {wall:.3g} s")


def _timed(code, globals_, locals_, filename):
    """``%time``: run once, print the CPU and wall time taken (also when it raises)."""
    cpu, wall = time.process_time(), time.perf_counter()
    try:
        return _run_code(code, globals_, locals_, filename)
    finally:
        _report_time(cpu, wall)


def _run_code(code, globals_, locals_, filename):
    """Run ``code``; like IPython, return the value of a last bare expression."""
    import ast

    tree = ast.parse(code, filename)
    last = tree.body[-1] if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    if last is not None:
        tree.body.pop()
    exec(compile(tree, filename, "exec"), globals_, locals_)
    if last is not None:
        return eval(compile(ast.Expression(last.value), filename, "eval"), globals_, locals_)
    return None


class _Captured:
    """What ``%%capture var`` stores: the body's stdout and stderr."""

    def __init__(self, stdout, stderr):
        self.stdout = stdout
        self.stderr = stderr

    def show(self):
        sys.stdout.write(self.stdout)
        sys.stderr.write(self.stderr)

    def __call__(self):
        self.show()


class JobShell:
    """The object ``get_ipython()`` returns in the job."""

    # -- shell commands ---------------------------------------------------------------

    def system(self, cmd, _depth=0):
        _check_shell("!cmd (get_ipython().system)")
        globals_, locals_ = _caller_namespaces(_depth + 1)
        sys.stdout.flush()
        sys.stderr.flush()
        code = subprocess.call(_var_expand(cmd, globals_, locals_), shell=True)
        globals_["_exit_code"] = code  # as IPython does
        return None

    def getoutput(self, cmd, split=True, depth=0):
        _check_shell("x = !cmd (get_ipython().getoutput)")
        globals_, locals_ = _caller_namespaces(depth + 1)
        out = subprocess.run(_var_expand(cmd, globals_, locals_), shell=True, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True).stdout
        return out.splitlines() if split else out

    # -- magics -----------------------------------------------------------------------

    def run_line_magic(self, magic_name, line, _stack_depth=1):
        globals_, locals_ = _caller_namespaces(_stack_depth)
        if magic_name in ("time", "timeit"):
            return _timed(line, globals_, locals_, f"<%{magic_name}>")
        if magic_name in ("env", "set_env"):
            return self._env(_var_expand(line, globals_, locals_))
        if magic_name == "cd":
            os.chdir(os.path.expanduser(_var_expand(line, globals_, locals_).strip() or "~"))
            return None
        if magic_name == "pwd":
            return os.getcwd()
        if magic_name in ("system", "sx"):
            _check_shell(f"%{magic_name}")
            return self.getoutput(line, depth=_stack_depth)
        if magic_name in NOOP_LINE_MAGICS:
            return None
        raise UnsupportedInJob(f"%{magic_name} cannot run in a fairing job")

    def run_cell_magic(self, magic_name, line, cell, _stack_depth=1):
        globals_, locals_ = _caller_namespaces(_stack_depth)
        if magic_name == "writefile":
            return self._writefile(_var_expand(line, globals_, locals_), cell)
        if magic_name in ("time", "timeit"):
            return _timed(cell, globals_, locals_, f"<%%{magic_name}>")
        if magic_name == "capture":
            return self._capture(line, cell, globals_, locals_)
        if magic_name in ("bash", "sh"):
            _check_shell(f"%%{magic_name}")
            sys.stdout.flush()
            sys.stderr.flush()
            code = subprocess.call(["bash" if magic_name == "bash" else "sh", "-c", cell])
            if code:
                raise subprocess.CalledProcessError(code, f"%%{magic_name} cell")
            return None
        if magic_name in DISPLAY_CELL_MAGICS:
            return None
        raise UnsupportedInJob(f"%%{magic_name} cannot run in a fairing job")

    @staticmethod
    def _env(line):
        line = line.strip()
        if not line:
            return dict(os.environ)
        if "=" not in line and " " not in line:
            return os.environ.get(line)
        name, _, value = line.partition("=" if "=" in line else " ")
        os.environ[name.strip()] = value.strip()
        return None

    @staticmethod
    def _writefile(line, cell):
        args = line.split()
        append = bool(args) and args[0] in ("-a", "--append")
        path = os.path.expanduser(" ".join(args[1:] if append else args).strip("'\""))
        _inside_job_dir(path)
        exists = os.path.exists(path)
        with open(path, "a" if append else "w") as fh:
            fh.write(cell)
        print(f"{'Appending to' if append else 'Overwriting' if exists else 'Writing'} {path}")

    @staticmethod
    def _capture(line, cell, globals_, locals_):
        import io
        from contextlib import redirect_stderr, redirect_stdout

        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            _run_code(cell, globals_, locals_, "<%%capture>")
        names = [a for a in line.split() if not a.startswith("-")]
        if names:
            globals_[names[0]] = _Captured(out.getvalue(), err.getvalue())


_SHELL = JobShell()


def get_ipython():
    """The job's shell (the name IPython's converted code calls)."""
    return _SHELL


def display(*objs, **kwargs):
    """IPython's ``display``, in a job: each object's repr on stdout."""
    for obj in objs:
        print(repr(obj))
