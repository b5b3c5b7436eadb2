"""Smoke tests of the e2e cluster: real kubelet, image pulls from the local
registry, logs through the API, Service routing, cluster DNS, TFJob, Kaniko."""

from __future__ import annotations

import json
import textwrap

import pytest
from conftest import pod_log, push_appended_image, wait_until


def _replica_spec(count, container):
    return {"replicas": count, "restartPolicy": "Never", "template": {"spec": {"containers": [container]}}}


def _run_training_job(custom, namespace, plural, body):
    """Create a kubeflow.org/v1 job and wait until it ends; returns a reader of its conditions."""
    name = body["metadata"]["name"]
    custom.create_namespaced_custom_object("kubeflow.org", "v1", namespace, plural, body)

    def conditions():
        obj = custom.get_namespaced_custom_object("kubeflow.org", "v1", namespace, plural, name)
        return {c["type"]: c["status"] for c in (obj.get("status") or {}).get("conditions") or []}

    wait_until(lambda: "True" in (conditions().get("Succeeded"), conditions().get("Failed")), 300, f"{plural} {name} to finish")
    return conditions


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
    logs = pod_log(core_v1, name, ns)
    assert phase == "Succeeded", f"pod {name} {phase}; logs:\n{logs}"
    return logs


def test_job_from_local_registry_runs_and_logs(api_client, core_v1, namespace, registry_address):
    code = "import platform\nprint('hello from fairing', platform.python_version())\n"
    try:
        from fairing.builders.append import AppendBuilder
        from fairing.context import BuildContext
    except ImportError:
        # Branches without the fairing package: the cluster's own append
        # helper (same registry API, one layer on the python base).
        image = push_appended_image(
            registry_address, "fairing-e2e/hello", {"/app/hello.py": code}, cmd=["python3", "/app/hello.py"]
        )
    else:
        builder = AppendBuilder(
            f"{registry_address}/python:3", registry_address, repository="fairing-e2e/hello", insecure=True
        )
        image = str(builder.build(BuildContext(files={"hello.py": code.encode()}, entrypoint=("python3", "hello.py"))))
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
    logs = pod_log(core_v1, pods[0].metadata.name, namespace)
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
        return _replica_spec(n, {"name": "tensorflow", "image": f"{registry_address}/python:3",
                                 "command": ["python3", "-c", TF_REPLICA]})

    tfjob = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "TFJob",
        "metadata": {"name": "dist"},
        "spec": {"runPolicy": {"cleanPodPolicy": "None"}, "tfReplicaSpecs": {"PS": replica(1), "Worker": replica(2)}},
    }
    conditions = _run_training_job(custom, namespace, "tfjobs", tfjob)
    pods = core_v1.list_namespaced_pod(namespace).items
    logs = {p.metadata.name: pod_log(core_v1, p.metadata.name, namespace) for p in pods}
    assert conditions().get("Succeeded") == "True", f"TFJob conditions {conditions()}; logs: {logs}"
    assert sorted(logs) == ["dist-ps-0", "dist-worker-0", "dist-worker-1"], sorted(logs)
    for name, text in logs.items():
        tf_config = json.loads(text.split("TF_CONFIG ", 1)[1].splitlines()[0])
        assert len(tf_config["cluster"]["ps"]) == 1 and len(tf_config["cluster"]["worker"]) == 2, tf_config
        assert "unresolved []" in text, f"{name} could not resolve its peers:\n{text}"


def _kaniko_image():
    import os

    from conftest import STATE

    env = os.environ.get("FAIRING_TEST_KANIKO_IMAGE")
    if env:
        return env
    f = STATE / "kaniko-image"
    if f.is_file():
        return f.read_text().strip()
    pytest.fail(
        "no Kaniko executor image: set FAIRING_TEST_KANIKO_IMAGE, or let tests/cluster/up build one "
        f"(see {STATE}/logs/up.log)"
    )


