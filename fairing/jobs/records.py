"""Job records: ``<cache>/fairing/jobs/<name>/record.json``, written when a job starts and read
by listing, attaching and deleting it from any process."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterator, Optional

from ..errors import ConfigurationError
from .origin import JobOrigin

__all__ = ["jobs_dir", "logs_dir", "remember", "forget"]

_RECORD = "record.json"


def jobs_dir() -> Path:
    """Where job records (and local jobs' logs, results and exit codes) live."""
    from ..environment import current

    return current().jobs_dir


def logs_dir() -> Path:
    """Where logs kept with ``keep_logs=True`` are saved."""
    from ..environment import current

    return current().logs_dir


def _record_path(name: str) -> Path:
    if not name or "/" in name or name.startswith("."):
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

        record["kubernetes"] = {"namespace": handle.namespace, "kind": "Endpoint" if endpoint else handle.kind,
                                "plural": getattr(handle, "plural", None),
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


def _read_record(name: str) -> Optional[dict]:
    try:
        return json.loads(_record_path(name).read_text())
    except (OSError, ValueError):
        return None


def _records() -> Iterator[dict]:
    root = jobs_dir()
    if not root.is_dir():
        return
    for entry in sorted(root.iterdir()):
        record = _read_record(entry.name) if not entry.name.startswith(".") else None
        if record:
            yield record


def forget(name: str) -> None:
    """Remove a job's record (a local job's directory goes with its ``delete()``)."""
    import shutil

    path = _record_path(name)
    if path.parent.is_dir():
        shutil.rmtree(path.parent, ignore_errors=True)
