"""Job records: ``<cache>/fairing/jobs/<name>/record.json``, written when a job starts and read
by listing, attaching and deleting it from any process."""

from __future__ import annotations

import json
import os
import re
import stat as _stat
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

from ..errors import ConfigurationError, JobRecordError
from .origin import JobOrigin

__all__ = ["jobs_dir", "logs_dir", "remember", "forget", "read_record", "check_record", "scan", "BadRecord",
           "has_record", "bad_record"]

_RECORD = "record.json"


def jobs_dir() -> Path:
    """Where job records (and local jobs' logs, results and exit codes) live."""
    from ..environment import current

    return current().jobs_dir


def logs_dir() -> Path:
    """Where logs kept with ``keep_logs=True`` are saved."""
    from ..environment import current

    return current().logs_dir


#: The longest job name in bytes: ``<name>.log`` (a kept log) must still be a file name.
_MAX_NAME = 250


def _record_path(name: str) -> Path:
    if (not name or "/" in name or "\0" in name or name.startswith(".")
            or len(os.fsencode(name)) > _MAX_NAME):
        raise ConfigurationError(f"{name!r} is not a job name; `fairing list` shows the names.")
    return jobs_dir() / name / _RECORD


def _write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # may name a key file: only yours
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=1, sort_keys=True)
    os.replace(tmp, path)


def remember(handle: Any, origin: JobOrigin, *, backend: str, image: Any = None, endpoint: bool = False) -> None:
    """Write the record of a job just started, so that :func:`attach` and :func:`jobs` find it."""
    record: dict = {"name": handle.name, "backend": backend, "created": time.time(), "origin": asdict(origin),
                    "image": "" if image is None or hasattr(image, "context")
                    else str(image), "endpoint": endpoint}
    if hasattr(handle, "attach_info"):  # a local process
        record["local"] = handle.attach_info()
        record["result"] = {"channel": "file", "key_ref": "file:" + str(Path(record["local"]["job_dir"]) / "key")}
    elif hasattr(handle, "namespace") and hasattr(handle, "kube"):
        from ..deployers.kubernetes import result_key_secret

        workload = handle.WORKLOAD  # what the handle says it is (KServe's: an InferenceService)
        record["kubernetes"] = {"namespace": handle.namespace, "kind": workload.record_kind,
                                "plural": workload.plural,
                                "server": getattr(handle.kube.api_client.configuration, "host", "")}
        record["result"] = {"channel": "termination-message", "key_ref": "secret:" + result_key_secret(handle.name)}
    elif hasattr(getattr(handle, "process", None), "attach_info"):  # a local endpoint
        record["local"] = handle.process.attach_info()
    else:
        return  # the docker backend's containers are not recorded (yet)
    if endpoint:
        record["url"] = handle.url
    _write(_record_path(handle.name), record)
    _forget_on_delete(handle)


def _forget_on_delete(handle: Any) -> Any:
    """Have ``handle`` forget its record when it is deleted (a local job's record goes with its directory)."""
    if hasattr(handle, "on"):
        handle.on("delete", _forget_handle)
    return handle


def _forget_handle(handle: Any) -> None:
    forget(handle.name)


#: The largest record read; a larger file is not fairing's.
_MAX_RECORD = 1 << 20


@dataclass(frozen=True)
class BadRecord:
    """A record that cannot be trusted: listed by name, never acted on, deletable."""

    name: str
    path: Path
    reason: str

    def error(self) -> JobRecordError:
        return JobRecordError(
            f"The record of the job {self.name!r} ({self.path}) cannot be trusted: {self.reason}. fairing will not "
            f"act on it (no process is signalled, no directory removed). Remove the record with: "
            f"fairing delete {self.name}", job=self.name, path=str(self.path))


def read_record(name: str) -> Optional[dict]:
    """The record of the job ``name``, checked (see :func:`check_record`); None when there is none.
    Raises :class:`~fairing.JobRecordError` naming the record when it cannot be trusted."""
    found = _load(name)
    if isinstance(found, BadRecord):
        raise found.error()
    return found


def has_record(name: str) -> bool:
    """Whether a record of ``name`` is on this machine (good or not)."""
    path = _record_path(name)
    return path.parent.is_symlink() or path.exists() or path.is_symlink()


def bad_record(name: str) -> Optional[BadRecord]:
    """The record of ``name`` when it cannot be trusted, else None."""
    found = _load(name)
    return found if isinstance(found, BadRecord) else None


def _read_record(name: str) -> Optional[dict]:
    """The record of ``name`` when there is a good one, else None (a bad one is ignored here)."""
    found = _load(name)
    return None if isinstance(found, BadRecord) else found


def _load(name: str) -> "Optional[dict | BadRecord]":
    path = _record_path(name)
    folder = path.parent
    try:
        if folder.is_symlink():
            return BadRecord(name, path, "its directory is a symbolic link")
        # O_NONBLOCK: a FIFO put there must not block the open until a writer comes
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        if path.is_symlink():
            return BadRecord(name, path, "it is a symbolic link")
        if not folder.is_dir():
            return None
        return BadRecord(name, path, f"it cannot be read ({exc.strerror or exc})")
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not _stat.S_ISREG(info.st_mode):
            return BadRecord(name, path, "it is not a regular file")
        if hasattr(os, "getuid") and info.st_uid != os.getuid():
            return BadRecord(name, path, f"it belongs to another user (uid {info.st_uid})")
        data = fh.read(_MAX_RECORD + 1)
    if len(data) > _MAX_RECORD:
        return BadRecord(name, path, f"it is larger than {_MAX_RECORD} bytes")
    try:
        record = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        return BadRecord(name, path, f"it is not JSON ({exc})")
    except RecursionError:
        return BadRecord(name, path, "it is not JSON fairing wrote (nested too deeply)")
    problem = check_record(name, record)
    return BadRecord(name, path, problem) if problem else record


