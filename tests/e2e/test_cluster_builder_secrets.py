"""Kaniko installs hashed requirements from an index that demands a token: the token reaches
pip as a pip configuration mounted from a temporary Secret, and no blob of the pushed image
(layers unpacked, config and history included), no event and no log line holds it.

Like test_cluster_builder.py's servers, the index runs where the cluster's pods reach it
(``node_exec``)."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import textwrap
import urllib.request
import uuid
from pathlib import Path

import pytest

from fairing import TrainJob
from fairing.backends import Backend
from fairing.builders.cluster import ClusterBuilder
from fairing.deployers.job import JobDeployer
from fairing.images import ImageRef
from tests.services.package_index import DEMO_PROJECT, DEMO_VERSION

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]

_ACCEPT = ", ".join(["application/vnd.oci.image.manifest.v1+json",
                     "application/vnd.docker.distribution.manifest.v2+json"])


def _image_blobs(ref: ImageRef) -> dict[str, bytes]:
    """The manifest, config and (unpacked) layers of ``ref`` from the plain-HTTP registry."""
    base = f"http://{ref.registry}/v2/{ref.repository}"
    request = urllib.request.Request(f"{base}/manifests/{ref.digest}", headers={"Accept": _ACCEPT})
    manifest = urllib.request.urlopen(request, timeout=60).read()
    blobs = {"manifest": manifest}
    doc = json.loads(manifest)
    for desc in [doc["config"], *doc["layers"]]:
        data = urllib.request.urlopen(f"{base}/blobs/{desc['digest']}", timeout=120).read()
        blobs[desc["digest"]] = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    return blobs


def test_kaniko_installs_from_an_index_with_a_token_that_enters_no_layer(base_image, registry_address, kaniko_image,
                                                                         kube, node_exec, tmp_path):
    node_ip = registry_address.split(":")[0]
    token = "tok-" + uuid.uuid4().hex
    # the index runs where the pods reach it; it answers 401 without the token
    server = subprocess.Popen([*node_exec, sys.executable, "-m", "tests.services.package_index", node_ip, "ci-user",
                               token], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        info = json.loads(server.stdout.readline())
        url = f"http://ci-user:{token}@{node_ip}:{info['port']}/simple/"
        (tmp_path / "requirements.txt").write_text(
            f"--index-url {url}\n--trusted-host {node_ip}\n"
            f"{DEMO_PROJECT}=={DEMO_VERSION} --hash=sha256:{info['sha256']}\n")
        (tmp_path / "job.py").write_text(textwrap.dedent("""
            import fairing_demo_pkg
            print("value", fairing_demo_pkg.VALUE)
        """))
        builder = ClusterBuilder(base_image, f"{registry_address}/fairing-kaniko", kaniko_image=kaniko_image,
                                 insecure=True, kube=kube, repository=f"secrets-{uuid.uuid4().hex[:6]}", cache=False)
        events = []
        job = TrainJob(str(tmp_path / "job.py"), backend=Backend("kaniko", builder, JobDeployer(kube=kube)),
                       on_event=events.append)
        image = builder.build(job.preprocessor.context(), on_event=events.append)
        handle = job.submit()  # the same context: the registry has it, nothing is built again
        try:
            handle.result(timeout=900)
            logs = list(handle.logs(follow=False))
        finally:
            handle.delete()
        assert "value demo-ok" in logs, logs  # so pip inside Kaniko authenticated to the index
        for name, data in _image_blobs(image).items():
            assert token.encode() not in data, f"the token is in the image's {name}"
        assert token not in repr(events) and token not in "\n".join(logs)
        secrets = [s.metadata.name for s in kube.core.list_namespaced_secret(kube.namespace).items]
        assert not [s for s in secrets if s.startswith("fairing-build-")], secrets  # the pip Secret is gone
    finally:
        server.terminate()
        server.wait(30)
