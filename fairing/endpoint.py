"""PredictionEndpoint: deploy a model class as an HTTP prediction endpoint and call it."""

from __future__ import annotations

import copy
from typing import Any, Iterable, Optional

from .errors import ConfigurationError, PredictionError
from .events import EventCallback

__all__ = ["PredictionEndpoint"]


def _plain(data: Any) -> Any:
    if hasattr(data, "tolist"):
        return data.tolist()
    if isinstance(data, (list, tuple)):
        return [_plain(v) for v in data]
    return data


def _shape(value: Any) -> list[int]:
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        value = value[0] if value else None
    return shape


def _flatten(value: Any):
    if isinstance(value, list):
        for v in value:
            yield from _flatten(v)
    else:
        yield value


_MODEL_DIR = "/var/run/fairing-model"
MODEL_STORAGE = ("init", "modelcar")


def _model_outputs(model: Any) -> Any:
    """The :class:`~fairing.outputs.Outputs` of ``model`` (a handle or Outputs), or None."""
    if model is None:
        return None
    from .outputs import Outputs

    if isinstance(model, Outputs):
        return model
    if callable(getattr(model, "outputs_artifact", None)):
        found = model.outputs_artifact()
        if found is None:
            raise ConfigurationError(f"The job {model.name} wrote no outputs to serve; have it write its model "
                                     "under $FAIRING_OUTPUTS or name it in outputs=[...].")
        return found
    raise ConfigurationError(f"model takes a job's handle or its Outputs (handle.outputs_artifact()), "
                             f"got {type(model).__name__}.")


def _with_model_files(input_files: Any, model: Any) -> dict:
    """``input_files`` plus the model's directory, its files at the top of the working directory."""
    import os

    if isinstance(input_files, (str, os.PathLike)):
        input_files = [input_files]
    files = dict(input_files) if isinstance(input_files, dict) else {os.fspath(p): os.fspath(p) for p in input_files}
    files[model.ref] = "."
    return files


def _model_init(model: Any, workdir: str, insecure: bool):
    """A mutator: an init container pulls ``model``'s artifact into a volume, and each of its
    files is mounted into the server's working directory."""
    import posixpath

    from .deployers.mutators import _pod

    files = model.files()

    def add(spec: dict) -> None:
        main = spec["containers"][0]
        auth = [m for m in main.get("volumeMounts", []) if m["name"] == "fairing-registry-auth"]
        env = [e for e in main.get("env", []) if e["name"] == "FAIRING_OUTPUTS_AUTH_FILE"]
        if insecure:
            env.append({"name": "FAIRING_OUTPUTS_INSECURE", "value": "1"})
        spec.setdefault("volumes", []).append({"name": "fairing-model", "emptyDir": {}})
        spec.setdefault("initContainers", []).append({
            "name": "fairing-model", "image": main["image"], "env": env,
            "command": ["python3", "-m", "fairing_runtime.outputs", "pull", model.ref, _MODEL_DIR],
            "volumeMounts": [{"name": "fairing-model", "mountPath": _MODEL_DIR}, *auth]})
        main.setdefault("volumeMounts", []).extend(
            {"name": "fairing-model", "mountPath": posixpath.join(workdir, rel), "subPath": rel, "readOnly": True}
            for rel in files)

    return _pod(add)


