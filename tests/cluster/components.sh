# shellcheck shell=bash
# Host setup, configuration files and start-up of each cluster component.

host_setup() {
  # The kubelet reads /dev/kmsg (OOM watcher); some sandboxes have none.
  [[ -e /dev/kmsg ]] || ln -s /dev/console /dev/kmsg
  # Mount propagation for pod volumes.
  mount --make-rshared / || die "mount --make-rshared / failed"
  mkdir -p /run/fairing-cluster
  netns_setup
  echo "$NETNS_PATH" >"$STATE/netns"
}

# netns_setup: the cluster's network namespace and the veth pair into it
# (idempotent; a namespace left by a killed cluster is reused).
netns_setup() {
  [[ -e $NETNS_PATH ]] || ip netns add "$NETNS" || die "cannot create network namespace $NETNS"
  if ! ip link show "$HOST_IF" >/dev/null 2>&1; then
    in_ns ip link del "$NODE_IF" 2>/dev/null || true
    ip link add "$HOST_IF" type veth peer name "$NODE_IF" netns "$NETNS" ||
      die "cannot create the veth pair $HOST_IF <-> $NETNS/$NODE_IF"
  fi
  # Host end: a link-local address only, and routes to the cluster's networks.
  ip addr replace "$HOST_LINK_IP/32" dev "$HOST_IF"
  ip link set "$HOST_IF" up
  local net
  for net in "$NODE_NET" "$SERVICE_CIDR" "$CLUSTER_CIDR"; do
    ip route replace "$net" dev "$HOST_IF" src "$HOST_LINK_IP"
  done
  # Namespace end: the node address; the host's link address is the default
  # route (components pick their addresses from it).
  in_ns ip link set lo up
  in_ns ip link set "$NODE_IF" up
  in_ns ip addr replace "$NODE_IP/32" dev "$NODE_IF"
  in_ns ip route replace "$HOST_LINK_IP/32" dev "$NODE_IF"
  in_ns ip route replace default via "$HOST_LINK_IP" dev "$NODE_IF"
  in_ns sysctl -qw net.ipv4.ip_forward=1
  [[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]] || modprobe br_netfilter 2>/dev/null || true
  if in_ns test -e /proc/sys/net/bridge/bridge-nf-call-iptables; then
    in_ns sysctl -qw net.bridge.bridge-nf-call-iptables=1
  fi
  # Nothing leaves the namespace but answers to the host: neither pods nor
  # components can open a connection out of it (the host opens them inwards).
  # In POSTROUTING, because only there is the outgoing interface the real one
  # for Service traffic (filter OUTPUT sees the interface chosen before DNAT).
  in_ns iptables -t mangle -N FAIRING-EGRESS 2>/dev/null || in_ns iptables -t mangle -F FAIRING-EGRESS
  in_ns iptables -t mangle -A FAIRING-EGRESS -o "$NODE_IF" -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
  in_ns iptables -t mangle -A FAIRING-EGRESS -o "$NODE_IF" -j DROP
  in_ns iptables -t mangle -C POSTROUTING -j FAIRING-EGRESS 2>/dev/null ||
    in_ns iptables -t mangle -I POSTROUTING 1 -j FAIRING-EGRESS
  return 0
}

start_registry() {
  if curl -fsS -m 2 "http://$REGISTRY/v2/" >/dev/null 2>&1; then
    log "registry already serving at $REGISTRY"
    return 0
  fi
  mkdir -p "$STATE/registry.d/data"
  write_config "$STATE/registry.d/config.yml" <<EOF
version: 0.1
log:
  level: info
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $STATE/registry.d/data
  delete:
    enabled: true
http:
  addr: $REGISTRY
EOF
  start_daemon registry /usr/bin/docker-registry serve "$STATE/registry.d/config.yml"
  wait_for "registry at $REGISTRY" 30 registry curl -fsS -m 2 "http://$REGISTRY/v2/"
}

start_etcd() {
  mkdir -p "$STATE/etcd"
  chmod 700 "$STATE/etcd"
  start_daemon etcd "$BIN/k8s" etcd --name fairing --data-dir "$STATE/etcd" \
    --listen-client-urls "$ETCD_CLIENT" --advertise-client-urls "$ETCD_CLIENT" \
    --listen-peer-urls "$ETCD_PEER" --initial-advertise-peer-urls "$ETCD_PEER" \
    --initial-cluster "fairing=$ETCD_PEER" --listen-metrics-urls "" \
    --unsafe-no-fsync --quota-backend-bytes 4294967296 --log-level warn
  wait_for "etcd health" 60 etcd in_ns curl -fsS -m 2 "$ETCD_CLIENT/health"
}

