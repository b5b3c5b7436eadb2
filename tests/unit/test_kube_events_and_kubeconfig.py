"""Without a cluster: FailedCreate and autoscaler events as the API server sends them (dicts)
driving the one waiting loop; the autoscaler in the pure diagnosis; kubeconfig files merged
as kubectl merges them; the new settings and options checked when given."""

from __future__ import annotations

import os
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from fairing import ConfigurationError, PodsRefusedError, UnschedulableError
from fairing.kube import Workload, diagnose
from fairing.kube.kubeconfig import merged

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)


class _Job(Workload):
    kind = "Job"

    def _phase(self, obj):
        return (obj.get("status") or {}).get("phase")


def _event(reason, message, *, kind="Job", name="train-1", type_="Warning", when="2026-01-01T12:00:00Z",
           uid="uid-train-1", count=1, source=None):
    source = source or ("cluster-autoscaler" if "ScaleUp" in reason else "job-controller")
    return {"involvedObject": {"kind": kind, "name": name, "namespace": "ns", "uid": uid}, "reason": reason,
            "message": message, "type": type_, "lastTimestamp": when, "count": count,
            "source": {"component": source}}


def _job(kind="Job"):
    """A workload whose object the watch has listed (its uid is what events are matched by)."""
    job = _Job(None, "train-1", "ns", on_event=lambda e: None)
    job.kind = kind
    job._obj = {"metadata": {"name": "train-1", "uid": "uid-train-1"}}
    return job


SA_REFUSAL = ('Error creating: pods "train-1-x" is forbidden: error looking up service account ns/default-editor: '
              'serviceaccount "default-editor" not found')
QUOTA_REFUSAL = ('Error creating: pods "train-1-x" is forbidden: exceeded quota: small, requested: requests.cpu=500m, '
                 'used: requests.cpu=0, limited: requests.cpu=100m')


@pytest.mark.parametrize("reason,kind,name", [("FailedCreate", "Job", "train-1"),  # batch Job
                                              ("FailedCreatePod", "TFJob", "train-1")])  # training-operator
def test_a_refusal_ends_the_wait_at_once(reason, kind, name):  # a JobSet's Job: tests/e2e/test_pods_refused.py
    job = _job(kind)
    threading.Timer(0.1, job._on_k8s_event, ("ADDED", _event(reason, SA_REFUSAL, kind=kind, name=name))).start()
    with pytest.raises(PodsRefusedError) as err:
        job.wait_until(job._ended, timeout=30, tick=30)
    assert err.value.reason == reason and err.value.job == "train-1" and "default-editor" in err.value.refusal
    assert "Create that service account" in str(err.value)


def test_events_of_others_and_retries_are_not_refusals():
    job = _job()
    job._on_k8s_event("ADDED", _event("FailedCreate", SA_REFUSAL, name="train-10"))  # another job's
    job._on_k8s_event("ADDED", _event("FailedCreate", SA_REFUSAL, uid="uid-of-an-earlier-train-1"))
    job._on_k8s_event("ADDED", _event("FailedCreate", SA_REFUSAL, name="other"))
    job._on_k8s_event("ADDED", _event("FailedCreate", "Operation cannot be fulfilled on resourcequotas \"q\": "
                                                      "the object has been modified"))
    job._on_k8s_event("ADDED", _event("FailedCreate", SA_REFUSAL, type_="Normal"))
    job._on_k8s_event("DELETED", _event("FailedCreate", SA_REFUSAL))
    assert job.wait_until(job._ended, timeout=0.3) is False