def test_kaniko_pod_builds_and_pushes_to_local_registry(core_v1, namespace, registry_address):
    import uuid

    kaniko = _kaniko_image()
    tag = uuid.uuid4().hex[:12]
    dest = f"{registry_address}/fairing-e2e/kaniko-built:{tag}"
    context = {
        "Dockerfile": f"FROM {registry_address}/python:3\n"
        "COPY hello.py /app/hello.py\n"
        "RUN python3 /app/hello.py build > /app/built.txt\n"
        'CMD ["python3", "/app/hello.py", "run"]\n',
        "hello.py": "import sys, pathlib\n"
        "built = pathlib.Path('/app/built.txt')\n"
        "print('kaniko-built', sys.argv[1], built.read_text().strip() if built.exists() else '-')\n",
    }
    # The build context travels as a tar.gz (ConfigMap files are symlinks,
    # which a dir:// context would copy as such).
    import base64
    import gzip
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path, text in context.items():
            ti = tarfile.TarInfo(path)
            ti.size = len(text.encode())
            tar.addfile(ti, io.BytesIO(text.encode()))
    core_v1.create_namespaced_config_map(
        namespace,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "ctx"},
            "binaryData": {"context.tar.gz": base64.b64encode(gzip.compress(buf.getvalue())).decode()},
        },
    )
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "kaniko"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "kaniko",
                    "image": kaniko,
                    "args": [
                        "--context=tar:///ctx/context.tar.gz",
                        "--dockerfile=Dockerfile",
                        f"--destination={dest}",
                        f"--insecure-registry={registry_address}",
                        "--insecure",
                        "--insecure-pull",
                        "--skip-tls-verify",
                        "--snapshot-mode=redo",
                        "--verbosity=info",
                    ],
                    "volumeMounts": [{"name": "ctx", "mountPath": "/ctx"}],
                }
            ],
            "volumes": [{"name": "ctx", "configMap": {"name": "ctx"}}],
        },
    }
    core_v1.create_namespaced_pod(namespace, pod)
    _wait_pod_done(core_v1, namespace, "kaniko", timeout=420)
    # The pushed image runs on the kubelet, with the file made by the RUN step.
    _run_pod(core_v1, namespace, "built", dest, None)
    logs = _wait_pod_done(core_v1, namespace, "built")
    # built.txt was written by the RUN step (the shell creates it before python runs)
    assert logs.strip() == "kaniko-built run kaniko-built build", logs


def test_pytorchjob_master_and_worker_succeed(api_client, core_v1, namespace, registry_address):
    """The worker's init container (our local image for upstream's alpine one)
    waits until the master's name resolves; both replicas see the rendezvous env."""
    from kubernetes import client

    custom = client.CustomObjectsApi(api_client)
    # A tiny rendezvous: the master listens on MASTER_PORT until the worker
    # connects to MASTER_ADDR by name and sends its rank.
    script = textwrap.dedent(
        """
        import os, socket, time
        e = os.environ
        print("PT", e["MASTER_ADDR"], e["MASTER_PORT"], e["WORLD_SIZE"], e["RANK"], flush=True)
        if e["RANK"] == "0":
            srv = socket.create_server(("", int(e["MASTER_PORT"])))
            srv.settimeout(240)
            conn, _ = srv.accept()
            print("master got rank", conn.recv(16).decode(), flush=True)
        else:
            for i in range(120):
                try:
                    socket.create_connection((e["MASTER_ADDR"], int(e["MASTER_PORT"])), timeout=3).sendall(e["RANK"].encode())
                    print("worker connected", flush=True)
                    break
                except OSError as err:
                    time.sleep(1)
            else:
                raise SystemExit("worker could not reach the master")
        """
    )

    def replica(n):
        return _replica_spec(n, {"name": "pytorch", "image": f"{registry_address}/python:3",
                                 "command": ["python3", "-c", script],
                                 "ports": [{"name": "pytorchjob-port", "containerPort": 23456}]})

    job = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": "pt"},
        "spec": {"runPolicy": {"cleanPodPolicy": "None"}, "pytorchReplicaSpecs": {"Master": replica(1), "Worker": replica(1)}},
    }
    conditions = _run_training_job(custom, namespace, "pytorchjobs", job)
    logs = {p.metadata.name: pod_log(core_v1, p.metadata.name, namespace, container="pytorch")
            for p in core_v1.list_namespaced_pod(namespace).items}
    assert conditions().get("Succeeded") == "True", f"PyTorchJob conditions {conditions()}; logs: {logs}"
    assert "PT pt-master-0 23456 2 0" in logs["pt-master-0"], logs
    assert "master got rank 1" in logs["pt-master-0"], logs
    assert "worker connected" in logs["pt-worker-0"], logs
    assert "PT pt-master-0 23456 2 1" in logs["pt-worker-0"], logs
