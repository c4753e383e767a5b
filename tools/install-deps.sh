#!/bin/sh
# install-deps.sh: installs the Debian 12 packages guardian needs, only those missing.
set -eu
# Extra packages may be named as arguments (make fuzz adds clang).
PKGS="build-essential pkg-config libmodbus-dev libserialport-dev libpaho-mqtt-dev libmbedtls-dev
libcjson-dev libcriterion-dev libssl-dev libzstd-dev libseccomp-dev mosquitto mosquitto-clients openssl socat
libtss2-dev swtpm swtpm-tools libsqlite3-dev libpq-dev postgresql $*"
missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0
echo "install-deps: installing:$missing"
SUDO=""
if [ "$(id -u)" != 0 ]; then
	command -v sudo >/dev/null 2>&1 || { echo "install-deps: need root or sudo to install:$missing" >&2; exit 1; }
	SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing
# The packaged broker must not hold the ports tests and the demo use.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet mosquitto 2>/dev/null; then
	$SUDO systemctl stop mosquitto || true
	$SUDO systemctl disable mosquitto || true
fi
