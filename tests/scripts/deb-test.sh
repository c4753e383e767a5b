#!/bin/sh
# deb-test.sh: installs the packages `make deb` built on this machine as a box gets them (apt-get
# install, dependencies included), checks what they put where, runs `guardian check` as the
# guardian user on every shipped example, then removes and purges them and checks they are gone.
#
#   sh tests/scripts/deb-test.sh [DIR]     (DIR: where make deb put the .debs; build/deb)
#
# It changes this machine (packages, users, /etc, /var/lib): meant for CI's throwaway machine.
# Needs root or sudo without a password; skips, saying so, with neither. Refuses to run where
# guardian or guardian-service is already installed (it would purge them).
set -eu

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DIR=$(cd "${1:-$ROOT/build/deb}" && pwd)
VERSION=$(sed -n 's/^#define GD_VERSION "\(.*\)"/\1/p' "$ROOT/guardian/version.h")
ARCH=$(dpkg --print-architecture)
DEB_GUARDIAN=$DIR/guardian_${VERSION}_${ARCH}.deb
DEB_SERVICE=$DIR/guardian-service_${VERSION}_${ARCH}.deb
UNITDIR=/lib/systemd/system
WANTS=/etc/systemd/system/multi-user.target.wants

if [ "$(id -u)" = 0 ]; then
	SUDO=""
	as_user() { u=$1; shift; runuser -u "$u" -- "$@"; }
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
	SUDO="sudo -n"
	as_user() { u=$1; shift; sudo -n -u "$u" -- "$@"; }
else
	echo "deb-test: SKIP: needs root or sudo without a password to install packages"
	exit 0
fi

T0=$(date +%s.%N)
STEP_T=$T0
STEP_NAME=""
failures=0
installed=false
had_user=false
had_service_user=false

elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
step_done() {
	[ -z "$STEP_NAME" ] || echo "deb-test:    ($STEP_NAME: $(elapsed "$STEP_T") s)"
}
step() {
	step_done
	STEP_NAME=$1
	STEP_T=$(date +%s.%N)
	echo "deb-test: -- $1"
}
ok() { echo "deb-test: ok: $1"; }
fail() {
	echo "deb-test: FAIL: $1" >&2
	failures=$((failures + 1))
}
check() { # check DESCRIPTION COMMAND...: ok when the command succeeds
	what=$1
	shift
	if "$@" >/dev/null 2>&1; then ok "$what"; else fail "$what"; fi
}
pkg_state() { dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null | tr -d ' ' || true; }
apt_get() {
	$SUDO env DEBIAN_FRONTEND=noninteractive apt-get -y -q -o Dpkg::Use-Pty=0 "$@"
}

# Whatever happens, this machine is left without the packages and the users this test made.
cleanup() {
	if $installed; then
		apt_get purge guardian guardian-service >/dev/null 2>&1 || true
	fi
	if ! $had_user && getent passwd guardian >/dev/null; then
		$SUDO deluser --system --quiet guardian >/dev/null 2>&1 || true
	fi
	if ! $had_service_user && getent passwd guardian-service >/dev/null; then
		$SUDO deluser --system --quiet guardian-service >/dev/null 2>&1 || true
	fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

for deb in "$DEB_GUARDIAN" "$DEB_SERVICE"; do
	[ -f "$deb" ] || { echo "deb-test: $deb is missing (make deb makes it)" >&2; exit 1; }
done
for p in guardian guardian-service; do
	case $(pkg_state "$p") in
	"" | un | pn) ;;
	*)
		echo "deb-test: $p is installed on this machine ($(pkg_state "$p")): this test would" \
			"purge it; purge it first (apt-get purge $p)" >&2
		exit 1
		;;
	esac
done
getent passwd guardian >/dev/null && had_user=true
getent passwd guardian-service >/dev/null && had_service_user=true

step "install"
echo "deb-test: apt-get install $DEB_GUARDIAN $DEB_SERVICE"
installed=true
if ! apt_get install --no-install-recommends "$DEB_GUARDIAN" "$DEB_SERVICE" >"$DIR/install.log" 2>&1; then
	# A machine whose package lists were never fetched cannot resolve the dependencies.
	apt_get update -qq >/dev/null 2>&1 || true
	apt_get install --no-install-recommends "$DEB_GUARDIAN" "$DEB_SERVICE" >"$DIR/install.log" 2>&1 ||
		{ cat "$DIR/install.log" >&2; echo "deb-test: FAIL: apt-get install" >&2; exit 1; }
fi
sed -n 's/^\(guardian[-a-z]*: .*\)/  postinst said: \1/p' "$DIR/install.log"
for p in guardian guardian-service; do
	check "$p $VERSION is installed" test "$(pkg_state "$p")" = ii
