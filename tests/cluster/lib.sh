# shellcheck shell=bash
# Shared settings and helpers for tests/cluster/{up,down,status}.
# Everything the cluster writes at run time lives under $STATE (never in git).

CLUSTER_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STATE=${FAIRING_CLUSTER_STATE:-/var/lib/fairing-cluster}
LOGS=$STATE/logs
RUN=$STATE/run
BIN=$STATE/bin
PKI=$STATE/pki
IMAGES=$STATE/images

K8S_VERSION=$(awk '$1=="k8s.io/kubernetes"{print $2}' "$CLUSTER_DIR/go.mod" | head -n1)

# Network layout. The whole cluster (registry, etcd, control plane, containerd
# and its pod bridge, kubelet, kube-proxy, CoreDNS) lives in a network namespace
# of its own, $NETNS. The host reaches it through a veth pair whose host end has
# only a link-local address (169.254.0.0/16: no private-range address and no
# iptables rule of the cluster in the host's namespace); `down` deletes the
# namespace and with it everything the cluster added to the network.
NETNS=fairing-cluster
NETNS_PATH=/run/netns/$NETNS
HOST_IF=fairing-h
HOST_LINK_IP=169.254.200.2
NODE_NAME=fairing-node
NODE_IF=fairing0
NODE_IP=${FAIRING_CLUSTER_NODE_IP:-10.200.0.1}
NODE_NET=${NODE_IP%.*}.0/24
POD_BRIDGE=fairing-cni0
POD_CIDR=10.244.0.0/24
CLUSTER_CIDR=10.244.0.0/16
SERVICE_CIDR=10.96.0.0/16
KUBE_SVC_IP=10.96.0.1
DNS_SVC_IP=10.96.0.10
CLUSTER_DOMAIN=cluster.local
APISERVER_PORT=6443
APISERVER_URL=https://$NODE_IP:$APISERVER_PORT
ETCD_CLIENT=http://127.0.0.1:23790
ETCD_PEER=http://127.0.0.1:23800
REGISTRY=${FAIRING_CLUSTER_REGISTRY:-$NODE_IP:5000}
CONTAINERD_SOCK=/run/fairing-cluster/containerd.sock
PAUSE_IMAGE=$REGISTRY/pause:3.10

# Component order: started left to right, stopped right to left.
COMPONENTS=(registry etcd kube-apiserver containerd kube-controller-manager kube-scheduler kubelet kube-proxy)

mkdir -p "$LOGS" "$RUN" "$BIN" "$PKI" "$IMAGES"
UP_LOG=$LOGS/up.log

log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" | tee -a "$UP_LOG" >&2; }
die() {
  log "ERROR: $*"
  exit 1
}

# Phase timing: phase NAME starts a phase (ending the previous one).
_PHASE=""
_PHASE_T0=0
phase() {
  local now
  now=$(date +%s)
  if [[ -n $_PHASE ]]; then
    log "phase '$_PHASE' took $((now - _PHASE_T0))s"
  fi
  _PHASE=$1
  _PHASE_T0=$now
  [[ -n $_PHASE ]] && log "phase '$_PHASE' started"
  return 0
}

tail_log() { # tail_log NAME: show the end of a component log on stderr
  local f=$LOGS/$1.log
  [[ -f $f ]] && { echo "---- last 40 lines of $f ----" >&2; tail -n 40 "$f" >&2; echo "----" >&2; }
  return 0
}

# pid_of NAME: prints the PID if the component is running (PID file + live process).
pid_of() {
  local f=$RUN/$1.pid pid
  [[ -f $f ]] || return 1
  pid=$(<"$f")
  [[ -n $pid && -d /proc/$pid ]] || return 1
  # A zombie or recycled PID is not ours: check the recorded start time.
  [[ -f $RUN/$1.start && $(<"$RUN/$1.start") == "$(proc_start "$pid")" ]] || return 1
  [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]] || return 1
  echo "$pid"
}

# _alive PID: the process exists and is not a zombie waiting to be reaped.
_alive() {
  local st
  st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ -n $st && $st != Z ]]
}

proc_start() { awk '{print $22}' "/proc/$1/stat" 2>/dev/null; }