def test_an_exceeded_quota_waits_while_the_jobs_own_pods_run():
    job = _job()
    job._on_pod("ADDED", {"metadata": {"name": "train-1-a"}, "status": {"phase": "Running"}})
    job._on_k8s_event("ADDED", _event("FailedCreate", QUOTA_REFUSAL))
    assert job.wait_until(job._ended, timeout=0.3) is False  # a map's next index: the quota frees as pods end
    job._on_pod("MODIFIED", {"metadata": {"name": "train-1-a"}, "status": {"phase": "Succeeded"}})
    # the pod gave its share back: the refusal from before is no reason to fail (the
    # controller creates the next index now), and a re-list replaying it changes nothing
    job._on_k8s_event("ADDED", _event("FailedCreate", QUOTA_REFUSAL))
    assert job.wait_until(job._ended, timeout=0.3) is False
    # refused again once the quota controller has counted that pod out (someone else took
    # the quota): now it is an answer
    job._pod_ended_at -= 90
    job._on_k8s_event("MODIFIED", _event("FailedCreate", QUOTA_REFUSAL, count=2, when="2026-01-01T12:00:30Z"))
    with pytest.raises(PodsRefusedError, match="exceeded quota: small.*ResourceQuota"):
        job.wait_until(job._ended, timeout=5)


def _unschedulable(seconds_ago, now=NOW):
    when = (now - timedelta(seconds=seconds_ago)).isoformat().replace("+00:00", "Z")
    return {"metadata": {"name": "p"}, "status": {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "lastTransitionTime": when,
         "message": "0/1 nodes are available: 1 Insufficient cpu."}]}}


def test_autoscaler_in_the_diagnosis():
    now = NOW.timestamp()
    up = ("TriggeredScaleUp", "pod triggered scale-up: [{pool 1->2 (max: 5)}]")
    assert diagnose(_unschedulable(100), now=now, grace=20, autoscaler=up, scale_up_timeout=600) is None
    late = diagnose(_unschedulable(700), now=now, grace=20, autoscaler=up, scale_up_timeout=600)
    assert isinstance(late, UnschedulableError) and "waited 600 s for a new node" in str(late)
    no = ("NotTriggerScaleUp", "pod didn't trigger scale-up: 1 max node group size reached")
    at_once = diagnose(_unschedulable(1), now=now, grace=20, autoscaler=no)
    assert isinstance(at_once, UnschedulableError) and "max node group size reached" in str(at_once)
    assert isinstance(diagnose(_unschedulable(30), now=now, grace=20), UnschedulableError)


def test_the_newest_autoscaler_event_counts_and_a_wait_is_reported():
    events = []
    job = _Job(None, "train-1", "ns", on_event=events.append)
    pod = _unschedulable(1, now=datetime.now(timezone.utc))
    pod["metadata"].update(name="train-1-abc", uid="uid-pod")
    job._on_pod("ADDED", pod)
    # posted by someone else in the namespace (may create events): not the autoscaler's word
    job._on_k8s_event("ADDED", _event("NotTriggerScaleUp", "posted by a user", kind="Pod", name="train-1-abc",
                                      type_="Normal", when="2026-01-01T12:00:05Z", uid="uid-pod", source="kubectl"))
    # an earlier pod of that name (a TFJob's worker-0 of a previous run): not about this one
    job._on_k8s_event("ADDED", _event("NotTriggerScaleUp", "an earlier pod's", kind="Pod", name="train-1-abc",
                                      type_="Normal", when="2026-01-01T12:00:05Z", uid="uid-earlier-pod"))
    assert job.wait_until(job._ended, timeout=0.2) is False
    job._on_k8s_event("ADDED", _event("TriggeredScaleUp", "pod triggered scale-up: [{pool 1->2 (max: 5)}]",
                                      kind="Pod", name="train-1-abc", type_="Normal", when="2026-01-01T12:00:06Z",
                                      uid="uid-pod"))
    job._on_k8s_event("ADDED", _event("NotTriggerScaleUp", "old news", kind="Pod", name="train-1-abc",
                                      type_="Normal", when="2026-01-01T12:00:00Z", uid="uid-pod"))
    assert job.wait_until(job._ended, timeout=0.2) is False
    assert [e.detail for e in events if getattr(e, "name", "") == "node"][0].startswith("waiting for a new node")
    job._on_k8s_event("ADDED", _event("NotTriggerScaleUp", "pod didn't trigger scale-up: no node group fits",
                                      kind="Pod", name="train-1-abc", type_="Normal", when="2026-01-01T12:00:09Z",
                                      uid="uid-pod"))
    with pytest.raises(UnschedulableError, match="no node group fits"):
        job.wait_until(job._ended, timeout=5)