class PredictionEndpoint:
    """Serve ``model_class`` (``predict(X)``, optional ``load()`` run once at start).

    >>> endpoint = PredictionEndpoint(IrisModel, input_files=["model.joblib"],
    ...                               requirements=["scikit-learn"], backend="kubernetes", ...)
    >>> endpoint.create()          # waits until ready; fails with the pods' events and logs
    >>> endpoint.predict([[5.1, 3.5, 1.4, 0.2]])
    >>> endpoint.delete()

    The server speaks KServe v1 (``/v1/models/<name>:predict``) and the Open Inference
    Protocol v2. ``url`` is its address (in-cluster DNS on Kubernetes); ``predict()``
    works from outside the cluster too, through the API server's service proxy.
    ``deployer``: a serving deployer, or on a cluster backend its name: ``'serving'``
    (a Deployment and Service, the default) or ``'kserve'`` (an InferenceService).

    ``model``: a training job's outputs to serve, as its handle or its
    :class:`~fairing.outputs.Outputs`: each of its files appears in the server's working
    directory under its own path (so ``load()`` opens ``"model.joblib"`` as the training
    code wrote it). On a cluster an init container pulls the job's OCI artifact straight
    from the registry (nothing is downloaded here); the artifact must outlive the
    endpoint's pods, so delete the job's handle after the endpoint. Locally the files
    are copied in as input files.

    ``model_storage``: how a cluster endpoint gets ``model``'s files: ``'init'`` (the
    default: fairing's init container, above) or, with ``deployer='kserve'``,
    ``'modelcar'``: KServe's own OCI model storage. The artifact becomes a modelcar image
    (:meth:`fairing.outputs.Outputs.modelcar`, on the serving image, whose layers the node
    already has), the InferenceService's storage URI is ``oci://`` that image, KServe runs
    it beside the predictor, and the files appear under ``/mnt/models``, linked into the
    working directory. KServe needs ``storageInitializer.enableModelcar`` (its default
    since v0.15). The image is deleted with the job's outputs.
    """

    def __init__(self, model_class: type, *legacy_args: Any, input_files: Iterable = (), requirements: Any = None,
                 backend: Any = None, name: Optional[str] = None, model_name: Optional[str] = None,
                 replicas: Optional[int] = None, deployer: Any = None, on_event: Optional[EventCallback] = None,
                 model: Any = None, model_storage: Optional[str] = None, **backend_options: Any) -> None:
        from .api import _legacy_default_backend, _task_options
        from .backends import BackendChoice, with_settings
        from .preprocessors.function import ServingPreprocessor

        options, legacy = _task_options("PredictionEndpoint", legacy_args,
                                        {"backend": backend, "input_files": input_files, **backend_options})
        if legacy:
            _legacy_default_backend(options)
        input_files = options.pop("input_files", None) or ()
        if legacy:
            from .api import _requirements_among_inputs

            requirements = _requirements_among_inputs(input_files, requirements)
        self.model_name = model_name or model_class.__name__.lower()
        self.model = _model_outputs(model)
        if options.get("warm"):
            raise ConfigurationError("An endpoint cannot be warm: warm=True runs functions (@train), scripts and "
                                     "notebooks as single-pod Jobs on a warm worker (not TFJob, PyTorchJob, TrainJob "
                                     "or endpoints). Drop warm=True.")
        self.backend = BackendChoice(options.pop("backend", None), options).make()
        inner = getattr(self.backend.builder, "unwarmed", None)
        if inner is not None:  # the warm setting: an endpoint runs from its own image, as without it
            import dataclasses

            self.backend = dataclasses.replace(self.backend, builder=inner, deployer=self.backend.serving)
        deployer = deployer or self.backend.serving
        if isinstance(deployer, str):  # 'serving' or 'kserve', on the backend's cluster
            from .deployers.serving import serving_deployer

            deployer = serving_deployer(deployer, self.backend)
        deployer = with_settings(deployer)
        if self.model is not None and not self.model.is_artifact:  # a local job's directory: copy the files in
            input_files = _with_model_files(input_files, self.model)
        elif self.model is not None and not hasattr(deployer, "mutators"):
            raise ConfigurationError(
                f"The model {self.model.ref} is an artifact in a registry, which the {self.backend.name} backend's "
                "endpoint cannot pull; serve it on Kubernetes, or download it first (handle.outputs(dir)) and "
                "pass the files as input_files.")
        if model_storage is not None:
            if model_storage not in MODEL_STORAGE:
                import difflib

                close = difflib.get_close_matches(str(model_storage), MODEL_STORAGE, n=1)
                raise ConfigurationError(f"model_storage is 'init' or 'modelcar', got {model_storage!r}."
                                         + (f" Did you mean {close[0]!r}?" if close else ""))
            if model_storage == "modelcar" and (self.model is None or not self.model.is_artifact):
                raise ConfigurationError("model_storage='modelcar' serves a cluster job's outputs artifact: pass "
                                         "model=handle (a job that ran on a cluster and wrote outputs).")
            if model_storage == "modelcar" and not hasattr(deployer, "storage_uri"):
                raise ConfigurationError("model_storage='modelcar' is KServe's OCI model storage: use "
                                         "deployer='kserve'.")
        self.model_storage = model_storage or "init"
        self.preprocessor = ServingPreprocessor(model_class, model_name=self.model_name, input_files=input_files,
                                                requirements=requirements)
        if deployer is None:
            raise ConfigurationError(f"The {self.backend.name} backend cannot serve endpoints; use 'local' or 'kubernetes'.")
        from .artifacts import check_pair
        from .backends import working_pairs

        check_pair(self.backend.builder, deployer, what="serving deployer", known_pairs=working_pairs)
        if replicas is not None:
            deployer = copy.copy(deployer)
            deployer.replicas = replicas
        self.deployer = deployer
        self.name = name
        self.on_event = on_event
        self.handle: Any = None

    def create(self, timeout: float = 300) -> "PredictionEndpoint":
        """Build, deploy and wait until ready. On failure nothing is left running."""
        if self.handle is not None:
            raise ConfigurationError("This endpoint is already created; delete() it first.")
        from .api import pipeline

        def with_model(deployer: Any, context: Any, image: Any) -> Any:
            if self.model is None or not self.model.is_artifact:
                return deployer
            deployer = copy.copy(deployer)
            if self.model_storage == "modelcar":  # on the serving image: the node has its layers
                deployer.storage_uri = f"oci://{self.model.modelcar(str(image))}"
            else:
                deployer.mutators = [*deployer.mutators,
                                     _model_init(self.model, context.workdir, deployer.insecure(image))]
            return deployer

        handle = pipeline(self.preprocessor, self.backend.builder, self.deployer, backend_name=self.backend.name,
                          name=self.name, on_event=self.on_event, job_events=self.on_event, endpoint=True,
                          ready=lambda h: h.wait_ready(timeout), customize=with_model)
        self.handle = handle
        self.name = handle.name
        return self

    def detach(self) -> None:
        """Let a local endpoint outlive this process (``fairing delete NAME`` stops it)."""
        process = getattr(self._require(), "process", None)
        getattr(process, "detach", lambda: None)()

    def _require(self):
        if self.handle is None:
            raise ConfigurationError("The endpoint is not created yet: call create() first.")
        return self.handle

    @property
    def url(self) -> str:
        return self._require().url

    def predict(self, data: Any, *, timeout: float = 60) -> Any:
        """Predictions for ``data`` (a list of instances, or an array), via the v1 protocol."""
        status, body = self._require().request("POST", f"/v1/models/{self.model_name}:predict",
                                               {"instances": _plain(data)}, timeout)
        if status != 200:
            message = body.get("error") if isinstance(body, dict) else body
            raise PredictionError(
                f"The endpoint {self.name} answered HTTP {status}: {message}. Check the input's shape and "
                "types against what the model's predict() expects.", status=status)
        return body["predictions"]

    def predict_nparray(self, data: Any, feature_names: Optional[list] = None) -> dict:
        """Kubeflow Fairing's call: predictions for an array, in its (Seldon) response shape
        ``{"data": {"names": [...], "tensor": {"shape": [...], "values": [...]}}}``.
        Prefer :meth:`predict`, which returns the predictions themselves."""
        from .compat import warn_renamed

        warn_renamed("predict_nparray() is Kubeflow Fairing's; use predict(X), which returns the predictions.")
        predictions = self.predict(data)
        shape, flat = _shape(predictions), list(_flatten(predictions))
        return {"data": {"names": list(feature_names or []), "tensor": {"shape": shape, "values": flat}}}

    def logs(self) -> list[str]:
        return list(self._require().logs(follow=False))

    def delete(self) -> None:
        """Remove the endpoint and everything it created. Idempotent."""
        if self.handle is not None:
            from . import jobs

            jobs.finish(self.handle)
            self.handle = None

    def __enter__(self) -> "PredictionEndpoint":
        return self.create()

    def __exit__(self, *exc: Any) -> None:
        self.delete()
