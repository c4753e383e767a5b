#!/bin/sh
# hardening-check.sh: fails unless every program given was built with the hardening flags of the
# Makefile: a position-independent executable, relocations read-only and bound at start
# (RELRO, BIND_NOW), the stack protector and fortified libc calls.
#
#   sh tools/hardening-check.sh build/guardian build/guardian-service ...
set -eu
bad=0
for prog in "$@"; do
	fail() { echo "hardening: $prog: $1" >&2; bad=1; }
	readelf -h "$prog" | grep -q 'Type:.*DYN' || fail "not a position-independent executable (-fPIE -pie)"
	readelf -lW "$prog" | grep -q GNU_RELRO || fail "no RELRO segment (-Wl,-z,relro)"
	readelf -d "$prog" | grep -q 'BIND_NOW\|Flags:.*NOW' || fail "symbols not bound at start (-Wl,-z,now)"
	nm -D "$prog" | grep -q '__stack_chk_fail' || fail "no stack protector (-fstack-protector-strong)"
	nm -D "$prog" | grep -q '_chk@' || fail "no fortified libc calls (-D_FORTIFY_SOURCE=2 with -O1 or more)"
	[ $bad = 0 ] && echo "hardening: $prog: PIE, RELRO, BIND_NOW, stack protector, fortified calls"
done
exit $bad
