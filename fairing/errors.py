"""Every error fairing raises, under one root.

Each message says what happened and how to fix it. The tree::

    FairingError
    ├── ConfigurationError          an argument or setting is wrong
    │   ├── PythonMismatchError         the base image's Python cannot load this function
    │   ├── QueueNotFoundError          the Kueue LocalQueue named by queue= does not exist (or no Kueue)
    │   ├── QueueTooSmallError          the job asks more at once than its Kueue queue ever has
    │   └── KatibAlgorithmError         the installed Katib has no suggestion service for the algorithm
    ├── MissingDependencyError      an optional extra is not installed
    ├── ConflictingInstallError     Kubeflow's old 'fairing' package shares this one's directory
    ├── JobRecordError              a job record on this machine is corrupt or not fairing's
    ├── PackagingError              code could not be captured into a build context
    │   ├── EntryPointNotFoundError     the script, notebook or input file does not exist
    │   ├── NotebookNotFoundError       the current notebook cannot be detected
    │   ├── NotebookStaleError          the saved notebook lacks cells the kernel ran
    │   ├── SerializationError          a function or value cannot be pickled
    │   ├── OutsideProjectError         a path or a symlink's target is outside the project, unmapped
    │   ├── PathCollisionError          two sources for one path in the image
    │   └── SecretInContextError        a file to be packaged holds a credential
    ├── BuildError                  an image could not be built or pushed
    │   ├── BuildPodError               the in-cluster (Kaniko) build pod failed; the pod's diagnosis is its __cause__
    │   └── RegistryError               the registry answered with an error
    │       ├── RegistryAuthError           credentials missing or refused
    │       └── RegistryUnreachableError    no connection to the registry
    ├── DeployError                 the job could not be created or started
    │   ├── ImagePullError              the node cannot pull the image (ErrImagePull, ImagePullBackOff)
    │   ├── UnschedulableError          no node can take the pod (insufficient cpu, memory, GPUs...)
    │   ├── MissingCRDError             the cluster lacks a resource type (training operator not installed)
    │   │   └── KatibNotInstalledError      no Katib (Experiment) in the cluster
    │   ├── PermissionDeniedError       RBAC forbids an action (names the verb and the resource)
    │   └── PodsRefusedError            the cluster refuses to create the job's pods (a missing service
    │                                   account, an exceeded ResourceQuota, a LimitRange, Pod Security)
    ├── DockerEngineError           the Docker engine is not running or refused access
    │                               (both a BuildError and a DeployError)
    ├── PredictionError             an endpoint answered a prediction request with an error
    └── JobError                    the job ran and did not succeed
        ├── JobFailedError              it exited non-zero (or was killed)
        │   └── TrialFailedError            a trial of a Katib search failed (names it, its parameters, its log)
        ├── SuggestionError             Katib's suggestion service for a search failed
        ├── JobTimeoutError             it did not finish in time (also a TimeoutError)
        ├── RemoteError                 it raised an exception that cannot be recreated here
        ├── RuntimeMismatchError        the job's Python or cloudpickle differs from the submitter's
        ├── JobNotFoundError            no job of that name (to attach, follow or delete) exists
        ├── ResultError                 its result cannot be read here (the key is gone, the value's
        │                               class is importable only in the job)
        └── MapError                    some calls of a map failed (the others' results are kept)

Errors that concern a job carry ``.job`` (its name) and, where known, ``.logs_tail``.
"""

from __future__ import annotations

from ._distribution import DISTRIBUTION

__all__ = [
    "FairingError",
    "ConfigurationError",
    "PythonMismatchError",
    "QueueNotFoundError",
    "QueueTooSmallError",
    "KatibAlgorithmError",
    "MissingDependencyError",
    "ConflictingInstallError",
    "JobRecordError",
    "PackagingError",
    "EntryPointNotFoundError",
    "NotebookNotFoundError",
    "NotebookStaleError",
    "SerializationError",
    "OutsideProjectError",
    "PathCollisionError",
    "SecretInContextError",
    "BuildError",
    "BuildPodError",
    "RegistryError",
    "RegistryAuthError",
    "RegistryUnreachableError",
    "DeployError",
    "ImagePullError",
    "UnschedulableError",
    "MissingCRDError",
    "PermissionDeniedError",
    "PodsRefusedError",
    "KatibNotInstalledError",
    "PredictionError",
    "DockerEngineError",
    "JobError",
    "JobFailedError",
    "TrialFailedError",
    "SuggestionError",
    "JobTimeoutError",
    "RemoteError",
    "RuntimeMismatchError",
    "JobNotFoundError",
    "ResultError",
    "MapError",
]


