"""Smoke tests of the e2e cluster: real kubelet, image pulls from the local
registry, logs through the API, Service routing, cluster DNS, TFJob, Kaniko."""

from __future__ import annotations

import json
import textwrap

import pytest
from conftest import push_appended_image, wait_until


def _batch(api_client):
    from kubernetes import client

    return client.BatchV1Api(api_client)


def _pod_phase(core_v1, ns, name):
    return core_v1.read_namespaced_pod(name, ns).status.phase


def _run_pod(core_v1, ns, name, image, command, labels=None, ports=None, restart="Never"):
    container = {"name": "main", "image": image, "command": command}
    if ports:
        container["ports"] = [{"containerPort": p} for p in ports]
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"restartPolicy": restart, "containers": [container], "terminationGracePeriodSeconds": 1},
    }
    core_v1.create_namespaced_pod(ns, body)


def _wait_pod_done(core_v1, ns, name, timeout=180):
    phase = wait_until(
        lambda: (p := _pod_phase(core_v1, ns, name)) in ("Succeeded", "Failed") and p, timeout, f"pod {ns}/{name} to finish"
    )
    logs = core_v1.read_namespaced_pod_log(name, ns)
    assert phase == "Succeeded", f"pod {name} {phase}; logs:\n{logs}"
    return logs


def test_job_from_local_registry_runs_and_logs(api_client, core_v1, namespace, registry_address):
    image = push_appended_image(
        registry_address,
        "fairing-e2e/hello",
        {"/app/hello.py": "import platform\nprint('hello from fairing', platform.python_version())\n"},
        cmd=["python3", "/app/hello.py"],
    )
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "hello"},
        "spec": {
            "backoffLimit": 0,
            "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": image}]}},
        },
    }
    _batch(api_client).create_namespaced_job(namespace, job)

    def finished():
        st = _batch(api_client).read_namespaced_job_status("hello", namespace).status
        return (st.succeeded or 0) >= 1 or (st.failed or 0) >= 1

    wait_until(finished, 180, "job hello to finish")
    st = _batch(api_client).read_namespaced_job_status("hello", namespace).status
    pods = core_v1.list_namespaced_pod(namespace, label_selector="job-name=hello").items
    assert pods, "job created no pod"
    logs = core_v1.read_namespaced_pod_log(pods[0].metadata.name, namespace)
    assert st.succeeded == 1, f"job failed: {st}; logs:\n{logs}"
    assert logs.startswith("hello from fairing 3."), logs
    assert pods[0].status.container_statuses[0].image_id, "kubelet reported no image id"


def _http_server(core_v1, ns, registry):
    script = "import http.server,socket\n" \
        "class H(http.server.BaseHTTPRequestHandler):\n" \
        "    def do_GET(self):\n" \
        "        body=('served-by '+socket.gethostname()).encode()\n" \
        "        self.send_response(200); self.send_header('Content-Length',str(len(body))); self.end_headers(); self.wfile.write(body)\n" \
        "http.server.HTTPServer(('',8080),H).serve_forever()\n"
    _run_pod(core_v1, ns, "web", f"{registry}/python:3", ["python3", "-c", script], labels={"app": "web"}, ports=[8080])
    core_v1.create_namespaced_service(
        ns,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
        },
    )
    wait_until(lambda: _pod_phase(core_v1, ns, "web") == "Running", 120, "pod web Running")

    def has_endpoint():
        ep = core_v1.read_namespaced_endpoints("web", ns)
        return any(s.addresses for s in ep.subsets or [])

    wait_until(has_endpoint, 60, "endpoints of service web")
    return core_v1.read_namespaced_service("web", ns).spec.cluster_ip


def test_service_routes_to_pod(core_v1, namespace, registry_address):
    cluster_ip = _http_server(core_v1, namespace, registry_address)
    client = textwrap.dedent(
        f"""
        import time, urllib.request
        for i in range(30):
            try:
                print(urllib.request.urlopen('http://{cluster_ip}:80/', timeout=3).read().decode()); break
            except Exception as e:
                print('retry', e); time.sleep(1)
        else:
            raise SystemExit(1)
        """
    )
    _run_pod(core_v1, namespace, "client", f"{registry_address}/python:3", ["python3", "-c", client])
    logs = _wait_pod_done(core_v1, namespace, "client")
    assert "served-by web" in logs, logs


