"""Settings at one edge: the registry, base image, backend, namespace... written once.

Where they come from, first match wins::

    arguments            TrainJob(..., registry=...), set_builder(..., registry=...)
    environment          FAIRING_REGISTRY, FAIRING_BASE_IMAGE, FAIRING_BACKEND, FAIRING_NAMESPACE,
                         FAIRING_INSECURE_REGISTRIES (comma-separated), FAIRING_CA_BUNDLE,
                         FAIRING_PLATFORM, FAIRING_PYTHON_VERSION, FAIRING_CONTEXT,
                         FAIRING_UNSCHEDULABLE_GRACE, FAIRING_SCALE_UP_TIMEOUT, FAIRING_QUEUE,
                         FAIRING_CPU, FAIRING_MEMORY, FAIRING_GPUS
    project file         fairing.toml, else the [tool.fairing] table of pyproject.toml, in the
                         current directory or the nearest parent that has one, never above the
                         project's root: the first directory (from the current one up) with a
                         pyproject.toml, .git or .hg; without one, only the current directory
    user file            $XDG_CONFIG_HOME/fairing/config.toml (default ~/.config/fairing/config.toml)

A ``fairing.toml`` in a directory above the project's root (a home directory, a shared
checkout) is not read: it would choose the backend, registry, insecure hosts and CA bundle
for every project below it. :attr:`Settings.files` names the files read; the ``build``
stage event, :meth:`Settings.describe` and every error a file causes name them too.

Files use the setting names as keys (``registry = "localhost:5000/team"``,
``insecure_registries = ["localhost:5000"]``); a relative ``ca_bundle`` is relative to
the file. An unknown key is an error naming the closest valid one.

:func:`resolve` is the one function that reads them; the API applies the result to
every backend, builder and deployer it makes by name (:func:`fairing._registry.make`),
so the CLI and the one-liner get the same settings as ``TrainJob``. Only the names above
are read: other ``FAIRING_*`` variables (``FAIRING_RUNTIME``...) belong to the runtime.

Written here rather than with a settings library: it is one table of names, TOML from
the standard library (``tomllib``; ``tomli`` before Python 3.11), and the XDG rule is
one environment variable.
"""

from __future__ import annotations

import difflib
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Iterable, Optional

from .errors import ConfigurationError

__all__ = ["Settings", "resolve", "project_file", "project_root", "user_file", "check_arguments", "ENVIRONMENT",
           "PARAMETERS", "ROOT_MARKERS"]

#: What marks a project's root directory: settings files above it are not read.
ROOT_MARKERS = ("pyproject.toml", ".git", ".hg")

#: environment variable -> setting
ENVIRONMENT = {
    "FAIRING_BACKEND": "backend",
    "FAIRING_REGISTRY": "registry",
    "FAIRING_BASE_IMAGE": "base_image",
    "FAIRING_NAMESPACE": "namespace",
    "FAIRING_INSECURE_REGISTRIES": "insecure_registries",
    "FAIRING_CA_BUNDLE": "ca_bundle",
    "FAIRING_PLATFORM": "platform",
    "FAIRING_PYTHON_VERSION": "python_version",
    "FAIRING_WARM": "warm",
    "FAIRING_WARM_IDLE": "warm_idle",
    "FAIRING_CONTEXT": "context",
    "FAIRING_UNSCHEDULABLE_GRACE": "unschedulable_grace",
    "FAIRING_SCALE_UP_TIMEOUT": "scale_up_timeout",
    "FAIRING_QUEUE": "queue",
    "FAIRING_CPU": "cpu",
    "FAIRING_MEMORY": "memory",
    "FAIRING_GPUS": "gpus",
}

#: setting -> the keyword argument of the backends, builders and deployers that take it.
#: ``queue`` is not here: it goes to the job deployers only, filled in by
#: :func:`fairing.backends.with_settings` (an endpoint's deployer takes none).
PARAMETERS = {
    "registry": "registry",
    "base_image": "base_image",
    "namespace": "namespace",
    "insecure_registries": "insecure",
    "ca_bundle": "ca_bundle",
    "platform": "platform",
    "python_version": "python_version",
    "warm": "warm",
    "warm_idle": "warm_idle",
    "context": "context",
    "cpu": "cpu",
    "memory": "memory",
    "gpus": "gpus",
}


