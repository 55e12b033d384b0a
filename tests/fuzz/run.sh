#!/bin/sh
# SPDX-License-Identifier: MIT
#
# make fuzz: build every tests/fuzz/fuzz-*.c as a libFuzzer target (clang,
# ASan+UBSan) against instrumented archives, then run each for
# FUZZ_SECONDS (default 60) from its seed corpus in tests/fuzz/corpus/NAME.
# New inputs go to build-fuzz/corpus/NAME; crashes to build-fuzz/crashes.
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
B=build-fuzz
secs=${FUZZ_SECONDS:-60}
make --no-print-directory BUILD=$B CC=clang SANITIZE=address,undefined OPT='-O1 -g' \
	CFLAGS=-fsanitize=fuzzer-no-link all >/dev/null
archives=$(for d in tools tapdisk control drivers lib; do
	[ -f $B/$d/lib$d.a ] && echo $B/$d/lib$d.a; done)
libs="$(pkg-config --libs liburing jansson zlib libzstd) -laio -lpthread"
mkdir -p $B/crashes
status=0
for src in tests/fuzz/fuzz-*.c; do
	[ -f "$src" ] || continue
	name=$(basename "$src" .c)
	# shellcheck disable=SC2086
	clang -std=gnu11 -O1 -g -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -I. -Ilib -Idrivers \
		-fsanitize=fuzzer,address,undefined -o $B/$name "$src" $archives $libs
	mkdir -p $B/corpus/$name
	seeds=tests/fuzz/corpus/$name
	[ -d "$seeds" ] || seeds=""
	echo "fuzz: $name for ${secs}s"
	# shellcheck disable=SC2086
	if ! $B/$name -max_total_time="$secs" -artifact_prefix=$B/crashes/$name- \
		-print_final_stats=1 $B/corpus/$name $seeds >$B/$name.log 2>&1; then
		echo "fuzz: $name FAILED, see $B/$name.log and $B/crashes/"
		tail -n 40 $B/$name.log
		status=1
	else
		grep -E 'stat::number_of_executed_units' $B/$name.log || true
	fi
done
exit $status
