# shellcheck shell=bash
# Katib (hyperparameter search) in the test cluster: the katib-controller (Experiment,
# Suggestion and Trial controllers, its webhooks, its own webhook certificate), the
# katib-db-manager, the Go suggestion service (goptuna: random, tpe, cmaes, sobol) and
# the file metrics collector (the StdOut collector's sidecar), each built from the
# github.com/kubeflow/katib module pinned in tools/katib/go.mod; its manifests come
# from the same module (manifests/v1beta1, the standalone-postgres install). The
# database is PostgreSQL from Debian's packages, in an image made here with mmdebstrap.
# Needs kubeflow2.sh (_mod_version, _mod_dir, _controller_image, _apply).

KATIB_MODULE=github.com/kubeflow/katib
KATIB_NAMESPACE=kubeflow
# The algorithms the goptuna service serves (pkg/suggestion/v1beta1/goptuna).
KATIB_ALGORITHMS=(random tpe cmaes sobol)
KATIB_PG_SUITE=bookworm
KATIB_PG_PACKAGE=postgresql-15

build_katib() {
  local tool=$CLUSTER_DIR/tools/katib
  go_build katib-controller "$tool" "$KATIB_MODULE/cmd/katib-controller/v1beta1"
  go_build katib-db-manager "$tool" "$KATIB_MODULE/cmd/db-manager/v1beta1"
  go_build katib-goptuna "$tool" "$KATIB_MODULE/cmd/suggestion/goptuna/v1beta1"
  go_build katib-metrics-collector "$tool" "$KATIB_MODULE/cmd/metricscollector/v1beta1/file-metricscollector"
}

# The PostgreSQL server's entrypoint: a first start makes the cluster, the katib role
# and database (from the Secret's POSTGRES_* variables); then the server, in front.
_KATIB_PG_ENTRY='#!/bin/sh
set -eu
bin=/usr/lib/postgresql/15/bin
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pw=$(mktemp)
  printf "%s" "$POSTGRES_PASSWORD" >"$pw"
  "$bin/initdb" -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pw" -A scram-sha-256 --no-sync >/dev/null
  rm -f "$pw"
  echo "host all all 0.0.0.0/0 scram-sha-256" >>"$PGDATA/pg_hba.conf"
  "$bin/postgres" --single -D "$PGDATA" postgres <<EOF >/dev/null
CREATE DATABASE $POSTGRES_DB;
EOF
fi
exec "$bin/postgres" -D "$PGDATA" -c listen_addresses=0.0.0.0 -c unix_socket_directories=/tmp -c fsync=off -c jit=off -c shared_buffers=16MB'

# What the server does not use (the JIT's LLVM, the Perl of postgresql-common's scripts):
# about half of the packages' 370 MB. The server runs with jit=off.
_KATIB_PG_TRIM='rm -rf "$1"/usr/lib/x86_64-linux-gnu/libLLVM* "$1"/usr/lib/x86_64-linux-gnu/libz3* "$1"/usr/lib/postgresql/15/lib/bitcode "$1"/usr/lib/postgresql/15/lib/llvmjit* "$1"/usr/lib/x86_64-linux-gnu/perl "$1"/usr/share/perl "$1"/usr/lib/x86_64-linux-gnu/libperl*'

