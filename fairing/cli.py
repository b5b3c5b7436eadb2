"""The ``fairing`` command: run, build, logs, list, status, attach, delete, serve, endpoints,
config, doctor.

Built on click: options go anywhere on the line, ``--`` ends fairing's options (what
follows goes to the script), unknown options and values are usage errors. Exit codes:
0 success, 1 a failed job (or a build/deploy error), 2 a usage error, 130 interrupted.
``--output json`` prints one JSON document on stdout for scripts. In a terminal, stages
and progress are drawn with rich and the job's log streams live; piped, every event is
one plain line (stages on stderr, the job's output on stdout).

The command passes on only the options the user gave; defaults are the API's.

It stays one module past 450 lines because click's commands share one option set, one
output writer (``_Out``) and one error-to-exit-code mapping (``_fail``); every command is a
thin shell over the API, and a split would scatter the command line's one contract.
"""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Any, Optional, Sequence

import click

from .errors import ConfigurationError, EntryPointNotFoundError, FairingError, JobNotFoundError
from . import __version__

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

from ._names import BACKENDS as _BACKENDS  # noqa: E402

BACKEND_NAMES = tuple(_BACKENDS)


def _default_backend() -> str:
    """The backend the API uses when --backend is not given (the ``backend`` setting, else
    local: :mod:`fairing.settings`); options are checked against it."""
    from .settings import resolve

    return resolve().backend or "local"
from ._names import CLUSTER_BACKENDS as _CLUSTER  # noqa: E402


def _applies_to(option: str) -> tuple:
    """The backends that take the job option ``option`` (each backend says which it takes:
    :func:`fairing._options.job_options`); giving it for another backend is a usage error."""
    from ._options import job_options_of, load

    return tuple(name for name in BACKEND_NAMES if option in job_options_of(load(_BACKENDS, name, "backend")))


# -- parsing helpers ---------------------------------------------------------------------


def _pairs(what: str, sep: str = "="):
    """A click callback: KEY<sep>VALUE options into a dict, in the order given."""
    def parse(ctx: click.Context, param: click.Parameter, values: Sequence[str]) -> dict:
        out = {}
        for value in values:
            key, found, rest = value.partition(sep)
            if not found or not key or not rest:
                raise click.BadParameter(f"expected {what}, got {value!r}", ctx=ctx, param=param)
            out[key] = rest
        return out

    return parse


def _secret_env(ctx: click.Context, param: click.Parameter, values: Sequence[str]) -> dict:
    """K=SECRET/KEY -> {secret: {K: KEY}}."""
    out: dict = {}
    for var, ref in _pairs("ENV=SECRET/KEY")(ctx, param, values).items():
        secret, found, key = ref.partition("/")
        if not found or not secret or not key:
            raise click.BadParameter(f"expected ENV=SECRET/KEY, got {var}={ref!r}", ctx=ctx, param=param)
        out.setdefault(secret, {})[var] = key
    return out


def _replicas(ctx: click.Context, param: click.Parameter, values: Sequence[str]) -> dict:
    out = {}
    for rtype, count in _pairs("TYPE=N (e.g. Worker=2)")(ctx, param, values).items():
        if not count.isdigit() or int(count) < 1:
            raise click.BadParameter(f"the count of {rtype} must be a positive integer, got {count!r}",
                                     ctx=ctx, param=param)
        out[rtype] = int(count)
    return out


def _json_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


class Command(click.Command):
    """A command whose --help ends with an example, and whose unknown options say where the
    script's own options go."""

    def __init__(self, *args: Any, example: str = "", **kwargs: Any) -> None:
        if example:
            kwargs["epilog"] = "\b\nExample:\n" + "\n".join(f"  {line}" for line in example.strip().splitlines())
        super().__init__(*args, **kwargs)

    def parse_args(self, ctx: click.Context, args: list) -> list:
        try:
            return super().parse_args(ctx, args)
        except click.NoSuchOption as exc:
            if self.name not in ("run", "build"):
                raise
            raise click.UsageError(f"{exc.format_message()} The script's own options go after --, "
                                   f"e.g. fairing {self.name} train.py -- --epochs 3", ctx=ctx) from None


output_option = click.option("--output", "-o", type=click.Choice(["text", "json"]), default="text",
                             show_default=True, help="text for people, json for scripts")
namespace_option = click.option("--namespace", "-n", default=None,
                                help="Kubernetes namespace (default: the kubeconfig context's)")


# -- rendering ---------------------------------------------------------------------------


