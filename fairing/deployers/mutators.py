"""Pod customisation as composable mutators.

A mutator is a callable ``(pod_spec: dict) -> dict`` that returns a new pod spec and
never changes its input. ``apply(spec, mutators)`` runs them in order. Each helper here
makes one; combine them freely::

    JobDeployer(mutators=[resources(cpu="2", memory="4Gi"), gpus(1), env({"EPOCHS": "3"}),
                          secret_env("wandb", {"WANDB_API_KEY": "key"}), pvc("data", "/data")])

The main container is the first one in the spec. Values are Kubernetes' JSON shapes.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any, Callable, Optional

from ..errors import ConfigurationError

__all__ = [
    "Mutator", "apply", "resources", "gpus", "env", "secret_env", "secret_volume", "config_map_env",
    "config_map_volume", "pvc", "service_account", "node_selector", "tolerations", "affinity",
    "image_pull_secrets",
]

Mutator = Callable[[dict], dict]


def apply(spec: dict, mutators: Iterable[Mutator]) -> dict:
    for mutate in mutators:
        spec = mutate(spec)
    return spec


def _main_container(fn: Callable[[dict], None]) -> Mutator:
    def mutate(spec: dict) -> dict:
        new = copy.deepcopy(spec)
        if not new.get("containers"):
            raise ConfigurationError("The pod spec has no containers to customise.")
        fn(new["containers"][0])
        return new

    return mutate


def _pod(fn: Callable[[dict], None]) -> Mutator:
    def mutate(spec: dict) -> dict:
        new = copy.deepcopy(spec)
        fn(new)
        return new

    return mutate


def resources(*, cpu: Optional[str] = None, memory: Optional[str] = None, cpu_limit: Optional[str] = None,
              memory_limit: Optional[str] = None) -> Mutator:
    """Requests (``cpu``, ``memory``) and limits (default: memory limit = request)."""
    requests = {k: str(v) for k, v in (("cpu", cpu), ("memory", memory)) if v is not None}
    limits = {k: str(v) for k, v in (("cpu", cpu_limit), ("memory", memory_limit or memory)) if v is not None}

    def set_resources(container: dict) -> None:
        res = container.setdefault("resources", {})
        res.setdefault("requests", {}).update(requests)
        if limits:
            res.setdefault("limits", {}).update(limits)

    return _main_container(set_resources)


def gpus(count: int, *, resource: str = "nvidia.com/gpu") -> Mutator:
    """``count`` GPUs as a limit (Kubernetes sets the request equal)."""
    if count < 0:
        raise ConfigurationError(f"gpus takes a count of 0 or more, got {count}.")

    def set_gpus(container: dict) -> None:
        if count:
            container.setdefault("resources", {}).setdefault("limits", {})[resource] = str(count)

    return _main_container(set_gpus)


def env(variables: Mapping[str, str]) -> Mutator:
    """Plain environment variables. Never use this for secrets: see :func:`secret_env`."""
    def set_env(container: dict) -> None:
        items = [e for e in container.get("env", []) if e["name"] not in variables]
        items.extend({"name": k, "value": str(v)} for k, v in variables.items())
        container["env"] = items

    return _main_container(set_env)


def _ref_env(source_key: str, name: str, keys: Mapping[str, str]) -> Mutator:
    def set_env(container: dict) -> None:
        items = [e for e in container.get("env", []) if e["name"] not in keys]
        items.extend({"name": var, "valueFrom": {source_key: {"name": name, "key": key}}} for var, key in keys.items())
        container["env"] = items

    return _main_container(set_env)


def secret_env(secret: str, keys: Mapping[str, str]) -> Mutator:
    """Environment variables from a Secret: ``{ENV_NAME: key_in_secret}`` (values stay in the Secret)."""
    return _ref_env("secretKeyRef", secret, keys)


def config_map_env(config_map: str, keys: Mapping[str, str]) -> Mutator:
    """Environment variables from a ConfigMap: ``{ENV_NAME: key_in_config_map}``."""
    return _ref_env("configMapKeyRef", config_map, keys)


def _volume(volume: dict, mount_path: str, read_only: bool) -> Mutator:
    def add(spec: dict) -> None:
        spec.setdefault("volumes", []).append(volume)
        mount = {"name": volume["name"], "mountPath": mount_path}
        if read_only:
            mount["readOnly"] = True
        spec["containers"][0].setdefault("volumeMounts", []).append(mount)

    return _pod(add)


def secret_volume(secret: str, mount_path: str, *, volume_name: Optional[str] = None) -> Mutator:
    return _volume({"name": volume_name or f"secret-{secret}", "secret": {"secretName": secret}}, mount_path, True)


def config_map_volume(config_map: str, mount_path: str, *, volume_name: Optional[str] = None) -> Mutator:
    return _volume({"name": volume_name or f"cm-{config_map}", "configMap": {"name": config_map}}, mount_path, True)


def pvc(claim: str, mount_path: str, *, read_only: bool = False, volume_name: Optional[str] = None) -> Mutator:
    return _volume({"name": volume_name or f"pvc-{claim}",
                    "persistentVolumeClaim": {"claimName": claim, "readOnly": read_only}}, mount_path, read_only)


def service_account(name: str) -> Mutator:
    return _pod(lambda spec: spec.__setitem__("serviceAccountName", name))


def node_selector(labels: Mapping[str, str]) -> Mutator:
    return _pod(lambda spec: spec.setdefault("nodeSelector", {}).update(labels))


def tolerations(items: Iterable[Mapping[str, Any]]) -> Mutator:
    return _pod(lambda spec: spec.setdefault("tolerations", []).extend(dict(t) for t in items))


def affinity(value: Mapping[str, Any]) -> Mutator:
    return _pod(lambda spec: spec.__setitem__("affinity", copy.deepcopy(dict(value))))


def image_pull_secrets(*names: str) -> Mutator:
    def add(spec: dict) -> None:
        items = spec.setdefault("imagePullSecrets", [])
        for n in names:
            if {"name": n} not in items:
                items.append({"name": n})

    return _pod(add)
