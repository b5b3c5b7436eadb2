# shellcheck shell=bash
# Installing Debian packages and building the Go binaries and local images.

APT_PACKAGES=(ca-certificates curl containerd runc containernetworking-plugins iptables conntrack docker-registry mmdebstrap openssl iproute2 util-linux)

ensure_packages() {
  local missing=() p
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if ((${#missing[@]})); then
    log "installing Debian packages: ${missing[*]}"
    apt-get -o DPkg::Lock::Timeout=900 update >>"$LOGS/apt.log" 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y --no-install-recommends \
      "${missing[@]}" >>"$LOGS/apt.log" 2>&1 || { tail -n 30 "$LOGS/apt.log" >&2; die "apt-get install failed (log $LOGS/apt.log)"; }
  fi
  if ! command -v go >/dev/null && [[ -x /usr/local/go/bin/go ]]; then
    export PATH=$PATH:/usr/local/go/bin
  fi
  command -v go >/dev/null || die "Go toolchain not found in PATH (need go >= 1.25)"
}

# _stamp DIR...: a hash of the sources that go into a build.
_stamp() {
  (
    go version
    local p
    for p in "$@"; do if [[ -e $p ]]; then echo "$p"; fi; done | tr '\n' '\0' | xargs -0 -r -I{} find {} -type f \( -name '*.go' -o -name go.mod -o -name go.sum \) -print0 | sort -z | xargs -0 sha256sum
  ) | sha256sum | cut -d' ' -f1
}

k8s_ldflags() {
  local p ld="-s -w" date
  # The release time the module proxy records for the tag (its .info file).
  date=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" 2>/dev/null |
    python3 -c 'import json,sys; print(json.load(open(json.load(sys.stdin)["Info"]))["Time"][:19]+"Z")' 2>/dev/null ||
    echo 1970-01-01T00:00:00Z)
  local minor=${K8S_VERSION#v1.}
  minor=${minor%%.*}
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.gitCommit= -X $p.buildDate=$date"
  done
  echo "$ld"
}

# go_build NAME MODDIR PKG [LDFLAGS]: queues the build of $BIN/NAME unless its
# stamp is current; go_build_queued runs the queue.
_BUILD_QUEUE=()
go_build() {
  local name=$1 moddir=$2 pkg=$3 ldflags=${4:-"-s -w"} stamp
  stamp=$( (cd "$moddir" && _stamp go.mod go.sum "$pkg") | cat - <(echo "$ldflags") | sha256sum | cut -d' ' -f1)
  if [[ -x $BIN/$name && -f $BIN/$name.stamp && $(<"$BIN/$name.stamp") == "$stamp" ]]; then
    log "build $name: up to date"
    return 0
  fi
  _BUILD_QUEUE+=("$name"$'\t'"$moddir"$'\t'"$pkg"$'\t'"$ldflags"$'\t'"$stamp")
}

# go_build_queued: runs the queued builds at the same time, in one process group
# (run_build). One `go build` does not keep two cores busy (its link step and the
# module downloads are single-threaded), so independent builds overlap: measured
# cold on 2 cores, all five together take less wall time than one after another.
go_build_queued() {
  ((${#_BUILD_QUEUE[@]})) || return 0
  local entry name moddir pkg ldflags stamp script="" names=() t0 rc
  for entry in "${_BUILD_QUEUE[@]}"; do
    IFS=$'\t' read -r name moddir pkg ldflags stamp <<<"$entry"
    names+=("$name")
    rm -f "$RUN/build-$name.rc"
    log "building $name from $pkg (log $LOGS/build-$name.log)"
    # A module download the network drops ("connection abort", a TLS or i/o timeout from the
    # module proxy) fails the build without a word about the code: tried up to three times
    # (what was downloaded stays in the module cache), any other failure at once.
    script+="(t=\$(date +%s); rc=1; for try in 1 2 3; do env -C $(printf %q "$moddir") CGO_ENABLED=0 go build"
    script+=" -buildvcs=false -trimpath -ldflags $(printf %q "$ldflags") -o $(printf %q "$BIN/$name.new") $(printf %q "$pkg")"
    script+=" >$(printf %q "$LOGS/build-$name.log") 2>&1 && { rc=0; break; };"
    script+=" grep -qE 'proxy.golang.org|dial tcp|connection (abort|reset|refused)|TLS handshake|i/o timeout|unexpected EOF'"
    script+=" $(printf %q "$LOGS/build-$name.log") && [ \$try -lt 3 ] || break;"
    script+=" cp $(printf %q "$LOGS/build-$name.log") $(printf %q "$LOGS/build-$name.try\$try.log"); sleep 10; done;"
    # Each binary and its stamp are kept as soon as it is built: an interrupted
    # run keeps what finished.
    script+=" [ \$rc = 0 ] && mv $(printf %q "$BIN/$name.new") $(printf %q "$BIN/$name")"
    script+=" && echo $stamp >$(printf %q "$BIN/$name.stamp")"
    script+="; echo \$? \$((\$(date +%s) - t)) >$(printf %q "$RUN/build-$name.rc")) &"$'\n'
  done
  script+="wait"
  t0=$(date +%s)
  run_build "$LOGS/build.log" bash -c "$script" || die "the builds were interrupted (log $LOGS/build.log)"
  for entry in "${_BUILD_QUEUE[@]}"; do
    IFS=$'\t' read -r name moddir pkg ldflags stamp <<<"$entry"
    read -r rc secs <"$RUN/build-$name.rc" || rc=1
    if [[ $rc != 0 ]]; then
      tail -n 30 "$LOGS/build-$name.log" >&2
      die "go build of $name failed (log $LOGS/build-$name.log)"
    fi
    log "built $name in ${secs}s"
  done
  log "built ${names[*]} in $(($(date +%s) - t0))s (together)"
  _BUILD_QUEUE=()
}

build_all() {
  go_build pause "$CLUSTER_DIR" ./cmd/pause
  go_build k8s "$CLUSTER_DIR" ./cmd/k8s "$(k8s_ldflags)"
  go_build coredns "$CLUSTER_DIR/tools/coredns" .
  if [[ ${FAIRING_CLUSTER_SKIP_OPERATORS:-0} != 1 ]]; then
    go_build training-operator "$CLUSTER_DIR/tools/training-operator" github.com/kubeflow/training-operator/cmd/training-operator.v1
    build_kaniko
    build_kubeflow2
    build_kueue
    build_katib
  fi
  go_build_queued
}

# push_image REF ARGS...: imgtool push unless REF already exists in the registry.
push_image_once() {
  local ref=$1
  shift
  if python3 "$CLUSTER_DIR/imgtool.py" exists "$ref"; then
    return 0
  fi
  python3 "$CLUSTER_DIR/imgtool.py" push "$ref" "$@" >>"$LOGS/images.log" 2>&1 ||
    { tail -n 20 "$LOGS/images.log" >&2; die "pushing $ref failed"; }
  log "pushed $ref"
}

# single_file_layer OUT.tar SRC:DEST...: a tar layer holding the given files.
files_layer() {
  local out=$1 root
  shift
  root=$(mktemp -d)
  local spec src dest
  for spec in "$@"; do
    src=${spec%%:*}
    dest=${spec#*:}
    mkdir -p "$root/$(dirname "$dest")"
    cp -a "$src" "$root/$dest"
  done
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$root" -cf "$out" .
  rm -rf "$root"
}

build_images() {
  local stamp
  # pause: one static binary
  stamp=$(<"$BIN/pause.stamp")
  if [[ ! -f $IMAGES/pause.$stamp.tar ]] || ! python3 "$CLUSTER_DIR/imgtool.py" exists "$PAUSE_IMAGE"; then
    files_layer "$IMAGES/pause.$stamp.tar" "$BIN/pause:pause"
    python3 "$CLUSTER_DIR/imgtool.py" push "$PAUSE_IMAGE" --layer "$IMAGES/pause.$stamp.tar" \
      --entrypoint '["/pause"]' >>"$LOGS/images.log" 2>&1 || die "pushing pause image failed"
    log "pushed $PAUSE_IMAGE"
  fi
  # coredns, tagged by its source stamp so a rebuild rolls the Deployment
  COREDNS_IMAGE=$REGISTRY/coredns:$(cut -c1-12 "$BIN/coredns.stamp")
  if ! python3 "$CLUSTER_DIR/imgtool.py" exists "$COREDNS_IMAGE"; then
    files_layer "$IMAGES/coredns.tar" "$BIN/coredns:coredns"
    python3 "$CLUSTER_DIR/imgtool.py" push "$COREDNS_IMAGE" --layer "$IMAGES/coredns.tar" \
      --entrypoint '["/coredns"]' >>"$LOGS/images.log" 2>&1 || die "pushing coredns image failed"
    log "pushed $COREDNS_IMAGE"
  fi
  # python3 base (Debian minbase), also served as docker.io/library/python:3 through the mirror
  if [[ ! -s $IMAGES/python-rootfs.tar ]]; then
    log "mmdebstrap python3 rootfs (log $LOGS/mmdebstrap.log)"
    mmdebstrap --format=tar --variant=minbase --include=python3,ca-certificates bookworm "$IMAGES/python-rootfs.tar.tmp" \
      >>"$LOGS/mmdebstrap.log" 2>&1 || { tail -n 30 "$LOGS/mmdebstrap.log" >&2; die "mmdebstrap failed"; }
    mv "$IMAGES/python-rootfs.tar.tmp" "$IMAGES/python-rootfs.tar"
  fi
  push_image_once "$REGISTRY/python:3" --layer "$IMAGES/python-rootfs.tar" --cmd '["python3"]' \
    --env PYTHONUNBUFFERED=1
  push_image_once "$REGISTRY/library/python:3" --base "$REGISTRY/python:3"
}