def test_service_name_resolves_through_cluster_dns(core_v1, namespace, registry_address):
    cluster_ip = _http_server(core_v1, namespace, registry_address)
    client = textwrap.dedent(
        f"""
        import json, socket, time, urllib.request
        out = {{}}
        for i in range(30):
            try:
                out['fqdn'] = socket.gethostbyname('web.{namespace}.svc.cluster.local')
                out['short'] = socket.gethostbyname('web')
                out['kubernetes'] = socket.gethostbyname('kubernetes.default')
                out['body'] = urllib.request.urlopen('http://web/', timeout=3).read().decode()
                break
            except Exception as e:
                time.sleep(1)
        print(json.dumps(out))
        """
    )
    _run_pod(core_v1, namespace, "resolver", f"{registry_address}/python:3", ["python3", "-c", client])
    logs = _wait_pod_done(core_v1, namespace, "resolver")
    out = json.loads(logs.strip().splitlines()[-1])
    assert out.get("fqdn") == cluster_ip, out
    assert out.get("short") == cluster_ip, out
    assert out.get("kubernetes"), out
    assert out.get("body") == "served-by web", out


TF_REPLICA = textwrap.dedent(
    """
    import json, os, socket, sys, time
    cfg = json.loads(os.environ["TF_CONFIG"])
    print("TF_CONFIG", json.dumps(cfg, sort_keys=True))
    hosts = [a.rsplit(":", 1)[0] for addrs in cfg["cluster"].values() for a in addrs]
    pending, deadline = set(hosts), time.time() + 90
    while pending and time.time() < deadline:
        for h in sorted(pending):
            try:
                socket.gethostbyname(h)
                pending.discard(h)
            except OSError:
                pass
        time.sleep(1)
    print("unresolved", sorted(pending))
    time.sleep(15)  # stay up (and resolvable) while the other replicas look us up
    sys.exit(1 if pending else 0)
    """
)


def test_tfjob_one_ps_two_workers_succeeds(api_client, core_v1, namespace, registry_address):
    from kubernetes import client

    custom = client.CustomObjectsApi(api_client)

    def replica(n):
        return {
            "replicas": n,
            "restartPolicy": "Never",
            "template": {
                "spec": {
                    "containers": [
                        {"name": "tensorflow", "image": f"{registry_address}/python:3", "command": ["python3", "-c", TF_REPLICA]}
                    ]
                }
            },
        }

    tfjob = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "TFJob",
        "metadata": {"name": "dist"},
        "spec": {"runPolicy": {"cleanPodPolicy": "None"}, "tfReplicaSpecs": {"PS": replica(1), "Worker": replica(2)}},
    }
    custom.create_namespaced_custom_object("kubeflow.org", "v1", namespace, "tfjobs", tfjob)

    def conditions():
        obj = custom.get_namespaced_custom_object("kubeflow.org", "v1", namespace, "tfjobs", "dist")
        return {c["type"]: c["status"] for c in (obj.get("status") or {}).get("conditions") or []}

    wait_until(lambda: conditions().get("Succeeded") == "True" or conditions().get("Failed") == "True", 300, "TFJob dist to finish")
    pods = core_v1.list_namespaced_pod(namespace).items
    logs = {p.metadata.name: core_v1.read_namespaced_pod_log(p.metadata.name, namespace) for p in pods}
    assert conditions().get("Succeeded") == "True", f"TFJob conditions {conditions()}; logs: {logs}"
    assert sorted(logs) == ["dist-ps-0", "dist-worker-0", "dist-worker-1"], sorted(logs)
    for name, text in logs.items():
        tf_config = json.loads(text.split("TF_CONFIG ", 1)[1].splitlines()[0])
        assert len(tf_config["cluster"]["ps"]) == 1 and len(tf_config["cluster"]["worker"]) == 2, tf_config
        assert "unresolved []" in text, f"{name} could not resolve its peers:\n{text}"
