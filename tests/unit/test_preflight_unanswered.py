"""The permission pre-flight against an API server that cannot answer a
SelfSubjectAccessReview (an old server: 404; an authorizer that refuses the review itself:
403; a server that never answers): it never blocks the job nor crashes, and a hanging
server costs one review's timeout, not one per batch of reviews."""

from __future__ import annotations

import http.server
import threading
import time

import pytest

from fairing.deployers.job import JobDeployer
from fairing.kube import KubeClient
from fairing.kube import access


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


def _serve(behaviour):
    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            hits.append(self.path)
            if behaviour == "hang":
                time.sleep(5)
                return
            body = b'{"kind":"Status","apiVersion":"v1","status":"Failure","code":%d}' % behaviour
            self.send_response(behaviour)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = _Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, hits


def _kubeconfig(tmp_path, port):
    path = tmp_path / "kubeconfig"
    path.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "http://127.0.0.1:{port}"}}}}]
users: [{{name: u, user: {{token: not-a-real-token}}}}]
contexts: [{{name: x, context: {{cluster: c, user: u, namespace: team}}}}]
current-context: x
""")
    return str(path)


@pytest.mark.parametrize("behaviour", [404, 403, "hang"])
def test_an_unanswered_review_leaves_the_decision_to_the_calls(tmp_path, monkeypatch, behaviour):
    monkeypatch.setattr(access, "REVIEW_TIMEOUT", 1)
    server, hits = _serve(behaviour)
    try:
        kube = KubeClient(kubeconfig=_kubeconfig(tmp_path, server.server_address[1]))
        deployer = JobDeployer(kube=kube)
        assert len(set(deployer.required_access())) > 4  # more than one batch
        start = time.monotonic()
        access.preflight(deployer)  # no PermissionDeniedError, no crash
        took = time.monotonic() - start
    finally:
        server.shutdown()
        server.server_close()
    assert hits and all(p.endswith("/selfsubjectaccessreviews") for p in hits)
    assert len(hits) == 1, f"asked {len(hits)} times a server that cannot answer"
    assert took < 3, f"took {took:.1f} s"
