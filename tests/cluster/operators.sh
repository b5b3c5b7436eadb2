# shellcheck shell=bash
# Operators run in the cluster: the Kubeflow training-operator and Kaniko.

TO_MODULE=github.com/kubeflow/training-operator

install_training_operator() {
  local moddir tag dir
  moddir=$(cd "$CLUSTER_DIR/tools/training-operator" && go list -m -f '{{.Dir}}' "$TO_MODULE") ||
    die "cannot locate the $TO_MODULE module (go mod download in tests/cluster/tools/training-operator)"
  tag=$(cut -c1-12 "$BIN/training-operator.stamp")

  # Controller image: the static binary as /manager.
  if ! python3 "$CLUSTER_DIR/imgtool.py" exists "$REGISTRY/training-operator:$tag"; then
    files_layer "$IMAGES/training-operator.tar" "$BIN/training-operator:manager"
    python3 "$CLUSTER_DIR/imgtool.py" push "$REGISTRY/training-operator:$tag" --layer "$IMAGES/training-operator.tar" \
      --entrypoint '["/manager"]' >>"$LOGS/images.log" 2>&1 || die "pushing training-operator image failed"
    log "pushed $REGISTRY/training-operator:$tag"
  fi
  # PyTorch init container: upstream uses alpine for `sh` and `nslookup`; ours
  # is the python3 base plus an nslookup that asks the cluster resolver.
  local nsl
  nsl=$(mktemp -d)
  mkdir -p "$nsl/usr/local/bin"
  cat >"$nsl/usr/local/bin/nslookup" <<'EOF'
#!/usr/bin/python3
import socket, sys
try:
    print(sys.argv[1], socket.gethostbyname(sys.argv[1]))
except (IndexError, OSError) as e:
    print("nslookup:", e, file=sys.stderr)
    sys.exit(1)
EOF
  chmod 755 "$nsl/usr/local/bin/nslookup"
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$nsl" -cf "$IMAGES/pytorch-init.tar" .
  rm -rf "$nsl"
  push_image_once "$REGISTRY/pytorch-init:1" --base "$REGISTRY/python:3" --layer "$IMAGES/pytorch-init.tar"

  # Manifests: upstream's base (from the module), TFJob and PyTorchJob CRDs,
  # with our images and namespace.
  dir=$STATE/training-operator/manifests
  rm -rf "$dir"
  mkdir -p "$dir"
  cp -r "$moddir/manifests/base/." "$dir/"
  chmod -R u+w "$dir"
  cat >"$dir/namespace.yaml" <<EOF
apiVersion: v1
kind: Namespace
metadata:
  name: kubeflow
EOF
  cat >"$dir/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: kubeflow
resources:
  - namespace.yaml
  - crds/kubeflow.org_tfjobs.yaml
  - crds/kubeflow.org_pytorchjobs.yaml
  - rbac/cluster-role-binding.yaml
  - rbac/role.yaml
  - rbac/service-account.yaml
  - webhook
  - service.yaml
  - deployment.yaml
images:
  - name: kubeflow/training-operator
    newName: $REGISTRY/training-operator
    newTag: "$tag"
secretGenerator:
  - name: training-operator-webhook-cert
    options:
      disableNameSuffixHash: true
patches:
  - target:
      kind: Deployment
      name: training-operator
    patch: |-
      - op: add
        path: /spec/template/spec/containers/0/args
        value:
          - --pytorch-init-container-image=$REGISTRY/pytorch-init:1
          - --enable-scheme=tfjob
          - --enable-scheme=pytorchjob
EOF
  kubectl kustomize "$dir" >"$STATE/training-operator/rendered.yaml" 2>>"$LOGS/addons.log" ||
    die "kustomize of training-operator manifests failed (log $LOGS/addons.log)"
  kubectl apply --server-side --force-conflicts -f "$STATE/training-operator/rendered.yaml" >>"$LOGS/addons.log" 2>&1 ||
    { tail -n 20 "$LOGS/addons.log" >&2; die "applying training-operator manifests failed"; }
  wait_for "training-operator rollout" 240 - kubectl -n kubeflow rollout status deploy/training-operator --timeout=5s
  # The controller writes its own webhook certificate and CA bundle (cert-controller).
  wait_for "training-operator webhook CA bundle" 120 - \
    bash -c "[[ -n \$(\"$BIN/k8s\" kubectl --kubeconfig \"$STATE/kubeconfig\" get validatingwebhookconfiguration validator.training-operator.kubeflow.org -o jsonpath='{.webhooks[0].clientConfig.caBundle}') ]]"
}

# Kaniko: the executor is built from its Go module, pinned in tools/kaniko/go.mod.
# (`go list -m ...kaniko@latest` is refused by the proxy, an explicit version is not.)
KANIKO_VERSION=$(awk '$1=="require" && $2 ~ /kaniko$/ {print $3}' "$CLUSTER_DIR/tools/kaniko/go.mod")

build_kaniko() {
  go_build kaniko-executor "$CLUSTER_DIR/tools/kaniko" . \
    "-s -w -X github.com/GoogleContainerTools/kaniko/pkg/version.version=$KANIKO_VERSION"
}

install_kaniko() {
  local tag ref root
  tag=$(cut -c1-12 "$BIN/kaniko-executor.stamp")
  ref=$REGISTRY/kaniko-executor:$tag
  if ! python3 "$CLUSTER_DIR/imgtool.py" exists "$ref"; then
    # The layout of upstream's executor image (deploy/Dockerfile), without the
    # cloud credential helpers.
    root=$(mktemp -d)
    mkdir -p "$root/kaniko/ssl/certs" "$root/kaniko/.docker" "$root/etc" "$root/workspace" "$root/root"
    chmod 777 "$root/kaniko"
    cp "$BIN/kaniko-executor" "$root/kaniko/executor"
    cp /etc/ssl/certs/ca-certificates.crt "$root/kaniko/ssl/certs/"
    printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"  # /etc/hosts before DNS, as upstream's image
    echo '{}' >"$root/kaniko/.docker/config.json"
    tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$root" -cf "$IMAGES/kaniko-executor.tar" .
    rm -rf "$root"
    python3 "$CLUSTER_DIR/imgtool.py" push "$ref" --layer "$IMAGES/kaniko-executor.tar" \
      --entrypoint '["/kaniko/executor"]' --workdir /workspace \
      --env HOME=/root --env USER=root --env PATH=/usr/local/bin:/kaniko \
      --env SSL_CERT_DIR=/kaniko/ssl/certs --env DOCKER_CONFIG=/kaniko/.docker/ \
      >>"$LOGS/images.log" 2>&1 || die "pushing $ref failed"
    log "pushed $ref"
  fi
  echo "$ref" >"$STATE/kaniko-image"
}
