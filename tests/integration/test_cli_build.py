"""``fairing build`` in a real terminal: the append builder pushes to a real registry and the
command prints the image reference pinned by digest."""

from __future__ import annotations

import re
import urllib.request

from tests.cli_terminal import Terminal

# A kubeconfig the kubernetes backend can load; build never talks to the cluster.
KUBECONFIG = """
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: unused}}]
contexts: [{name: x, context: {cluster: c, user: u, namespace: team}}]
current-context: x
"""


def test_build_prints_the_image_pinned_by_digest(registry, base_image, tmp_path):
    (tmp_path / "job.py").write_text("print('built')\n")
    (tmp_path / "kubeconfig").write_text(KUBECONFIG)
    term = Terminal(tmp_path, tmp_path / "cache", env={"KUBECONFIG": str(tmp_path / "kubeconfig"),
                                                       "DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    argv = ["build", "job.py", "--backend", "kubernetes", "--registry", f"{registry.address}/cli",
            "--base-image", str(base_image)]
    code, out = term.run(*argv)
    assert code == 0, out
    # the last thing printed (the terminal's progress frames before it were erased)
    ref = re.search(rf"({re.escape(registry.address)}/\S+@sha256:[0-9a-f]{{64}})\s*$", out).group(1)
    match = re.fullmatch(rf"{re.escape(registry.address)}/(cli/[^:@\s]+)(?::[^@\s]+)?@(sha256:[0-9a-f]{{64}})", ref)
    assert match, ref
    request = urllib.request.Request(f"http://{registry.address}/v2/{match.group(1)}/manifests/{match.group(2)}",
                                     headers={"Accept": "application/vnd.oci.image.manifest.v1+json, "
                                                        "application/vnd.docker.distribution.manifest.v2+json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
    code, doc = term.json(*argv)  # the same code again: the same image
    assert code == 0 and doc == {"image": ref}
