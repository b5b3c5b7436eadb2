# shellcheck shell=bash
# Certificates and tokens for the test cluster, made with openssl.
# One CA; serving certificates for the API server and kubelet; a client
# certificate for API server -> kubelet; a service-account key pair; static
# bearer tokens for the component identities and the admin user.

_cert() { # _cert NAME SUBJECT EXTFILE-CONTENT
  local name=$1 subj=$2 ext=$3
  [[ -s $PKI/$name.crt && -s $PKI/$name.key ]] && return 0
  openssl genrsa -out "$PKI/$name.key" 2048 2>/dev/null
  openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
  printf '%s\n' "$ext" >"$PKI/$name.ext"
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 3650 -sha256 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr"
}

_token() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

make_pki() {
  umask 077
  if [[ ! -s $PKI/ca.crt ]]; then
    openssl genrsa -out "$PKI/ca.key" 2048 2>/dev/null
    openssl req -x509 -new -key "$PKI/ca.key" -days 3650 -sha256 -subj "/CN=fairing-cluster-ca" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
      -out "$PKI/ca.crt" 2>/dev/null
  fi
  local san_api="DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.$CLUSTER_DOMAIN,DNS:localhost,IP:127.0.0.1,IP:$KUBE_SVC_IP,IP:$NODE_IP"
  local srv="basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth"
  local cli="basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
  _cert apiserver "/CN=kube-apiserver" "$srv
subjectAltName=$san_api"
  _cert kubelet "/CN=$NODE_NAME" "$srv
subjectAltName=DNS:$NODE_NAME,DNS:localhost,IP:$NODE_IP,IP:127.0.0.1"
  _cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "$cli"
  if [[ ! -s $PKI/sa.key ]]; then
    openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
    openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  fi
  # Static tokens: token,user,uid,"groups"
  if [[ ! -s $PKI/tokens.csv ]]; then
    {
      echo "$(_token),admin,admin,\"system:masters\""
      echo "$(_token),system:kube-controller-manager,kcm,"
      echo "$(_token),system:kube-scheduler,scheduler,"
      echo "$(_token),system:node:$NODE_NAME,kubelet,\"system:nodes\""
      echo "$(_token),system:kube-proxy,kube-proxy,"
    } >"$PKI/tokens.csv"
  fi
  umask 022
  chmod 644 "$PKI/ca.crt"
}

token_for() { awk -F, -v u="$1" '$2==u{print $1}' "$PKI/tokens.csv"; }

# write_kubeconfig FILE USER: a kubeconfig for a static-token identity.
write_kubeconfig() {
  local file=$1 user=$2 tok
  tok=$(token_for "$user")
  [[ -n $tok ]] || die "no token for $user"
  umask 077
  cat >"$file.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: fairing
  cluster:
    server: $APISERVER_URL
    certificate-authority-data: $(base64 -w0 <"$PKI/ca.crt")
users:
- name: $user
  user:
    token: $tok
contexts:
- name: fairing
  context:
    cluster: fairing
    user: $user
current-context: fairing
EOF
  mv "$file.tmp" "$file"
  umask 022
}
