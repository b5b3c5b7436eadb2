"""Katib deployer: a hyperparameter search as a Katib Experiment (``kubeflow.org/v1beta1``)
whose trials are batch Jobs running the function's image.

The trial template is the Job deployer's pod (the same image, result key, pull secret
and mutators) with the trial's parameter values in ``FAIRING_TRIAL_<i>`` (Katib fills
``${trialParameters.<name>}`` in), read by the runtime (:mod:`fairing.runtime.trial`),
which prints the objective as a ``fairing-metric:name=value`` line for Katib's StdOut metrics
collector. Each trial's own return value comes back through the termination message,
signed with the search's result key, as a job's does.

The search space uses Katib's parameter kinds: :class:`IntRange`, :class:`DoubleRange`
(both with an optional ``step``) and :class:`Categorical` (a plain list or tuple is one).
Katib runs Experiments (and injects its metrics collector into their pods) only in
namespaces labelled ``katib.kubeflow.org/metrics-collector-injection: enabled``, as a
Kubeflow profile's namespace is: an unlabelled one is a ConfigurationError saying so.

It stays one module past 450 lines because the Experiment's manifest, its handle (trial watch, results,
errors) and the space's kinds belong together and are used only here.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional

from ..errors import (ConfigurationError, DeployError, KatibAlgorithmError, KatibNotInstalledError, SuggestionError,
                      TrialFailedError)
from ..events import EventCallback, TrialUpdate
from ..kube import raise_for_api_error
from ..kube.client import is_status
from ..kube.workloads import WorkloadKind, condition_phase
from ..results import SweepResult, SweepTrial
from ..runtime import ENTRYPOINT
from ..runtime.result import TRIAL_CALL
from ..runtime.trial import METRICS_FORMAT, env_name
from .kubernetes import KubeDeployerBase, KubeHandle

__all__ = ["KatibDeployer", "KatibHandle", "IntRange", "DoubleRange", "Categorical", "TrialUpdate",
           "KATIB_GROUP", "ALGORITHMS", "trial_call", "katib_space"]

KATIB_GROUP = "kubeflow.org"
KATIB_VERSION = "v1beta1"
#: Katib's own algorithm names (its suggestion services); which ones a cluster serves is in
#: its katib-config ConfigMap.
ALGORITHMS = ("random", "grid", "tpe", "multivariate-tpe", "cmaes", "sobol", "bayesianoptimization", "hyperband")
INJECTION_LABEL = "katib.kubeflow.org/metrics-collector-injection"
EXPERIMENT_LABEL = "katib.kubeflow.org/experiment"
TRIAL_LABEL = "katib.kubeflow.org/trial"
COLLECTOR_CONTAINER = "metrics-logger-and-collector"
_INSTALL_HINT = ("Install Katib (github.com/kubeflow/katib, e.g. `kubectl apply -k "
                 "\"github.com/kubeflow/katib.git/manifests/v1beta1/installs/katib-standalone?ref=v0.19.0\"`; "
                 "the test cluster's tests/cluster/katib.sh), or use engine='grid'.")


@dataclass(frozen=True)
class IntRange:
    """Integers from ``min`` to ``max`` (both included), every ``step``."""

    min: int
    max: int
    step: Optional[int] = None


@dataclass(frozen=True)
class DoubleRange:
    """Floats from ``min`` to ``max``, every ``step`` (None: any)."""

    min: float
    max: float
    step: Optional[float] = None


@dataclass(frozen=True)
class Categorical:
    """One of ``values`` (strings, numbers or booleans)."""

    values: tuple

    def __init__(self, values: Iterable[Any]) -> None:
        object.__setattr__(self, "values", tuple(values))


_SAFE_TEXT = re.compile(r"^[A-Za-z0-9_.+\-: /]*$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _number_text(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _check_range(name: str, spec: Any) -> None:
    kind = int if isinstance(spec, IntRange) else float
    for field in ("min", "max", "step"):
        value = getattr(spec, field)
        if value is None and field == "step":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
            raise ConfigurationError(f"The parameter {name!r}: {field}={value!r} is not {'an integer' if kind is int else 'a number'}.")
    if not all(math.isfinite(v) and abs(v) < 2 ** 63 for v in (spec.min, spec.max, spec.step or 0)):
        raise ConfigurationError(f"The parameter {name!r}: {spec!r} needs finite bounds within 64 bits (Katib's "
                                 "suggestion services read them as such).")
    if spec.min > spec.max:
        raise ConfigurationError(f"The parameter {name!r}: min {spec.min!r} is above max {spec.max!r}.")
    if spec.step is not None and spec.step <= 0:
        raise ConfigurationError(f"The parameter {name!r}: step must be positive, got {spec.step!r}.")


def katib_space(space: Any) -> tuple[list, dict]:
    """(Katib's ``parameters``, the runtime's space) for a search space: a dict of name ->
    :class:`IntRange`, :class:`DoubleRange`, :class:`Categorical` or a list of values."""
    if not isinstance(space, Mapping) or not space:
        raise ConfigurationError("A Katib search takes a space: a dict of parameter name -> IntRange(1, 5), "
                                 "DoubleRange(0.0, 1.0), Categorical([...]) or a list of values.")
    parameters, runtime = [], {}
    for name, spec in space.items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigurationError(f"The parameter name {name!r} is not a Python identifier; the function "
                                     "receives each parameter as a keyword argument.")
        if isinstance(spec, (list, tuple)):
            spec = Categorical(spec)
        if isinstance(spec, IntRange) or isinstance(spec, DoubleRange):
            _check_range(name, spec)
            kind = "int" if isinstance(spec, IntRange) else "double"
            feasible = {"min": _number_text(spec.min), "max": _number_text(spec.max)}
            if spec.step is not None:
                feasible["step"] = _number_text(spec.step)
            parameters.append({"name": name, "parameterType": kind, "feasibleSpace": feasible})
            runtime[name] = {"kind": kind}
        elif isinstance(spec, Categorical):
            choices: dict = {}
            for value in spec.values:
                if value is not None and not isinstance(value, (str, int, float, bool)):
                    raise ConfigurationError(f"The parameter {name!r}: Katib carries strings, numbers and booleans; "
                                             f"{value!r} is a {type(value).__name__}. Pass an index or a name instead.")
                text = value if isinstance(value, str) else _number_text(value)
                if not text or len(text) > 200 or not _SAFE_TEXT.match(text):
                    raise ConfigurationError(f"The parameter {name!r}: the value {value!r} cannot travel through "
                                             "Katib's trial template (use letters, digits and _.+-:/ , at most 200).")
                if text in choices:
                    raise ConfigurationError(f"The parameter {name!r} lists {text!r} twice.")
                choices[text] = value
            if not choices:
                raise ConfigurationError(f"The parameter {name!r} has no values.")
            parameters.append({"name": name, "parameterType": "categorical", "feasibleSpace": {"list": list(choices)}})
            runtime[name] = {"kind": "categorical", "choices": choices}
        else:
            raise ConfigurationError(f"The parameter {name!r}: {spec!r} is not a search space kind; use "
                                     "IntRange, DoubleRange, Categorical or a list of values.")
    size = len(json.dumps(runtime))
    if size > SPACE_LIMIT:  # it travels in an annotation (256 KiB with the others) and the Experiment
        raise ConfigurationError(f"The search space takes {size} bytes as text, over {SPACE_LIMIT}: Kubernetes "
                                 "would refuse the Experiment after the image is built. List fewer values, or "
                                 "search an IntRange over their indices.")
    return parameters, runtime


#: The most the search space may take as JSON (kept in the Experiment's annotation).
SPACE_LIMIT = 64 * 1024


def trial_call(runtime_space: dict, metric: str) -> dict:
    """The function payload's kwargs for a trial (see :mod:`fairing.runtime.trial`)."""
    return {TRIAL_CALL: {"space": runtime_space, "metric": metric}}