start_apiserver() {
  start_daemon kube-apiserver "$BIN/k8s" kube-apiserver \
    --advertise-address "$NODE_IP" --bind-address "$NODE_IP" --secure-port "$APISERVER_PORT" \
    --etcd-servers "$ETCD_CLIENT" \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --client-ca-file "$PKI/ca.crt" --token-auth-file "$PKI/tokens.csv" \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
    --service-account-issuer "https://kubernetes.default.svc.$CLUSTER_DOMAIN" \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority "$PKI/ca.crt" \
    --kubelet-preferred-address-types InternalIP \
    --allow-privileged=true --profiling=false --event-ttl 1h
  wait_for "kube-apiserver /readyz" 120 kube-apiserver \
    curl -fsS -m 3 --cacert "$PKI/ca.crt" -H "Authorization: Bearer $(token_for admin)" "$APISERVER_URL/readyz"
}

start_controllers() {
  start_daemon kube-controller-manager "$BIN/k8s" kube-controller-manager \
    --kubeconfig "$STATE/kcm.kubeconfig" \
    --authentication-kubeconfig "$STATE/kcm.kubeconfig" --authorization-kubeconfig "$STATE/kcm.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port 10257 --leader-elect=false \
    --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
    --use-service-account-credentials=true \
    --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" --cluster-cidr "$CLUSTER_CIDR" --allocate-node-cidrs=false \
    --profiling=false
  start_daemon kube-scheduler "$BIN/k8s" kube-scheduler \
    --kubeconfig "$STATE/scheduler.kubeconfig" \
    --authentication-kubeconfig "$STATE/scheduler.kubeconfig" --authorization-kubeconfig "$STATE/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port 10259 --leader-elect=false --profiling=false
  wait_for "kube-controller-manager /healthz" 60 kube-controller-manager in_ns curl -fsSk -m 2 https://127.0.0.1:10257/healthz
  wait_for "kube-scheduler /healthz" 60 kube-scheduler in_ns curl -fsSk -m 2 https://127.0.0.1:10259/healthz
}

