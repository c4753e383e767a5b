#!/bin/sh
# attest-broker.sh: a mosquitto 2.0 config with the two listeners of attested telemetry
# (service/PROTOCOL.md), and a viewer certificate for the telemetry listener.
#
# usage: sh tools/attest-broker.sh DIR ATTEST_PORT TELEMETRY_PORT PKI_DIR SERVICE_DIR
#   PKI_DIR: ca.crt, broker.crt, broker.key (tools/pki.sh): the broker's own certificate.
#   SERVICE_DIR: made by guardian-service init: mfg-ca.crt, op-ca.crt, op-ca.key.
# Writes DIR/mosquitto.conf, DIR/acl-attest, DIR/acl-telemetry, and DIR/viewer.crt and
# DIR/viewer.key (CN viewer, signed by the operational CA: it may read what devices send and
# write their cmd topics, as a cloud backend does).
# Then: mosquitto -c DIR/mosquitto.conf. It writes its pid to DIR/mosquitto.pid: set
# "broker_pid_file" in SERVICE_DIR/service.json to it, and guardian-service tells the broker
# (SIGHUP) each time it rewrites its CRL.
#
# The two listeners share one topic tree, so their ACLs must not overlap: nothing a client
# may publish on one listener is a topic the other listener's clients may read, with one
# exception, in one direction: guardian/<cn>/report, failure reports an attested device writes
# on the telemetry listener, is read on the attestation listener by the service (which connects
# there) and by nobody else on it; no client of the attestation listener may write it. And one
# in the other direction: guardian/<cn>/update/#, signed update bundles the service publishes
# (retained) on the attestation listener, is read on the telemetry listener by that device only;
# nobody on the telemetry listener may write it, no device on the attestation listener read it.
# Attestation listener (ATTEST_PORT): client certificates of the manufacturer CA only (device
#   identities, and the service's CN guardian-attest); a device may write only its own
#   attest/hello and attest/evidence and read only its attest/nonce and attest/result; the
#   service reads every hello and evidence and writes every nonce and result, reads every
#   device's report and writes every device's update/#; nothing else.
# Telemetry listener (TELEMETRY_PORT): client certificates of the operational CA only, which
#   signs nothing but short-lived attested certificates, checked against SERVICE_DIR/op-ca.crl
#   (a revoked one is refused at the handshake); a device may write only its own telemetry,
#   health, audit, cmd/result and report and read only its cmd and update/#; never a topic under
#   attest/.
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
# Without its CRL the telemetry listener would refuse every handshake.
if [ ! -f "$SVC/op-ca.crl" ]; then
	echo "attest-broker.sh: $SVC/op-ca.crl is missing (guardian-service crl -d $SVC)" >&2
	exit 1
fi
RUN_AS=$(id -un)

cat >"$DIR/acl-attest" <<'EOF'
# The attestation service hears every device's requests and answers them, hears the failure
# reports devices send on the telemetry listener, and delivers signed update bundles to them
# (guardian-service release publish); nothing else.
user guardian-attest
topic read guardian/+/attest/hello
topic read guardian/+/attest/evidence
topic write guardian/+/attest/nonce
topic write guardian/+/attest/result
topic read guardian/+/report
topic write guardian/+/update/#

# A device (its identity certificate's CN is %u) asks and listens for itself only.
pattern write guardian/%u/attest/hello
pattern write guardian/%u/attest/evidence
pattern read guardian/%u/attest/nonce
pattern read guardian/%u/attest/result
EOF

cat >"$DIR/acl-telemetry" <<'EOF'
# A backend (here the viewer) reads what devices send and the commands, and sends commands; it
# neither reads nor writes attestation topics.
user viewer
topic read guardian/+/telemetry
topic read guardian/+/health
topic read guardian/+/audit
topic read guardian/+/cmd
topic read guardian/+/cmd/result
topic read guardian/+/report
topic write guardian/+/cmd

# A device (its operational certificate's CN is %u): what guardian publishes, its commands, and
# the update bundles the service publishes for it (read only: a device never updates itself or
# another).
pattern write guardian/%u/telemetry
pattern write guardian/%u/health
pattern write guardian/%u/audit
pattern write guardian/%u/cmd/result
pattern write guardian/%u/report
pattern read guardian/%u/cmd
pattern read guardian/%u/update/#
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
# Nagle off: an answer written right after a PUBACK would wait for the client's delayed ACK.
set_tcp_nodelay true
user $RUN_AS
pid_file $DIR/mosquitto.pid

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
crlfile $SVC/op-ca.crl
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