def _params_of(trial: dict, space: dict) -> dict:
    from ..runtime.trial import TrialError, convert

    found = {}
    for assignment in (trial.get("spec") or {}).get("parameterAssignments") or []:
        name, text = assignment.get("name"), str(assignment.get("value"))
        try:
            found[name] = convert(name, space[name], text) if name in space else text
        except TrialError:
            found[name] = text
    order = {name: i for i, name in enumerate(space)}  # the space's order, as the function's arguments were given
    return dict(sorted(found.items(), key=lambda item: order.get(item[0], len(order))))


def _trial_state(trial: dict) -> str:
    conditions = (trial.get("status") or {}).get("conditions") or []
    true = [c.get("type") for c in conditions if c.get("status") == "True"]
    for state in ("Succeeded", "EarlyStopped", "MetricsUnavailable", "Killed", "Failed", "Running"):
        if state in true:
            return state
    return "Created"


def _trial_value(trial: dict, metric: str) -> Optional[float]:
    for entry in ((trial.get("status") or {}).get("observation") or {}).get("metrics") or []:
        if entry.get("name") == metric:
            try:
                return float(entry.get("latest"))
            except (TypeError, ValueError):
                return None
    return None


def _trial_message(trial: dict) -> str:
    for cond in reversed((trial.get("status") or {}).get("conditions") or []):
        if cond.get("status") == "True":
            return f"{cond.get('type')}: {cond.get('reason', '')} {cond.get('message', '')}".strip()
    return "no condition"