# _katib_pg_image: the PostgreSQL image (mmdebstrap of Debian's package, one layer plus
# the entrypoint), pushed once; prints its reference (tagged by its recipe).
_katib_pg_image() {
  local key ref root layer
  key=$(printf '%s\n' "$KATIB_PG_SUITE" "$KATIB_PG_PACKAGE" "$_KATIB_PG_ENTRY" "$_KATIB_PG_TRIM" v1 | sha256sum | cut -c1-12)
  ref=$REGISTRY/katib-postgres:$key
  if python3 "$CLUSTER_DIR/imgtool.py" exists "$ref"; then
    echo "$ref"
    return 0
  fi
  mkdir -p "$IMAGES"
  layer=$IMAGES/katib-postgres-$key.tar
  if [[ ! -s $layer ]]; then
    log "building the PostgreSQL image ($KATIB_PG_PACKAGE from Debian $KATIB_PG_SUITE, log $LOGS/katib-postgres.log)"
    SOURCE_DATE_EPOCH=0 mmdebstrap --variant=minbase --format=tar --include="$KATIB_PG_PACKAGE" \
      --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/usr/share/doc/* "$1"/usr/share/man/* "$1"/usr/share/locale/* "$1"/var/lib/postgresql/*' \
      --customize-hook='echo "katib-postgres:x:65532:65532::/tmp:/bin/sh" >>"$1/etc/passwd"; echo "katib-postgres:x:65532:" >>"$1/etc/group"' \
      --customize-hook="$_KATIB_PG_TRIM" \
      "$KATIB_PG_SUITE" "$layer.new" http://deb.debian.org/debian >>"$LOGS/katib-postgres.log" 2>&1 ||
      { tail -n 20 "$LOGS/katib-postgres.log" >&2; die "mmdebstrap of $KATIB_PG_PACKAGE failed (log $LOGS/katib-postgres.log)"; }
    mv "$layer.new" "$layer"
  fi
  root=$(mktemp -d)
  printf '%s\n' "$_KATIB_PG_ENTRY" >"$root/entry"
  chmod 0755 "$root/entry"
  files_layer "$IMAGES/katib-postgres-entry.tar" "$root/entry:usr/local/bin/katib-postgres"
  rm -rf "$root"
  python3 "$CLUSTER_DIR/imgtool.py" push "$ref" --layer "$layer" --layer "$IMAGES/katib-postgres-entry.tar" \
    --entrypoint '["/usr/local/bin/katib-postgres"]' --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 >>"$LOGS/images.log" 2>&1 || die "pushing $ref failed"
  log "pushed $ref"
  echo "$ref"
}

install_katib() {
  local moddir version ctl db sugg mc pg dir alg suggestions=""
  moddir=$(_mod_dir katib "$KATIB_MODULE")
  version=$(_mod_version katib "$KATIB_MODULE")
  ctl=$(_controller_image katib-controller)
  db=$(_controller_image katib-db-manager)
  sugg=$(_controller_image katib-goptuna)
  mc=$(_controller_image katib-metrics-collector)
  pg=$(_katib_pg_image)
  dir=$STATE/katib/manifests
  rm -rf "$dir"
  mkdir -p "$dir"
  cp -r "$moddir/manifests/v1beta1/." "$dir/"
  chmod -R u+w "$dir"
  for alg in "${KATIB_ALGORITHMS[@]}"; do
    suggestions+="    - algorithmName: $alg
      image: $sugg
      resources: {requests: {cpu: 10m, memory: 32Mi}, limits: {memory: 256Mi}}
"
  done
  # Only images built here: the Go suggestion service for the algorithms it serves, the
  # StdOut/File collector; the controller writes its own webhook certificate.
  cat >"$dir/katib-config.yaml" <<EOT
apiVersion: config.kubeflow.org/v1beta1
kind: KatibConfig
init:
  certGenerator:
    enable: true
  controller:
    webhookPort: 8443
    trialResources:
      - Job.v1.batch
runtime:
  metricsCollectors:
    - kind: StdOut
      image: $mc
      resources: {requests: {cpu: 5m, memory: 16Mi}, limits: {memory: 128Mi}}
    - kind: File
      image: $mc
      resources: {requests: {cpu: 5m, memory: 16Mi}, limits: {memory: 128Mi}}
  suggestions:
$suggestions
EOT
  # upstream's katib-standalone-postgres without the UI; PostgreSQL on an emptyDir (the
  # test cluster has no volume provisioner: the observation logs live as long as its pod).
  # As upstream, Experiments run in namespaces labelled
  # katib.kubeflow.org/metrics-collector-injection=enabled (a Kubeflow profile's are).
  cat >"$dir/kustomization.yaml" <<EOT
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: $KATIB_NAMESPACE
resources:
  - components/namespace
  - components/controller
  - components/crd
  - components/db-manager
  - components/postgres/postgres.yaml
  - components/postgres/secret.yaml
  - components/postgres/service.yaml
  - components/webhook
images:
  - name: ghcr.io/kubeflow/katib/katib-controller
    newName: ${ctl%:*}
    newTag: "${ctl##*:}"
  - name: ghcr.io/kubeflow/katib/katib-db-manager
    newName: ${db%:*}
    newTag: "${db##*:}"
  - name: postgres
    newName: ${pg%:*}
    newTag: "${pg##*:}"
configMapGenerator:
  - name: katib-config
    behavior: create
    files:
      - katib-config.yaml
    options:
      disableNameSuffixHash: true
secretGenerator:
  - name: katib-webhook-cert
    options:
      disableNameSuffixHash: true
patches:
  - target: {kind: Deployment, name: katib-controller}
    patch: |-
      - op: replace
        path: /spec/template/spec/containers/0/command
        value: ["/manager"]
      - op: add
        path: /spec/template/spec/containers/0/resources
        value: $_SMALL_RESOURCES
  - target: {kind: Deployment, name: katib-db-manager}
    patch: |-
      - op: replace
        path: /spec/template/spec/containers/0/command
        value: ["/manager"]
      - op: replace
        path: /spec/template/spec/containers/0/env
        value: [{"name": "DB_NAME", "value": "postgres"}, {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "katib-postgres-secrets", "key": "POSTGRES_PASSWORD"}}}]
      - op: add
        path: /spec/template/spec/containers/0/resources
        value: {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "256Mi"}}
  - target: {kind: Deployment, name: katib-postgres}
    patch: |-
      - op: replace
        path: /spec/template/spec/volumes/0
        value: {"name": "katib-postgres", "emptyDir": {}}
      - op: add
        path: /spec/template/spec/containers/0/resources
        value: {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "512Mi"}}
      - op: add
        path: /spec/template/spec/securityContext
        value: {"runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532}
EOT
  _apply katib "$dir"
  wait_for "katib-postgres rollout" 240 - kubectl -n "$KATIB_NAMESPACE" rollout status deploy/katib-postgres --timeout=5s
  wait_for "katib-db-manager rollout" 240 - kubectl -n "$KATIB_NAMESPACE" rollout status deploy/katib-db-manager --timeout=5s
  wait_for "katib-controller rollout" 240 - kubectl -n "$KATIB_NAMESPACE" rollout status deploy/katib-controller --timeout=5s
  _wait_ca_bundle katib mutatingwebhookconfiguration katib.kubeflow.org
  log "katib $version: algorithms ${KATIB_ALGORITHMS[*]}"
}
