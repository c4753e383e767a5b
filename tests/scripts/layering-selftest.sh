#!/bin/sh
# layering-selftest.sh: tools/layering.sh must fail on a folder that uses a symbol or a header of a
# folder it may not, and pass on one that keeps to its allowed folders. Builds two throwaway
# archives in a temp dir.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
cd "$tmp"
mkdir -p low high build
echo 'int low_value(void); int low_value(void) { return 1; }' >low/low.c
printf '#include "../low/low.h"\nint low_value(void);\nint high_value(void);\nint high_value(void) { return low_value() + 1; }\n' >high/high.c
: >low/low.h
cc -c low/low.c -o build/low.o && ar rcs build/liblow.a build/low.o
cc -c high/high.c -o build/high.o && ar rcs build/libhigh.a build/high.o
# Allowed: high may use low.
sh "$root/tools/layering.sh" build low: high:low >out.txt 2>&1 || { cat out.txt; echo "layering-selftest: an allowed dependency was refused"; exit 1; }
# Not allowed: high may use nothing; both the symbol and the header must be named.
if sh "$root/tools/layering.sh" build low: high: >out.txt 2>&1; then
	echo "layering-selftest: a forbidden dependency passed"; exit 1
fi
grep -q "high/ uses low_value of low/" out.txt || { cat out.txt; echo "layering-selftest: the symbol was not named"; exit 1; }
grep -q "high/high.c includes a header of low/" out.txt || { cat out.txt; echo "layering-selftest: the header was not named"; exit 1; }
echo "layering-selftest: a forbidden symbol and header are refused, an allowed one passes"
