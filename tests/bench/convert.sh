#!/bin/sh
# SPDX-License-Identifier: MIT
#
# tap-img convert against qemu-img convert, in the same run, on the same
# source: a BENCH_CONVERT_SIZE (default 4G) raw disk of mixed content, a
# quarter of it data (incompressible random, compressible text, explicit
# zeros) in runs spread over the disk, the rest holes.  Cases: raw->qcow2,
# qcow2->raw, qcow2->qcow2 -c with deflate and with zstd.  Each result is
# checked equal to qemu-img's (qemu-img compare); the table prints both
# times (the better of two runs each) and qemu-img's time over ours (above
# 1: tap-img is faster), then every run's time.
# Printed, never pass/fail; figures are only as steady as the machine.
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$top/$BUILD ;; esac
bin=$BUILD/bin
dir=$BUILD/bench/convert
size=${BENCH_CONVERT_SIZE:-4G}
command -v qemu-img >/dev/null || { echo "bench: qemu-img is not installed (make deps)"; exit 1; }
mkdir -p "$dir"
cd "$dir"
trap 'rm -f "$dir"/*.raw "$dir"/*.qcow2 "$dir"/chunk.*' EXIT

# ---- the source ---------------------------------------------------------------------
mib=$(qemu-img measure --size "$size" -O raw | awk '/required/ { print int($3 / 1048576) }')
rm -f src.raw
truncate -s "${mib}M" src.raw
head -c 16M /dev/urandom >chunk.rand
base64 -w 100 /dev/urandom | head -c 16M >chunk.text
region=64
i=0
while [ $((i * region + region)) -le "$mib" ]; do
	case $((i % 4)) in
	0) chunk=chunk.rand ;;
	1) chunk=chunk.text ;;
	2) chunk=/dev/zero ;; # data that reads as zeros: zero detection
	3) chunk="" ;;        # a hole
	esac
	if [ -n "$chunk" ]; then
		dd if="$chunk" of=src.raw bs=1M count=16 seek=$((i * region + (i * 7) % 48)) \
			conv=notrunc status=none
	fi
	i=$((i + 1))
done

now() { date +%s.%N; }

# timed OUT CMD...: run CMD (writing OUT, removed first) and print its seconds.
# Untimed before it: the previous outputs' dirty pages are written back, so
# that no tool's time includes writing back the other's data.
timed() {
	out=$1
	shift
	rm -f "$out"
	sync
	a=$(now)
	"$@" "$out"
	b=$(now)
	awk -v a="$a" -v b="$b" 'BEGIN { printf "%.9f", b - a }'
}

# row NAME SRC_FMT SRC DST_FMT ARGS...: time both tools, check, print a row.
# Each tool runs twice, in the order qemu-img, tap-img, tap-img, qemu-img,
# and its faster run counts: on the shared 2-core VM this was measured,
# the tool that ran second in a pair was up to 5 times slower in its
# kernel copies whichever tool it was (memory just freed by deleting the
# previous outputs is slow to reuse), which a single run in a fixed order
# charged to tap-img every time.
row() {
	name=$1 sfmt=$2 src=$3 dfmt=$4
	shift 4
	q1=$(timed q.out qemu-img convert -f "$sfmt" -O "$dfmt" "$@" "$src")
	t1=$(timed t.out "$bin"/tap-img convert -f "$sfmt" -O "$dfmt" "$@" "$src")
	t2=$(timed t.out "$bin"/tap-img convert -f "$sfmt" -O "$dfmt" "$@" "$src")
	q2=$(timed q.out qemu-img convert -f "$sfmt" -O "$dfmt" "$@" "$src")
	same=ok
	qemu-img compare -q -f "$dfmt" -F "$dfmt" q.out t.out || same=DIFFERS
	awk -v n="$name" -v q1="$q1" -v q2="$q2" -v t1="$t1" -v t2="$t2" -v r="$same" 'BEGIN {
		q = q1 < q2 ? q1 : q2; t = t1 < t2 ? t1 : t2
		printf "%-26s %9.2f %9.2f %8.2fx  %s   (runs: %.2f %.2f / %.2f %.2f)\n",
			n, q, t, q / t, r, q1, q2, t1, t2 }'
}

printf '\nconvert, %s of mixed data and holes (seconds; ratio = qemu-img / tap-img)\n' "$size"
printf '%-26s %9s %9s %9s  %s\n' case qemu-img tap-img ratio result
row "raw -> qcow2" raw src.raw qcow2
qemu-img convert -f raw -O qcow2 src.raw src.qcow2
row "qcow2 -> raw" qcow2 src.qcow2 raw
row "qcow2 -> qcow2 -c deflate" qcow2 src.qcow2 qcow2 -c
row "qcow2 -> qcow2 -c zstd" qcow2 src.qcow2 qcow2 -c -o compression_type=zstd