def _is(value: Any, kind: Any) -> bool:
    """isinstance, where a bool is no number."""
    return isinstance(value, kind) and (kind is bool or not isinstance(value, bool))


def _own_dir(path: str, roots: "list[Path]", prefix: str) -> bool:
    """Whether ``path`` is a directory fairing made: named ``prefix`` and mkdtemp's 8 characters directly in one of ``roots``,
    and not a link (it need not exist any more)."""
    p = Path(path)
    if not p.is_absolute() or ".." in p.parts or not p.name.startswith(prefix) or p.is_symlink():
        return False
    if not re.fullmatch(r"[a-z0-9_]{8}", p.name[len(prefix):]):
        return False  # not mkdtemp's suffix: the job ``a``'s prefix also starts the job ``a-b``'s directories
    parent = os.path.realpath(p.parent)
    return any(parent == os.path.realpath(root) for root in roots)


def check_record(name: str, record: Any) -> str:
    """What is wrong with ``record`` as the record of the job ``name`` ('' when nothing): its
    schema and types, and that its paths are fairing's own (the job directory is
    ``<jobs dir>/<name>``, a local job's working directory a ``fairing-local-<name>-*``
    directory in the temporary directory)."""
    if not isinstance(record, dict):
        return f"it holds a JSON {type(record).__name__}, not an object"
    if record.get("name") != name:
        return f"it names the job {record.get('name')!r}, not {name!r}"
    from .._names import BACKENDS, WORKLOAD_HANDLES

    if record.get("backend") not in BACKENDS:
        return f"its backend {record.get('backend')!r} is none of {sorted(BACKENDS)}"
    checks = [("created", (int, float)), ("image", str), ("endpoint", bool)]
    for key, kind in checks:
        if key in record and not _is(record[key], kind):
            return f"its {key!r} is {type(record[key]).__name__}, not {getattr(kind, '__name__', 'a number')}"
    if not _is(record.get("created"), (int, float)):
        return "it has no 'created' time"
    if "url" in record and not isinstance(record["url"], str):
        return "its 'url' is not a string"
    origin = record.get("origin")
    if origin is not None and not (isinstance(origin, dict) and set(origin) == {"version", "user", "payload", "source"}
                                   and all(isinstance(v, str) for v in origin.values())):
        return "its 'origin' is not {version, user, payload, source} strings"
    local, kube = record.get("local"), record.get("kubernetes")
    if (local is None) == (kube is None):
        return "it must have exactly one of 'local' and 'kubernetes'"
    result = record.get("result")
    if result is not None and not (isinstance(result, dict) and isinstance(result.get("channel"), str)
                                   and isinstance(result.get("key_ref"), str)):
        return "its 'result' is not {channel, key_ref} strings"
    if local is not None:
        if not isinstance(local, dict):
            return "its 'local' is not an object"
        pid, started = local.get("pid"), local.get("started")
        if not _is(pid, int) or not 1 < pid < 2 ** 31:  # a pid_t, and never init
            return f"its pid {pid!r} is not a process id"
        if started is not None and not _is(started, int):
            return f"its process start time {started!r} is not a number"
        job_dir, workdir = local.get("job_dir"), local.get("workdir")
        if not isinstance(job_dir, str) or os.path.realpath(job_dir) != os.path.realpath(jobs_dir() / name):
            return f"its job directory {job_dir!r} is not fairing's ({jobs_dir() / name})"
        import tempfile

        from ..environment import current

        if not isinstance(workdir, str) or not _own_dir(workdir, [Path(tempfile.gettempdir()), current().cache_dir],
                                                        f"fairing-local-{name}-"):
            return (f"its working directory {workdir!r} is not one fairing made (a fairing-local-{name}-* "
                    f"directory in {tempfile.gettempdir()})")
        if result is not None and result["key_ref"] != "file:" + str(Path(job_dir) / "key"):
            return "its result key is not in its job directory"
    else:
        if not isinstance(kube, dict):
            return "its 'kubernetes' is not an object"
        if not isinstance(kube.get("namespace"), str) or not kube["namespace"]:
            return "it names no namespace"
        if kube.get("kind") not in WORKLOAD_HANDLES:
            return f"its kind {kube.get('kind')!r} is none of {sorted(WORKLOAD_HANDLES)}"
        if kube.get("plural") is not None and not isinstance(kube["plural"], str):
            return "its 'plural' is not a string"
        if "server" in kube and not isinstance(kube["server"], str):
            return "its 'server' is not a string"
    return ""


def scan() -> "tuple[list[dict], list[BadRecord]]":
    """Every record on this machine: (the good ones, the bad ones), by name. A job directory
    without a record (being started, or a map's index) is neither."""
    root = jobs_dir()
    good: list[dict] = []
    bad: list[BadRecord] = []
    if not root.is_dir():
        return good, bad
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        found = _load(entry.name)
        if isinstance(found, BadRecord):
            bad.append(found)
        elif found:
            good.append(found)
    return good, bad


def _records() -> Iterator[dict]:
    yield from scan()[0]


def forget(name: str) -> None:
    """Remove a job's record (a local job's directory goes with its ``delete()``); a record
    directory that is a link is unlinked, never followed."""
    import shutil

    folder = _record_path(name).parent
    if folder.is_symlink():
        folder.unlink()
    elif folder.is_dir():
        shutil.rmtree(folder, ignore_errors=True)
