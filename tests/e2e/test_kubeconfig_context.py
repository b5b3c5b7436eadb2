"""Kubeconfig as kubectl reads it, against the real cluster: every file of a multi-file
KUBECONFIG is read (first file wins per name, its current-context too), and context= /
FAIRING_CONTEXT / --context choose the identity and its namespace."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fairing import environment
from fairing.kube import KubeClient
from fairing.kube.access import identity

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def test_multi_file_kubeconfig_and_context(make_profile, kubeconfig):
    prof = make_profile()
    both = os.pathsep.join([prof.kubeconfig, kubeconfig])  # the profile's file first
    env = environment.Environment.from_os({**os.environ, "KUBECONFIG": both})
    editor = KubeClient(environment=env)
    assert editor.namespace == prof.namespace and identity(editor) == prof.username
    admin = KubeClient(environment=env, context="fairing")  # a context of the second file
    assert identity(admin) != prof.username
    assert admin.core.list_namespaced_pod("kube-system").items  # the admin may
    with pytest.raises(Exception) as err:
        editor.core.list_namespaced_pod("kube-system")
    assert getattr(err.value, "status", None) == 403


def _cli(args, kubeconfig_env, extra_env=None):
    env = {k: v for k, v in os.environ.items() if k != "FAIRING_CONTEXT"}
    env.update(KUBECONFIG=kubeconfig_env, PYTHONPATH=str(REPO), **(extra_env or {}))
    return subprocess.run([sys.executable, "-m", "fairing", *args], capture_output=True, text=True, env=env,
                          timeout=120, cwd="/")


def test_cli_context_and_kubeconfig(make_profile, kubeconfig, tmp_path):
    prof = make_profile()
    both = os.pathsep.join([kubeconfig, prof.kubeconfig])  # the admin's file first: its current-context wins
    # as the admin: kube-system can be listed
    assert _cli(["list", "-b", "kubernetes", "-n", "kube-system", "-o", "json"], both).returncode == 0
    # --context anywhere before --: the profile's identity, refused outside its namespace
    refused = _cli(["list", "-b", "kubernetes", "-n", "kube-system", "--context", "default-editor"], both)
    assert refused.returncode == 1 and "forbidden" in refused.stderr and prof.username in refused.stderr
    # the same through the setting
    via_setting = _cli(["list", "-b", "kubernetes", "-n", "kube-system"], both, {"FAIRING_CONTEXT": "default-editor"})
    assert via_setting.returncode == 1 and prof.username in via_setting.stderr
    # --kubeconfig replaces KUBECONFIG; the context's namespace is the default one
    own = _cli(["--kubeconfig", prof.kubeconfig, "list", "-b", "kubernetes", "-o", "json"], "/nonexistent")
    assert own.returncode == 0, own.stderr
    wrong = _cli(["list", "-b", "kubernetes", "--context", "default-editr"], both)
    assert wrong.returncode == 2 and "Did you mean 'default-editor'" in wrong.stderr
    missing = _cli(["list", "--kubeconfig", str(tmp_path / "none")], both)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