class RichRenderer:
    """Stages and transfers as rich progress on stderr; the job's output as lines above them."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (BarColumn, DownloadColumn, MofNCompleteColumn, Progress, ProgressColumn,
                                   SpinnerColumn, TextColumn)
        from rich.text import Text

        class Amount(ProgressColumn):
            """A bar and bytes (or items) for transfers; nothing for a stage's spinner line."""

            def __init__(self) -> None:
                super().__init__()
                self.bar, self.size, self.count = BarColumn(), DownloadColumn(), MofNCompleteColumn()

            def render(self, task):
                unit = task.fields.get("unit")
                if unit is None:
                    return Text("")
                from rich.table import Table

                row = Table.grid(padding=(0, 1))
                row.add_row(self.bar.render(task), (self.size if unit == "B" else self.count).render(task))
                return row

        self.console = Console(stderr=True)
        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), Amount(),
                                 console=self.console, transient=True, redirect_stdout=False)
        self._tasks: dict = {}
        self._started = False

    def _start(self) -> None:
        if not self._started:
            self.progress.start()
            self._started = True

    def close(self) -> None:
        if self._started:
            self.progress.stop()
            self._started = False

    def __call__(self, event: Any) -> None:
        from .events import LogLine, Progress, Stage, TrialUpdate

        if isinstance(event, LogLine):
            prefix = f"[{event.source}] " if event.source else ""
            self.console.print(f"{prefix}{event.line}", markup=False, highlight=False, soft_wrap=True)
            return
        if isinstance(event, TrialUpdate):
            value = "" if event.value is None else f" = {event.value:g}"
            self.console.print(f"trial {event.trial} {event.state} {event.params}{value}", markup=False,
                               highlight=False)
            return
        self._start()
        if isinstance(event, Stage):
            key = ("stage", event.name)
            if event.status == "started":
                if key not in self._tasks:  # a builder may report its own 'build' inside ours
                    detail = f" ({event.detail})" if event.detail else ""
                    self._tasks[key] = self.progress.add_task(f"{event.name}…{detail}", total=None)
                return
            task = self._tasks.pop(key, None)
            if task is not None:
                self.progress.remove_task(task)
            mark = {"finished": "[green]✓[/]", "skipped": "[dim]-[/]", "failed": "[red]✗[/]"}.get(event.status, "·")
            detail = f" [dim]({event.detail})[/]" if event.detail else ""
            self.console.print(f"{mark} {event.name} {event.status}{detail}", highlight=False)
        elif isinstance(event, Progress):
            key = ("progress", event.task)
            if key not in self._tasks:
                self._tasks[key] = self.progress.add_task(event.task, total=event.total, unit=event.unit)
            if event.total is not None and event.done >= event.total:  # done: make room for what runs
                self.progress.remove_task(self._tasks.pop(key))
            else:
                self.progress.update(self._tasks[key], completed=event.done, total=event.total)


class _Out:
    """Where the command's own messages go, by output mode and terminal."""

    def __init__(self, mode: str) -> None:
        import threading

        self.json = mode == "json"
        self.tty = sys.stderr.isatty() and not self.json
        self.renderer: Any = None
        self._lock = threading.Lock()

    def events(self) -> Any:
        """The event callback for a job: rich in a terminal, plain lines when piped, until :meth:`close`."""
        from .notebook.display import TextRenderer

        if self.tty:
            self.renderer = RichRenderer()
        else:  # json: the job's output goes to stderr, so stdout stays one JSON document
            self.renderer = TextRenderer(sys.stderr, sys.stderr if self.json else sys.stdout)
        return self

    shows_job_output = True  # both renderers show the job's lines (fairing.output writes none again)

    def __call__(self, event: Any) -> None:
        with self._lock:
            if self.renderer is not None:
                self.renderer(event)

    def close(self) -> None:
        """Stop rendering events. A handle's threads may still report (a detached job's log):
        once this returns none writes here, so none holds the terminal when the process exits."""
        with self._lock:
            if isinstance(self.renderer, RichRenderer):
                self.renderer.close()
            self.renderer = None

    def note(self, message: str) -> None:
        """A message for people (stderr)."""
        self.close()
        click.echo(f"fairing: {message}", err=True)

    def line(self, text: str) -> None:
        """A line of the job's log."""
        click.echo(text, err=self.json)

    def document(self, data: Any) -> None:
        click.echo(json.dumps(data, indent=2, sort_keys=True, default=repr))


# -- turning CLI options into API options -----------------------------------------------------


def _backend_options(backend: Optional[str], given: dict) -> dict:
    """The API's keyword arguments for the options the user gave (``given``: name -> value,
    only those given). Until every backend takes these options uniformly, this is where
    they are mapped: mutators on Kubernetes, plain arguments for Docker."""
    name = backend or _default_backend()
    from ._options import JOB_OPTIONS

    for option in (o for o in given if o in JOB_OPTIONS):
        backends = _applies_to(option)
        if name not in backends:
            flag = "--" + option.replace("_", "-")
            raise click.UsageError(f"{flag} does not apply to the {name} backend; it applies to: "
                                   f"{', '.join(backends)}. Choose one with --backend.")
    options: dict = {} if backend is None else {"backend": backend}
    env = given.get("env") or {}
    # the same cpu=, memory=, gpus= on every backend (fairing.resources); checked here, before any build
    resources = {k: given[k] for k in ("cpu", "memory", "gpus") if k in given}
    _check_resources(resources)
    if name == "local":
        options.update(resources)
        if env:
            options["env"] = env
        return options
    if name == "docker":
        options.update({k: given[k] for k in ("registry", "base_image") if k in given}, **resources)
        if env:
            options["env"] = env
        return options
    from .deployers import mutators as m

    mutators = []
    if env:
        mutators.append(m.env(env))
    for secret, keys in (given.get("secret_env") or {}).items():
        mutators.append(m.secret_env(secret, keys))
    for key in ("registry", "base_image", "namespace"):
        if key in given:
            options[key] = given[key]
    deployer = given.get("deployer")
    if "replicas" in given and deployer not in ("tfjob", "pytorchjob"):
        raise click.UsageError("--replicas needs --deployer tfjob or --deployer pytorchjob "
                               "(a job has one pod; a TrainJob takes --nodes).")
    if "nodes" in given and deployer != "trainjob":
        raise click.UsageError("--nodes needs --deployer trainjob (a Kubeflow Trainer v2 TrainJob).")
    if deployer == "trainjob":
        from .deployers.trainjob import TrainJobDeployer

        options["deployer"] = TrainJobDeployer(num_nodes=given.get("nodes", 1), namespace=given.get("namespace"),
                                               mutators=mutators, queue=given.get("queue"), **resources)
    elif deployer in ("tfjob", "pytorchjob"):
        from ._registry import load
        from .deployers import DEPLOYERS

        options["deployer"] = load(DEPLOYERS, deployer, "deployer")(
            given.get("replicas"), namespace=given.get("namespace"), mutators=mutators, queue=given.get("queue"),
            **resources)
    else:
        options.update(resources)
        if mutators:
            options["mutators"] = mutators
        if "queue" in given:
            options["queue"] = given["queue"]
    if given.get("insecure_registry"):
        options["insecure"] = True
    return options