write_containerd_config() {
  local d=$STATE/containerd h
  mkdir -p "$d/root" "$d/certs.d" /run/fairing-cluster/containerd "$STATE/cni/net.d" "$STATE/cni/ipam"
  write_config "$d/config.toml" containerd <<EOF
version = 2
root = "$d/root"
state = "/run/fairing-cluster/containerd"

[grpc]
  address = "$CONTAINERD_SOCK"

[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "$d/opt"
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "$PAUSE_IMAGE"
    # Sandboxes may lack CAP_SYS_RESOURCE, so oom_score_adj can only be raised:
    # clamp the kubelet's negative values (pause -998, Guaranteed pods) to ours.
    restrict_oom_score_adj = true
    enable_unprivileged_ports = false
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = false
          BinaryName = "/usr/sbin/runc"
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/usr/lib/cni"
      conf_dir = "$STATE/cni/net.d"
      max_conf_num = 1
    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = "$d/certs.d"
EOF
  # Registry hosts: the local registry over plain HTTP; well-known public
  # registries are mirrored to it (and only to it), so nothing leaves this machine.
  for h in "$REGISTRY" docker.io registry-1.docker.io registry.k8s.io k8s.gcr.io gcr.io quay.io ghcr.io; do
    mkdir -p "$d/certs.d/$h"
    write_config "$d/certs.d/$h/hosts.toml" <<EOF
server = "http://$REGISTRY"

[host."http://$REGISTRY"]
  capabilities = ["pull", "resolve", "push"]
  skip_verify = true
EOF
  done
  write_config "$STATE/cni/net.d/10-fairing.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "fairing",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$POD_BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$STATE/cni/ipam",
        "ranges": [[{"subnet": "$POD_CIDR"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
}

write_kubelet_config() {
  mkdir -p "$STATE/kubelet"
  write_config "$STATE/kubelet-config.yaml" kubelet <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: $PKI/ca.crt
authorization:
  mode: Webhook
tlsCertFile: $PKI/kubelet.crt
tlsPrivateKeyFile: $PKI/kubelet.key
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
imageServiceEndpoint: unix://$CONTAINERD_SOCK
clusterDNS: [$DNS_SVC_IP]
clusterDomain: $CLUSTER_DOMAIN
resolvConf: $STATE/resolv.conf
# Image GC off: it would delete the locally built pause image.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
imageMinimumGCAge: 876000h
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
serializeImagePulls: false
runtimeRequestTimeout: 10m
maxPods: 60
EOF
  # Pods with dnsPolicy Default get no upstream resolver: nothing leaves this machine.
  write_config "$STATE/resolv.conf" </dev/null
}

# containerd_cri_started: the CRI plugin has finished starting since containerd's
# last start (its last step is the streaming server; there is no CRI client here).
containerd_cri_started() {
  awk '/^==== .* starting: /{up=0} /msg="Start streaming server"/{up=1} END{exit !up}' "$LOGS/containerd.log"
}

start_node() {
  write_containerd_config
  start_daemon containerd /usr/bin/containerd --config "$STATE/containerd/config.toml"
  wait_for "containerd socket" 60 containerd ctr --address "$CONTAINERD_SOCK" version
  # The socket answers before the CRI plugin has recovered its state (longer after
  # an unclean stop), and a kubelet started then exits: wait for the CRI server.
  wait_for "containerd CRI server" 180 containerd containerd_cri_started
  write_kubelet_config
  start_daemon kubelet "$BIN/k8s" kubelet \
    --config "$STATE/kubelet-config.yaml" --kubeconfig "$STATE/kubelet.kubeconfig" \
    --root-dir "$STATE/kubelet" --hostname-override "$NODE_NAME" --node-ip "$NODE_IP"
  wait_for "kubelet /healthz" 120 kubelet in_ns curl -fsS -m 2 http://127.0.0.1:10248/healthz
  write_config "$STATE/kube-proxy-config.yaml" kube-proxy <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: $STATE/kube-proxy.kubeconfig
hostnameOverride: $NODE_NAME
mode: iptables
oomScoreAdj: 0
clusterCIDR: $CLUSTER_CIDR
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: ["$NODE_IP/32"]
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
EOF
  start_daemon kube-proxy "$BIN/k8s" kube-proxy --config "$STATE/kube-proxy-config.yaml"
  wait_for "kube-proxy /healthz" 60 kube-proxy in_ns curl -fsS -m 2 http://127.0.0.1:10256/healthz
  wait_for "node $NODE_NAME Ready" 180 kubelet \
    kubectl wait --for=condition=Ready "node/$NODE_NAME" --timeout=5s
}

install_addons() {
  local mhash
  mhash=$(cat "$CLUSTER_DIR/manifests/coredns.yaml" <(echo "$COREDNS_IMAGE") | sha256sum | cut -c1-16)
  sed -e "s|@COREDNS_IMAGE@|$COREDNS_IMAGE|g" -e "s|@DNS_SVC_IP@|$DNS_SVC_IP|g" \
    -e "s|@CLUSTER_DOMAIN@|$CLUSTER_DOMAIN|g" -e "s|@MANIFEST_HASH@|$mhash|g" \
    "$CLUSTER_DIR/manifests/coredns.yaml" | kubectl apply -f - >>"$LOGS/addons.log" 2>&1 ||
    { tail -n 20 "$LOGS/addons.log" >&2; die "applying CoreDNS manifests failed"; }
  wait_for "CoreDNS rollout" 180 - kubectl -n kube-system rollout status deploy/coredns --timeout=5s
}

smoke_pod() {
  kubectl delete pod -n default fairing-smoke --ignore-not-found --wait=true >/dev/null 2>&1 || true
  kubectl run -n default fairing-smoke --image "$REGISTRY/python:3" --restart Never \
    --command -- python3 -c 'print("fairing smoke ok")' >>"$LOGS/addons.log" 2>&1 || die "creating smoke pod failed"
  if ! wait_for "smoke pod Succeeded" 180 - \
    kubectl -n default wait --for=jsonpath='{.status.phase}'=Succeeded pod/fairing-smoke --timeout=5s; then
    kubectl -n default describe pod fairing-smoke >&2
    exit 1
  fi
  local out
  out=$(kubectl -n default logs fairing-smoke)
  [[ $out == "fairing smoke ok" ]] || die "smoke pod logs: '$out'"
  log "smoke pod logs: $out"
  kubectl delete pod -n default fairing-smoke --wait=false >/dev/null 2>&1 || true
}
