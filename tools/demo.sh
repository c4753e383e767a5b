#!/bin/sh
# demo.sh: the whole pipeline on this machine: a PLC, a serial scale and a CAN engine (simulated),
# the attestation service and a two-listener mosquitto; guardian provisions, enrolls, attests, then
# sends telemetry, shown on screen.
# DEMO_SECONDS=N runs N seconds and exits 0 only if telemetry reached the broker; otherwise it runs until Ctrl-C.
set -u
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$SRC/build}
RUN=${DEMO_DIR:-$SRC/demo-run}
BROKER_PORT=${DEMO_BROKER_PORT:-18883}
PLC_PORT=${DEMO_PLC_PORT:-15020}
ATTEST_PORT=${DEMO_ATTEST_PORT:-18884}
SECONDS_TO_RUN=${DEMO_SECONDS:-0}
PIN=${DEMO_PIN:-1234}
PIDS=""

# Every part runs in a session of its own (setsid), so a Ctrl-C reaches only this script, which
# then stops the parts in the reverse order of their start: the viewer, then guardian (while the
# broker is still there to take its last messages and its offline health), the service, the
# machines, and the broker last. Each is the leader of its process group: a kill of the group
# takes what it started too (the viewer's tail).
start() {
	setsid "$@" &
	PIDS="$! $PIDS"
}
stop_all() {
	for p in $PIDS; do
		kill -TERM "-$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	PIDS=""
}
trap 'echo; stop_all; echo "demo: stopped"; exit 0' INT
trap 'stop_all; exit 143' TERM
trap 'stop_all' EXIT

port_busy() {
	# Someone listens on it (state 0A); sockets in TIME_WAIT from a last run do not count.
	awk -v p=":$(printf '%04X' "$1")" '$4 == "0A" && toupper(substr($2, length($2) - 4)) == p { f = 1 }
		END { exit !f }' /proc/net/tcp /proc/net/tcp6 2>/dev/null
}
for p in "$BROKER_PORT" "$ATTEST_PORT" "$PLC_PORT"; do
	if port_busy "$p"; then
		echo "demo: port $p is in use; set DEMO_BROKER_PORT / DEMO_ATTEST_PORT / DEMO_PLC_PORT" >&2
		exit 1
	fi
done
step() { echo "demo: $*"; }
fail() { echo "demo: FAILED: $*" >&2; exit 1; }
wait_for() { # FILE TEXT WHAT
	i=0
	until grep -q "$2" "$1" 2>/dev/null; do
		i=$((i + 1)); [ $i -gt 100 ] && { cat "$1" >&2; fail "$3 did not start"; }
		sleep 0.1
	done
}
pty_pair() { # A B: a null-modem cable between two pseudo-terminals
	start socat -d pty,raw,echo=0,link="$1" pty,raw,echo=0,link="$2" 2>>"$RUN/socat.log"
	i=0
	until [ -e "$1" ] && [ -e "$2" ]; do
		i=$((i + 1)); [ $i -gt 50 ] && fail "socat could not make $1"
		sleep 0.1
	done
}

mkdir -p "$RUN/state"
chmod 700 "$RUN/state"
sh "$SRC/tools/pki.sh" "$RUN/pki" demo-01 >/dev/null || fail "PKI creation"

# The cloud side: the service's CAs, and a broker with an attestation listener and a telemetry
# listener that takes only the short-lived certificates attestation hands out.
if [ ! -f "$RUN/service/op-ca.crt" ]; then
	"$BUILD/guardian-service" init -d "$RUN/service" --broker "localhost:$ATTEST_PORT" \
		--broker-ca "$RUN/pki/ca.crt" >/dev/null || fail "guardian-service init"
fi
sed -i "s/\"port\":[[:space:]]*[0-9]*/\"port\":$ATTEST_PORT/" "$RUN/service/service.json"
sh "$SRC/tools/attest-broker.sh" "$RUN/broker" "$ATTEST_PORT" "$BROKER_PORT" "$RUN/pki" \
	"$RUN/service" || fail "broker config"
step "broker   mosquitto: attestation on localhost:$ATTEST_PORT, telemetry on localhost:$BROKER_PORT"
start mosquitto -c "$RUN/broker/mosquitto.conf" >"$RUN/mosquitto.log" 2>&1

# The machines: a PLC on Modbus TCP, a scale on a serial line, an engine on a CAN bus.
step "PLC      simulated Modbus TCP PLC on 127.0.0.1:$PLC_PORT"
start "$BUILD/plcsim" --tcp "127.0.0.1:$PLC_PORT" --quiet >"$RUN/plcsim.log" 2>&1
wait_for "$RUN/plcsim.log" "plcsim: ready" plcsim
pty_pair "$RUN/tty-scale-sim" "$RUN/tty-scale"
step "scale    simulated serial scale on $RUN/tty-scale (9600 8N1, xor8-checked lines)"
start "$BUILD/serialsim" --device "$RUN/tty-scale-sim" --baud 9600 --mode text --checksum xor8 \
	--interval-ms 500 >"$RUN/serialsim.log" 2>&1
