"""The watcher on a pod of several containers (issue 29's change to fairing/kube/watch.py), on the
real cluster: an init container, a sidecar listed before the main container (the pod names its
default container, as Istio and Linkerd do), and that sidecar crashing once and restarting while
the main container runs. The main container's log is streamed, each line once: a sidecar's restart
is not the main container's, so its log is not streamed again from the start."""

import uuid

from fairing.kube import pod_manifest, run_pod
from fairing.kube.client import KubeClient

MAIN = "echo main-1; sleep 25; echo main-2"
# crashes once (the kubelet restarts it: restartPolicy OnFailure), then ends well
SIDE = "echo side-log; if [ -f /s/once ]; then exit 0; fi; touch /s/once; exit 1"


def test_a_sidecar_first_and_restarting_streams_the_main_log_once(api_client, namespace, registry_address):
    image = f"{registry_address}/python:3"
    name = f"watch-side-{uuid.uuid4().hex[:6]}"
    mount = [{"name": "s", "mountPath": "/s"}]
    manifest = pod_manifest(name, [
        {"name": "side", "image": image, "command": ["sh", "-c", SIDE], "volumeMounts": mount},
        {"name": "main", "image": image, "command": ["sh", "-c", MAIN]},
    ], volumes=[{"name": "s", "emptyDir": {}}])
    manifest["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"] = "main"
    manifest["spec"]["restartPolicy"] = "OnFailure"
    manifest["spec"]["initContainers"] = [{"name": "init", "image": image, "command": ["sh", "-c", "echo init-log"]}]
    kube = KubeClient(api_client=api_client, namespace=namespace)
    pod = run_pod(kube, manifest)
    try:
        lines = list(pod.logs(follow=True))
        status = pod._pods[name]["status"]
        side = next(s for s in status["containerStatuses"] if s["name"] == "side")
        assert side["restartCount"] >= 1, status  # the sidecar did restart while main ran
        assert [line.split("] ", 1)[-1] for line in lines if line.strip()] == ["main-1", "main-2"], lines
    finally:
        pod.delete()
