#!/bin/sh
# mosquitto-conf.sh: writes DIR/mosquitto.conf for a mosquitto 2.0 broker on 127.0.0.1:PORT that admits only TLS clients with a certificate from the demo CA.
#
# usage: sh tools/mosquitto-conf.sh DIR PORT [PKI_DIR]
#   PKI_DIR holds ca.crt, broker.crt and broker.key (tools/pki.sh); by default
#   DIR itself, or DIR/pki if DIR has no ca.crt.
# Then: mosquitto -c DIR/mosquitto.conf   (logs to stderr, no pid file, no persistence)
set -eu

if [ $# -lt 2 ] || [ $# -gt 3 ]; then
	echo "usage: mosquitto-conf.sh DIR PORT [PKI_DIR]" >&2
	exit 2
fi
DIR=$1
PORT=$2
case $PORT in
"" | *[!0-9]*)
	echo "mosquitto-conf.sh: port \"$PORT\": expected a number from 1 to 65535" >&2
	exit 2
	;;
esac
if [ "$PORT" -lt 1 ] || [ "$PORT" -gt 65535 ]; then
	echo "mosquitto-conf.sh: port $PORT: expected a number from 1 to 65535" >&2
	exit 2
fi
mkdir -p "$DIR"
if [ $# -eq 3 ]; then
	PKI=$3
elif [ -f "$DIR/ca.crt" ] || [ ! -d "$DIR/pki" ]; then
	PKI=$DIR
else
	PKI=$DIR/pki
fi
for f in ca.crt broker.crt broker.key; do
	if [ ! -f "$PKI/$f" ]; then
		echo "mosquitto-conf.sh: $PKI/$f is missing: run tools/pki.sh $PKI first" >&2
		exit 1
	fi
done
# mosquitto reads paths relative to its working directory: make them absolute.
PKI=$(cd "$PKI" && pwd -P)
case $PKI in
*"
"*)
	echo "mosquitto-conf.sh: a path with a newline cannot go into mosquitto.conf" >&2
	exit 1
	;;
esac
# Started as root, mosquitto switches to the user "mosquitto", which could not
# read keys that are 0600 and owned by someone else: stay the user who runs it
# (for any other user this setting has no effect).
RUN_AS=$(id -un)

cat >"$DIR/mosquitto.conf.tmp" <<EOF
# Written by tools/mosquitto-conf.sh: a throwaway broker for the demo and tests.
# Only TLS clients whose certificate the demo CA signed get in; the certificate
# CN becomes the MQTT username.
per_listener_settings false
allow_anonymous false
persistence false
log_dest stderr
log_type error
log_type warning
log_type notice
log_type information
log_timestamp_format %Y-%m-%dT%H:%M:%S
connection_messages true
# Nagle off: a message written right after a PUBACK would wait for the client's delayed ACK.
set_tcp_nodelay true
user $RUN_AS

listener $PORT 127.0.0.1
cafile $PKI/ca.crt
certfile $PKI/broker.crt
keyfile $PKI/broker.key
require_certificate true
use_identity_as_username true
EOF
mv -f "$DIR/mosquitto.conf.tmp" "$DIR/mosquitto.conf"