def _check_resources(resources: dict) -> None:
    """--cpu/--memory/--gpus by Kubernetes' rules: a usage error naming the flag."""
    from .errors import ConfigurationError
    from .resources import check_cpu, check_gpus, check_memory

    for key, check in (("cpu", check_cpu), ("memory", check_memory), ("gpus", check_gpus)):
        try:
            check(resources.get(key), option="--" + key)
        except ConfigurationError as exc:
            raise click.UsageError(str(exc)) from None


def _given(ctx: click.Context, names: Sequence[str]) -> dict:
    """The options of ``names`` the user gave on the command line (not their defaults)."""
    from click.core import ParameterSource

    out = {}
    for name in names:
        if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE:
            value = ctx.params[name]
            if value not in ((), {}, None):
                out[name] = value
    return out


def _entry(entry: str) -> Any:
    """A .py or .ipynb path as it is, or module:function imported (from the current directory)."""
    if entry.endswith((".py", ".ipynb")):
        return entry
    module, found, attr = entry.partition(":")
    if not found or not module or not attr:
        raise click.UsageError(f"{entry!r} is not something fairing can run: give a .py script, an .ipynb "
                               "notebook or module:function (e.g. train:main).")
    import importlib

    sys.path.insert(0, os.getcwd())
    try:
        target = importlib.import_module(module)
    except ImportError as exc:
        raise click.UsageError(f"Could not import {module!r} for {entry!r}: {exc}. Run fairing from the directory "
                               "that holds the module.") from None
    finally:
        sys.path.remove(os.getcwd())
    try:
        for part in attr.split("."):
            target = getattr(target, part)
    except AttributeError:
        raise click.UsageError(f"The module {module!r} has no {attr!r}.") from None
    if not callable(target):
        raise click.UsageError(f"{entry!r} is not a function or class.")
    return target


_CONTROL = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _summary(exc: BaseException, limit: int = 300) -> str:
    """The first line of a job's exception for one ``fairing: error:`` line: its own ``__str__``
    may raise, and its text (the job's, not ours) may carry terminal escapes or be megabytes."""
    try:
        text = str(exc)
    except Exception as err:
        return f"<{type(exc).__name__}.__str__ raised {type(err).__name__}>"
    text = _CONTROL.sub("", text.splitlines()[0] if text else "")
    return text if len(text) <= limit else text[:limit] + "..."


def _fail(out: _Out, exc: BaseException, *, name: str = "") -> int:
    """Report an error; the exit code it means."""
    if isinstance(exc, (ConfigurationError, EntryPointNotFoundError)):
        out.note(f"error: {exc}")
        code = EXIT_USAGE
    elif isinstance(exc, FairingError):
        out.note(f"error: {exc}")
        code = EXIT_FAILED
    else:
        from .results import is_job_exception

        out.close()
        if is_job_exception(exc):  # the job's own: its traceback is in its output, shown above
            out.note(f"error: the job {getattr(exc, 'fairing_job', name) or name} raised "
                     f"{type(exc).__name__}: {_summary(exc)} (its traceback is above)")
        else:  # a bug of fairing's or an unexpected failure: the whole traceback, for a report
            import traceback

            traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
        code = EXIT_FAILED
    if out.json:
        out.document({"job": name or getattr(exc, "job", None), "status": "Failed", "exit_code": code,
                      "error": type(exc).__name__, "message": _summary(exc, limit=10_000)})
    return code


def _result_document(name: str, value: Any) -> dict:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        value = repr(value)
    return {"job": name, "status": "Succeeded", "exit_code": 0, "result": value}


def _configure_logging(verbose: int) -> None:
    """-v: the library's diagnostics (retries, fallbacks, renewals, reconnects) at INFO;
    -vv: DEBUG too, as ``fairing: <module>: message`` lines on stderr. Only the command line
    configures logging; the library never does."""
    import logging

    class StderrHandler(logging.StreamHandler):
        """Writes to the stderr of the moment: rich's live display swaps it while it draws."""

        def emit(self, record: logging.LogRecord) -> None:
            self.stream = sys.stderr
            super().emit(record)

    logger = logging.getLogger("fairing")
    logger.setLevel(logging.INFO if verbose == 1 else logging.DEBUG)
    if not any(type(h).__name__ == "StderrHandler" for h in logger.handlers):
        handler = StderrHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("fairing: %(name)s: %(message)s"))
        logger.addHandler(handler)


# -- the commands ----------------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(version=__version__, prog_name="fairing", message="%(prog)s %(version)s")
@click.option("--kubeconfig", type=click.Path(exists=True, dir_okay=False), default=None,
              help="kubeconfig file to use instead of $KUBECONFIG (as kubectl's --kubeconfig)")
@click.option("--context", "kube_context", default=None,
              help="kubeconfig context to use (default: the context setting, else the kubeconfig's current-context)")
@click.option("--verbose", "-v", count=True,
              help="show fairing's diagnostics on stderr: -v retries and fallbacks, -vv everything")
