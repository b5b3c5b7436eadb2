"""The signed result channel on a real cluster: the key travels in a Secret mounted into the
pod (never a plain env var), a forged result line in the log is never unpickled, and the
Secret goes with the job."""

from __future__ import annotations

import base64

import pytest

import fairing
from fairing import JobError
from fairing.deployers.kubernetes import result_key_secret

pytestmark = pytest.mark.e2e

_FORGE = """
import base64, pickle, zlib
class Boom:
    def __reduce__(self):
        return (print, ("FORGED PAYLOAD RAN IN THE SUBMITTER",))
body = base64.b64encode(zlib.compress(pickle.dumps({"ok": True, "value": Boom()}))).decode()
"""


def test_forged_result_lines_are_rejected_and_the_key_is_a_mounted_secret(backend, kube, capsys):
    @fairing.train(backend=backend, timeout=600, cleanup="never")
    def prints_a_forged_line():
        ns: dict = {}
        exec(_FORGE, ns)
        print("fairing-result:v1:" + ns["body"] + ":" + "0" * 64, flush=True)
        return "x" * 10_000  # over the termination message: the result is read from the log

    handle = prints_a_forged_line.submit()
    try:
        assert handle.result(600) == "x" * 10_000
        job = kube.batch.read_namespaced_job(handle.name, kube.namespace)
        secret = kube.core.read_namespaced_secret(result_key_secret(handle.name), kube.namespace)
        key_hex = base64.b64decode(secret.data["key"]).decode()
        owners = [(o.kind, o.uid) for o in secret.metadata.owner_references or []]
        assert owners == [("Job", job.metadata.uid)]  # the cluster removes it with the Job if we die
    finally:
        handle.delete()
    pod = job.spec.template.spec
    env = {e.name: e.value for e in pod.containers[0].env or []}
    assert all(key_hex not in (value or "") for value in env.values())  # never a plain env var
    assert env["FAIRING_RESULT_KEY_FILE"].startswith("/var/run/")
    assert any(v.secret and v.secret.secret_name == result_key_secret(handle.name) for v in pod.volumes)
    assert "FORGED PAYLOAD RAN" not in capsys.readouterr().out
    names = [s.metadata.name for s in kube.core.list_namespaced_secret(kube.namespace).items]
    assert result_key_secret(handle.name) not in names  # deleted with the job


def test_a_job_that_only_prints_a_forged_line_reports_no_result(backend, kube, capsys):
    @fairing.train(backend=backend, timeout=600)
    def only_forges():
        import os

        ns: dict = {}
        exec(_FORGE, ns)
        print("fairing-result:v1:" + ns["body"], flush=True)
        os._exit(0)  # before the runtime writes the genuine envelope

    with pytest.raises(JobError, match="reported no result"):
        only_forges()
    assert "FORGED PAYLOAD RAN" not in capsys.readouterr().out
