"""A notebook inside Kubeflow: fairing run from a notebook pod in a profile namespace.

One pod per module (``notebook_pod``): the notebook image (:mod:`tests.e2e.notebook_image`)
running as ``default-editor``, bound only to a namespaced copy of Kubeflow's
``kubeflow-edit`` rules (:mod:`tests.e2e.kubeflow_profile`), in a profile-like namespace. What a
platform team sets reaches it as a Kubeflow deployment would: a user config file
(``$XDG_CONFIG_HOME/fairing/config.toml``, a ConfigMap: backend, registry, base image,
insecure registry), registry credentials as a Docker config Secret named by
``DOCKER_CONFIG``, and the wheelhouse pip installs from (the pods do not reach PyPI). No
kubeconfig is in the pod: fairing uses the service account's token and CA and the pod's
namespace. The notebook (the README's, "From a notebook inside Kubeflow") runs in the pod with
papermill (a real ipykernel), started by ``kubectl exec``; so do the README's CLI commands,
from a shell there. The job's image pull secret comes from the mounted Docker config and
goes with the job; a Docker config that links out of its directory (to the pod's token), is
corrupt or huge stops a job with a ConfigurationError before its namespace gets anything.
"""

from __future__ import annotations

import base64
import json
import shlex
import subprocess
import textwrap
import re
import uuid
from dataclasses import dataclass

import pytest

from tests.e2e.conftest import REPO, STATE, wait_until

# one pod for the module: its tests stay on one xdist worker (--dist loadgroup)
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("notebook-pod")]

KUBECTL = [str(STATE / "bin" / "k8s"), "kubectl"]
POD = "notebook"
#: Credentials in the mounted Docker config (the test registry takes any: it asks for none).
REGISTRY_USER, REGISTRY_PASSWORD = "nb-user", "nb-" + uuid.uuid4().hex