@click.pass_context
def cli(ctx: click.Context, kubeconfig: Optional[str], kube_context: Optional[str], verbose: int) -> None:
    """Run ML code as a job, locally or on a cluster, and follow the jobs fairing started.

    --kubeconfig and --context may be given anywhere before --, as with kubectl."""
    if verbose:
        _configure_logging(verbose)
    if kube_context is not None and not kube_context.strip():
        raise click.BadParameter("must name a context of the kubeconfig", param_hint="--context")
    if kubeconfig or kube_context:
        import dataclasses

        from . import environment

        env = environment.current()
        fairing_env = dict(env.fairing_env)
        if kube_context:
            fairing_env["FAIRING_CONTEXT"] = kube_context  # the context setting, above the settings files
        ctx.with_resource(environment.use(dataclasses.replace(
            env, kubeconfig_env=kubeconfig or env.kubeconfig_env, fairing_env=fairing_env)))


_GLOBAL_OPTIONS = ("--kubeconfig", "--context")


def _hoist_global_options(args: list) -> list:
    """``fairing run --context prod x.py`` as ``fairing --context prod run x.py``: the
    cluster options go anywhere before ``--`` (kubectl's habit)."""
    end = args.index("--") if "--" in args else len(args)
    front, rest, i = [], [], 0
    while i < end:
        arg = args[i]
        name = arg.split("=", 1)[0]
        if name in _GLOBAL_OPTIONS:
            if "=" in arg or i + 1 >= end:
                front.append(arg)
                i += 1
            else:
                front += [arg, args[i + 1]]
                i += 2
            continue
        rest.append(arg)
        i += 1
    return front + rest + args[end:]


_RUN_OPTIONS = ("registry", "base_image", "insecure_registry", "namespace", "deployer", "replicas", "nodes", "cpu",
                "memory",
                "gpus", "env", "secret_env", "queue")

_JOB_OPTIONS = [
    click.option("--backend", "-b", type=click.Choice(BACKEND_NAMES), default=None,
                 help="where it runs (default: local)"),
    click.option("--registry", help="image registry to push to, e.g. registry.example.com/team"),
    click.option("--base-image", help="image to build on, e.g. python:3.11-slim"),
    click.option("--insecure-registry", is_flag=True, default=False,
                 help="the registry speaks plain HTTP (a test or in-cluster registry)"),
    click.option("--input-files", "-i", multiple=True, metavar="PATH",
                 help="a file or directory to package with the code (repeat for more)"),
    click.option("--requirements", "-r", metavar="FILE",
                 help="requirements file (default: requirements.txt next to the entry point)"),
]


def _job_options(fn):
    for option in reversed(_JOB_OPTIONS):
        fn = option(fn)
    return fn


@cli.command(cls=Command, example="""
fairing run train.py -- --epochs 3
fairing run train.py --backend kubernetes --registry registry.example.com/team --base-image python:3.11-slim
fairing run train:main --detach --env LR=0.1      # module:function; prints the job's name
""")
@click.argument("entry", metavar="SCRIPT|NOTEBOOK|MODULE:FUNCTION")
@click.argument("args", nargs=-1, metavar="[-- ARGS]")
@_job_options
@namespace_option
@click.option("--deployer", type=click.Choice(["job", "tfjob", "pytorchjob", "trainjob"]),
              help="the Kubernetes workload (trainjob: a Kubeflow Trainer v2 TrainJob)")
@click.option("--replicas", multiple=True, callback=_replicas, metavar="TYPE=N",
              help="replicas of a TFJob/PyTorchJob, e.g. Worker=2 (repeat for more)")
@click.option("--nodes", type=click.IntRange(min=1), help="nodes of a TrainJob (one pod each)")
@click.option("--queue", metavar="LOCALQUEUE",
              help="the Kueue LocalQueue the job waits in for quota (default: the queue setting)")
@click.option("--cpu", help="cores the job may use (request and limit), e.g. 2 or 500m")
@click.option("--memory", help="memory the job may use (request and limit), e.g. 4Gi or 4G")
@click.option("--gpus", type=click.IntRange(min=0), help="number of GPUs")
@click.option("--env", "-e", multiple=True, callback=_pairs("KEY=VALUE"), metavar="KEY=VALUE",
              help="environment variable for the job (repeat for more)")
@click.option("--secret-env", multiple=True, callback=_secret_env, metavar="KEY=SECRET/KEY",
              help="environment variable from a Kubernetes Secret's key (repeat for more)")
@click.option("--full-notebook", is_flag=True, help="run the notebook whole with papermill")
@click.option("--param", "-p", multiple=True, callback=_pairs("KEY=VALUE"), metavar="KEY=VALUE",
              help="papermill parameter (with --full-notebook); VALUE is JSON when it parses")
@click.option("--name", help="the job's name (default: generated)")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), help="seconds before the job is stopped")
@click.option("--detach", "-d", is_flag=True, help="start the job, print its name and return")
@click.option("--keep-logs", is_flag=True, help="save the log before the job is removed")
@click.option("--warm", is_flag=True, default=None,
              help="run on a warm worker pod that outlives the call: a re-run sends only the changed files "
                   "(kubernetes backends)")
@click.option("--outputs", "-O", multiple=True, metavar="PATH",
              help="a file or directory the job writes (relative to its working directory) that comes back "
                   "here when it succeeds (repeat for more)")