# run_build LOG CMD...: runs CMD (a build) as the leader of a process group of
# its own that dies with this script: on SIGTERM/SIGINT (the trap in `up`), on a
# failure exit, and on SIGKILL of this script (the parent-death signal), the
# group is killed, so no half-done `go build` or compiler is left running.
# Returns CMD's exit status; output goes to LOG.
BUILD_PGID=""
run_build() {
  local out=$1 rc=0
  shift
  setsid setpriv --pdeathsig TERM -- bash -c \
    'trap "trap - TERM INT HUP; kill -TERM -- -\$\$ 2>/dev/null; exit 143" TERM INT HUP; "$@" & wait $!' \
    run_build "$@" >"$out" 2>&1 </dev/null 9>&- &
  BUILD_PGID=$!
  wait "$BUILD_PGID" || rc=$?
  BUILD_PGID=""
  return $rc
}

# kill_build: ends the build running under run_build, if any (from traps).
kill_build() {
  [[ -n $BUILD_PGID ]] && kill -TERM -- "-$BUILD_PGID" 2>/dev/null
  BUILD_PGID=""
  return 0
}

# in_ns CMD...: runs CMD in the cluster's network namespace (only the network:
# the mount namespace stays the host's, so the kubelet's volume mounts are seen
# by containerd and by `down`).
in_ns() { nsenter --net="$NETNS_PATH" "$@"; }

# start_daemon NAME CMD...: runs CMD in its own session, in the cluster's
# network namespace, logging to $LOGS/NAME.log.
start_daemon() {
  local name=$1 pid
  shift
  if pid=$(pid_of "$name"); then
    if [[ $(readlink "/proc/$pid/exe" 2>/dev/null) == *" (deleted)" ]]; then
      log "$name (pid $pid) runs a binary that was rebuilt: restarting it"
      stop_component "$name"
    else
      log "$name already running (pid $pid)"
      return 0
    fi
  fi
  echo "==== $(date -u +%FT%TZ) starting: $*" >>"$LOGS/$name.log"
  setsid nsenter --net="$NETNS_PATH" "$@" >>"$LOGS/$name.log" 2>&1 </dev/null 9>&- &
  pid=$!
  echo "$pid" >"$RUN/$name.pid"
  sleep 0.2
  proc_start "$pid" >"$RUN/$name.start"
  log "started $name (pid $pid, log $LOGS/$name.log)"
}

# wait_for DESCRIPTION TIMEOUT COMPONENT CMD...: polls CMD until it succeeds.
wait_for() {
  local what=$1 timeout=$2 comp=$3 t0
  shift 3
  t0=$(date +%s)
  until "$@" >/dev/null 2>&1; do
    if [[ -n $comp && $comp != - ]] && ! pid_of "$comp" >/dev/null; then
      tail_log "$comp"
      die "$comp exited while waiting for $what (log: $LOGS/$comp.log)"
    fi
    if (($(date +%s) - t0 > timeout)); then
      [[ -n $comp && $comp != - ]] && tail_log "$comp"
      die "timed out after ${timeout}s waiting for $what"
    fi
    sleep 1
  done
  log "ready: $what ($(($(date +%s) - t0))s)"
}

kubectl() { "$BIN/k8s" kubectl --kubeconfig "$STATE/kubeconfig" "$@"; }

# stop_pid NAME: TERM, wait, then KILL the recorded process and its session.
stop_component() {
  local name=$1 pid i
  if ! pid=$(pid_of "$name"); then
    rm -f "$RUN/$name.pid" "$RUN/$name.start"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    _alive "$pid" || break
    sleep 0.1
  done
  if _alive "$pid"; then
    log "$name (pid $pid) ignored SIGTERM for 10s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.5
  fi
  rm -f "$RUN/$name.pid" "$RUN/$name.start"
  log "stopped $name (pid $pid)"
}

# write_config FILE [COMPONENT]: writes stdin to FILE only when the content
# differs (some components exit when their config file is touched); when it
# did differ and COMPONENT runs, COMPONENT is stopped so that up restarts it.
write_config() {
  local file=$1 comp=${2:-} tmp
  tmp=$(mktemp "$file.XXXXXX")
  cat >"$tmp"
  if [[ -f $file ]] && cmp -s "$tmp" "$file"; then
    rm -f "$tmp"
    return 0
  fi
  mv "$tmp" "$file"
  chmod 644 "$file"
  if [[ -n $comp ]] && pid_of "$comp" >/dev/null; then
    log "$file changed: restarting $comp"
    stop_component "$comp"
  fi
}
