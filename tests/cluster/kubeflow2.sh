# shellcheck shell=bash
# Today's Kubeflow in the test cluster: the JobSet controller, the Kubeflow Trainer v2
# controller (TrainJob, ClusterTrainingRuntime) and the KServe controller in
# RawDeployment mode (no Knative, no Istio). Each controller is built from its Go
# module, pinned in tools/<name>/go.mod, and its CRDs and manifests come from the
# same module's directory (go mod download), as for the training operator.

JOBSET_MODULE=sigs.k8s.io/jobset
TRAINER_MODULE=github.com/kubeflow/trainer/v2
KSERVE_MODULE=github.com/kserve/kserve

# _mod_version TOOL MODULE: the version tools/TOOL/go.mod pins for MODULE.
_mod_version() { awk -v m="$2" '($1==m) || ($1=="require" && $2==m) {print ($1=="require") ? $3 : $2}' "$CLUSTER_DIR/tools/$1/go.mod" | head -n1; }

# _mod_dir TOOL MODULE: the module's directory in the module cache (downloaded if missing).
_mod_dir() {
  (cd "$CLUSTER_DIR/tools/$1" && go mod download "$2" && go list -m -f '{{.Dir}}' "$2") 2>>"$LOGS/addons.log" ||
    die "cannot locate the $2 module (go mod download in tests/cluster/tools/$1)"
}

build_kubeflow2() {
  go_build jobset "$CLUSTER_DIR/tools/jobset" "$JOBSET_MODULE"
  go_build trainer "$CLUSTER_DIR/tools/trainer" "$TRAINER_MODULE/cmd/trainer-controller-manager"
  go_build kserve "$CLUSTER_DIR/tools/kserve" "$KSERVE_MODULE/cmd/manager"
}

# _controller_image NAME: pushes $BIN/NAME as /manager in a one-layer image running as
# a non-root user (the upstream Deployments say runAsNonRoot); prints its reference.
_controller_image() {
  local name=$1 tag ref
  tag=$(cut -c1-12 "$BIN/$name.stamp")
  ref=$REGISTRY/$name:$tag
  if ! python3 "$CLUSTER_DIR/imgtool.py" exists "$ref"; then
    files_layer "$IMAGES/$name.tar" "$BIN/$name:manager"
    python3 "$CLUSTER_DIR/imgtool.py" push "$ref" --layer "$IMAGES/$name.tar" --entrypoint '["/manager"]' \
      --user 65532:65532 >>"$LOGS/images.log" 2>&1 || die "pushing $ref failed"
    log "pushed $ref"
  fi
  echo "$ref"
}

# _apply NAME DIR: kustomize DIR and apply it server-side.
_apply() {
  local name=$1 dir=$2
  kubectl kustomize "$dir" >"$STATE/$name/rendered.yaml" 2>>"$LOGS/addons.log" ||
    { tail -n 20 "$LOGS/addons.log" >&2; die "kustomize of the $name manifests failed (log $LOGS/addons.log)"; }
  kubectl apply --server-side --force-conflicts -f "$STATE/$name/rendered.yaml" >>"$LOGS/addons.log" 2>&1 ||
    { tail -n 20 "$LOGS/addons.log" >&2; die "applying the $name manifests failed (log $LOGS/addons.log)"; }
}

# _wait_ca_bundle WHAT KIND NAME: until the webhook configuration has its CA bundle.
_wait_ca_bundle() {
  wait_for "$1 webhook CA bundle" 180 - bash -c \
    "[[ -n \$(\"$BIN/k8s\" kubectl --kubeconfig \"$STATE/kubeconfig\" get $2 $3 -o jsonpath='{.webhooks[0].clientConfig.caBundle}') ]]"
}

# A small footprint on the 2-core node: upstream asks 500m CPU for JobSet.
_SMALL_RESOURCES='{"requests": {"cpu": "20m", "memory": "64Mi"}, "limits": {"memory": "1Gi"}}'