@output_option
@click.pass_context
def run(ctx: click.Context, entry: str, args: tuple, backend: Optional[str], input_files: tuple,
        requirements: Optional[str], full_notebook: bool, param: dict, name: Optional[str], timeout: Optional[float],
        detach: bool, keep_logs: bool, outputs: tuple, output: str, warm: Optional[bool] = None,
        **_: Any) -> int:
    """Run a script, a notebook or a function as a job; stream its log and exit with its outcome."""
    from .api import TrainJob, run_handle

    out = _Out(output)
    try:
        options = _backend_options(backend, _given(ctx, _RUN_OPTIONS))  # makes a TFJob/TrainJob deployer: checked
    except FairingError as exc:
        return _fail(out, exc)
    if warm:
        if detach:
            raise click.UsageError("--warm runs the call on a warm worker and waits for it; it cannot --detach.")
        options["warm"] = True
    target = _entry(entry)
    if callable(target):
        job_args: dict = {"args": tuple(args)}
    else:
        job_args = {"args": list(args), "full_notebook": full_notebook,
                    "parameters": {k: _json_value(v) for k, v in param.items()}}
    if param and not full_notebook:
        raise click.UsageError("--param needs --full-notebook (parameters are injected by papermill).")
    notebook = isinstance(target, str) and target.endswith(".ipynb")
    if full_notebook and not notebook:
        raise click.UsageError("--full-notebook runs an .ipynb notebook whole; "
                               f"{entry!r} is not a notebook.")
    if notebook and args:
        raise click.UsageError("A notebook takes no command-line arguments; pass values with "
                               "--full-notebook --param KEY=VALUE.")
    if detach and timeout is not None:
        raise click.UsageError("--timeout applies while fairing waits for the job; it cannot with --detach.")
    if detach and backend == "docker":
        raise click.UsageError("--detach works with the local and cluster backends: a detached Docker container "
                               "could not be found again by fairing list, logs, attach or delete.")
    if detach and outputs:
        raise click.UsageError("--outputs come back when fairing waits for the job; they cannot with --detach.")
    if detach and keep_logs:
        raise click.UsageError("--keep-logs applies when fairing removes the job; with --detach, give it to "
                               "fairing delete JOB --keep-logs.")
    handle = None
    try:
        if outputs:
            job_args["outputs"] = list(outputs)
        job = TrainJob(target, input_files=list(input_files), requirements=requirements, name=name,
                       on_event=out.events(), **job_args, **options)
        handle = job.submit()
        if detach:
            getattr(handle, "detach", lambda: None)()
            out.close()
            if out.json:
                out.document({"job": handle.name, "status": "Running"})
            else:
                click.echo(handle.name)
                out.note(f"job {handle.name} started; follow it with: fairing logs --follow {handle.name}")
            return EXIT_OK
        from .api import download_outputs

        came_back: dict = {}  # --outputs, and what the job wrote under $FAIRING_OUTPUTS: here
        value = run_handle(handle, timeout=timeout, keep_logs=keep_logs,
                           before_cleanup=lambda _value: came_back.update(download_outputs(handle, ".")))
    except KeyboardInterrupt:
        out.note("interrupted; the job was stopped and removed")
        return EXIT_INTERRUPTED
    except Exception as exc:
        code = _fail(out, exc, name=getattr(handle, "name", ""))
        if keep_logs and handle is not None:
            from .jobs import saved_log

            if saved_log(handle.name):
                out.note(f"the log is kept: fairing logs {handle.name}")
        return code
    out.close()
    if full_notebook:  # the value is the executed notebook: write it next to the input
        from pathlib import Path

        executed = Path(entry).with_suffix(f".{handle.name}.ipynb")
        executed.write_text(json.dumps(value, indent=1))
        value = str(executed)
        out.note(f"the executed notebook is {executed}")
    if out.json:
        out.document({**_result_document(handle.name, value), "outputs": sorted(came_back)})
    else:
        if value is not None and not full_notebook:
            click.echo(repr(value))
        if came_back:
            out.note(f"came back: {', '.join(sorted(came_back))}")
        out.note(f"job {handle.name} succeeded")
    return EXIT_OK


@cli.command(cls=Command, example="""
fairing build train.py --backend kubernetes --registry registry.example.com/team --base-image python:3.11-slim
""")
@click.argument("entry", metavar="SCRIPT|NOTEBOOK|MODULE:FUNCTION")
@click.argument("args", nargs=-1, metavar="[-- ARGS]")
@_job_options
@output_option
@click.pass_context
def build(ctx: click.Context, entry: str, args: tuple, backend: Optional[str], input_files: tuple,
          requirements: Optional[str], output: str, **_: Any) -> int:
    """Build the job's image and print its reference, pinned by digest."""
    from .api import preprocessor_for
    from .backends import get_backend

    out = _Out(output)
    options = _backend_options(backend, _given(ctx, ("registry", "base_image", "insecure_registry")))
    target = _entry(entry)
    try:
        pre = preprocessor_for(target, args=args, input_files=list(input_files), requirements=requirements)
        chosen = get_backend(options.pop("backend", None), **options)
        image = chosen.builder.build(pre.context(), on_event=out.events())
    except Exception as exc:
        return _fail(out, exc)
    out.close()
    if hasattr(image, "context"):
        out.note("error: the local backend builds no image (it runs the code in a directory). "
                 "Choose --backend docker or kubernetes.")
        return EXIT_USAGE
    if out.json:
        out.document({"image": str(image)})
    else:
        click.echo(str(image))
    return EXIT_OK


def _attach(name: str, namespace: Optional[str], on_event: Any = None) -> Any:
    from .jobs import attach

    return attach(name, namespace=namespace, on_event=on_event)