class FairingError(Exception):
    """The root of every error fairing raises. A token of a known shape in the message (a
    source line or a requirement quoted back) is masked: an error is printed, logged and
    sent as an event, so it never carries one."""

    def __init__(self, *args) -> None:
        if args and isinstance(args[0], str):
            try:
                from ._tokens import redact_tokens
            except ImportError:  # pragma: no cover - a partial install
                pass
            else:
                args = (redact_tokens(args[0]), *args[1:])
        super().__init__(*args)


class ConfigurationError(FairingError, ValueError):
    """An argument or setting is wrong."""


class KatibAlgorithmError(ConfigurationError):
    """The installed Katib has no suggestion service for the search algorithm asked for."""


class PythonMismatchError(ConfigurationError):
    """The base image's Python differs from the one a function was pickled with; found
    before anything is pushed. ``submitter`` and ``image`` are the two ``X.Y`` versions."""

    def __init__(self, message: str, *, submitter: str, image: str) -> None:
        self.submitter = submitter
        self.image = image
        super().__init__(message)


class QueueNotFoundError(ConfigurationError):
    """``queue=`` names a Kueue LocalQueue that does not exist in the job's namespace, or the
    cluster has no Kueue; found before anything is built, or from Kueue's own reason when
    the queue goes away while a job waits in it. ``queue`` and ``namespace`` name it."""

    def __init__(self, message: str, *, queue: str, namespace: str) -> None:
        self.queue = queue
        self.namespace = namespace
        super().__init__(message)


class QueueTooSmallError(ConfigurationError):
    """The job asks more at once (its pods' requests together) than the ClusterQueue behind
    its Kueue LocalQueue has at most, borrowing included: Kueue would hold it forever.
    ``queue`` and ``namespace`` name the LocalQueue."""

    def __init__(self, message: str, *, queue: str, namespace: str) -> None:
        self.queue = queue
        self.namespace = namespace
        super().__init__(message)