install_jobset() {
  local moddir ref dir
  moddir=$(_mod_dir jobset "$JOBSET_MODULE")
  ref=$(_controller_image jobset)
  dir=$STATE/jobset/manifests
  rm -rf "$dir"
  mkdir -p "$dir"
  cp -r "$moddir/config/." "$dir/"
  chmod -R u+w "$dir"
  # upstream's config/default (CRD, RBAC, controller, webhooks, internal certificates:
  # the controller writes its own webhook certificate and CA bundles)
  cat >"$dir/kustomization.yaml" <<EOT
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - default
images:
  - name: us-central1-docker.pkg.dev/k8s-staging-images/jobset/jobset
    newName: ${ref%:*}
    newTag: "${ref##*:}"
patches:
  - target:
      kind: Deployment
      name: jobset-controller-manager
    patch: |-
      - op: replace
        path: /spec/template/spec/containers/0/resources
        value: $_SMALL_RESOURCES
EOT
  _apply jobset "$dir"
  wait_for "jobset rollout" 240 - kubectl -n jobset-system rollout status deploy/jobset-controller-manager --timeout=5s
  _wait_ca_bundle jobset validatingwebhookconfiguration jobset-validating-webhook-configuration
}

install_trainer() {
  local moddir ref dir
  moddir=$(_mod_dir trainer "$TRAINER_MODULE")
  ref=$(_controller_image trainer)
  dir=$STATE/trainer/manifests
  rm -rf "$dir"
  mkdir -p "$dir"
  cp -r "$moddir/manifests/." "$dir/"
  chmod -R u+w "$dir"
  # upstream's overlays/manager without its third-party JobSet (a release download:
  # ours is built from the module above); the controller writes its own webhook
  # certificate (certManagement in its config).
  cat >"$dir/kustomization.yaml" <<EOT
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: kubeflow-system
resources:
  - overlays/manager/namespace.yaml
  - base/crds
  - base/manager
  - base/rbac
  - base/webhook
images:
  - name: ghcr.io/kubeflow/trainer/trainer-controller-manager
    newName: ${ref%:*}
    newTag: "${ref##*:}"
secretGenerator:
  - name: kubeflow-trainer-webhook-cert
    namespace: kubeflow-system
    options:
      disableNameSuffixHash: true
patches:
  - target:
      kind: Deployment
      name: kubeflow-trainer-controller-manager
    patch: |-
      - op: add
        path: /spec/template/spec/containers/0/resources
        value: $_SMALL_RESOURCES
EOT
  _apply trainer "$dir"
  wait_for "trainer rollout" 240 - kubectl -n kubeflow-system rollout status deploy/kubeflow-trainer-controller-manager --timeout=5s
  _wait_ca_bundle trainer validatingwebhookconfiguration validator.trainer.kubeflow.org
  # The default runtime fairing uses. Its trainer image (PyTorch from Docker Hub) cannot
  # be pulled here: fairing's TrainJobs override it with the image fairing built.
  mkdir -p "$STATE/trainer/runtimes"
  cp "$dir/base/runtimes/torch_distributed.yaml" "$STATE/trainer/runtimes/"
  # The webhook answers a little after the CA bundle is in place: retry the first apply.
  wait_for "torch-distributed ClusterTrainingRuntime" 120 - \
    "$BIN/k8s" kubectl --kubeconfig "$STATE/kubeconfig" apply --server-side --force-conflicts -f "$STATE/trainer/runtimes/torch_distributed.yaml"
}

# KServe's controller settings for this cluster: RawDeployment (plain Deployments and
# Services, no Knative or Istio), no Ingress, and a small default for predictors that
# ask for no resources (upstream's is a whole CPU and 2 GiB).
_KSERVE_DEPLOY='{"defaultDeploymentMode": "RawDeployment"}'
_KSERVE_INGRESS='{"enableGatewayApi": false, "ingressGateway": "knative-serving/knative-ingress-gateway", "ingressDomain": "example.com", "ingressClassName": "none", "domainTemplate": "{{ .Name }}-{{ .Namespace }}.{{ .IngressDomain }}", "urlScheme": "http", "disableIstioVirtualHost": true, "disableIngressCreation": true}'
_KSERVE_ISVC='{"resource": {"cpuLimit": "1", "memoryLimit": "1Gi", "cpuRequest": "50m", "memoryRequest": "128Mi"}}'
# OCI model storage ("modelcars", storageUri: oci://...): upstream v0.15.2's own values, pinned here
# because fairing's modelcar endpoints rely on them (tests/e2e/test_kserve_modelcar.py).
_KSERVE_STORAGE='{"image": "kserve/storage-initializer:latest", "memoryRequest": "100Mi", "memoryLimit": "1Gi", "cpuRequest": "100m", "cpuLimit": "1", "caBundleConfigMapName": "", "caBundleVolumeMountPath": "/etc/ssl/custom-certs", "enableDirectPvcVolumeMount": true, "enableModelcar": true, "cpuModelcar": "10m", "memoryModelcar": "15Mi", "uidModelcar": 1010}'