pty_pair "$RUN/tty-can-sim" "$RUN/tty-can"
step "engine   simulated USB-CAN adapter (SLCAN) on $RUN/tty-can, J1939 engine frames"
start "$BUILD/slcansim" --device "$RUN/tty-can-sim" >"$RUN/slcansim.log" 2>&1
pty_pair "$RUN/tty-console-tech" "$RUN/tty-console"

# The technician's PIN for the console's login (the template has none: a real one is made for
# each box with guardian console hash-pin).
HASH=$(echo "$PIN" | "$BUILD/guardian" console hash-pin) || fail "guardian console hash-pin"
sed -e "s/@BROKER_PORT@/$BROKER_PORT/" -e "s/@PLC_PORT@/$PLC_PORT/" \
	-e "s/@ATTEST_PORT@/$ATTEST_PORT/" -e "s|@SCALE_TTY@|$RUN/tty-scale|" \
	-e "s|@CAN_TTY@|$RUN/tty-can|" \
	-e "s|\"@CONSOLE_TTY@\",|\"$RUN/tty-console\", \"pin_hash\": \"$HASH\",|" \
	"$SRC/configs/demo.json" >"$RUN/site.json"
sed -e "s/@BROKER_PORT@/$BROKER_PORT/" "$SRC/configs/demo-policy.json" >"$RUN/policy.json"
: >"$RUN/telemetry.log"

# Once per device and per release: provision, enroll, record the reference measurements.
step "provision: identity key and CSR in $RUN/state"
"$BUILD/guardian" provision -c "$RUN/site.json" >/dev/null || fail "guardian provision"
"$BUILD/guardian-service" enroll -d "$RUN/service" --replace "$RUN/state/identity.csr" \
	-o "$RUN/state/identity.crt" >/dev/null || fail "guardian-service enroll"
step "enroll:   identity certificate from the manufacturer CA"
# The pre-flight guardian run makes too, now that the device has its identity.
out=$("$BUILD/guardian" check -c "$RUN/site.json" 2>&1) || { echo "$out" >&2; fail "guardian check"; }
step "check:    $out"
"$BUILD/guardian" measure -c "$RUN/site.json" --json >"$RUN/reference.json" || fail "guardian measure"
"$BUILD/guardian-service" reference add -d "$RUN/service" "$RUN/reference.json" >/dev/null 2>&1 ||
	true # the same build and config may be there from a last run
step "reference: this build and config recorded as acceptable"
"$BUILD/guardian" measure -c "$RUN/site.json" | sed 's/^/           /'
start "$BUILD/guardian-service" serve -d "$RUN/service" >"$RUN/service.log" 2>&1
wait_for "$RUN/service.log" "ready" "guardian-service serve"
step "service:  attestation service serving (shared subscription)"

step "viewer   subscribed to guardian/demo-01/telemetry on the telemetry listener"
start mosquitto_sub -h localhost -p "$BROKER_PORT" --cafile "$RUN/pki/ca.crt" \
	--cert "$RUN/broker/viewer.crt" --key "$RUN/broker/viewer.key" -q 1 \
	-t 'guardian/demo-01/telemetry' >"$RUN/telemetry.log" 2>"$RUN/viewer.log"
echo "demo: guardian running: it attests first, then sends telemetry. Its log: $RUN/guardian.log."
echo "demo: field console: picocom -b 115200 $RUN/tty-console-tech, or guardian console -c $RUN/site.json"
echo "demo: its login PIN is $PIN (DEMO_PIN changes it)"
echo "demo: Ctrl-C stops everything."
echo "demo: press/recipe_secret is in the PLC map but the policy denies it: it never appears below;"
echo "demo: press/oil_temp leaves under its alias oil_temperature. To ask for a write, in another shell:"
echo "  mosquitto_pub -h localhost -p $BROKER_PORT --cafile $RUN/pki/ca.crt --cert $RUN/broker/viewer.crt \\"
echo "    --key $RUN/broker/viewer.key -t guardian/demo-01/cmd -m '{\"id\":\"1\",\"point\":\"press/setpoint\",\"value\":550}'"
echo "  (answers on guardian/demo-01/cmd/result; try 5000, or 900, to see refusals)"
start "$BUILD/guardian" run -c "$RUN/site.json" >"$RUN/guardian.log" 2>&1
start sh -c 'tail -n +1 -f "$1" | "$2"' viewer "$RUN/telemetry.log" "$BUILD/gd-view"
VIEW=${PIDS%% *}

if [ "$SECONDS_TO_RUN" -gt 0 ]; then
	sleep "$SECONDS_TO_RUN"
	n=$(grep -c '"points"' "$RUN/telemetry.log" 2>/dev/null || true)
	stop_all
	if [ "${n:-0}" -gt 0 ]; then
		echo "demo: OK: $n telemetry messages reached the broker in ${SECONDS_TO_RUN}s"
		exit 0
	fi
	echo "demo: FAILED: no telemetry reached the broker; see $RUN/guardian.log" >&2
	tail -n 20 "$RUN/guardian.log" >&2
	exit 1
fi
wait "$VIEW"
