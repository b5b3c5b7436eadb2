# shellcheck shell=bash
# Kueue (sigs.k8s.io/kueue) in the test cluster: the controller built from its Go
# module (pinned in tools/kueue/go.mod), its CRDs, RBAC and webhooks from the same
# module's config/, with Kueue's internal certificate management (the controller
# writes its own webhook certificate and CA bundles). Tests create their own
# ClusterQueue/LocalQueue pairs; the cluster carries one ResourceFlavor and a small
# ClusterQueue for trying things by hand.

KUEUE_MODULE=sigs.k8s.io/kueue

build_kueue() {
  go_build kueue "$CLUSTER_DIR/tools/kueue" "$KUEUE_MODULE/cmd/kueue"
}

# The integrations fairing submits through (Kueue's framework names): plain and Indexed
# Jobs, the training operator's TFJob and PyTorchJob, Trainer v2's TrainJob and the
# JobSet it runs. Pods, Deployments and StatefulSets are left alone: their webhooks
# are dropped below, so no pod of the cluster waits on Kueue's webhook.
_KUEUE_FRAMEWORKS=(batch/job kubeflow.org/tfjob kubeflow.org/pytorchjob trainer.kubeflow.org/trainjob jobset.x-k8s.io/jobset)
# The cluster's own queue, for trying things by hand; tests make their own pairs.
KUEUE_FLAVOR=fairing-default
KUEUE_CLUSTER_QUEUE=fairing-small

_kueue_config() {
  cat <<EOT
apiVersion: config.kueue.x-k8s.io/v1beta2
kind: Configuration
health:
  healthProbeBindAddress: :8081
metrics:
  bindAddress: :8443
webhook:
  port: 9443
leaderElection:
  leaderElect: false
internalCertManagement:
  enable: true
  webhookServiceName: kueue-webhook-service
  webhookSecretName: kueue-webhook-server-cert
manageJobsWithoutQueueName: false
integrations:
  frameworks:
EOT
  local f
  for f in "${_KUEUE_FRAMEWORKS[@]}"; do echo "  - \"$f\""; done
}

