#!/bin/sh
# systemd-security.sh: the exposure score systemd gives each unit must stay at or below THRESHOLD
# (3.0, "OK"): a hardening line dropped from a unit fails CI.
#
#   sh tests/scripts/systemd-security.sh [UNIT_FILE...]   (default: every deploy/*.service, and
#   guardian.service with each of the drop-ins deploy/guardian-tpm.conf and guardian-users.conf)
#
# Skips, saying why, where systemd-analyze is missing or too old for --offline (systemd < 252).
set -eu

THRESHOLD=3.0
if [ $# = 0 ]; then
	deploy="$(dirname "$0")"/../../deploy
	set -- "$deploy"/*.service
	# And guardian.service with each drop-in applied (a guardian.service.d/ beside the unit).
	dropdir=$(mktemp -d "${TMPDIR:-/tmp}/gd-dropin.XXXXXX")
	trap 'rm -rf "$dropdir"' EXIT
	for d in tpm users; do
		[ -f "$deploy/guardian-$d.conf" ] || continue
		mkdir -p "$dropdir/$d/guardian.service.d"
		cp "$deploy/guardian.service" "$dropdir/$d/guardian.service"
		cp "$deploy/guardian-$d.conf" "$dropdir/$d/guardian.service.d/$d.conf"
		set -- "$@" "$dropdir/$d/guardian.service"
	done
fi

if ! command -v systemd-analyze >/dev/null 2>&1; then
	echo "systemd-security: skipped: systemd-analyze is not installed (apt-get install systemd)"
	exit 0
fi
bad=0
for unit in "$@"; do
	if ! out=$(systemd-analyze --offline=true security "$unit" 2>&1); then
		case $out in
		*"unrecognized option"* | *"Unknown option"* | *"--offline"*)
			echo "systemd-security: skipped: this systemd-analyze has no --offline" \
				"(systemd 252 or later): $(systemd-analyze --version | head -1)"
			exit 0
			;;
		esac
		echo "systemd-security: systemd-analyze --offline=true security $unit failed:" >&2
		echo "$out" >&2
		bad=1
		continue
	fi
	# "→ Overall exposure level for guardian.service: 2.1 OK 🙂"
	score=$(printf '%s\n' "$out" |
		sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
	if [ -z "$score" ]; then
		echo "systemd-security: no exposure score in the output of systemd-analyze:" >&2
		echo "$out" >&2
		bad=1
		continue
	fi
	if awk -v s="$score" -v t="$THRESHOLD" 'BEGIN { exit !(s > t) }'; then
		printf '%s\n' "$out" | grep -v '^  ✓' >&2 || true
		echo "systemd-security: $unit: exposure $score is above $THRESHOLD (the lines" \
			"marked ✗ above are what it lacks)" >&2
		bad=1
		continue
	fi
	echo "systemd-security: $unit: exposure $score (at most $THRESHOLD)"
done
exit $bad