@cli.command(cls=Command, example="""
fairing logs --follow fairing-1201-2135-ab12c
fairing logs fairing-1201-2135-ab12c --replica worker-1
""")
@click.argument("job")
@click.option("--follow", "-f", is_flag=True, help="keep printing until the job ends")
@click.option("--replica", metavar="R", help="only this replica's lines, e.g. worker-1")
@namespace_option
@output_option
def logs(job: str, follow: bool, replica: Optional[str], namespace: Optional[str], output: str) -> int:
    """Print a job's log (also a deleted job's, when it was kept with --keep-logs)."""
    from .jobs import log_lines, saved_log
    from .jobs.logs import read_saved_log
    from .jobs.records import has_record

    out = _Out(output)
    prefix = f"[{replica}] " if replica else ""
    try:
        if saved_log(job) is not None and not has_record(job):  # deleted with --keep-logs: no cluster needed
            raise JobNotFoundError(f"The job {job} was deleted; its log was kept.", job=job)
        handle = _attach(job, namespace)
        lines = handle.logs(follow=True) if follow else log_lines(handle)
    except JobNotFoundError as exc:
        kept = saved_log(job)
        if kept is None:
            return _fail(out, exc, name=job)
        try:
            lines = read_saved_log(kept).splitlines()
        except OSError as error:
            return _fail(out, FairingError(f"The kept log of the job {job} ({kept}) cannot be read: {error}"),
                         name=job)
    except FairingError as exc:
        return _fail(out, exc, name=job)
    collected, replicas, matched = [], set(), 0
    try:
        for line in lines:
            if line.startswith("[") and "] " in line:
                replicas.add(line[1:line.index("] ")])
            if line.startswith(prefix):
                matched += 1
                line = line[len(prefix):] if prefix else line
                if out.json:
                    collected.append(line)
                else:
                    click.echo(line)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    if replica and not matched and replicas:
        out.note(f"error: the job {job} has no replica {replica!r} with log lines; its replicas: "
                 f"{', '.join(sorted(replicas))}.")
        return EXIT_USAGE
    if out.json:
        out.document({"job": job, "lines": collected})
    return EXIT_OK


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def _table(infos: list) -> None:
    where = any(info.namespace for info in infos)  # a NAMESPACE column once a cluster job is listed
    rows = [("NAME", "BACKEND", *(("NAMESPACE",) if where else ()), "KIND", "STATUS", "AGE", "SOURCE", "IMAGE")]
    for info in infos:
        rows.append((info.name, info.backend, *((info.namespace or "-",) if where else ()), info.kind, info.phase,
                     _age(info.age), info.origin.source if info.origin else
                     (f"invalid record ({info.problem}): fairing delete {info.name}" if info.problem else ""),
                     info.image or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1])
    for info in infos:  # why Kueue holds a job: a line each, under the table (too long for a column)
        if info.phase == "Queued" and info.message:
            click.echo(f"{info.name}: {info.message}")


@cli.command("list", cls=Command, example="""
fairing list
fairing list --backend kubernetes --namespace team-a --output json
""")
@click.option("--backend", "-b", type=click.Choice(("local", *_CLUSTER)), default=None,
              help="only this backend's jobs (default: local ones, and the cluster's recorded namespaces)")
@namespace_option
@output_option
def list_(backend: Optional[str], namespace: Optional[str], output: str) -> int:
    """List the jobs and endpoints fairing started, with status, age and image."""
    from .jobs import jobs

    out = _Out(output)
    try:
        infos = jobs(backend=backend, namespace=namespace)
    except FairingError as exc:
        return _fail(out, exc)
    if out.json:
        out.document([info.as_dict() for info in infos])
    elif infos:
        _table(infos)
    else:
        out.note("no jobs (fairing run ... starts one)")
    return EXIT_OK


@cli.command(cls=Command, example="fairing status fairing-1201-2135-ab12c --output json")
@click.argument("job")
@namespace_option
@output_option
def status(job: str, namespace: Optional[str], output: str) -> int:
    """Show a job's phase and exit code."""
    out = _Out(output)
    try:
        handle = _attach(job, namespace)
        state = getattr(handle, "process", handle).status()  # a local endpoint's state is its process's
    except FairingError as exc:
        return _fail(out, exc, name=job)
    if out.json:
        out.document({"job": job, "status": state.phase, "exit_code": state.exit_code, "message": state.message})
    else:
        code = f" (exit code {state.exit_code})" if state.exit_code is not None else ""
        why = f": {state.message}" if state.phase == "Queued" and state.message else ""
        click.echo(f"{job} {state.phase}{code}{why}")
    return EXIT_OK


@cli.command(cls=Command, example="""
fairing run --detach train.py      # prints the name
fairing attach fairing-1201-2135-ab12c
""")
@click.argument("job")
@namespace_option
@output_option
def attach(job: str, namespace: Optional[str], output: str) -> int:
    """Stream a running job's log and wait for its result; exit with its outcome.

    Ctrl-C stops following and leaves the job running."""
    out = _Out(output)
    try:
        handle = _attach(job, namespace)
    except FairingError as exc:
        return _fail(out, exc, name=job)
    try:
        for line in handle.logs(follow=True):
            out.line(line)
        value = handle.result()
    except KeyboardInterrupt:
        out.note(f"stopped following {job}; it keeps running (fairing delete {job} stops it)")
        return EXIT_INTERRUPTED
    except Exception as exc:
        return _fail(out, exc, name=job)
    if out.json:
        out.document(_result_document(job, value))
    else:
        if value is not None:
            click.echo(repr(value))
        out.note(f"job {job} succeeded")
    return EXIT_OK


@cli.command(cls=Command, example="""
fairing delete fairing-1201-2135-ab12c --keep-logs
fairing delete --all-finished
""")
@click.argument("job", required=False)
@click.option("--all-finished", is_flag=True, help="every job that succeeded or failed")
@click.option("--keep-logs", is_flag=True, help="save the log first (fairing logs JOB still shows it)")
@click.option("--backend", "-b", type=click.Choice(("local", *_CLUSTER)), default=None,
              help="with --all-finished: only this backend's jobs")
