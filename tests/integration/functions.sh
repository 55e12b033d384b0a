# SPDX-License-Identifier: MIT
#
# Sourced by every integration test:  . "$(dirname "$0")/functions.sh"
#
#   requires CMD...     skip (exit 77, with the reason) unless CMD exists
#   requires_root       skip unless running as root
#   skip MSG / die MSG  exit 77 / exit 1 with a message
#   on_exit CMD         run CMD at exit; last registered runs first
#   mktmp NAME          a fresh path under this test's directory in $BUILD
#   wait_for_path P [S] wait up to S seconds (default 10) for P to exist
#   $BUILD $BIN $VG     build dir (absolute), its bin/, valgrind prefix
#   $TAPIMG             tap-img under $VG
set -eu

: "${BUILD:?BUILD must name the build directory (run through make check)}"
BIN=$BUILD/bin
TOP=$(cd "$(dirname "$0")/../.." && pwd)
TEST_NAME=$(basename "$0" .sh)
TEST_DIR=$BUILD/tmp/$TEST_NAME.$$
rm -rf "$TEST_DIR"
mkdir -p "$TEST_DIR"

VG=""
if [ "${QTAP_VALGRIND:-0}" = 1 ]; then
	VG="valgrind --quiet --leak-check=full --show-leak-kinds=definite,indirect"
	VG="$VG --errors-for-leak-kinds=definite,indirect --error-exitcode=119"
	VG="$VG --suppressions=$TOP/tests/valgrind.supp"
fi
TAPIMG="$VG $BIN/tap-img"

skip() { echo "SKIP: $*"; exit 77; }
die() { echo "FAIL: $*" >&2; exit 1; }

requires() {
	for c in "$@"; do
		command -v "$c" >/dev/null 2>&1 || skip "$c is not installed"
	done
}

requires_root() {
	[ "$(id -u)" -eq 0 ] || skip "needs root"
}

_on_exit_cmds=""
on_exit() {
	_on_exit_cmds="$*
$_on_exit_cmds"
}
_run_on_exit() {
	rc=$?
	set +e
	printf '%s\n' "$_on_exit_cmds" | while IFS= read -r cmd; do
		[ -n "$cmd" ] && eval "$cmd"
	done
	[ "$rc" -eq 0 ] && rm -rf "$TEST_DIR"
	exit "$rc"
}
trap _run_on_exit EXIT
trap 'exit 130' INT TERM

mktmp() {
	echo "$TEST_DIR/$1"
}

wait_for_path() {
	_deadline=$(($(date +%s) + ${2:-10}))
	while [ ! -e "$1" ]; do
		[ "$(date +%s)" -lt "$_deadline" ] || return 1
		sleep 0.05
	done
}