install_kueue() {
  local moddir ref dir digest key
  ref=$(_controller_image kueue)
  # Warm: the same image, module and this file applied before, and the controller
  # serving: nothing to render or apply.
  key=$(cat "$CLUSTER_DIR/kueue.sh" "$CLUSTER_DIR/tools/kueue/go.mod" <(echo "$ref") | sha256sum | cut -d' ' -f1)
  if [[ -f $STATE/kueue/applied.key && $(<"$STATE/kueue/applied.key") == "$key" ]] &&
    kubectl -n kueue-system rollout status deploy/kueue-controller-manager --timeout=2s >/dev/null 2>&1 &&
    kubectl get clusterqueue "$KUEUE_CLUSTER_QUEUE" >/dev/null 2>&1; then
    log "kueue: up to date"
    return 0
  fi
  rm -f "$STATE/kueue/applied.key"
  moddir=$(_mod_dir kueue "$KUEUE_MODULE")
  dir=$STATE/kueue/manifests
  rm -rf "$dir"
  mkdir -p "$dir"
  cp -r "$moddir/config/." "$dir/"
  chmod -R u+w "$dir"
  _kueue_config >"$dir/components/manager/controller_manager_config.yaml"
  # upstream's config/default with Kueue's internal certificates (the controller
  # writes its webhook certificate and the CA bundles), without the visibility API
  # server (an aggregated API: while it is not serving, discovery fails for every client)
  # and without the webhooks of the integrations left off.
  local drop=() w
  for w in pod deployment statefulset; do drop+=("m$w.kb.io" "v$w.kb.io"); done
  {
    cat <<EOT
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - default
images:
  - name: us-central1-docker.pkg.dev/k8s-staging-images/kueue/kueue
    newName: ${ref%:*}
    newTag: "${ref##*:}"
patches:
  - target:
      kind: Deployment
      name: kueue-controller-manager
    patch: |-
      - op: replace
        path: /spec/template/spec/containers/0/resources
        value: $_SMALL_RESOURCES
      - op: add
        path: /spec/template/spec/containers/0/args/-
        value: --feature-gates=VisibilityOnDemand=false
  - target:
      kind: APIService
    patch: |-
      \$patch: delete
      apiVersion: apiregistration.k8s.io/v1
      kind: APIService
      metadata:
        name: any
EOT
    local kind prefix
    for kind in Mutating Validating; do
      prefix=$([[ $kind == Mutating ]] && echo m || echo v)
      cat <<EOT
  - patch: |-
      apiVersion: admissionregistration.k8s.io/v1
      kind: ${kind}WebhookConfiguration
      metadata:
        name: kueue-${kind,,}-webhook-configuration
      webhooks:
EOT
      for w in pod deployment statefulset; do
        printf '        - name: %s%s.kb.io\n          $patch: delete\n' "$prefix" "$w"
      done
    done
  } >"$dir/kustomization.yaml"
  mkdir -p "$STATE/kueue"
  kubectl kustomize "$dir" >"$STATE/kueue/rendered.new.yaml" 2>>"$LOGS/addons.log" ||
    { tail -n 20 "$LOGS/addons.log" >&2; die "kustomize of the kueue manifests failed (log $LOGS/addons.log)"; }
  digest=$(sha256sum <"$STATE/kueue/rendered.new.yaml" | cut -d' ' -f1)
  # Warm: the same manifests applied before and the controller serving: nothing to do.
  if [[ -f $STATE/kueue/applied.sha && $(<"$STATE/kueue/applied.sha") == "$digest" ]] &&
    kubectl -n kueue-system rollout status deploy/kueue-controller-manager --timeout=2s >/dev/null 2>&1 &&
    kubectl get clusterqueue "$KUEUE_CLUSTER_QUEUE" >/dev/null 2>&1; then
    log "kueue: up to date"
    return 0
  fi
  rm -f "$STATE/kueue/applied.sha"
  mv "$STATE/kueue/rendered.new.yaml" "$STATE/kueue/rendered.yaml"
  kubectl apply --server-side --force-conflicts -f "$STATE/kueue/rendered.yaml" >>"$LOGS/addons.log" 2>&1 ||
    { tail -n 20 "$LOGS/addons.log" >&2; die "applying the kueue manifests failed (log $LOGS/addons.log)"; }
  wait_for "kueue rollout" 240 - kubectl -n kueue-system rollout status deploy/kueue-controller-manager --timeout=5s
  _wait_ca_bundle kueue mutatingwebhookconfiguration kueue-mutating-webhook-configuration
  # The webhook answers a little after the CA bundle is in place: retry the first apply.
  cat >"$STATE/kueue/queues.yaml" <<EOT
apiVersion: kueue.x-k8s.io/v1beta2
kind: ResourceFlavor
metadata:
  name: $KUEUE_FLAVOR
---
apiVersion: kueue.x-k8s.io/v1beta2
kind: ClusterQueue
metadata:
  name: $KUEUE_CLUSTER_QUEUE
spec:
  namespaceSelector: {}
  resourceGroups:
  - coveredResources: ["cpu", "memory"]
    flavors:
    - name: $KUEUE_FLAVOR
      resources:
      - name: cpu
        nominalQuota: 500m
      - name: memory
        nominalQuota: 2Gi
EOT
  wait_for "kueue ResourceFlavor and ClusterQueue" 120 - \
    "$BIN/k8s" kubectl --kubeconfig "$STATE/kubeconfig" apply --server-side --force-conflicts -f "$STATE/kueue/queues.yaml"
  echo "$digest" >"$STATE/kueue/applied.sha"
  echo "$key" >"$STATE/kueue/applied.key"
}