class MissingDependencyError(FairingError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""

    def __init__(self, module: str, extra: str, purpose: str) -> None:
        self.module = module
        self.extra = extra
        super().__init__(
            f"{purpose} needs the Python package {module!r}, which is not installed. "
            f"Install it with: pip install '{DISTRIBUTION}[{extra}]'"
        )


class ConflictingInstallError(FairingError, ImportError):
    """Kubeflow's old ``fairing`` distribution (PyPI ``fairing`` 0.5.3) is installed in the same
    site-packages as this one (``fairing-ml``): both own the ``fairing/`` directory. Raised at
    ``import fairing`` (see :mod:`fairing._distribution`); the message says how to repair it."""


class JobRecordError(FairingError):
    """A job record (``<cache>/fairing/jobs/<name>/record.json``) that cannot be trusted:
    not JSON, the wrong shape or types, a link, or paths outside fairing's own directories.
    ``job``: the record's name; ``path``: its file."""

    def __init__(self, message: str, *, job: str, path: "str | None" = None) -> None:
        self.job = job
        self.path = path
        super().__init__(message)


class PackagingError(FairingError):
    """Code or files could not be captured into a build context."""


class EntryPointNotFoundError(PackagingError, FileNotFoundError):
    """A script, notebook or input file named by the user does not exist."""


class NotebookNotFoundError(PackagingError):
    """The notebook to package could not be found or detected."""


class NotebookStaleError(PackagingError):
    """The saved notebook is older than what its kernel ran (cells run but not saved)."""


class SerializationError(PackagingError):
    """A function, its arguments or its result could not be pickled."""


class OutsideProjectError(PackagingError):
    """An input path, or the target of a symlink among the inputs, is outside the project
    (``base_dir``) and was not mapped to a path in the image."""


class PathCollisionError(PackagingError):
    """Two different sources would land at the same path in the image."""


class SecretInContextError(PackagingError):
    """A file that would be packaged looks like a credential (a private key, a token);
    ``.paths`` lists the files."""

    def __init__(self, message: str, *, paths: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.paths = paths


class BuildError(FairingError):
    """An image could not be built or pushed."""


class BuildPodError(BuildError):
    """The in-cluster build pod could not start or failed.

    What Kubernetes reported about the pod (an :class:`ImagePullError` for an executor
    image that cannot be pulled, an :class:`UnschedulableError`...) is chained as
    ``__cause__``, so ``except BuildError`` catches every failed build.
    """


class RegistryError(BuildError):
    """The registry answered with an error.

    ``status`` is the HTTP status and ``code`` the registry's error code
    (``MANIFEST_UNKNOWN``, ``DENIED``...) where it gave one.
    """

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        self.status = status
        self.code = code
        super().__init__(message)


class RegistryAuthError(RegistryError):
    """Credentials for the registry are missing or were refused."""


class RegistryUnreachableError(RegistryError):
    """No connection to the registry could be made."""


class DeployError(FairingError):
    """The job could not be created or started."""


class ImagePullError(DeployError):
    """The node cannot pull the job's image."""


class UnschedulableError(DeployError):
    """The scheduler found no node for the job's pods."""


class MissingCRDError(DeployError):
    """The cluster does not know the resource type (e.g. TFJob without the training operator)."""


class KatibNotInstalledError(MissingCRDError):
    """The cluster has no Katib: its Experiment resource is unknown."""


class PermissionDeniedError(DeployError):
    """Kubernetes RBAC forbids an action fairing needs. From the pre-flight check, ``missing``
    lists each ``(verb, resource, namespace)`` refused and ``identity`` who asked."""

    def __init__(self, message: str, *, missing: tuple = (), identity: "str | None" = None) -> None:
        super().__init__(message)
        self.missing = tuple(missing)
        self.identity = identity


class PodsRefusedError(DeployError):
    """The cluster refuses to create the workload's pods: its controller reported
    ``FailedCreate``. ``reason`` is the event's reason, ``refusal`` its message (the
    admission's answer), ``job`` the workload."""

    def __init__(self, message: str, *, job: "str | None" = None, reason: str = "", refusal: str = "") -> None:
        super().__init__(message)
        self.job = job
        self.reason = reason
        self.refusal = refusal


class PredictionError(FairingError):
    """An endpoint answered a prediction request with an error; ``status`` is the HTTP status."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class DockerEngineError(BuildError, DeployError):
    """The Docker (or Podman) engine cannot be reached, or refused this user access.

    Raised by the Docker builder and the Docker deployer alike, so it is both a
    :class:`BuildError` and a :class:`DeployError`.
    """


class JobError(FairingError):
    """The job ran and did not succeed."""

    def __init__(self, message: str, *, job: str | None = None, logs_tail: str | None = None) -> None:
        self.job = job
        self.logs_tail = logs_tail
        if logs_tail:
            message = f"{message}\n--- last lines of the job's log ---\n{logs_tail.rstrip()}"
        super().__init__(message)


class JobFailedError(JobError):
    """The job exited non-zero or was killed."""

    def __init__(self, message: str, *, exit_code: int | None = None, **kwargs) -> None:
        self.exit_code = exit_code
        super().__init__(message, **kwargs)


class TrialFailedError(JobFailedError):
    """A trial of a Katib search failed. ``trial`` is its name, ``params`` its parameters,
    ``logs_tail`` its log's last lines and ``trials`` every trial of the search
    (:class:`fairing.SweepTrial`)."""

    def __init__(self, message: str, *, trial: str, params: dict, trials: list, **kwargs) -> None:
        self.trial = trial
        self.params = dict(params)
        self.trials = list(trials)
        super().__init__(message, **kwargs)


class SuggestionError(JobError):
    """Katib's suggestion service for a search failed (its settings were refused, it crashed)."""


class JobTimeoutError(JobError, TimeoutError):
    """The job did not finish within its timeout; it has been stopped."""


class RemoteError(JobError):
    """The job raised an exception whose type cannot be recreated here.

    ``remote_type`` is the exception's qualified type name and ``remote_traceback``
    the traceback as formatted inside the job.
    """

    def __init__(self, remote_type: str, message: str, remote_traceback: str, **kwargs) -> None:
        self.remote_type = remote_type
        self.remote_traceback = remote_traceback
        super().__init__(
            f"The job raised {remote_type}: {message}\n--- remote traceback ---\n{remote_traceback.rstrip()}",
            **kwargs,
        )


class RuntimeMismatchError(JobError):
    """The job's Python or cloudpickle version cannot load what the submitter pickled."""


class JobNotFoundError(JobError, LookupError):
    """No job of that name exists here or in the cluster's namespace."""


class ResultError(JobError):
    """The job ended, but its result cannot be read here: the key that authenticates it is
    gone (nothing unauthenticated is ever unpickled), or the returned value's class is
    importable only in the job (``module`` names the missing module, when that is why)."""

    def __init__(self, message: str, *, module: str | None = None, **kwargs) -> None:
        self.module = module
        super().__init__(message, **kwargs)


class MapError(JobError):
    """Some calls of a ``.map()`` failed; the others succeeded.

    ``failures`` maps each failed index to its exception (re-raised there, as a single
    call would raise it), ``logs`` each failed index to its log's last lines, and
    ``results`` holds every result in input order (``None`` at the failed indexes).
    """

    def __init__(self, message: str, *, failures: dict, results: list, logs: dict | None = None,
                 job: str | None = None) -> None:
        self.failures = dict(failures)
        self.results = list(results)
        self.logs = dict(logs or {})
        super().__init__(message, job=job)

    @property
    def failed_indexes(self) -> list:
        return sorted(self.failures)