# -- kubeconfig -------------------------------------------------------------------------


def _kc(path: Path, *, cluster="c", user="u", context="ctx", current=None, ca=None, namespace=None):
    doc = {"apiVersion": "v1", "kind": "Config",
           "clusters": [{"name": cluster, "cluster": {"server": f"https://{cluster}.example:6443",
                                                      **({"certificate-authority": ca} if ca else {})}}],
           "users": [{"name": user, "user": {"token": f"token-of-{user}"}}],
           "contexts": [{"name": context, "context": {"cluster": cluster, "user": user,
                                                      **({"namespace": namespace} if namespace else {})}}]}
    if current:
        doc["current-context"] = current
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def test_files_merge_as_kubectl_merges_them(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = _kc(tmp_path / "a" / "config", cluster="c", context="one", current="one", ca="ca.pem")
    b = _kc(tmp_path / "b" / "config", cluster="c", user="u2", context="two", current="two", ca="ca.pem")
    empty = tmp_path / "empty"
    empty.write_text("")
    spec = os.pathsep.join([str(tmp_path / "missing"), a, str(empty), b])
    doc, read = merged(spec)
    assert [str(p) for p in read] == [a, str(empty), b]
    assert doc["current-context"] == "one"  # the first file that sets one
    assert [c["name"] for c in doc["contexts"]] == ["one", "two"]
    assert [c["name"] for c in doc["clusters"]] == ["c"]  # first wins
    assert doc["clusters"][0]["cluster"]["certificate-authority"] == str(tmp_path / "a" / "ca.pem")
    assert [u["name"] for u in doc["users"]] == ["u", "u2"]


@pytest.mark.parametrize("content", ["{not yaml", "- a list", "clusters: 5", "\xff\xfe".encode("latin-1")])
def test_a_broken_file_is_named(tmp_path, content):
    bad = tmp_path / "kc"
    bad.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ConfigurationError, match=str(bad)):
        merged(str(bad))


def test_nothing_to_read_or_a_directory_is_refused(tmp_path):
    with pytest.raises(ConfigurationError, match="No kubeconfig"):
        merged(str(tmp_path / "nope"))
    with pytest.raises(ConfigurationError, match="not a file"):
        merged(str(tmp_path))
    huge = tmp_path / "huge"
    with huge.open("wb") as fh:
        fh.truncate(17 << 20)
    with pytest.raises(ConfigurationError, match="not a kubeconfig"):
        merged(str(huge))


def test_a_symlinked_file_resolves_relative_paths_from_where_it_is_listed(tmp_path):
    # as client-go does (clientcmd/loader.go ResolveLocalPaths: filepath.Abs(filepath.Dir(
    # LocationOfOrigin)), which follows no symlink): kubectl and fairing read the same CA
    real = tmp_path / "real"
    real.mkdir()
    target = _kc(real / "config", ca="ca.pem", current="ctx")
    link = tmp_path / "link"
    link.symlink_to(target)
    doc, _ = merged(str(link))
    assert doc["clusters"][0]["cluster"]["certificate-authority"] == str(tmp_path / "ca.pem")


def test_a_yaml_error_never_quotes_the_file(tmp_path):
    bad = tmp_path / "kc"
    bad.write_text("apiVersion: v1\nusers:\n- name: u\n  user:\n    token: SECRET-TOKEN-123 : [\n")
    with pytest.raises(ConfigurationError) as err:
        merged(str(bad))
    assert "SECRET-TOKEN-123" not in str(err.value) and "line 5" in str(err.value)
    assert "SECRET-TOKEN-123" not in repr(err.value) and err.value.__cause__ is None


