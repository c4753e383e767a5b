#!/bin/sh
# attest-broker.sh: a mosquitto 2.0 config with the two listeners of attested telemetry
# (service/PROTOCOL.md), and a viewer certificate for the telemetry listener.
#
# usage: sh tools/attest-broker.sh DIR ATTEST_PORT TELEMETRY_PORT PKI_DIR SERVICE_DIR
#   PKI_DIR: ca.crt, broker.crt, broker.key (tools/pki.sh): the broker's own certificate.
#   SERVICE_DIR: made by guardian-service init: mfg-ca.crt, op-ca.crt, op-ca.key.
# Writes DIR/mosquitto.conf, DIR/acl-attest, DIR/acl-telemetry, and DIR/viewer.crt and
# DIR/viewer.key (CN viewer, signed by the operational CA: it may read every device's topics
# and write their cmd topics, as a cloud backend does).
# Then: mosquitto -c DIR/mosquitto.conf
#
# Attestation listener (ATTEST_PORT): client certificates of the manufacturer CA only (device
#   identities, and the service's CN guardian-attest); a device may use only
#   guardian/<its CN>/attest/...; the service all of guardian/+/attest/#.
# Telemetry listener (TELEMETRY_PORT): client certificates of the operational CA only, which
#   signs nothing but short-lived attested certificates; a device may use only
#   guardian/<its CN>/...
set -eu

if [ $# -ne 5 ]; then
	echo "usage: attest-broker.sh DIR ATTEST_PORT TELEMETRY_PORT PKI_DIR SERVICE_DIR" >&2
	exit 2
fi
DIR=$1 APORT=$2 TPORT=$3
for p in "$APORT" "$TPORT"; do
	case $p in
	"" | *[!0-9]*)
		echo "attest-broker.sh: port \"$p\": expected a number from 1 to 65535" >&2
		exit 2
		;;
	esac
done
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd -P)
PKI=$(cd "$4" && pwd -P)
SVC=$(cd "$5" && pwd -P)
for f in "$PKI/ca.crt" "$PKI/broker.crt" "$PKI/broker.key" "$SVC/mfg-ca.crt" "$SVC/op-ca.crt" \
	"$SVC/op-ca.key"; do
	if [ ! -f "$f" ]; then
		echo "attest-broker.sh: $f is missing (tools/pki.sh; guardian-service init)" >&2
		exit 1
	fi
done
RUN_AS=$(id -un)

cat >"$DIR/acl-attest" <<'EOF'
# The attestation service answers every device.
user guardian-attest
topic readwrite guardian/+/attest/#

# A device (its identity certificate's CN is %u) asks and listens for itself only.
pattern write guardian/%u/attest/hello
pattern write guardian/%u/attest/evidence
pattern read guardian/%u/attest/nonce
pattern read guardian/%u/attest/result
EOF

cat >"$DIR/acl-telemetry" <<'EOF'
# A backend (here the viewer) reads every device and may send commands.
user viewer
topic read guardian/#
topic write guardian/+/cmd

# A device (its operational certificate's CN is %u) uses its own topics only.
pattern readwrite guardian/%u/#
EOF

cat >"$DIR/mosquitto.conf.tmp" <<EOF
# Written by tools/attest-broker.sh: the two listeners of attested telemetry.
per_listener_settings true
persistence false
log_dest stderr
log_type error
log_type warning
log_type notice
log_type information
connection_messages true
user $RUN_AS

listener $APORT 127.0.0.1
allow_anonymous false
cafile $SVC/mfg-ca.crt
certfile $PKI/broker.crt
keyfile $PKI/broker.key
require_certificate true
use_identity_as_username true
acl_file $DIR/acl-attest

listener $TPORT 127.0.0.1
allow_anonymous false
cafile $SVC/op-ca.crt
certfile $PKI/broker.crt
keyfile $PKI/broker.key
require_certificate true
use_identity_as_username true
acl_file $DIR/acl-telemetry
EOF
mv -f "$DIR/mosquitto.conf.tmp" "$DIR/mosquitto.conf"

# The viewer: a backend's certificate from the operational CA (30 days).
if [ ! -f "$DIR/viewer.crt" ]; then
	openssl ecparam -name prime256v1 -genkey -noout -out "$DIR/viewer.key" 2>/dev/null
	chmod 600 "$DIR/viewer.key"
	openssl req -new -key "$DIR/viewer.key" -subj /CN=viewer -out "$DIR/viewer.csr"
	printf 'extendedKeyUsage=clientAuth\n' >"$DIR/viewer.ext"
	openssl x509 -req -in "$DIR/viewer.csr" -CA "$SVC/op-ca.crt" -CAkey "$SVC/op-ca.key" \
		-CAcreateserial -CAserial "$DIR/op-ca.srl" -days 30 -extfile "$DIR/viewer.ext" \
		-out "$DIR/viewer.crt" 2>/dev/null
	rm -f "$DIR/viewer.csr" "$DIR/viewer.ext"
fi