def readme_block(marker: str) -> str:
    """The README block under ``<!-- marker: ... -->``, as written."""
    match = re.search(rf"<!-- {marker}:[^>]*-->\n```\w+\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    assert match, f"README.md has no {marker} block"
    return match.group(1)


def notebook_cells() -> list[str]:
    """The README's notebook, one cell per ``# %%``."""
    cells, current = [], []
    for line in readme_block("kubeflow-notebook").splitlines():
        if line.startswith("# %%") and current:
            cells.append("\n".join(current).strip())
            current = []
        current.append(line)
    return [*cells, "\n".join(current).strip()]


def _cell(source: str) -> dict:
    return {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": source}


@dataclass(frozen=True)
class NotebookPod:
    namespace: str
    kubeconfig: str  # the admin's: only the test harness uses it (exec, checks), never the pod

    def kubectl(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
        return subprocess.run([*KUBECTL, "--kubeconfig", self.kubeconfig, *args], capture_output=True, text=True,
                              timeout=timeout)

    def run(self, script: str, timeout: float = 900) -> subprocess.CompletedProcess:
        """``script`` run by ``sh`` in the notebook pod (as the pod's user, with the pod's environment)."""
        return self.kubectl("exec", "-n", self.namespace, POD, "--", "sh", "-c", script, timeout=timeout)


@pytest.fixture(scope="module")
def notebook_image(registry_address):
    from tests.e2e.notebook_image import notebook_image
    from tests.services.base_image import push_base_image

    return notebook_image(registry_address, str(push_base_image(registry_address, insecure=True)))


@pytest.fixture(scope="module")
def notebook_pod(notebook_image, registry_address, api_client, core_v1, kubeconfig):
    """(namespace, base image) of a running notebook pod as default-editor in a profile namespace."""
    from kubernetes import client

    from tests.e2e.kubeflow_profile import SERVICE_ACCOUNT, kubeflow_edit_rules
    from tests.services.base_image import push_base_image

    host = registry_address.split("/")[0]
    base = str(push_base_image(registry_address, insecure=True))
    ns = f"fairing-nbpod-{uuid.uuid4().hex[:10]}"
    core_v1.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(
        name=ns, labels={"app.kubernetes.io/part-of": "kubeflow-profile"})))
    try:
        rbac = client.RbacAuthorizationV1Api(api_client)
        rbac.create_namespaced_role(ns, {"metadata": {"name": "kubeflow-edit"}, "rules": kubeflow_edit_rules()})
        core_v1.create_namespaced_service_account(ns, {"metadata": {"name": SERVICE_ACCOUNT}})
        rbac.create_namespaced_role_binding(ns, {
            "metadata": {"name": SERVICE_ACCOUNT},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "kubeflow-edit"},
            "subjects": [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": ns}]})
        auth = base64.b64encode(f"{REGISTRY_USER}:{REGISTRY_PASSWORD}".encode()).decode()
        core_v1.create_namespaced_secret(ns, {"metadata": {"name": "registry-credentials"}, "stringData": {
            "config.json": json.dumps({"auths": {host: {"auth": auth}}})}})
        notebook = {"nbformat": 4, "nbformat_minor": 5, "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
            "cells": [_cell(c) for c in notebook_cells()]}
        core_v1.create_namespaced_config_map(ns, {"metadata": {"name": "fairing-settings"}, "data": {
            # what the platform team writes for every notebook of the profile
            "config.toml": readme_block("kubeflow-platform").replace("registry.example.com:5000", host),
            "train.ipynb": json.dumps(notebook)}})
        core_v1.create_namespaced_pod(ns, {"metadata": {"name": POD}, "spec": {
            "serviceAccountName": SERVICE_ACCOUNT,
            "containers": [{
                "name": "notebook", "image": notebook_image, "command": ["sleep", "infinity"],
                "workingDir": "/home/jovyan",
                "env": [{"name": "FAIRING_RUNTIME", "value": ""},  # the image's: this is no job
                        {"name": "HOME", "value": "/home/jovyan"},
                        {"name": "XDG_CONFIG_HOME", "value": "/etc/platform"},
                        {"name": "DOCKER_CONFIG", "value": "/var/run/registry-credentials"},
                        {"name": "PIP_NO_INDEX", "value": "1"},
                        {"name": "PIP_FIND_LINKS", "value": "/opt/fairing-src/wheelhouse"}],
                "volumeMounts": [
                    {"name": "home", "mountPath": "/home/jovyan"},
                    {"name": "settings", "mountPath": "/etc/platform/fairing", "readOnly": True},
                    {"name": "registry-credentials", "mountPath": "/var/run/registry-credentials", "readOnly": True}],
                "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}},
            }],
            "volumes": [{"name": "home", "emptyDir": {}},
                        {"name": "settings", "configMap": {"name": "fairing-settings"}},
                        {"name": "registry-credentials", "secret": {"secretName": "registry-credentials"}}],
            "terminationGracePeriodSeconds": 1,
        }})

        def running():
            phase = core_v1.read_namespaced_pod(POD, ns).status.phase
            assert phase != "Failed"
            return phase == "Running"

        wait_until(running, 300, f"the notebook pod in {ns}")
        yield NotebookPod(ns, kubeconfig)
    finally:
        core_v1.delete_namespace(ns, propagation_policy="Foreground")


def _assert_no_credentials(pod: NotebookPod, *texts: str) -> None:
    """The mounted credentials appear in no output and no event of the namespace (plain or base64)."""
    auth = base64.b64encode(f"{REGISTRY_USER}:{REGISTRY_PASSWORD}".encode()).decode()
    events = pod.kubectl("get", "events", "-n", pod.namespace, "-o", "json").stdout
    for text in (*texts, events):
        assert REGISTRY_PASSWORD not in text and auth not in text


def test_a_notebook_in_the_pod_trains_serves_and_predicts(notebook_pod, core_v1, registry_address):
    ns = notebook_pod.namespace
    code = readme_block("kubeflow-notebook")
    assert not re.search(r"kubeconfig|namespace|registry=|base_image|example\.com|:5000", code)
    assert registry_address.split("/")[0] not in code
    proc = notebook_pod.run("cp /etc/platform/fairing/train.ipynb . && python3 -m papermill --no-progress-bar "
                      "-k python3 train.ipynb out.ipynb >papermill.log 2>&1; rc=$?; "
                      "python3 -c \"import json; nb=json.load(open('out.ipynb')); "
                      "print('\\n'.join(''.join(o.get('text', '')) for c in nb['cells'] for o in c.get('outputs', [])))\"; "
                      "[ $rc = 0 ] || { tail -50 papermill.log; exit $rc; }")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "one-liner: {'scale': 3, 'in_a_pod': True}" in out
    assert "tfjob: ('chief-0', {'chief': 1, 'ps': 1, 'worker': 2})" in out, out
    assert "trainjob: fitted ['model/params.json']" in out, out
    assert "prediction: [3.0, 6.0]" in out, out
    # nothing left behind in the namespace, and the credentials never became a plain value
    left = notebook_pod.kubectl("get", "jobs,tfjobs,deployments,services,pods", "-n", ns, "-o", "name").stdout.split()
    assert left == [f"pod/{POD}"], left
    secrets = [s.metadata.name for s in core_v1.list_namespaced_secret(ns).items]
    assert secrets == ["registry-credentials"], secrets  # every job's result key and pull secret went with it
    _assert_no_credentials(notebook_pod, out)


def test_the_cli_from_a_shell_in_the_pod(notebook_pod, core_v1):
    ns = notebook_pod.namespace
    script = "set -e\nmkdir -p cli && cd cli\n" + readme_block("kubeflow-terminal") + 'echo "JOB=$JOB"\nfairing list --output json\n'
    proc = notebook_pod.run(script)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "hello from pod" in out
    job = next(line.split("=", 1)[1] for line in proc.stdout.splitlines() if line.startswith("JOB="))
    assert "hello from detached" in out
    listed = json.loads(proc.stdout.strip().splitlines()[-1])  # after the delete: the job is gone
    assert job not in json.dumps(listed), listed
    _assert_no_credentials(notebook_pod, out)
    assert notebook_pod.kubectl("get", "jobs", "-n", ns, "-o", "name").stdout.split() == []


def test_the_job_pull_secret_comes_from_the_mounted_docker_config(notebook_pod, core_v1, registry_address):
    """The credentials mounted for the builder are the job's image pull secret: a Secret in
    the namespace, referenced by the pods, never a plain env value, gone with the job."""
    ns = notebook_pod.namespace
    script = textwrap.dedent("""
        import base64, json, os, fairing
        from fairing.kube import KubeClient
        kube = KubeClient()  # no kubeconfig in the pod: the service account's token and CA
        print(json.dumps({"kubeconfig": os.environ.get("KUBECONFIG") or os.path.exists(os.path.expanduser("~/.kube")),
                          "host": kube.api_client.configuration.host, "namespace": kube.namespace}))
        job = fairing.TrainJob(lambda: 1, quiet=True).submit()
        try:
            pod = kube.batch.read_namespaced_job(job.name, kube.namespace).spec.template.spec
            pull = [s.name for s in pod.image_pull_secrets or []]
            secret = kube.core.read_namespaced_secret(pull[0], kube.namespace)
            hosts = sorted(json.loads(base64.b64decode(secret.data[".dockerconfigjson"]))["auths"])
            print(json.dumps({"job": job.name, "pull": pull, "hosts": hosts,
                              "owners": [(o.kind, o.name) for o in secret.metadata.owner_references or []],
                              "env": [e.to_dict() for c in pod.containers for e in c.env or []]}))
            print(job.result(600))
        finally:
            job.delete()
    """)
    proc = notebook_pod.run(f"cd /home/jovyan && python3 -c {shlex.quote(script)}")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    connection, seen = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert connection == {"kubeconfig": False, "host": connection["host"], "namespace": ns}, connection
    service = core_v1.read_namespaced_service("kubernetes", "default").spec.cluster_ip
    assert connection["host"].startswith(f"https://{service}:"), connection  # KUBERNETES_SERVICE_HOST
    assert seen["pull"] == [seen["job"] + "-pull"], seen  # its own, from the mounted config
    assert seen["hosts"] == [registry_address.split("/")[0]] and seen["owners"] == [["Job", seen["job"]]], seen
    _assert_no_credentials(notebook_pod, out, json.dumps(seen["env"]))
    remaining = [s.metadata.name for s in core_v1.list_namespaced_secret(ns).items]
    assert not [s for s in remaining if seen["job"] in s], remaining


@pytest.mark.parametrize("make_config, message", [
    # the service account's token linked in as the Docker config: refused, and never quoted
    ("ln -s /var/run/secrets/kubernetes.io/serviceaccount/token $D/config.json", "is a link to a file outside"),
    ("printf '{\"auths\": {' > $D/config.json", "is not valid JSON"),
    ("head -c 2000000 /dev/zero > $D/config.json", "larger than 1 MiB"),
])
def test_a_bad_docker_config_in_the_pod_stops_the_job_before_its_namespace_gets_anything(
        notebook_pod, core_v1, make_config, message):
    ns = notebook_pod.namespace
    before = sorted(s.metadata.name for s in core_v1.list_namespaced_secret(ns).items)
    script = textwrap.dedent("""
        import fairing
        try:
            fairing.TrainJob(lambda: 1, quiet=True).submit()
        except fairing.ConfigurationError as exc:
            print("refused:", exc)
    """)
    proc = notebook_pod.run(f"D=$(mktemp -d) && {make_config} && DOCKER_CONFIG=$D python3 -c {shlex.quote(script)}; "
                            "rc=$?; rm -rf $D; exit $rc")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "refused:" in out and message in out, out
    token = notebook_pod.run("cat /var/run/secrets/kubernetes.io/serviceaccount/token").stdout.strip()
    assert token and token not in out
    assert notebook_pod.kubectl("get", "jobs", "-n", ns, "-o", "name").stdout.split() == []
    assert sorted(s.metadata.name for s in core_v1.list_namespaced_secret(ns).items) == before
