"""A job's log: what it printed so far, kept past its deletion with ``keep_logs=True``; finishing and deleting a job."""

from __future__ import annotations

import os
import stat as _stat
from pathlib import Path
from typing import Any, Iterator, Optional

from .attaching import attach
from .records import bad_record, forget, logs_dir

__all__ = ["log_lines", "save_logs", "saved_log", "read_saved_log", "finish", "delete"]


def log_lines(handle: Any) -> Iterator[str]:
    """Everything the job printed so far: a local job's log file, or each pod's log from the API."""
    log_file = getattr(handle, "log_file", None) or getattr(getattr(handle, "process", None), "log_file", None)
    if log_file is not None:
        import io

        from ..deployers.local import _open_regular

        try:
            raw = _open_regular(log_file)  # a link or a FIFO put in its place is not read
        except OSError:
            return
        with io.TextIOWrapper(raw, encoding="utf-8", errors="replace") as fh:
            yield from (line.rstrip("\n") for line in fh)
        return
    kube = getattr(handle, "kube", None)
    if kube is None:
        yield from handle.logs(follow=False)
        return
    from ..kube.labels import JOB_LABEL
    from ..runtime.result import PREFIX

    pods = kube.core.list_namespaced_pod(handle.namespace, label_selector=f"{JOB_LABEL}={handle.name}").items
    for pod in sorted(pods, key=lambda p: p.metadata.name):
        source = handle.replica(kube.to_dict(pod))
        try:
            text = kube.pod_log(pod.metadata.name, handle.namespace)
        except kube.k8s.client.ApiException:
            continue  # not started: nothing to keep
        lines = text.splitlines()
        if len(lines) >= 2 and lines[-1].startswith(PREFIX) and not lines[-2]:
            lines = lines[:-2]  # the result line and the blank line the runtime puts before it
        for line in lines:
            if not line.startswith(PREFIX):
                yield f"[{source}] {line}" if source else line


def save_logs(handle: Any) -> Path:
    """Write the job's log so far to ``<cache>/fairing/logs/<name>.log``; its path."""
    path = logs_dir() / f"{handle.name}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.unlink(missing_ok=True)  # a leftover (or a link) of that name is not written through
    with open(tmp, "x") as fh:
        for line in log_lines(handle):
            fh.write(line + "\n")
    os.replace(tmp, path)
    return path


def saved_log(name: str) -> Optional[Path]:
    """The log kept for ``name`` with ``keep_logs=True``, or None: a regular file of its own,
    never a link (to another file, which ``fairing logs`` would print) nor a FIFO (which would hang it)."""
    if not name or "/" in name or "\0" in name or name.startswith("."):
        return None
    path = logs_dir() / f"{name}.log"
    try:
        return path if _stat.S_ISREG(path.lstat().st_mode) else None
    except (OSError, ValueError):
        return None


def read_saved_log(path: Path) -> str:
    """The text of a kept log (see :func:`saved_log`), not following a link put there since."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as fh:
        if not _stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise OSError(f"{path} is not a regular file")
        return fh.read().decode("utf-8", errors="replace")


def finish(handle: Any, *, keep_logs: bool = False) -> Optional[Path]:
    """Delete the job (saving its log first when ``keep_logs``) and its record; the saved log's path."""
    saved = save_logs(handle) if keep_logs else None
    try:
        handle.delete()
    finally:
        forget(handle.name)
    return saved


def delete(name: str, *, keep_logs: bool = False, namespace: Optional[str] = None,
           kubeconfig: Optional[str] = None, context: Optional[str] = None) -> Optional[Path]:
    """Stop and remove the job ``name`` (see :func:`attach` for how it is found).

    A record that cannot be trusted (:class:`~fairing.JobRecordError`) is only removed:
    no process is signalled and no directory it names is touched (with ``keep_logs``, the
    log beside it is kept first)."""
    problem = bad_record(name)
    if problem is not None:
        saved = None
        log = problem.path.parent / "log"
        if keep_logs and not problem.path.parent.is_symlink() and log.is_file() and not log.is_symlink():
            import shutil

            saved = logs_dir() / f"{name}.log"
            saved.parent.mkdir(parents=True, exist_ok=True)
            tmp = saved.with_name(f".{saved.name}.{os.getpid()}")
            tmp.unlink(missing_ok=True)  # a leftover (or a link) of that name is not written through
            shutil.copyfile(log, tmp, follow_symlinks=False)
            os.replace(tmp, saved)  # a link already at the kept log's name is replaced, not written through
        forget(name)
        return saved
    return finish(attach(name, namespace=namespace, kubeconfig=kubeconfig, context=context), keep_logs=keep_logs)