#: gRPC codes of a suggestion service that fails for good (not one still starting: Unavailable).
_SUGGESTION_FAILURES = ("code = Internal", "code = InvalidArgument", "code = Unknown", "code = Unimplemented")
SUGGESTION_CHECK_SECONDS = 5.0

_KLOG = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+ [\w./-]+:\d+\] ?")


class KatibHandle(KubeHandle):
    """A running Katib search: its Experiment, the trial pods' logs (prefixed with the trial's
    name), :class:`TrialUpdate` events as trials change, and :meth:`result`: a
    :class:`~fairing.SweepResult` (raising :class:`~fairing.TrialFailedError` for a failed
    trial, :class:`~fairing.SuggestionError` when the suggestion service failed)."""

    kind = "Experiment"
    WORKLOAD = WorkloadKind("Experiment", f"{KATIB_GROUP}/{KATIB_VERSION}", "Experiment", "experiments")
    space: dict = {}
    metric: str = ""
    mode: str = "max"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._trials: dict[str, dict] = {}
        self._trial_seen: dict[str, tuple] = {}

    @classmethod
    def attach(cls, kube: Any, name: str, *, on_event: Any = None) -> "KatibHandle":
        handle = cls(kube, name, kube.namespace, on_event=on_event)
        try:  # the search's own description: its space and metric, from its annotations
            obj = kube.custom.get_namespaced_custom_object(KATIB_GROUP, KATIB_VERSION, kube.namespace, "experiments", name)
            meta = json.loads(((obj.get("metadata") or {}).get("annotations") or {}).get(SEARCH_ANNOTATION, "{}"))
            handle.space, handle.metric, handle.mode = meta.get("space", {}), meta.get("metric", ""), meta.get("mode", "max")
        except Exception:
            pass
        return handle

    def start(self) -> "KatibHandle":
        super().start()
        threading.Thread(target=self._watch_loop,
                         args=(self._list_trials, {"label_selector": f"{EXPERIMENT_LABEL}={self.name}"}, self._on_trial),
                         name=f"fairing-trials-{self.name}", daemon=True).start()
        return self

    def _list_objects(self, **kwargs):
        return self.kube.custom.list_namespaced_custom_object(KATIB_GROUP, KATIB_VERSION, plural="experiments", **kwargs)

    def _list_trials(self, **kwargs):
        return self.kube.custom.list_namespaced_custom_object(KATIB_GROUP, KATIB_VERSION, plural="trials", **kwargs)

    def _delete_object(self) -> None:
        self.kube.custom.delete_namespaced_custom_object(KATIB_GROUP, KATIB_VERSION, self.namespace, "experiments",
                                                         self.name, propagation_policy="Foreground")

    def _phase(self, obj: dict) -> Optional[str]:
        return condition_phase(obj)

    def replica(self, pod: dict) -> str:
        return (pod["metadata"].get("labels") or {}).get(TRIAL_LABEL, "") or pod["metadata"].get("name", "")

    def _on_trial(self, kind: str, trial: dict) -> None:
        name = trial["metadata"]["name"]
        with self._cond:
            if kind == "DELETED":
                self._trials.pop(name, None)
            else:
                self._trials[name] = trial
            self._cond.notify_all()
        if kind == "DELETED":
            return
        state, value = _trial_state(trial), _trial_value(trial, self.metric)
        if self._trial_seen.get(name) != (state, value):
            self._trial_seen[name] = (state, value)
            self._emit(TrialUpdate(name, state, _params_of(trial, self.space), value))

    def _stream(self, pod_name: str, source: str, restarts: int, container: Optional[str] = None) -> None:
        """The trial's output: Katib sends the container's stdout to a file that its collector
        sidecar reads and logs, so the sidecar's log (less its own log-line prefix) is it
        (``container``, the trial's main one, has none)."""
        from ..kube.watch import LineSplitter

        try:
            response = self.kube.core.read_namespaced_pod_log(pod_name, self.namespace, follow=True,
                                                              container=COLLECTOR_CONTAINER, _preload_content=False)
            splitter = LineSplitter()
            for chunk in response.stream(4096):
                for text, partial in splitter.feed(chunk):
                    self._add_trial_line(source, text, partial)
            for text, partial in splitter.close():
                self._add_trial_line(source, text, partial)
        except Exception:  # the pod went away mid-stream, or has no collector: the log ends here
            pass
        finally:
            with self._cond:
                self._cond.notify_all()

    def _add_trial_line(self, source: str, line: str, partial: bool) -> None:
        self._add_line(source, _KLOG.sub("", line), partial)

    def pod_log_tail(self, pod: dict) -> str:
        buffered = self.tail(self.replica(pod))
        if buffered:
            return buffered
        try:
            text = self.kube.pod_log(pod["metadata"]["name"], self.namespace, tail_lines=40,
                                     container=COLLECTOR_CONTAINER)
        except self.kube.k8s.client.ApiException:
            return ""
        return "\n".join(_KLOG.sub("", line) for line in text.splitlines())

    def trials(self) -> list[dict]:
        """The search's Trial objects as last seen, oldest first."""
        with self._cond:
            found = list(self._trials.values())
        return sorted(found, key=lambda t: (t["metadata"].get("creationTimestamp", ""), t["metadata"]["name"]))

    def _suggestion_failure(self) -> Optional[str]:
        obj = self._obj or {}
        for cond in (obj.get("status") or {}).get("conditions") or []:
            if cond.get("type") == "Failed" and cond.get("status") == "True":
                text = f"{cond.get('reason', '')}: {cond.get('message', '')}"
                if "uggestion" in text or "lgorithm" in text:
                    return text
        try:
            suggestion = self.kube.custom.get_namespaced_custom_object(KATIB_GROUP, KATIB_VERSION, self.namespace,
                                                                       "suggestions", self.name)
        except Exception:
            return None
        for cond in (suggestion.get("status") or {}).get("conditions") or []:
            if cond.get("type") == "Failed" and cond.get("status") == "True":
                return f"{cond.get('reason', '')}: {cond.get('message', '')}"
        return None

    _suggestion_checked = 0.0

    def _finished(self) -> bool:
        """As a workload's, and raise :class:`~fairing.SuggestionError` when Katib's suggestion
        service keeps failing: Katib retries it without end, and says why only in events."""
        if super()._finished():
            return True
        now = time.monotonic()
        if now - self._suggestion_checked >= SUGGESTION_CHECK_SECONDS:
            self._suggestion_checked = now
            why = self._suggestion_errors()
            if why:
                raise SuggestionError(f"Katib's suggestion service for the search {self.name} fails: {why}. Check "
                                      "the algorithm and its settings (algorithm_settings=...).", job=self.name)
        return False

    def _suggestion_errors(self) -> str:
        """The message of the Suggestion's repeated non-transient ReconcileError events, or ''."""
        try:
            events = self.kube.core.list_namespaced_event(
                self.namespace, field_selector=f"involvedObject.kind=Suggestion,involvedObject.name={self.name}")
        except Exception:
            return ""
        for event in events.items:
            message = event.message or ""
            if (event.reason == "ReconcileError" and (event.count or 1) >= 2
                    and any(code in message for code in _SUGGESTION_FAILURES)):
                return message
        return ""

    def result(self, timeout: Optional[float] = None) -> SweepResult:
        self.wait(timeout)
        self.wait_until(lambda: all(_trial_state(t) not in ("Created", "Running") for t in self._trials.values()),
                        timeout=30, diagnose_pods=False, tick=1.0)
        pods: dict[str, tuple] = {}
        with self._cond:
            for pod in self._pods.values():
                trial = (pod["metadata"].get("labels") or {}).get(TRIAL_LABEL)
                for cs in pod.get("status", {}).get("containerStatuses") or []:
                    if cs.get("name") == self.container_name() and (cs.get("state") or {}).get("terminated"):
                        pods[trial] = (pod, cs["state"]["terminated"])
        details, failures = [], []
        for trial in self.trials():
            name, state = trial["metadata"]["name"], _trial_state(trial)
            params, value, result = _params_of(trial, self.space), _trial_value(trial, self.metric), None
            pod, terminated = pods.get(name, (None, {}))
            failed = None
            if pod is not None:
                self._outputs = None
                try:
                    result = self.pod_outcome(pod, terminated)
                except Exception as exc:
                    failed = exc
                    state = "Failed" if state in ("Succeeded", "Running", "Created") else state
            if failed is not None or state in ("Failed", "MetricsUnavailable"):
                failures.append((name, params, failed, self.pod_log_tail(pod) if pod is not None else "",
                                 _trial_message(trial)))
            details.append(SweepTrial(name, params, result, value, state))
        suggestion = self._suggestion_failure()
        if suggestion:
            raise SuggestionError(f"Katib's suggestion service for the search {self.name} failed: {suggestion}. "
                                  "Check the algorithm and its settings (algorithm_settings=...).", job=self.name)
        if failures:
            name, params, exc, tail, katib_says = failures[0]
            why = f": {exc}" if exc is not None else f" (Katib: {katib_says})"
            raise TrialFailedError(
                f"The trial {name} of the search {self.name} with {params} failed{why}. "
                f"{len(failures)} of {len(details)} trials failed; the log's last lines:\n{tail}".rstrip(),
                trial=name, params=params, trials=details, job=self.name, logs_tail=tail,
                exit_code=(pods.get(name, (None, {}))[1] or {}).get("exitCode")) from exc
        scored = [d for d in details if d.state == "Succeeded" and d.value is not None]
        if not scored:
            phase = condition_phase(self._obj or {}) or "ended"
            raise DeployError(f"The search {self.name} {phase.lower()} with no trial reporting {self.metric!r} "
                              f"(trials: {[(d.name, d.state) for d in details]}).")
        best = (max if self.mode == "max" else min)(scored, key=lambda d: d.value)
        return SweepResult(params=best.params, result=best.result, score=best.value, outputs={},
                           trials=[(d.params, d.result) for d in details], experiment=self.name, details=details)

    def container_name(self) -> str:
        return KatibDeployer.container_name


