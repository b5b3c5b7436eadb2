"""Kubeconfig files read as kubectl reads them.

``KUBECONFIG`` may list several files (``a:b``, ``;`` on Windows). kubectl merges them:
files that do not exist are skipped; for clusters, contexts and users the first file
that defines a name wins; ``current-context`` is the first file's that sets one; a
relative path in a file (a CA, a client certificate or key, a token file) is relative to
that file. :func:`load` does the same and hands the merged document to the kubernetes
client.

Written here rather than using the client's own ``KubeConfigMerger``: that one lets the
*last* file's ``current-context`` win, stops at an empty file, and resolves relative
paths of every file against the first one's directory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

from ..errors import ConfigurationError

__all__ = ["merged", "load", "paths"]

_NAMED = ("clusters", "contexts", "users")
_MAX_BYTES = 16 << 20  # a kubeconfig is kilobytes; refuse to parse something that is not one
_PATH_KEYS = {"clusters": ("certificate-authority",), "users": ("client-certificate", "client-key", "tokenFile")}


def paths(spec: str) -> list[Path]:
    """The files a ``KUBECONFIG``-style value names, in order (empty entries dropped)."""
    return [Path(os.path.expanduser(p)) for p in spec.split(os.pathsep) if p.strip()]


def _read(path: Path) -> Optional[dict]:
    import yaml

    try:
        path.stat()
    except FileNotFoundError:
        return None  # kubectl skips a listed file that does not exist (a dangling link too)
    except OSError as exc:  # a symlink loop, a name too long, no permission: kubectl stops there too
        raise ConfigurationError(f"The kubeconfig {str(path)!r} could not be read: {exc.strerror}. "
                                 "Fix KUBECONFIG or kubeconfig=.") from None
    if not path.is_file():
        raise ConfigurationError(f"The kubeconfig {str(path)!r} is not a file. Fix KUBECONFIG or kubeconfig=.")
    try:
        if path.stat().st_size > _MAX_BYTES:
            raise ConfigurationError(f"The kubeconfig {str(path)!r} is over {_MAX_BYTES >> 20} MiB: not a kubeconfig.")
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        # Never str(exc): PyYAML quotes the offending line, which may hold a token or a key.
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ConfigurationError(f"The kubeconfig {str(path)!r} is not valid YAML ({problem}{where}). "
                                 "Fix or remove it.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"The kubeconfig {str(path)!r} could not be read: {exc}. Fix or remove it.") from None
    if doc is None:
        return {}  # an empty file adds nothing (as with kubectl)
    if not isinstance(doc, dict) or any(not isinstance(doc.get(k) or [], list) for k in _NAMED):
        raise ConfigurationError(f"The kubeconfig {str(path)!r} is not a kubeconfig (a mapping with clusters, "
                                 "contexts and users lists). Fix or remove it.")
    # Names and the current context are strings in every kubeconfig kubectl reads; anything
    # else (a list, or an alias of a huge one) is refused here, before it is hashed or printed.
    bad = [f"{section}[{i}].name" for section in _NAMED for i, entry in enumerate(doc.get(section) or [])
           if isinstance(entry, dict) and entry.get("name") is not None and not isinstance(entry["name"], str)]
    bad += [f"contexts[{i}].context.namespace" for i, entry in enumerate(doc.get("contexts") or [])
            if isinstance(entry, dict) and isinstance(entry.get("context"), dict)
            and entry["context"].get("namespace") is not None and not isinstance(entry["context"]["namespace"], str)]
    if doc.get("current-context") is not None and not isinstance(doc["current-context"], str):
        bad.append("current-context")
    if bad:
        raise ConfigurationError(f"The kubeconfig {str(path)!r} is not a kubeconfig: {', '.join(bad[:5])} "
                                 "must be a string. Fix or remove it.")
    return doc


def _absolute(section: str, entry: dict, base: Path) -> dict:
    body_key = section[:-1]  # clusters -> cluster
    body = entry.get(body_key)
    if not isinstance(body, dict):
        return entry
    body = dict(body)
    for key in _PATH_KEYS.get(section, ()):
        value = body.get(key)
        if isinstance(value, str) and value and not os.path.isabs(os.path.expanduser(value)):
            body[key] = str(base / value)
    exec_ = body.get("exec")
    if section == "users" and isinstance(exec_, dict) and isinstance(exec_.get("command"), str):
        command = exec_["command"]
        if os.sep in command and not os.path.isabs(command):  # kubectl: a bare name is looked up on PATH
            body["exec"] = {**exec_, "command": str(base / command)}
    return {**entry, body_key: body}


def merged(spec: str) -> tuple[dict, list[Path]]:
    """The merged document of every file in ``spec`` and the files that existed. Raises
    ConfigurationError when none exists or one cannot be read."""
    files = paths(spec)
    out: dict[str, Any] = {"apiVersion": "v1", "kind": "Config", "clusters": [], "contexts": [], "users": []}
    read: list[Path] = []
    for path in files:
        doc = _read(path)
        if doc is None:
            continue
        read.append(path)
        base = Path(os.path.abspath(path)).parent  # kubectl: the file's own directory, symlinks not followed
        for section in _NAMED:
            have = {e.get("name") for e in out[section]}
            for entry in doc.get(section) or []:
                if isinstance(entry, dict) and entry.get("name") and entry["name"] not in have:
                    out[section].append(_absolute(section, entry, base))
                    have.add(entry["name"])
        if doc.get("current-context") and not out.get("current-context"):
            out["current-context"] = doc["current-context"]
    if not read:
        raise ConfigurationError(
            f"No kubeconfig at {spec!r} and not running inside a cluster. Point KUBECONFIG at your cluster's "
            "kubeconfig, pass kubeconfig=..., or use the 'local' or 'docker' backend.")
    return out, read


def load(k8s: Any, spec: str, context: Optional[str]) -> tuple[Any, Optional[str]]:
    """(a configured ApiClient, the chosen context's namespace) from the files in ``spec``;
    ``context``: the context to use [the merged current-context]."""
    doc, read = merged(spec)
    names = [c["name"] for c in doc["contexts"]]
    chosen = context or doc.get("current-context")
    where = ", ".join(map(str, read))
    if not chosen:
        raise ConfigurationError(f"The kubeconfig ({where}) sets no current-context; choose one with context= or "
                                 f"--context (contexts: {', '.join(names) or 'none'}).")
    if chosen not in names:
        import difflib

        close = difflib.get_close_matches(chosen, names, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigurationError(f"The kubeconfig ({where}) has no context {chosen!r}.{hint} "
                                 f"Contexts: {', '.join(names) or 'none'}.")
    configuration = k8s.client.Configuration()
    try:
        k8s.config.load_kube_config_from_dict(doc, context=chosen, client_configuration=configuration)
    except (k8s.config.ConfigException, ValueError, KeyError, TypeError, OSError) as exc:  # OSError: a tokenFile
        raise ConfigurationError(f"The kubeconfig ({where}) could not be used with context {chosen!r}: {exc}. "
                                 "Check its clusters, users and contexts.") from exc
    ctx = next(c for c in doc["contexts"] if c["name"] == chosen).get("context") or {}
    user = next((u.get("user") for u in doc["users"] if u["name"] == ctx.get("user")), None)
    exec_ = user.get("exec") if isinstance(user, dict) else None
    if isinstance(exec_, dict) and not configuration.api_key.get("authorization") and not configuration.cert_file:
        # The client logs a failing credential plugin and goes on without credentials: every
        # call would then fail as anonymous (401/403), far from the cause.
        raise ConfigurationError(
            f"The kubeconfig ({where}) context {chosen!r} gets its credentials from the command "
            f"{str(exec_.get('command'))!r}, which gave none. Run it yourself to see why (a login expired, the "
            "command missing from PATH), or choose another context.")
    return k8s.client.ApiClient(configuration), ctx.get("namespace")
