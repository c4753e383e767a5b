#!/bin/sh
# deb.sh: makes the Debian packages guardian and guardian-service from trees `make install`
# staged (make deb does both): strips the programs, compresses the man pages, adds the copyright
# and changelog, the control file with Depends computed by dpkg-shlibdeps, the conffiles, the
# md5sums and the maintainer scripts of deploy/debian/, then dpkg-deb --build.
#
#   sh tools/deb.sh DIR    (DIR/guardian and DIR/guardian-service staged; the .debs go to DIR)
#
# Version: GD_VERSION of guardian/version.h (DEB_VERSION overrides it). Needs only dpkg-dev
# (build-essential brings it).
set -eu

DIR=$(cd "$1" && pwd)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VERSION=${DEB_VERSION:-$(sed -n 's/^#define GD_VERSION "\(.*\)"/\1/p' "$ROOT/guardian/version.h")}
ARCH=$(dpkg --print-architecture)
MAINTAINER=${DEB_MAINTAINER:-"guardian maintainers <maintainers@guardian.invalid>"}
# The packages' dates are the last commit's, so that two builds of one tree are the same.
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
	SOURCE_DATE_EPOCH=$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || date +%s)
fi
export SOURCE_DATE_EPOCH
COMMIT=$(git -C "$ROOT" log -1 --format=%h 2>/dev/null || echo unknown)
YEARS=$(LC_ALL=C date -u -d "@$SOURCE_DATE_EPOCH" +%Y)
FIRST=$(git -C "$ROOT" log --reverse --format=%ad --date=format:%Y 2>/dev/null | head -1)
if [ -n "$FIRST" ] && [ "$FIRST" != "$YEARS" ]; then YEARS="$FIRST-$YEARS"; fi

[ -n "$VERSION" ] || { echo "deb: no GD_VERSION in guardian/version.h" >&2; exit 1; }
for tool in dpkg-deb dpkg-shlibdeps strip; do
	command -v $tool >/dev/null 2>&1 || {
		echo "deb: $tool is missing (apt-get install build-essential dpkg-dev)" >&2
		exit 1
	}
done