def test_names_that_are_not_strings_are_refused_not_crashed_on(tmp_path):
    from fairing.kube import KubeClient

    lines = ["apiVersion: v1", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]  # 10**9 when printed
    bomb = tmp_path / "bomb"
    bomb.write_text("\n".join([*lines, "current-context: *a8", "contexts: [{name: c, context: {cluster: c}}]"]))
    listname = tmp_path / "listname"
    listname.write_text("contexts:\n- name: [a, b]\n  context: {cluster: c, user: u}\n")
    nsbomb = tmp_path / "nsbomb"
    nsbomb.write_text("\n".join([*lines, "current-context: c", "contexts: [{name: c, context: {namespace: *a8}}]"]))
    for path, what in ((bomb, "current-context"), (listname, r"contexts\[0\]\.name"),
                       (nsbomb, r"contexts\[0\]\.context\.namespace")):
        with pytest.raises(ConfigurationError, match=what + " must be a string"):
            KubeClient(kubeconfig=str(path))


def test_a_missing_token_file_is_a_configuration_error_naming_no_secret(tmp_path):
    from fairing.kube import KubeClient

    path = tmp_path / "kc"
    path.write_text("clusters: [{name: c, cluster: {server: 'https://127.0.0.1:6443'}}]\n"
                    "contexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n"
                    "users: [{name: u, user: {tokenFile: tok, password: SECRET-PW, username: me}}]\n")
    with pytest.raises(ConfigurationError, match="tok") as err:
        KubeClient(kubeconfig=str(path)).api_client
    assert str(tmp_path / "tok") in str(err.value) and "SECRET-PW" not in str(err.value)


def test_a_failing_credential_plugin_is_a_configuration_error(tmp_path):
    from fairing.kube import KubeClient

    plugin = tmp_path / "bin" / "get-token"
    plugin.parent.mkdir()
    plugin.write_text("#!/bin/sh\necho 'denied for SECRET-REFRESH-TOKEN' >&2\nexit 1\n")
    plugin.chmod(0o755)
    path = tmp_path / "kc"
    path.write_text("clusters: [{name: c, cluster: {server: 'https://127.0.0.1:6443'}}]\n"
                    "contexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n"
                    "users: [{name: u, user: {exec: {apiVersion: client.authentication.k8s.io/v1, "
                    "command: bin/get-token, interactiveMode: Never}}}]\n")
    with pytest.raises(ConfigurationError, match="get-token.*gave none") as err:
        KubeClient(kubeconfig=str(path)).api_client  # the command relative to the file, as kubectl runs it
    assert "SECRET-REFRESH-TOKEN" not in str(err.value)


def test_a_symlink_loop_is_an_error_and_a_dangling_link_is_skipped(tmp_path):
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    with pytest.raises(ConfigurationError, match="symbolic links"):
        merged(str(loop))
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "gone")
    good = _kc(tmp_path / "good", current="ctx")
    assert [str(p) for p in merged(os.pathsep.join([str(dangling), good]))[1]] == [good]


def test_context_chooses_and_a_wrong_one_says_which_exist(tmp_path):
    from fairing.kube import KubeClient

    a = _kc(tmp_path / "a", cluster="c1", user="u1", context="dev", current="dev", namespace="team-dev")
    b = _kc(tmp_path / "b", cluster="c2", user="u2", context="prod", namespace="team-prod")
    spec = os.pathsep.join([a, b])
    assert KubeClient(kubeconfig=spec).namespace == "team-dev"
    prod = KubeClient(kubeconfig=spec, context="prod")
    assert prod.namespace == "team-prod" and prod.api_client.configuration.host == "https://c2.example:6443"
    with pytest.raises(ConfigurationError, match="no context 'prd'.*Did you mean 'prod'"):
        KubeClient(kubeconfig=spec, context="prd")
    nocurrent = _kc(tmp_path / "c", context="x")
    with pytest.raises(ConfigurationError, match="sets no current-context"):
        KubeClient(kubeconfig=nocurrent)


# -- settings and options ------------------------------------------------------------------