SEARCH_ANNOTATION = "fairing.kubeflow.org/search"
_AUTH_VOLUME = "fairing-registry-auth"  # the Job deployer's registry credentials, for outputs


def _unlabelled(namespace: str) -> str:
    return (f"Katib runs searches only in namespaces labelled {INJECTION_LABEL}=enabled (a Kubeflow profile's "
            f"namespace is); {namespace!r} is not. Label it: kubectl label namespace {namespace} "
            f"{INJECTION_LABEL}=enabled, or use a profile's namespace.")


class KatibDeployer(KubeDeployerBase):
    """Runs the image as the trials of a Katib Experiment.

    ``parameters``: Katib's parameters (:func:`katib_space`); ``space``: the runtime's view
    of them; ``metric``, ``mode`` ('max' or 'min'), ``algorithm`` (a Katib algorithm name)
    with ``algorithm_settings`` (name -> value), ``max_trials``, ``parallel_trials`` and
    ``max_failed_trials`` as Katib takes them. ``katib_group``: the API group of Katib's
    resources (``kubeflow.org``); ``katib_namespace``: where its katib-config ConfigMap is.
    Other options: see :class:`~fairing.deployers.kubernetes.KubeDeployerBase`.
    """

    def __init__(self, *, parameters: list, space: dict, metric: str, mode: str = "max", algorithm: str = "random",
                 algorithm_settings: Optional[Mapping[str, Any]] = None, max_trials: int = 6,
                 parallel_trials: int = 2, max_failed_trials: Optional[int] = None, katib_group: str = KATIB_GROUP,
                 katib_namespace: str = "kubeflow", **options: Any) -> None:
        super().__init__(**options)
        self.search = {"parameters": parameters, "space": space, "metric": metric, "mode": mode,
                       "algorithm": algorithm, "algorithm_settings": dict(algorithm_settings or {}),
                       "max_trials": max_trials, "parallel_trials": parallel_trials,
                       "max_failed_trials": max_trials if max_failed_trials is None else max_failed_trials,
                       "katib_group": katib_group, "katib_namespace": katib_namespace}

    @classmethod
    def from_deployer(cls, deployer: KubeDeployerBase, **search: Any) -> "KatibDeployer":
        """The Katib deployer with ``deployer``'s options (namespace, client, mutators, labels...)."""
        new = cls.__new__(cls)
        new.__dict__.update(deployer.__dict__)
        cls.__init__(new, **search, **{"kube": deployer._kube, **deployer._kube_options,
                                       "mutators": deployer.mutators, "labels": deployer.labels,
                                       "annotations": deployer.annotations,
                                       "ttl_seconds_after_finished": deployer.ttl_seconds_after_finished,
                                       "active_deadline_seconds": deployer.active_deadline_seconds,
                                       "name_prefix": deployer.name_prefix,
                                       "pull_credentials": deployer.pull_credentials,
                                       "insecure_registry": deployer.insecure_registry,
                                       "insecure_hosts": deployer.insecure_hosts})
        return new

    def check_installed(self) -> None:
        """Raise :class:`~fairing.KatibNotInstalledError` unless the cluster serves Katib's
        Experiment, and :class:`~fairing.KatibAlgorithmError` when its configuration (when
        readable) has no suggestion service for the algorithm."""
        kube, group = self.kube, self.search["katib_group"]
        try:
            resources = kube.custom.get_api_resources(group, KATIB_VERSION)
            names = {r.name for r in resources.resources or []}
        except kube.api_errors as exc:
            if not is_status(exc, 404):
                raise_for_api_error(exc, action=f"discover {group}/{KATIB_VERSION}", kind="Experiment")
            names = set()
        if "experiments" not in names:
            raise KatibNotInstalledError(
                f"Katib is not installed in this cluster: it serves no {group}/{KATIB_VERSION} Experiment. "
                + _INSTALL_HINT)
        self._check_namespace()
        served = self.served_algorithms()
        algorithm = self.search["algorithm"]
        if served is not None and algorithm not in served:
            raise KatibAlgorithmError(
                f"The installed Katib has no suggestion service for the algorithm {algorithm!r}; it serves "
                f"{sorted(served)}. Choose one of those, or add the algorithm's suggestion image to the katib-config "
                f"ConfigMap in {self.search['katib_namespace']!r}.")

    def _check_namespace(self) -> None:
        """Katib runs Experiments only in namespaces labelled for its metrics collector (a
        Kubeflow profile's are); say so before the image is built. Not allowed to read the
        namespace: Katib's webhook says it instead."""
        kube = self.kube
        try:
            labels = kube.core.read_namespace(kube.namespace).metadata.labels or {}
        except Exception:
            return
        if labels.get(INJECTION_LABEL) != "enabled":
            raise ConfigurationError(_unlabelled(kube.namespace))

    def served_algorithms(self) -> Optional[set]:
        """The algorithms the katib-config ConfigMap names (None when it cannot be read).
        Read with a pattern, not a YAML parser (no YAML dependency for one list): the
        ``algorithmName`` entries of its ``suggestions`` section."""
        try:
            cm = self.kube.core.read_namespaced_config_map("katib-config", self.search["katib_namespace"])
        except Exception:  # not allowed to read it, or elsewhere: Katib's webhook says instead
            return None
        text = (cm.data or {}).get("katib-config.yaml") or ""
        section = re.search(r"^([ \t]*)suggestions:[ \t]*$(.*?)(?=^\1[A-Za-z]|\Z)", text, re.M | re.S)
        if not section:
            return None
        return set(re.findall(r"algorithmName:\s*[\"']?([\w.-]+)", section.group(2)))

    def manifest(self, image: Any, name: str) -> dict:
        s = self.search
        template = self.pod_template(image, name)
        container = template["spec"]["containers"][0]
        container["command"] = list(ENTRYPOINT)
        # no log channel (Katib sends stdout to its collector) and no outputs: the value
        # travels in the termination message
        # and so no registry credentials to push outputs with in the function's reach
        container["env"] = [e for e in container["env"]
                            if e["name"] not in ("FAIRING_RESULT_LOG", "FAIRING_OUTPUTS_TARGET",
                                                 "FAIRING_OUTPUTS_AUTH_FILE")]
        container["volumeMounts"] = [m for m in container.get("volumeMounts") or [] if m["name"] != _AUTH_VOLUME]
        template["spec"]["volumes"] = [v for v in template["spec"].get("volumes") or [] if v["name"] != _AUTH_VOLUME]
        container["env"] += [{"name": env_name(i), "value": "${trialParameters.%s}" % p["name"]}
                             for i, p in enumerate(s["parameters"])]
        spec: dict = {
            "objective": {"type": "maximize" if s["mode"] == "max" else "minimize",
                          "objectiveMetricName": s["metric"],
                          "metricStrategies": [{"name": s["metric"], "value": "latest"}]},
            "algorithm": {"algorithmName": s["algorithm"],
                          "algorithmSettings": [{"name": k, "value": str(v)} for k, v in s["algorithm_settings"].items()]},
            "parallelTrialCount": s["parallel_trials"],
            "maxTrialCount": s["max_trials"],
            "maxFailedTrialCount": s["max_failed_trials"],
            # only the runtime's marked lines count: the function's own output cannot forge the metric
            "metricsCollectorSpec": {"collector": {"kind": "StdOut"},
                                     "source": {"filter": {"metricsFormat": [METRICS_FORMAT]}}},
            "parameters": s["parameters"],
            "resumePolicy": "Never",
            "trialTemplate": {
                "primaryContainerName": self.container_name,
                # keep each trial's Job and pod until the Experiment goes: its result is read from the pod
                "retain": True,
                "successCondition": 'status.conditions.#(type=="Complete")#|#(status=="True")#',
                "failureCondition": 'status.conditions.#(type=="Failed")#|#(status=="True")#',
                "trialParameters": [{"name": p["name"], "reference": p["name"]} for p in s["parameters"]],
                "trialSpec": {"apiVersion": "batch/v1", "kind": "Job",
                              "spec": {"backoffLimit": 0, "template": template}},
            },
        }
        metadata = self.metadata(name)
        metadata["annotations"][SEARCH_ANNOTATION] = json.dumps(
            {"space": s["space"], "metric": s["metric"], "mode": s["mode"]}, sort_keys=True)
        return {"apiVersion": f"{s['katib_group']}/{KATIB_VERSION}", "kind": "Experiment", "metadata": metadata,
                "spec": spec}

    def deploy(self, image: Any, *, name: Optional[str] = None, on_event: Optional[EventCallback] = None) -> KatibHandle:
        """Create the Experiment for ``image`` and return its (started) handle."""
        kube = self.kube
        self.check_installed()
        name = name or self.new_name()
        body = self.manifest(image, name)
        group = self.search["katib_group"]
        with self.result_key(name) as owned_by:
            try:
                created = kube.custom.create_namespaced_custom_object(group, KATIB_VERSION, kube.namespace,
                                                                      "experiments", body)
            except kube.api_errors as exc:
                self._raise_refused(exc, name)
            owned_by(f"{group}/{KATIB_VERSION}", "Experiment", created["metadata"]["uid"])
        handle = KatibHandle(kube, name, kube.namespace, on_event=on_event)
        handle.space, handle.metric, handle.mode = self.search["space"], self.search["metric"], self.search["mode"]
        return self.handle_for(handle, image)

    def _raise_refused(self, exc: Exception, name: str) -> None:
        body = str(getattr(exc, "body", "") or "")
        algorithm = self.search["algorithm"]
        if "lacks label" in body and INJECTION_LABEL in body:
            raise ConfigurationError(_unlabelled(self.kube.namespace)) from exc
        if getattr(exc, "status", None) in (400, 403, 422) and "denied the request" in body:
            if "lgorithm" in body or "suggestion" in body:
                raise KatibAlgorithmError(f"Katib refused the search {name}: its algorithm {algorithm!r} is not "
                                          f"served or its settings are wrong ({body[-400:]}).") from exc
            raise ConfigurationError(f"Katib refused the search {name}: {body[-600:]}") from exc
        raise_for_api_error(exc, action=f"create Experiment {name}", kind="Experiment", namespace=self.kube.namespace)
