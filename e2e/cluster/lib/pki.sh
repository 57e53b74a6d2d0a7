# shellcheck shell=bash
# Certificates and kubeconfigs for the project's control planes (e2e/cluster/cluster.sh and
# e2e/bench/controlplane.sh). Every function writes into the directory "$PKI".

# pki_ca NAME CN: a self-signed CA (ECDSA P-256)
pki_ca() {
  openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -keyout "$PKI/$1.key" -out "$PKI/$1.crt" -days 3650 -subj "/CN=$2" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    2>/dev/null
}

# pki_cert NAME SUBJECT EXTENDED_KEY_USAGE [SUBJECT_ALT_NAMES] [CA]: a leaf signed by CA (default ca)
pki_cert() {
  local name=$1 subj=$2 eku=$3 sans=${4:-} ca=${5:-ca}
  openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -keyout "$PKI/$name.key" -out "$PKI/$name.csr" -subj "$subj" 2>/dev/null
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$eku"
    [[ -z $sans ]] || echo "subjectAltName=$sans"
  } >"$PKI/$name.ext"
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/$ca.crt" -CAkey "$PKI/$ca.key" -CAcreateserial \
    -days 365 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$PKI/$name.ext"
}

# pki_kubeconfig FILE CERT SERVER CLUSTER_NAME: a kubeconfig for the client cert CERT, certs embedded
pki_kubeconfig() {
  local file=$1 cert=$2 server=$3 cluster=$4
  cat >"$file" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: $cluster
  cluster:
    server: $server
    certificate-authority-data: $(base64 -w0 "$PKI/ca.crt")
users:
- name: $cert
  user:
    client-certificate-data: $(base64 -w0 "$PKI/$cert.crt")
    client-key-data: $(base64 -w0 "$PKI/$cert.key")
contexts:
- name: $cluster
  context:
    cluster: $cluster
    user: $cert
current-context: $cluster
KUBECONFIG
  chmod 0600 "$file"
}