install_kserve() {
  local moddir ref dir svc=kserve-webhook-server-service ns=kserve
  moddir=$(_mod_dir kserve "$KSERVE_MODULE")
  ref=$(_controller_image kserve)
  dir=$STATE/kserve/manifests
  rm -rf "$dir"
  mkdir -p "$dir"
  cp -r "$moddir/config/." "$dir/"
  chmod -R u+w "$dir"
  # The webhook's serving certificate, signed by the cluster CA (upstream uses cert-manager).
  local srv="basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth"
  _cert kserve-webhook "/CN=$svc.$ns.svc" "$srv
subjectAltName=DNS:$svc,DNS:$svc.$ns,DNS:$svc.$ns.svc,DNS:$svc.$ns.svc.$CLUSTER_DOMAIN"
  cp "$PKI/kserve-webhook.crt" "$dir/tls.crt"
  cp "$PKI/kserve-webhook.key" "$dir/tls.key"
  local ca
  ca=$(base64 -w0 <"$PKI/ca.crt")
  # upstream's config/default without cert-manager, the metrics proxy (another image)
  # and the local-model controllers (other images).
  cat >"$dir/kustomization.yaml" <<EOT
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: $ns
resources:
  - crd
  - configmap
  - rbac
  - manager
  - webhook
images:
  - name: ko://github.com/kserve/kserve/cmd/manager
    newName: ${ref%:*}
    newTag: "${ref##*:}"
secretGenerator:
  - name: kserve-webhook-server-cert
    type: kubernetes.io/tls
    files:
      - tls.crt
      - tls.key
    options:
      disableNameSuffixHash: true
patches:
  - target:
      kind: Deployment
      name: kserve-controller-manager
    patch: |-
      - op: replace
        path: /spec/template/spec/containers/0/imagePullPolicy
        value: IfNotPresent
      - op: replace
        path: /spec/template/spec/containers/0/resources
        value: {"requests": {"cpu": "20m", "memory": "64Mi"}, "limits": {"memory": "1Gi"}}
  - target:
      kind: ConfigMap
      name: inferenceservice-config
    patch: |-
      - op: replace
        path: /data/deploy
        value: '$_KSERVE_DEPLOY'
      - op: replace
        path: /data/ingress
        value: '$_KSERVE_INGRESS'
      - op: replace
        path: /data/inferenceService
        value: '$_KSERVE_ISVC'
      - op: replace
        path: /data/storageInitializer
        value: '$_KSERVE_STORAGE'
  - target:
      kind: MutatingWebhookConfiguration
    patch: |-
      - op: add
        path: /webhooks/0/clientConfig/caBundle
        value: $ca
      - op: add
        path: /webhooks/1/clientConfig/caBundle
        value: $ca
  - target:
      kind: ValidatingWebhookConfiguration
    patch: |-
      - op: add
        path: /webhooks/0/clientConfig/caBundle
        value: $ca
EOT
  mkdir -p "$STATE/kserve"
  kubectl kustomize "$dir" 2>>"$LOGS/addons.log" |
    sed -e "s/\$(webhookServiceName)/$svc/g" -e "s/\$(kserveNamespace)/$ns/g" >"$STATE/kserve/rendered.yaml" ||
    { tail -n 20 "$LOGS/addons.log" >&2; die "kustomize of the kserve manifests failed (log $LOGS/addons.log)"; }
  kubectl apply --server-side --force-conflicts -f "$STATE/kserve/rendered.yaml" >>"$LOGS/addons.log" 2>&1 ||
    { tail -n 20 "$LOGS/addons.log" >&2; die "applying the kserve manifests failed (log $LOGS/addons.log)"; }
  wait_for "kserve rollout" 300 - kubectl -n $ns rollout status deploy/kserve-controller-manager --timeout=5s
}