done

step "programs"
for prog in guardian guardian-service gd-view; do
	check "$prog is /usr/bin/$prog" test "$(command -v "$prog")" = "/usr/bin/$prog"
done
if dpkg -L guardian | grep -qx /usr/bin/guardian-launch; then
	check "guardian-launch is /usr/bin/guardian-launch" test -x /usr/bin/guardian-launch
fi
check "the TPM drop-in is shipped as an example, not active" sh -c \
	'test -s /usr/share/doc/guardian/examples/guardian.service.d/tpm.conf &&
	 ! test -e /etc/systemd/system/guardian.service.d/tpm.conf &&
	 ! test -e /lib/systemd/system/guardian.service.d/tpm.conf'
check "the own-users drop-in is shipped as an example, not active" sh -c \
	'test -s /usr/share/doc/guardian/examples/guardian.service.d/users.conf &&
	 ! test -e /etc/systemd/system/guardian.service.d/users.conf'
check "guardian version says $VERSION" test "$(/usr/bin/guardian version)" = "guardian $VERSION"
check "guardian-service --help" /usr/bin/guardian-service --help
check "the programs carry the hardening flags" sh "$ROOT/tools/hardening-check.sh" \
	/usr/bin/guardian /usr/bin/guardian-service

step "users and directories"
check "user guardian exists" getent passwd guardian
check "guardian is a system user (uid below 1000)" \
	test "$(getent passwd guardian | cut -d: -f3)" -lt 1000
check "guardian is in group dialout" sh -c 'id -nG guardian | tr " " "\n" | grep -qx dialout'
check "guardian's shell is nologin" sh -c 'getent passwd guardian | grep -q ":/usr/sbin/nologin$"'
check "user guardian-service exists" getent passwd guardian-service
check "/var/lib/guardian is guardian's, 0700" \
	test "$(stat -c '%U %G %a' /var/lib/guardian)" = "guardian guardian 700"
check "/var/lib/guardian-service is guardian-service's, 0700" \
	test "$(stat -c '%U %G %a' /var/lib/guardian-service)" = "guardian-service guardian-service 700"

step "systemd units"
for unit in guardian.service guardian-service.service; do
	check "$UNITDIR/$unit is installed" test -f "$UNITDIR/$unit"
	check "$unit is enabled ($WANTS/$unit)" test -L "$WANTS/$unit"
done
check "guardian.service runs /usr/bin/guardian" grep -q '^ExecStartPre=/usr/bin/guardian ' \
	"$UNITDIR/guardian.service"
check "guardian.service waits for a site config or a slot" \
	grep -qx 'ConditionPathExists=|/etc/guardian/site.json' "$UNITDIR/guardian.service"
if out=$(sh "$ROOT/tests/scripts/systemd-security.sh" "$UNITDIR/guardian.service" \
	"$UNITDIR/guardian-service.service" 2>&1); then
	printf '%s\n' "$out" | sed 's/^/  /'
	ok "systemd-analyze --offline=true security: both units at or below the threshold"
else
	printf '%s\n' "$out" >&2
	fail "systemd-analyze --offline=true security"
fi
if command -v systemd-analyze >/dev/null 2>&1; then
	if out=$(systemd-analyze verify "$UNITDIR/guardian.service" \
		"$UNITDIR/guardian-service.service" 2>&1); then
		ok "systemd-analyze verify: both units"
	else
		printf '%s\n' "$out" >&2
		fail "systemd-analyze verify"
	fi
fi

step "manual pages"
for page in man8/guardian.8 man8/guardian-service.8 man1/gd-view.1; do
	f=/usr/share/man/$page.gz
	check "$f is installed" test -f "$f"
	if [ -f "$f" ] && ! command -v groff >/dev/null 2>&1; then
		echo "deb-test: skipped: rendering $page: groff is not installed (apt-get install groff-base)"
	elif [ -f "$f" ]; then
		warnings=$(zcat "$f" | groff -man -Tutf8 -ww -z 2>&1 || true)
		check "$page renders without warnings${warnings:+: $warnings}" test -z "$warnings"
	fi
done
if command -v man >/dev/null 2>&1; then
	check "man finds guardian(8)" test "$(man -w 8 guardian 2>/dev/null)" = \
		/usr/share/man/man8/guardian.8.gz
fi

