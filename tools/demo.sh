#!/bin/sh
# demo.sh: the whole pipeline on this machine: demo PKI, mosquitto over TLS, simulated PLC, guardian, telemetry on screen.
# DEMO_SECONDS=N runs N seconds and exits 0 only if telemetry reached the broker; otherwise it runs until Ctrl-C.
set -u
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$SRC/build}
RUN=${DEMO_DIR:-$SRC/demo-run}
BROKER_PORT=${DEMO_BROKER_PORT:-18883}
PLC_PORT=${DEMO_PLC_PORT:-15020}
SECONDS_TO_RUN=${DEMO_SECONDS:-0}
PIDS=""

stop_all() {
	# tail -f feeds the viewer; it would outlive it, waiting for input that never comes.
	pkill -P $$ tail 2>/dev/null
	for p in $PIDS; do kill "$p" 2>/dev/null; done
	for p in $PIDS; do wait "$p" 2>/dev/null; done
	PIDS=""
}
trap 'stop_all; exit 130' INT TERM
trap 'stop_all' EXIT

port_busy() {
	# Someone listens on it (state 0A); sockets in TIME_WAIT from a last run do not count.
	awk -v p=":$(printf '%04X' "$1")" '$4 == "0A" && toupper(substr($2, length($2) - 4)) == p { f = 1 }
		END { exit !f }' /proc/net/tcp /proc/net/tcp6 2>/dev/null
}
for p in "$BROKER_PORT" "$PLC_PORT"; do
	if port_busy "$p"; then
		echo "demo: port $p is in use; set DEMO_BROKER_PORT / DEMO_PLC_PORT" >&2
		exit 1
	fi
done

mkdir -p "$RUN/state"
chmod 700 "$RUN/state"
sh "$SRC/tools/pki.sh" "$RUN/pki" demo-01 || { echo "demo: PKI creation failed" >&2; exit 1; }
sh "$SRC/tools/mosquitto-conf.sh" "$RUN" "$BROKER_PORT" || exit 1
sed -e "s/@BROKER_PORT@/$BROKER_PORT/" -e "s/@PLC_PORT@/$PLC_PORT/" \
	"$SRC/configs/demo.json" >"$RUN/site.json"
sed -e "s/@BROKER_PORT@/$BROKER_PORT/" "$SRC/configs/demo-policy.json" >"$RUN/policy.json"
: >"$RUN/telemetry.log"

echo "demo: broker  mosquitto on localhost:$BROKER_PORT (TLS, client certificates required)"
mosquitto -c "$RUN/mosquitto.conf" >"$RUN/mosquitto.log" 2>&1 &
PIDS="$PIDS $!"
echo "demo: PLC     simulated Modbus TCP PLC on 127.0.0.1:$PLC_PORT"
"$BUILD/plcsim" --tcp "127.0.0.1:$PLC_PORT" --quiet >"$RUN/plcsim.log" 2>&1 &
PIDS="$PIDS $!"
i=0
until grep -q "plcsim: ready" "$RUN/plcsim.log" 2>/dev/null; do
	i=$((i + 1)); [ $i -gt 100 ] && { echo "demo: plcsim did not start:" >&2; cat "$RUN/plcsim.log" >&2; exit 1; }
	sleep 0.1
done
sleep 0.5
echo "demo: viewer  subscribed to guardian/demo-01/telemetry"
mosquitto_sub -h localhost -p "$BROKER_PORT" --cafile "$RUN/pki/ca.crt" \
	--cert "$RUN/pki/viewer.crt" --key "$RUN/pki/viewer.key" -q 1 \
	-t 'guardian/demo-01/telemetry' >"$RUN/telemetry.log" 2>"$RUN/viewer.log" &
PIDS="$PIDS $!"
"$BUILD/guardian" check -c "$RUN/site.json" || exit 1
echo "demo: guardian running; its log is in $RUN/guardian.log. Ctrl-C stops everything."
echo "demo: press/recipe_secret is in the PLC map but the policy denies it: it never appears below;"
echo "demo: press/oil_temp leaves under its alias oil_temperature. To ask for a write, in another shell:"
echo "  mosquitto_pub -h localhost -p $BROKER_PORT --cafile $RUN/pki/ca.crt --cert $RUN/pki/viewer.crt \\"
echo "    --key $RUN/pki/viewer.key -t guardian/demo-01/cmd -m '{\"id\":\"1\",\"point\":\"press/setpoint\",\"value\":550}'"
echo "  (answers on guardian/demo-01/cmd/result; try 5000, or 900, to see refusals)"
"$BUILD/guardian" run -c "$RUN/site.json" >"$RUN/guardian.log" 2>&1 &
PIDS="$PIDS $!"
tail -n +1 -f "$RUN/telemetry.log" | "$BUILD/gd-view" &
VIEW=$!
PIDS="$PIDS $VIEW"

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