def test_settings_context_and_grace(tmp_path):
    from fairing.settings import resolve

    env = {"HOME": str(tmp_path), "FAIRING_CONTEXT": "prod", "FAIRING_UNSCHEDULABLE_GRACE": "45",
           "FAIRING_SCALE_UP_TIMEOUT": "900"}
    got = resolve(cwd=tmp_path, environ=env)
    assert (got.context, got.unschedulable_grace, got.scale_up_timeout) == ("prod", 45.0, 900.0)
    for bad in ("-1", "soon", "nan", "inf", ""):
        if bad == "":
            continue
        with pytest.raises(ConfigurationError, match="FAIRING_UNSCHEDULABLE_GRACE.*number of seconds"):
            resolve(cwd=tmp_path, environ={**env, "FAIRING_UNSCHEDULABLE_GRACE": bad})
    (tmp_path / "fairing.toml").write_text('scale_up_timeout = true\n')
    with pytest.raises(ConfigurationError, match="scale_up_timeout"):
        resolve(cwd=tmp_path, environ={"HOME": str(tmp_path)})
    (tmp_path / "fairing.toml").write_text('context = ["a"]\n')
    with pytest.raises(ConfigurationError, match="context"):
        resolve(cwd=tmp_path, environ={"HOME": str(tmp_path)})
    (tmp_path / "fairing.toml").write_text('contxt = "a"\n')
    with pytest.raises(ConfigurationError, match="Did you mean 'context'"):
        resolve(cwd=tmp_path, environ={"HOME": str(tmp_path)})


def test_settings_fill_only_what_a_deployer_left_unset(tmp_path):
    from fairing.backends import with_settings
    from fairing.deployers.job import JobDeployer
    from fairing.settings import resolve

    settings = resolve(cwd=tmp_path, environ={"HOME": str(tmp_path), "FAIRING_UNSCHEDULABLE_GRACE": "45"})
    filled = with_settings(JobDeployer(namespace="x"), settings)
    assert filled.unschedulable_grace == 45.0 and filled.scale_up_timeout is None
    mine = with_settings(JobDeployer(namespace="x", unschedulable_grace=5), settings)
    assert mine.unschedulable_grace == 5.0

    # the context setting reaches a deployer made without one (the CLI's TFJob or TrainJob deployer)
    settings = resolve(cwd=tmp_path, environ={"HOME": str(tmp_path), "FAIRING_CONTEXT": "prod"})
    plain = JobDeployer(namespace="x")
    assert with_settings(plain, settings)._kube_options["context"] == "prod"
    assert plain._kube_options["context"] is None  # a copy was changed, not the caller's deployer
    assert with_settings(JobDeployer(namespace="x", context="mine"), settings)._kube_options["context"] == "mine"


def test_the_context_setting_reaches_a_cluster_builder_too(tmp_path, monkeypatch):
    """FAIRING_CONTEXT / --context: the build pod runs in the cluster the job runs in (the
    pre-flight checks that one too), not in the kubeconfig's current context."""
    from fairing.backends import BackendChoice, with_settings
    from fairing.builders.cluster import ClusterBuilder
    from fairing.settings import resolve

    settings = resolve(cwd=tmp_path, environ={"HOME": str(tmp_path), "FAIRING_CONTEXT": "prod"})
    assert with_settings(ClusterBuilder("python:3.11-slim", "registry.example:5000/x"),
                         settings)._kube_options["context"] == "prod"
    a = _kc(tmp_path / "a", cluster="c1", user="u1", context="dev", current="dev", namespace="team-dev")
    b = _kc(tmp_path / "b", cluster="c2", user="u2", context="prod", namespace="team-prod")
    monkeypatch.setenv("KUBECONFIG", os.pathsep.join([a, b]))
    monkeypatch.setenv("FAIRING_CONTEXT", "prod")
    monkeypatch.chdir(tmp_path)
    backend = BackendChoice("kubernetes").make(builder=ClusterBuilder("python:3.11-slim", "registry.example:5000/x"))
    assert backend.builder.kube.namespace == backend.deployer.kube.namespace == "team-prod"


def test_cli_cluster_options_go_anywhere_before_the_double_dash():
    from fairing.cli import _hoist_global_options

    assert _hoist_global_options(["run", "x.py", "--context", "prod", "--", "--context", "s"]) == \
        ["--context", "prod", "run", "x.py", "--", "--context", "s"]
    assert _hoist_global_options(["list", "--kubeconfig=/k"]) == ["--kubeconfig=/k", "list"]
    assert _hoist_global_options(["list", "--context"]) == ["--context", "list"]  # click says what is missing
