#!/bin/sh
# run.sh: runs every benchmark and prints its figures (BENCH_SECONDS sets the measuring window;
# BENCH_BASELINE, an older build directory to compare the broker-restart figures with).
set -eu
BUILD=${BUILD:-build}
S=${BENCH_SECONDS:-20}
echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "== Modbus adapter vs bare libmodbus"
"$BUILD/bench_modbus" "$(( S / 4 > 2 ? S / 4 : 2 ))"
echo "== policy decisions"
"$BUILD/bench_policy"
echo "== end to end"
"$BUILD/bench_e2e" "$S"
echo "== serial framer (from memory)"
"$BUILD/bench_framer" 2
echo "== CAN signal decoding and SLCAN parsing (from memory)"
"$BUILD/bench_candecode" 2
echo "== CAN end to end over SLCAN"
"$BUILD/bench_can_e2e" "$(( S / 2 > 5 ? S / 2 : 5 ))"
echo "== telemetry spool on disk vs the memory queue"
# The harness starts $GUARDIAN_BUILD's guardian and plcsim: this build's.
GUARDIAN_BUILD=${GUARDIAN_BUILD:-$BUILD} "$BUILD/bench_spool" "$S"
echo "== the sandbox: guardian's CPU with it and without"
GUARDIAN_BUILD=${GUARDIAN_BUILD:-$BUILD} "$BUILD/bench_sandbox" "$S" 2
echo "== attestation: one service instance, in process, file and TPM evidence"
"$BUILD/bench_attest" 5
echo "== attestation: one service instance, in process, each store backend against the files store"
"$BUILD/bench_store_attest" 8
echo "== attestation: a fleet over MQTT: 1, 3 and 4 serve instances on one store, each backend"
GUARDIAN_BUILD=${GUARDIAN_BUILD:-$BUILD} "$BUILD/bench_fleet" 10
echo "== attestation store: SQLite writes of one attestation, by synchronous level"
"$BUILD/bench_store" 3 default normal
echo "== attestation: the device's evidence, TPM quote against the file key"
"$BUILD/bench_tpm"
echo "== attestation: round trip on loopback, file and TPM backends"
"$BUILD/bench_attest_rtt" 20
echo "== attestation: telemetry after a broker restart"
# BENCH_BASELINE=DIR: also measure the build in DIR (an old worktree's), first: before and after.
"$BUILD/bench_attest_recovery" 5 ${BENCH_BASELINE:+"$BENCH_BASELINE"} "$BUILD"