@namespace_option
@output_option
def delete(job: Optional[str], all_finished: bool, keep_logs: bool, backend: Optional[str],
           namespace: Optional[str], output: str) -> int:
    """Stop a job and remove everything it left (or every finished job)."""
    from . import jobs

    if bool(job) == all_finished:
        raise click.UsageError("Give a job's name or --all-finished (not both).")
    out = _Out(output)
    try:
        if job:
            names = [job]
        else:
            names = [info.name for info in jobs.jobs(backend=backend, namespace=namespace) if info.done]
        for name in names:
            jobs.delete(name, keep_logs=keep_logs, namespace=namespace)
            if not out.json:
                out.note(f"deleted {name}" + (f" (log kept: fairing logs {name})" if keep_logs else ""))
    except FairingError as exc:
        return _fail(out, exc, name=job or "")
    if out.json:
        out.document({"deleted": names})
    return EXIT_OK


@cli.command(cls=Command, example="""
fairing serve model:IrisModel --input-files model.joblib --requirements requirements.txt
fairing serve model:IrisModel --detach --backend kubernetes --registry registry.example.com/team \\
    --base-image python:3.11-slim --replicas 2
""")
@click.argument("model", metavar="MODULE:CLASS")
@_job_options
@namespace_option
@click.option("--replicas", type=click.IntRange(min=1), help="number of serving pods (Kubernetes)")
@click.option("--name", help="the endpoint's name (default: generated)")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=300, show_default=True,
              help="seconds to wait until it is ready")
@click.option("--detach", "-d", is_flag=True, help="leave it serving, print its name and URL and return")
@output_option
@click.pass_context
def serve(ctx: click.Context, model: str, backend: Optional[str], input_files: tuple, requirements: Optional[str],
          replicas: Optional[int], name: Optional[str], timeout: float, detach: bool, output: str, **_: Any) -> int:
    """Serve a class's predict(X) as an HTTP prediction endpoint (KServe v1 and v2 protocols).

    Without --detach it serves until Ctrl-C, then removes the endpoint (exit code 0)."""
    from .endpoint import PredictionEndpoint

    out = _Out(output)
    options = _backend_options(backend, _given(ctx, ("registry", "base_image", "insecure_registry", "namespace")))
    target = _entry(model if ":" in model else f"{model}:")
    if not isinstance(target, type):
        raise click.UsageError(f"{model!r} is not a class; serve takes MODULE:CLASS with a predict(X) method.")
    endpoint = None
    shown = _ServingLines(out.events())
    try:
        endpoint = PredictionEndpoint(target, input_files=list(input_files), requirements=requirements, name=name,
                                      replicas=replicas, on_event=shown, **options)
        endpoint.create(timeout=timeout)
        out.close()
        names = [endpoint.model_name] + ([target.__name__] if target.__name__ != endpoint.model_name else [])
        routes = _serving_routes(endpoint.url, endpoint.model_name)
        if out.json:
            out.document({"endpoint": endpoint.name, "url": endpoint.url, "status": "Running", "model": names[0],
                          "model_names": names, "routes": [f"{verb} {url}" for verb, url in routes]})
        else:
            click.echo(f"{endpoint.name} {endpoint.url}")
            also = f" (also answers as {names[1]})" if len(names) > 1 else ""
            out.note(f"model {names[0]}{also}; routes:")
            for verb, url in routes:
                click.echo(f"  {verb:<4} {url}", err=True)
        if detach:
            endpoint.detach()
            out.note(f"endpoint {endpoint.name} serving at {endpoint.url}; stop it with: fairing delete {endpoint.name}")
            return EXIT_OK
        out.note(f"serving at {endpoint.url}; Ctrl-C stops it")
        skip = shown.count  # the lines shown while it started are not shown again
        for line in endpoint.handle.logs(follow=True):
            if skip:
                skip -= 1
                continue
            if not _ServingLines.handshake(line):
                out.line(line)
        return _fail(out, FairingError(f"The endpoint {endpoint.name} stopped by itself; see its log above."))
    except KeyboardInterrupt:
        out.note("stopped; the endpoint was removed")
        return EXIT_OK
    except Exception as exc:
        return _fail(out, exc, name=name or "")
    finally:
        if endpoint is not None and not detach:
            endpoint.delete()