# Depends of the programs in $1 (usr/bin), as dpkg-shlibdeps finds them from the libraries'
# shlibs and symbols files. It wants a debian/control beside it: a minimal one, in a scratch dir.
shlibs_depends() {
	scratch=$(mktemp -d)
	mkdir "$scratch/debian"
	printf 'Source: guardian\n\nPackage: %s\nArchitecture: any\n' "$2" >"$scratch/debian/control"
	progs=""
	for f in "$1"/usr/bin/*; do
		if file_is_elf "$f"; then progs="$progs $f"; fi
	done
	# shellcheck disable=SC2086
	(cd "$scratch" && dpkg-shlibdeps -O --warnings=1 $progs) |
		sed -n 's/^shlibs:Depends=//p'
	rm -rf "$scratch"
}

file_is_elf() {
	[ "$(head -c 4 "$1" | od -An -c | tr -d ' ')" = '177ELF' ]
}

description() {
	case $1 in
	guardian)
		cat <<'EOF'
Description: bridge from legacy industrial machines to MQTT, through a policy
 guardian is the software of a small bridge box between a legacy machine and
 the network. It reads the machine through the port it already has (Modbus
 TCP, Modbus RTU on RS-485, serial instruments, CAN through SocketCAN or SLCAN
 adapters), passes every value through a default-deny policy and sends only
 what the policy lets through to an MQTT broker over TLS with client
 certificates.
 It attests its program and configuration to an attestation service, keeps
 telemetry in a crash-safe spool while the broker is away, takes signed
 updates with rollback, and serves a field console on a serial port.
 .
 This package holds guardian and its measured launcher guardian-launch, the
 systemd unit (user guardian, group dialout; it starts once
 /etc/guardian/site.json exists), the manuals and example site configs in
 /etc/guardian/examples.
EOF
		;;
	guardian-service)
		cat <<'EOF'
Description: attestation service and certificate authority for guardian devices
 guardian-service is the cloud side of a fleet of guardian bridge boxes: it
 enrolls devices (manufacturer CA), checks each device's signed measurements
 against recorded references before it issues the short-lived certificate
 that lets the device send telemetry (operational CA, with its CRL), keeps the
 failure reports devices send, and signs and publishes update bundles.
 .
 This package holds guardian-service, its systemd unit (user
 guardian-service; it starts once /var/lib/guardian-service is initialised)
 and gd-view, which shows telemetry from mosquitto_sub as readable lines.
EOF
		;;
	esac
}

build() {
	pkg=$1
	tree=$DIR/$pkg
	[ -d "$tree" ] || { echo "deb: $tree is not staged (make deb stages it)" >&2; exit 1; }
	doc=$tree/usr/share/doc/$pkg

	for f in "$tree"/usr/bin/*; do
		if file_is_elf "$f"; then
			strip --strip-unneeded --remove-section=.comment --remove-section=.note "$f"
		fi
	done
	find "$tree/usr/share/man" -type f ! -name '*.gz' -exec gzip -9n {} +
	mkdir -p "$doc"
	cat >"$doc/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: guardian
Comment: Built from the guardian source tree (commit $COMMIT).

Files: *
Copyright: $YEARS the guardian maintainers
License: no-license-stated
 The source tree states no license. All rights are reserved by its authors.
EOF
	printf '%s (%s) unstable; urgency=medium\n\n  * Built from the tree at commit %s.\n\n -- %s  %s\n' \
		"$pkg" "$VERSION" "$COMMIT" "$MAINTAINER" \
		"$(LC_ALL=C date -u -R -d "@$SOURCE_DATE_EPOCH")" | gzip -9n >"$doc/changelog.gz"

	rm -rf "$tree/DEBIAN"
	mkdir -p "$tree/DEBIAN"
	for script in postinst prerm postrm; do
		if [ -f "$ROOT/deploy/debian/$pkg.$script" ]; then
			install -m 0755 "$ROOT/deploy/debian/$pkg.$script" "$tree/DEBIAN/$script"
		fi
	done
	if [ -d "$tree/etc" ]; then
		(cd "$tree" && find etc -type f | LC_ALL=C sort | sed 's|^|/|') >"$tree/DEBIAN/conffiles"
		[ -s "$tree/DEBIAN/conffiles" ] || rm -f "$tree/DEBIAN/conffiles"
	fi
	depends=$(shlibs_depends "$tree" "$pkg")
	[ -n "$depends" ] || { echo "deb: dpkg-shlibdeps found no Depends for $pkg" >&2; exit 1; }
	find "$tree" -path "$tree/DEBIAN" -prune -o -type d -exec chmod 0755 {} +
	size=$(du -sk --exclude=DEBIAN "$tree" | cut -f1)
	{
		echo "Package: $pkg"
		echo "Version: $VERSION"
		echo "Architecture: $ARCH"
		echo "Maintainer: $MAINTAINER"
		echo "Installed-Size: $size"
		echo "Depends: $depends, adduser"
		echo "Section: net"
		echo "Priority: optional"
		description "$pkg"
	} >"$tree/DEBIAN/control"
	(cd "$tree" && find . -path ./DEBIAN -prune -o -type f -print | sed 's|^\./||' |
		LC_ALL=C sort | xargs md5sum) >"$tree/DEBIAN/md5sums"
	find "$tree" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
	dpkg-deb --root-owner-group -Zxz --build "$tree" "$DIR/${pkg}_${VERSION}_${ARCH}.deb" >/dev/null
	echo "deb: $DIR/${pkg}_${VERSION}_${ARCH}.deb (Depends: $depends, adduser)"
}

build guardian
build guardian-service
