"""``fairing run SCRIPT_OR_NOTEBOOK [--backend NAME] [--input-files ...] [-- ARGS]``."""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from .errors import FairingError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fairing", description="Run ML code as a job, locally or on a cluster.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a script or notebook as a job and stream its logs")
    run.add_argument("entry_point", help="a .py script or an .ipynb notebook")
    run.add_argument("--backend", default=None,
                     help="local, docker, kubernetes, kubeflow, gke, aws (default: the backend setting, else local)")
    run.add_argument("--input-files", nargs="*", default=[], metavar="PATH", help="files or directories to package")
    run.add_argument("--requirements", default=None, metavar="FILE",
                     help="requirements file (default: requirements.txt next to the entry point)")
    run.add_argument("--full-notebook", action="store_true", help="run the notebook whole with papermill")
    run.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                     help="a papermill parameter (with --full-notebook); VALUE is parsed as JSON when it can be")
    run.add_argument("--timeout", type=float, default=None, help="seconds before the job is stopped")
    run.add_argument("args", nargs=argparse.REMAINDER, help="after --: arguments for the script")
    return parser


def _params(pairs: Sequence[str]) -> dict:
    import json

    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"fairing: --param takes KEY=VALUE, got {pair!r}")
        try:
            params[key] = json.loads(value)
        except ValueError:
            params[key] = value
    return params


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    from .api import TrainJob, run_handle
    from .notebook.display import TextRenderer

    renderer = TextRenderer()
    script_args = args.args[1:] if args.args[:1] == ["--"] else args.args
    try:
        job = TrainJob(args.entry_point, backend=args.backend, input_files=args.input_files,
                       requirements=args.requirements, args=script_args, full_notebook=args.full_notebook,
                       parameters=_params(args.param), on_event=renderer)
        handle = job.submit()
        run_handle(handle, timeout=args.timeout)
    except FairingError as exc:
        sys.stderr.write(f"fairing: error: {exc}\n")
        return 1
    except Exception as exc:  # the job's own exception, re-raised here: show its remote traceback
        import traceback

        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("fairing: interrupted; the job was stopped and removed\n")
        return 130
    sys.stderr.write(f"fairing: job {handle.name} succeeded\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
