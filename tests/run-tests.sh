#!/bin/sh
# SPDX-License-Identifier: MIT
#
# Runs the unit test binaries and/or the integration scripts, each under a
# timeout, and ends with one line: "N passed, N failed, N skipped".
# Exit 77 from a test means skipped; its last "SKIP:" line says why.
#
# Usage: BUILD=dir tests/run-tests.sh [unit] [integration]
# Env:   QTAP_VALGRIND=1   run everything under valgrind
#        TESTS="pattern"   only tests whose name contains the pattern
#        QTAP_TEST_TIMEOUT seconds per test (default 300)
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$top/$BUILD ;; esac
export BUILD
export QTAP_TEST_DIR="$BUILD/tmp"
logs=$BUILD/test-logs
mkdir -p "$QTAP_TEST_DIR" "$logs"
timeout_s=${QTAP_TEST_TIMEOUT:-300}
pass=0 fail=0 skip=0 failed_names=""

vg=""
if [ "${QTAP_VALGRIND:-0}" = 1 ]; then
	vg="valgrind --quiet --leak-check=full --show-leak-kinds=definite,indirect"
	vg="$vg --errors-for-leak-kinds=definite,indirect --error-exitcode=119"
	vg="$vg --suppressions=$top/tests/valgrind.supp"
	timeout_s=$((timeout_s * 4))
fi

run_one() { # name, command...
	name=$1
	shift
	case $name in *"${TESTS:-}"*) ;; *) return 0 ;; esac
	log=$logs/$name.log
	mkdir -p "$(dirname "$log")"
	start=$(date +%s)
	timeout -k 10 "$timeout_s" "$@" >"$log" 2>&1 </dev/null
	rc=$?
	secs=$(($(date +%s) - start))
	case $rc in
	0)
		pass=$((pass + 1))
		printf 'PASS  %-44s %3ss\n' "$name" "$secs"
		;;
	77)
		skip=$((skip + 1))
		why=$(grep -h '^SKIP:' "$log" | tail -n 1)
		printf 'SKIP  %-44s %s\n' "$name" "${why#SKIP: }"
		;;
	*)
		fail=$((fail + 1))
		failed_names="$failed_names $name"
		[ $rc = 124 ] && echo "(timed out after ${timeout_s}s)" >>"$log"
		printf 'FAIL  %-44s exit %s, log: %s\n' "$name" "$rc" "$log"
		tail -n 30 "$log" | sed 's/^/      | /'
		;;
	esac
}

for suite in "$@"; do
	case $suite in
	unit)
		for t in "$BUILD"/tests/unit/test-*; do
			[ -x "$t" ] || continue
			case $t in *.o | *.d) continue ;; esac
			# shellcheck disable=SC2086
			run_one "unit/$(basename "$t")" $vg "$t"
		done
		;;
	integration)
		for t in "$top"/tests/integration/test-*.sh; do
			[ -f "$t" ] || continue
			run_one "integration/$(basename "$t" .sh)" bash "$t"
		done
		;;
	*)
		echo "run-tests.sh: unknown suite '$suite' (unit, integration)" >&2
		exit 2
		;;
	esac
done

echo "$pass $fail $skip" >"$BUILD/test-counts"
[ -n "$failed_names" ] && echo "failed:$failed_names"
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