# An attested config needs the device's identity first, as on a real box: provision as guardian,
# enroll the CSR with guardian-service (a scratch service directory), install the certificate.
enroll() {
	scratch=$(mktemp -d)
	chmod 0755 "$scratch"
	as_user guardian cat /var/lib/guardian/identity.csr >"$scratch/identity.csr"
	chmod 0644 "$scratch/identity.csr"
	$SUDO install -d -o guardian-service -m 0700 "$scratch/work"
	if as_user guardian-service /usr/bin/guardian-service init -d "$scratch/work/service" &&
		as_user guardian-service /usr/bin/guardian-service enroll -d "$scratch/work/service" \
			"$scratch/identity.csr" -o "$scratch/work/identity.crt" &&
		$SUDO install -o guardian -g guardian -m 0644 "$scratch/work/identity.crt" \
			/var/lib/guardian/identity.crt; then
		rc=0
	else
		rc=1
	fi
	$SUDO rm -rf "$scratch"
	return $rc
}

step "examples"
echo "deb-test: guardian check, as user guardian, on each site config in /etc/guardian/examples"
nexamples=0
for f in $(find /etc/guardian/examples -name '*.json' -type f | LC_ALL=C sort); do
	# Site configs name a device; the rest are the policies and maps they name.
	grep -q '"device_id"' "$f" || continue
	nexamples=$((nexamples + 1))
	if grep -q '"attestation"' "$f" && [ ! -e /var/lib/guardian/identity.crt ]; then
		if out=$(cd / && as_user guardian /usr/bin/guardian provision -c "$f" 2>&1 &&
			enroll 2>&1); then
			ok "$f: provisioned as guardian, enrolled with guardian-service"
		else
			printf '%s\n' "$out" | sed 's/^/  /' >&2
			fail "$f: provision and enroll"
		fi
	fi
	if out=$(cd / && as_user guardian /usr/bin/guardian check -c "$f" 2>&1); then
		ok "guardian check -c $f: $(printf '%s\n' "$out" | tail -1)"
		printf '%s\n' "$out" | sed '$d; s/^/    /'
	else
		printf '%s\n' "$out" | sed 's/^/  /' >&2
		fail "guardian check -c $f"
	fi
done
check "the package ships example site configs ($nexamples)" test "$nexamples" -gt 0
# shellcheck disable=SC2016 # the inner shell expands it
check "every example is a conffile" sh -c '
	for f in $(find /etc/guardian/examples -type f); do
		dpkg-query -W -f="\${Conffiles}\n" guardian | grep -q " $f " || exit 1
	done'

step "reinstall"
echo "deb-test: apt-get install --reinstall: the maintainer scripts an upgrade runs"
if apt_get install --reinstall --no-install-recommends "$DEB_GUARDIAN" "$DEB_SERVICE" \
	>"$DIR/reinstall.log" 2>&1; then
	ok "apt-get install --reinstall"
else
	cat "$DIR/reinstall.log" >&2
	fail "apt-get install --reinstall"
fi
check "guardian is still in dialout" sh -c 'id -nG guardian | tr " " "\n" | grep -qx dialout'

step "remove"
if apt_get remove guardian guardian-service >"$DIR/remove.log" 2>&1; then
	ok "apt-get remove"
else
	cat "$DIR/remove.log" >&2
	fail "apt-get remove"
fi
check "guardian is removed, its conffiles kept" test "$(pkg_state guardian)" = rc
check "/usr/bin/guardian is gone" test ! -e /usr/bin/guardian
check "/usr/bin/guardian-service is gone" test ! -e /usr/bin/guardian-service
check "the units are gone" test ! -e "$UNITDIR/guardian.service" -a \
	! -e "$UNITDIR/guardian-service.service"
check "/var/lib/guardian is kept until purge" test -d /var/lib/guardian

step "purge"
if apt_get purge guardian guardian-service >"$DIR/purge.log" 2>&1; then
	ok "apt-get purge"
	installed=false
else
	cat "$DIR/purge.log" >&2
	fail "apt-get purge"
fi
for p in guardian guardian-service; do
	check "$p is purged" sh -c "case '$(pkg_state "$p")' in ''|un|pn) exit 0;; esac; exit 1"
done
for path in /etc/guardian /var/lib/guardian /var/lib/guardian-service \
	/usr/share/man/man8/guardian.8.gz /usr/share/doc/guardian "$WANTS/guardian.service" \
	"$WANTS/guardian-service.service" /etc/systemd/system/guardian.service; do
	check "$path is gone" test ! -e "$path" -a ! -L "$path"
done
if ! $had_user; then
	check "user guardian is gone" sh -c '! getent passwd guardian'
	check "group guardian is gone" sh -c '! getent group guardian'
fi
if ! $had_service_user; then
	check "user guardian-service is gone" sh -c '! getent passwd guardian-service'
fi

step_done
echo "deb-test: $failures failed, in $(elapsed "$T0") s"
[ "$failures" = 0 ]
