#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Runs the unit test binaries and/or the integration scripts, each under a
# timeout, several at a time, and ends with one line:
# "N passed, N failed, N skipped". Exit 77 from a test means skipped; its
# last "SKIP:" line says why.
#
# Usage: BUILD=dir tests/run-tests.sh [unit] [integration]
# Env:   QTAP_VALGRIND=1   run everything under valgrind
#        TESTS="pattern"   only tests whose name contains the pattern
#        QTAP_TEST_TIMEOUT seconds per test (default 300)
#        QTAP_TEST_JOBS    tests run at once (default: the number of CPUs)
#
# Every test works in a directory of its own ($BUILD/tmp/NAME.PID), so they
# can run side by side. The tests that took longest last time start first
# (their times are kept in $BUILD/test-logs/times), so that the run is not
# left waiting on one long test at the end.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$top/$BUILD ;; esac
export BUILD
export QTAP_TEST_DIR="$BUILD/tmp"
logs=$BUILD/test-logs
mkdir -p "$QTAP_TEST_DIR" "$logs"
timeout_s=${QTAP_TEST_TIMEOUT:-300}
jobs=${QTAP_TEST_JOBS:-$(nproc 2>/dev/null || echo 1)}
[ "$jobs" -ge 1 ] 2>/dev/null || jobs=1
results=$logs/results.$$
times=$logs/times
: >"$results"

vg=""
if [ "${QTAP_VALGRIND:-0}" = 1 ]; then
	vg="valgrind --quiet --leak-check=full --show-leak-kinds=definite,indirect"
	vg="$vg --errors-for-leak-kinds=definite,indirect --error-exitcode=119"
	vg="$vg --suppressions=$top/tests/valgrind.supp"
	timeout_s=$((timeout_s * 4))
	times=$logs/times-valgrind
fi

# One test: run it, print its line, append "name status secs" to $results.
run_one() { # name, command...
	local name=$1 log rc start secs status
	shift
	log=$logs/$name.log
	mkdir -p "$(dirname "$log")"
	start=$(date +%s)
	timeout -k 10 "$timeout_s" "$@" >"$log" 2>&1 </dev/null
	rc=$?
	secs=$(($(date +%s) - start))
	case $rc in
	0)
		status=pass
		printf 'PASS  %-44s %3ss\n' "$name" "$secs"
		;;
	77)
		status=skip
		why=$(grep -h '^SKIP:' "$log" | tail -n 1)
		printf 'SKIP  %-44s %s\n' "$name" "${why#SKIP: }"
		;;
	*)
		status=fail
		[ $rc = 124 ] && echo "(timed out after ${timeout_s}s)" >>"$log"
		{
			printf 'FAIL  %-44s exit %s, log: %s\n' "$name" "$rc" "$log"
			tail -n 30 "$log" | sed 's/^/      | /'
		} | cat
		;;
	esac
	echo "$name $status $secs" >>"$results"
}

# The list: "name command..." lines, longest-known first.
list=$(
	for suite in "$@"; do
		case $suite in
		unit)
			for t in "$BUILD"/tests/unit/test-*; do
				[ -x "$t" ] || continue
				case $t in *.o | *.d) continue ;; esac
				echo "unit/$(basename "$t") $vg $t"
			done
			;;
		integration)
			for t in "$top"/tests/integration/test-*.sh; do
				[ -f "$t" ] || continue
				echo "integration/$(basename "$t" .sh) bash $t"
			done
			;;
		*)
			echo "run-tests.sh: unknown suite '$suite' (unit, integration)" >&2
			exit 2
			;;
		esac
	done
) || exit 2
list=$(printf '%s\n' "$list" | while read -r name cmd; do
	case $name in *"${TESTS:-}"*) ;; *) continue ;; esac
	secs=$(awk -v n="$name" '$1 == n { s = $2 } END { print s + 0 }' "$times" 2>/dev/null || echo 0)
	echo "$secs $name $cmd"
done | sort -k1,1nr -k2,2 | cut -d' ' -f2-)

running=0
while read -r name cmd; do
	[ -n "$name" ] || continue
	if [ "$running" -ge "$jobs" ]; then
		wait -n
		running=$((running - 1))
	fi
	# shellcheck disable=SC2086
	run_one "$name" $cmd &
	running=$((running + 1))
done <<<"$list"
wait

pass=$(grep -c ' pass ' "$results")
fail=$(grep -c ' fail ' "$results")
skip=$(grep -c ' skip ' "$results")
failed_names=$(awk '$2 == "fail" { printf " %s", $1 }' "$results")
# Keep the times for the next run's order (a partial run updates its tests).
{
	[ -f "$times" ] && awk 'NR == FNR { seen[$1] = 1; next } !($1 in seen)' "$results" "$times"
	awk '{ print $1, $3 }' "$results"
} >"$times.$$" 2>/dev/null
mv "$times.$$" "$times"
rm -f "$results"

echo "$pass $fail $skip" >"$BUILD/test-counts"
[ -n "$failed_names" ] && echo "failed:$failed_names"
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