@dataclass(frozen=True)
class Settings:
    """Resolved settings; ``sources`` says where each one that is set came from."""

    backend: Optional[str] = None
    registry: Optional[str] = None
    base_image: Optional[str] = None
    namespace: Optional[str] = None
    insecure_registries: tuple[str, ...] = ()
    ca_bundle: Optional[str] = None
    platform: Optional[str] = None
    python_version: Optional[str] = None
    #: Calls run on a warm worker pod (see fairing.deployers.warm); the kubernetes backends only.
    warm: Optional[bool] = None
    #: Seconds a warm worker waits for the next call before it exits [600].
    warm_idle: Optional[float] = None
    #: The kubeconfig context to use [the kubeconfig's current-context].
    context: Optional[str] = None
    #: Seconds a pod may stay unschedulable before the job fails [20]; and once a node
    #: autoscaler said it adds a node for it [600] (the deployers' options of these names).
    unschedulable_grace: Optional[float] = None
    scale_up_timeout: Optional[float] = None
    queue: Optional[str] = None
    #: What each job may use (see :mod:`fairing.resources`), unless the call gives its own.
    cpu: Optional[str] = None
    memory: Optional[str] = None
    gpus: Optional[int] = None
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)
    #: The settings files read (the user file first, then the project's), as paths.
    files: tuple[str, ...] = field(default=(), compare=False)

    def values(self) -> dict[str, Any]:
        """The settings that are set, by name."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name not in ("sources", "files") and getattr(self, f.name) not in (None, ())}

    def options_for(self, factory: Callable, *, exclude: Iterable[str] = ()) -> dict[str, Any]:
        """The keyword arguments ``factory`` takes from these settings (those it accepts)."""
        from ._options import accepted_options

        accepted = accepted_options(factory) or frozenset()
        skip = set(exclude)
        out = {}
        for name, value in self.values().items():
            param = PARAMETERS.get(name)
            if param and param in accepted and param not in skip:
                out[param] = list(value) if isinstance(value, tuple) else value
        return out

    def describe(self) -> str:
        """One line per setting that is set, with its source, then the settings files read
        (for ``fairing config``-style output)."""
        lines = [f"{name} = {value!r}  ({self.sources.get(name, '?')})" for name, value in self.values().items()]
        lines.append(f"settings files: {', '.join(self.files) if self.files else 'none'}")
        return "\n".join(lines)

    def files_note(self) -> str:
        """"settings from a.toml, b.toml" (or "" when no file was read): for a stage event."""
        return f"settings from {', '.join(self.files)}" if self.files else ""


_NAMES = tuple(f.name for f in fields(Settings) if f.name not in ("sources", "files"))


_SECONDS = ("unschedulable_grace", "scale_up_timeout")


def _seconds(name: str, value: Any, where: str) -> float:
    import math

    try:
        number = float(value.strip()) if isinstance(value, str) else value
    except ValueError:
        number = None
    if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number) or number < 0:
        raise ConfigurationError(f"{name} in {where} is a number of seconds (0 or more), e.g. {name} = 600; "
                                 f"got {value!r}.")
    return float(number)


#: ``user:password@`` (or ``token@``) before a registry host; ``name:tag@sha256:...`` is a digest, not that.
_USERINFO = re.compile(r"^(?:[A-Za-z][A-Za-z0-9+.-]*://)?[^/@\s]+@(?!sha256:|sha384:|sha512:)")


def _no_credentials(name: str, value: str, where: str) -> None:
    """A registry or image with credentials in it would be shown by ``fairing config``, logs and
    errors: refused, without repeating them."""
    if _USERINFO.match(value):
        shown = _USERINFO.sub(lambda m: m.group(0).split("://")[0] + "://***@" if "://" in m.group(0) else "***@",
                              value, count=1)
        raise ConfigurationError(f"{name} in {where} has credentials in it ({shown!r}); they would be shown and "
                                 "logged. Give the registry alone and log in with `docker login <registry>` "
                                 "(fairing reads Docker's credential store).")


def _check_value(name: str, value: Any, where: str) -> Any:
    if name == "warm":
        text = str(value).strip().lower() if isinstance(value, (str, bool)) else None
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off", ""):
            return False
        raise ConfigurationError(f"warm in {where} is true or false, got {value!r}.")
    if name == "warm_idle":
        try:
            seconds = float(value) if not isinstance(value, bool) else float("nan")
        except (TypeError, ValueError):
            seconds = float("nan")
        from .runtime.warm import MAX_IDLE

        if not 0 < seconds <= MAX_IDLE:
            raise ConfigurationError(f"warm_idle in {where} is a positive number of seconds up to {MAX_IDLE:.0f} "
                                     f"(a week; e.g. 600), got {value!r}.")
        return seconds
    if name in _SECONDS:
        return _seconds(name, value, where)
    if name in ("cpu", "memory", "gpus"):
        from . import resources

        check = {"cpu": resources.check_cpu, "memory": resources.check_memory, "gpus": resources.check_gpus}[name]
        try:
            return check(value.strip() if isinstance(value, str) else value)
        except ConfigurationError as exc:
            raise ConfigurationError(f"In {where}: {exc}") from None
    if name == "insecure_registries":
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
            raise ConfigurationError(f"insecure_registries in {where} must be a list of host[:port] strings, "
                                     f"got {value!r}.")
        for entry in value:
            _no_credentials(name, entry, where)
        return tuple(value)
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"{name} in {where} must be a non-empty string, got {value!r}.")
    value = value.strip()
    if name in ("registry", "base_image"):
        _no_credentials(name, value, where)
    if name == "platform":
        from .images.manifest import Platform

        try:
            Platform.parse(value)
        except ConfigurationError as exc:
            raise ConfigurationError(f"In {where}: {exc}") from None
    if name == "python_version":
        parts = value.split(".")
        if len(parts) < 2 or not all(p.isdigit() for p in parts[:2]):
            raise ConfigurationError(f"python_version in {where} must be like '3.11', got {value!r}.")
    if name == "queue":
        from .kube.kueue import check_queue_name

        check_queue_name(value, where if where.startswith("queue=") else f"queue in {where}")
    if name == "backend":
        from ._names import BACKENDS

        if value not in BACKENDS:
            close = difflib.get_close_matches(value, list(BACKENDS), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigurationError(f"backend {value!r} in {where} is not a backend.{hint} "
                                     f"Choose one of: {', '.join(sorted(BACKENDS))}.")
    return value


#: The keyword arguments that carry one string setting, checked like the setting when given.
_STRING_ARGUMENTS = {"registry": "registry", "base_image": "base_image", "namespace": "namespace",
                     "ca_bundle": "ca_bundle", "platform": "platform", "python_version": "python_version",
                     "context": "context", "queue": "queue"}


def check_arguments(options: Mapping[str, Any], what: str) -> None:
    """Refuse, when given, a keyword argument of a setting's name whose value is not what
    that setting takes (``registry=["r.io"]``: a list where one string is expected)."""
    for key, value in options.items():
        name = _STRING_ARGUMENTS.get(key)
        if name is None or value is None:
            continue
        if not isinstance(value, str):
            example = {"registry": "'registry.example.com:5000/team'", "base_image": "'python:3.11-slim'",
                       "namespace": "'ml-jobs'", "platform": "'linux/amd64'", "python_version": "'3.11'",
                       "ca_bundle": "'certs/ca.pem'", "context": "'team-cluster'", "queue": "'team-a'"}[name]
            raise ConfigurationError(f"{key}= of {what} takes one string, e.g. {key}={example}; got "
                                     f"{type(value).__name__} {value!r}.")
        if name == "queue":  # an argument is used as given (not stripped, as a setting is): check it so
            from .kube.kueue import check_queue_name

            check_queue_name(value, f"{key}= of {what}")
            continue
        _check_value(name, value, f"{key}= of {what}")


def _from_table(table: Mapping[str, Any], where: str, base: Optional[Path]) -> dict[str, Any]:
    if not isinstance(table, Mapping):
        raise ConfigurationError(f"The fairing settings in {where} must be a table of key = value.")
    out = {}
    for key, value in table.items():
        if key not in _NAMES:
            close = difflib.get_close_matches(key, _NAMES, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigurationError(f"Unknown setting {key!r} in {where}.{hint} Valid settings: {', '.join(_NAMES)}.")
        value = _check_value(key, value, where)
        if key == "ca_bundle" and base is not None and not os.path.isabs(value):
            value = str((base / value).resolve())
        out[key] = value
    return out


#: A settings file is a few lines; one larger than this is not one (and is not read into memory).
_MAX_SETTINGS_BYTES = 1 << 20


def _present(path: Path) -> bool:
    """Whether a settings file is there: a dangling or looping link, a directory or a pipe in its
    place is there too, and :func:`_read_toml` says what is wrong with it (it was skipped silently)."""
    return os.path.lexists(path)


def _read_toml(path: Path) -> dict:
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        import tomli as tomllib  # type: ignore[no-redef]

    try:
        st = path.stat()
    except OSError as exc:  # dangling link, a link loop
        raise ConfigurationError(f"Cannot read {path}: {exc.strerror or exc}. Fix or remove it.") from None
    if not stat.S_ISREG(st.st_mode):  # a pipe would block, a device never end
        raise ConfigurationError(f"{path} is not a regular file; a settings file must be one. Remove it.")
    if st.st_size > _MAX_SETTINGS_BYTES:
        raise ConfigurationError(f"{path} is {st.st_size} bytes; a settings file is a few lines (at most "
                                 f"{_MAX_SETTINGS_BYTES} bytes). Fix or remove it.")
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path} is not valid TOML: {exc}. Fix the file, or remove it.") from None
    except UnicodeDecodeError:  # TOML is UTF-8; PowerShell 5's `>` writes UTF-16
        raise ConfigurationError(
            f"{path} is not UTF-8 text (TOML files must be; an editor or PowerShell's `>` may have saved it as "
            "UTF-16). Save it as UTF-8, e.g. with Set-Content -Encoding utf8, or remove it.") from None
    except OSError as exc:
        raise ConfigurationError(f"Cannot read {path}: {exc}.") from None


def _planted(path: Path) -> bool:
    """Whether ``path`` may have been put there by someone else: owned by another user (not
    root) in a directory anyone may create files in (``/tmp``), or writable by anyone."""
    if not hasattr(os, "getuid"):
        return False
    try:
        st, parent = path.lstat(), path.parent.stat()
    except OSError:
        return False
    if st.st_uid in (os.getuid(), 0):
        return False
    return bool(parent.st_mode & stat.S_IWOTH or st.st_mode & stat.S_IWOTH)


def project_root(start: "os.PathLike[str] | str | None" = None) -> Optional[Path]:
    """The first directory at or above ``start`` (default: the current directory) that holds
    one of :data:`ROOT_MARKERS`, or None. A marker another user may have planted (theirs, in
    a directory anyone can write to, like ``/tmp/.git``) does not count."""
    here = Path(start or os.getcwd()).resolve()
    for directory in (here, *here.parents):
        if any((directory / marker).exists() and not _planted(directory / marker) for marker in ROOT_MARKERS):
            return directory
    return None


def _refuse_planted(path: Path) -> None:
    if _planted(path):
        raise ConfigurationError(
            f"{path} belongs to another user (uid {path.lstat().st_uid}) and sits where anyone can write, so fairing "
            "does not read it: it would choose the registry, insecure hosts and CA bundle of your jobs. Remove it, "
            "or work in a directory of your own.")


def project_file(start: "os.PathLike[str] | str | None" = None) -> Optional[tuple[Path, dict]]:
    """The nearest fairing.toml, or pyproject.toml with a [tool.fairing] table, from ``start``
    (default: the current directory) up to the project's root (:func:`project_root`; only
    ``start`` itself when there is none), and its fairing table."""
    here = Path(start or os.getcwd()).resolve()
    root = project_root(here)
    chain = [here] if root is None else [here, *here.parents][: len(here.parts) - len(root.parts) + 1]
    for directory in chain:
        toml = directory / "fairing.toml"
        if _present(toml):
            _refuse_planted(toml)
            return toml, _read_toml(toml)
        pyproject = directory / "pyproject.toml"
        if _present(pyproject):
            _refuse_planted(pyproject)
            table = _read_toml(pyproject).get("tool", {}).get("fairing")
            if table is not None:
                return pyproject, table
    return None


def _environment(environ: Optional[Mapping[str, str]]):
    from .environment import Environment, current

    return current() if environ is None else Environment.from_os(environ)


def user_file(environ: Optional[Mapping[str, str]] = None) -> Path:
    """``$XDG_CONFIG_HOME/fairing/config.toml`` (``~/.config`` when the variable is unset)."""
    return _environment(environ).config_dir / "config.toml"


def resolve(arguments: Optional[Mapping[str, Any]] = None, *, cwd: "os.PathLike[str] | str | None" = None,
            environ: Optional[Mapping[str, str]] = None) -> Settings:
    """The settings: ``arguments`` (None values ignored) > environment > project > user file.

    The environment is :func:`fairing.environment.current` (``environ``: read this mapping
    instead), so ``environment.use(...)`` points the settings elsewhere in a test too."""
    machine = _environment(environ)
    env = machine.fairing_env
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}

    def layer(found: Mapping[str, Any], source: str) -> None:
        for key, value in found.items():
            values[key] = value
            sources[key] = source

    files: list[str] = []
    user = machine.config_dir / "config.toml"
    if _present(user):
        layer(_from_table(_read_toml(user), str(user), user.parent), str(user))
        files.append(str(user))
    project = project_file(cwd)
    if project is not None:
        path, table = project
        where = f"{path} [tool.fairing]" if path.name == "pyproject.toml" else str(path)
        layer(_from_table(table, where, path.parent), where)
        files.append(where)
    for var, name in ENVIRONMENT.items():
        if env.get(var):
            layer({name: _check_value(name, env[var], var)}, var)
    given = {k: v for k, v in (arguments or {}).items() if v is not None}
    for key in given:
        if key not in _NAMES:
            raise ConfigurationError(f"Unknown setting {key!r}. Valid settings: {', '.join(_NAMES)}.")
    layer({k: _check_value(k, v, "the arguments") for k, v in given.items()}, "argument")
    return Settings(**values, sources=MappingProxyType(sources), files=tuple(files))