class _ServingLines:
    """The event callback of ``serve``: the serving runtime's start line (a JSON handshake
    for the deployer) is not shown; the job lines shown are counted, so that following the
    log afterwards does not show them twice."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.count = inner, 0
        self.shows_job_output = True

    @staticmethod
    def handshake(line: str) -> bool:
        return line.lstrip().startswith('{"fairing": "serving"')

    def __call__(self, event: Any) -> None:
        from .events import LogLine

        if isinstance(event, LogLine) and event.source != "build":
            if event.line.endswith("\r"):  # a line still being drawn: its final text comes later
                self.inner(event)
                return
            self.count += 1
            if self.handshake(event.line):
                return
        self.inner(event)


def _serving_routes(url: str, model: str) -> list:
    """The routes of the serving runtime (fairing.runtime.serving) for people to copy."""
    return [("GET", f"{url}/v1/models/{model}"), ("POST", f"{url}/v1/models/{model}:predict"),
            ("GET", f"{url}/v2/models/{model}"), ("POST", f"{url}/v2/models/{model}/infer")]


@cli.command(cls=Command, example="fairing endpoints --output json")
@click.option("--backend", "-b", type=click.Choice(("local", *_CLUSTER)), default=None,
              help="only this backend's endpoints")
@namespace_option
@output_option
def endpoints(backend: Optional[str], namespace: Optional[str], output: str) -> int:
    """List the prediction endpoints fairing started, with their URLs."""
    from .jobs import jobs

    out = _Out(output)
    try:
        infos = [info for info in jobs(backend=backend, namespace=namespace) if info.is_endpoint]
    except FairingError as exc:
        return _fail(out, exc)
    if out.json:
        out.document([info.as_dict() for info in infos])
    elif infos:
        rows = [("NAME", "BACKEND", "STATUS", "AGE", "URL")] + [
            (i.name, i.backend, i.phase, _age(i.age), i.url) for i in infos]
        widths = [max(len(r[c]) for r in rows) for c in range(4)]
        for row in rows:
            click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])
    else:
        out.note("no endpoints (fairing serve MODULE:CLASS starts one)")
    return EXIT_OK


@cli.command("config", cls=Command, example="""
fairing config
fairing config --output json
""")
@output_option
def config_(output: str) -> int:
    """Show the settings that apply here, where each came from, and the settings files read."""
    from .settings import resolve

    out = _Out(output)
    try:
        settings = resolve()
    except FairingError as exc:
        return _fail(out, exc)
    values = {name: list(v) if isinstance(v, tuple) else v for name, v in settings.values().items()}
    if out.json:
        out.document({"settings": {name: {"value": value, "source": settings.sources.get(name)}
                                   for name, value in values.items()},
                      "files": list(settings.files)})
        return EXIT_OK
    if not values:
        click.echo("no settings: every option has its default (backend local)")
    width = max((len(name) for name in values), default=0)
    for name, value in values.items():
        shown = ", ".join(value) if isinstance(value, list) else value
        click.echo(f"{name.ljust(width)} = {shown}  ({settings.sources.get(name, '?')})")
    click.echo(f"settings files: {', '.join(settings.files) if settings.files else 'none'}")
    return EXIT_OK


@cli.command(cls=Command, example="""
fairing doctor
fairing doctor --backend kubernetes --output json
""")
@click.option("--backend", "-b", type=click.Choice(BACKEND_NAMES), default=None,
              help="check what this backend needs (default: the backend setting, else local)")
@output_option
def doctor(backend: Optional[str], output: str) -> int:
    """Check the setup before a first submit: cluster, permissions, registry, resource types,
    Docker, the base image's Python. Exits 1 when a check fails. The kubeconfig and context
    checked are fairing's --kubeconfig and --context (default: $KUBECONFIG, else ~/.kube/config)."""
    from .doctor import FAIL, run_checks

    out = _Out(output)
    show = None
    if not out.json:
        width = len("CANNOT TELL")

        def show(check: Any) -> None:
            click.echo(f"{check.status.ljust(width)}  {check.name}: {check.detail}")
            if check.fix and check.status != "SKIP":
                click.echo(f"{'':{width}}  fix: {check.fix}")
    try:
        checks = run_checks(backend, on_check=show)
    except FairingError as exc:
        return _fail(out, exc)
    failed = [c for c in checks if c.status == FAIL]
    if out.json:
        out.document({"ok": not failed, "checks": [c.as_dict() for c in checks]})
    elif failed:
        out.note(f"{len(failed)} check{'s' if len(failed) > 1 else ''} failed")
    else:
        out.note("no check failed")
    return EXIT_FAILED if failed else EXIT_OK


def _exit_now_if_watching(code: int) -> None:
    """End the process at once when a cluster handle's watch or log threads still run (a
    detached job, an attached one): they sit in TLS reads, and a normal interpreter exit
    under them can abort (exit 134). Everything the command owes is written and flushed."""
    import threading

    watching = ("fairing-watch-", "fairing-pods-", "fairing-log-")
    if any(t.name.startswith(watching) and t.is_alive() for t in threading.enumerate()):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; the exit code (see the module docstring)."""
    code = _main(argv)
    _exit_now_if_watching(code)
    return code


def _wants_json(argv: Sequence[str]) -> bool:
    """Whether the line asks for ``--output json`` (before ``--``), read without click, which
    may have stopped at a usage error before it got there."""
    args = list(argv)
    args = args[:args.index("--")] if "--" in args else args
    for i, arg in enumerate(args):
        if arg in ("--output", "-o") and i + 1 < len(args):
            if args[i + 1] == "json":
                return True
        elif arg in ("--output=json", "-ojson", "-o=json"):
            return True
    return False


def _usage_failure(exc: click.ClickException, argv: Sequence[str], code: int) -> int:
    """Show a usage (or other click) error; with --output json, also as one JSON document on stdout."""
    exc.show()
    if _wants_json(argv):
        kind = "UsageError" if isinstance(exc, click.UsageError) else type(exc).__name__
        click.echo(json.dumps({"job": None, "status": "Failed", "exit_code": code, "error": kind,
                               "message": exc.format_message()}, indent=2, sort_keys=True))  # as _Out.document
    return code


def _main(argv: Optional[Sequence[str]]) -> int:
    args = _hoist_global_options(list(argv) if argv is not None else sys.argv[1:])
    try:
        code = cli.main(args=args, prog_name="fairing", standalone_mode=False)
    except click.exceptions.Exit as exc:  # --help, --version
        return exc.exit_code
    except click.UsageError as exc:
        return _usage_failure(exc, args, EXIT_USAGE)
    except click.ClickException as exc:
        return _usage_failure(exc, args, exc.exit_code)
    except (click.Abort, KeyboardInterrupt):
        click.echo("fairing: interrupted", err=True)
        return EXIT_INTERRUPTED
    except FairingError as exc:  # raised before a command's own handling: a settings file's error
        return _fail(_Out("json" if _wants_json(args) else "text"), exc)
    return code if isinstance(code, int) else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
