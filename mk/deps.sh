#!/bin/sh
# SPDX-License-Identifier: MIT
#
# make deps: check for the Debian packages qtap builds and tests with.
# As root, install the missing ones non-interactively; otherwise print the
# exact apt-get command and fail, so that nothing is half-set-up silently.
set -eu

# Build: compilers, libraries and their headers.
BUILD_PKGS="make gcc clang libclang-rt-14-dev pkg-config libaio-dev liburing-dev libxen-dev
libcmocka-dev zlib1g-dev libzstd-dev libjansson-dev libfuse3-dev libnbd-dev"
# Tests and checks: the real peers qtap must interoperate with.
TEST_PKGS="qemu-utils nbdkit libnbd-bin fio e2fsprogs fuse3 valgrind clang-format util-linux
procps xxd jq python3"

missing=""
for p in $BUILD_PKGS $TEST_PKGS; do
	st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
	[ "$st" = installed ] || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "qtap needs these Debian packages:$missing" >&2
	echo "install them with:  sudo apt-get install -y$missing" >&2
	exit 1
fi
echo "make deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing </dev/null >/dev/null
