#!/bin/sh
# pki.sh: makes a throwaway demo PKI (CA, broker, device, viewer, and a rogue CA with its device) with openssl; does nothing if DIR/ca.crt exists.
#
# usage: sh tools/pki.sh DIR [DEVICE_ID]
#   DIR/ca.key, ca.crt                 "guardian demo CA"
#   DIR/broker.key, broker.crt         CN localhost, SAN DNS:localhost IP:127.0.0.1 IP:::1, serverAuth
#   DIR/device.key, device.crt         CN DEVICE_ID (default demo-01), clientAuth
#   DIR/viewer.key, viewer.crt         CN viewer, clientAuth (the subscriber that shows telemetry)
#   DIR/rogue-ca.key, rogue-ca.crt     another CA, "guardian rogue CA"
#   DIR/rogue-device.key, .crt         CN DEVICE_ID, clientAuth, signed by the rogue CA
# All keys are EC P-256, mode 0600; certificates are valid for 30 days.
# Quiet on success; on failure prints the step and openssl's output, exits 1.
set -eu

DAYS=30

if [ $# -lt 1 ] || [ $# -gt 2 ] || [ -z "$1" ]; then
	echo "usage: pki.sh DIR [DEVICE_ID]" >&2
	exit 2
fi
DIR=$1
DEVICE_ID=${2:-demo-01}
case $DEVICE_ID in
*[!A-Za-z0-9._-]* | "")
	echo "pki.sh: device id \"$DEVICE_ID\": expected letters, digits, '.', '_' or '-'" >&2
	exit 2
	;;
esac

[ -f "$DIR/ca.crt" ] && exit 0
command -v openssl >/dev/null 2>&1 || {
	echo "pki.sh: openssl not found (apt-get install openssl)" >&2
	exit 1
}
mkdir -p "$DIR"
# Everything is made in a scratch directory and moved in at the end, ca.crt
# last, so a run that fails half-way leaves no ca.crt and the next run starts over.
TMP=$(mktemp -d "$DIR/.pki.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
trap 'exit 1' INT TERM HUP
LOG=$TMP/openssl.log
umask 077

# run STEP COMMAND...: runs COMMAND with its output in the log; on failure shows it.
run() {
	step=$1
	shift
	if ! "$@" >>"$LOG" 2>&1; then
		echo "pki.sh: $step failed: $*" >&2
		cat "$LOG" >&2
		exit 1
	fi
}

# A config of our own, so the result does not depend on the system openssl.cnf.
cat >"$TMP/openssl.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF

key() {
	run "key $1" openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
		-out "$TMP/$1.key"
	chmod 600 "$TMP/$1.key"
}

# ca NAME CN: a self-signed CA.
ca() {
	key "$1"
	run "certificate $1" openssl req -new -x509 -config "$TMP/openssl.cnf" -extensions ca \
		-key "$TMP/$1.key" -subj "/CN=$2" -days "$DAYS" -sha256 -out "$TMP/$1.crt"
}

# leaf NAME CN PROFILE CA: a certificate for a new key, signed by CA.
leaf() {
	key "$1"
	run "request $1" openssl req -new -config "$TMP/openssl.cnf" -key "$TMP/$1.key" \
		-subj "/CN=$2" -out "$TMP/$1.csr"
	run "certificate $1" openssl x509 -req -in "$TMP/$1.csr" -CA "$TMP/$4.crt" \
		-CAkey "$TMP/$4.key" -set_serial "0x$(openssl rand -hex 15)" -days "$DAYS" \
		-sha256 -extfile "$TMP/openssl.cnf" -extensions "$3" -out "$TMP/$1.crt"
	rm -f "$TMP/$1.csr"
}

ca ca "guardian demo CA"
leaf broker localhost server ca
leaf device "$DEVICE_ID" client ca
leaf viewer viewer client ca
ca rogue-ca "guardian rogue CA"
leaf rogue-device "$DEVICE_ID" client rogue-ca

run "verify broker" openssl verify -CAfile "$TMP/ca.crt" -purpose sslserver "$TMP/broker.crt"
run "verify device" openssl verify -CAfile "$TMP/ca.crt" -purpose sslclient "$TMP/device.crt"
run "verify viewer" openssl verify -CAfile "$TMP/ca.crt" -purpose sslclient "$TMP/viewer.crt"
run "verify rogue device" openssl verify -CAfile "$TMP/rogue-ca.crt" -purpose sslclient \
	"$TMP/rogue-device.crt"
if openssl verify -CAfile "$TMP/ca.crt" "$TMP/rogue-device.crt" >>"$LOG" 2>&1; then
	echo "pki.sh: the rogue device certificate verifies against the demo CA" >&2
	exit 1
fi

for f in ca.key broker.key broker.crt device.key device.crt viewer.key viewer.crt \
	rogue-ca.key rogue-ca.crt rogue-device.key rogue-device.crt; do
	mv -f "$TMP/$f" "$DIR/$f"
done
chmod 644 "$DIR"/*.crt 2>/dev/null || true
mv -f "$TMP/ca.crt" "$DIR/ca.crt"
chmod 644 "$DIR/ca.crt"
