#!/bin/sh
# SPDX-License-Identifier: MIT
#
# tap-img convert against qemu-img convert, in the same run, on the same
# source: a BENCH_CONVERT_SIZE (default 4G) raw disk of mixed content, a
# quarter of it data (incompressible random, compressible text, explicit
# zeros) in runs spread over the disk, the rest holes.  Cases: raw->qcow2,
# qcow2->raw, qcow2->qcow2 -c with deflate and with zstd.  Each result is
# checked equal to qemu-img's (qemu-img compare); the table prints both
# times (the best and the median wall time of the runs, the median CPU
# time), qemu-img's best time over ours (above 1: tap-img is faster), then
# every run's wall time.
#
# BENCH_CONVERT_RUNS (default 5) runs per tool and case, 2 for the
# compressed cases (BENCH_CONVERT_RUNS_C), alternating the tools
# (q t t q q t ...).  BENCH_CONVERT_CACHE=cold (the default, when root)
# syncs and drops the page cache before every timed run, =warm only syncs.
# Why: on the shared 2-core VM the same run of either tool took from 0.2
# to 1.7 s depending on what the run before it left: a source still in the
# page cache or not, and memory just freed (the previous output deleted, or
# the cache dropped) that the host has taken back and must fault in again
# (free page reporting).  Starting every run cold puts both tools in the
# same state, the one an administrator converting an image is in; warm
# runs measure the copy out of the cache alone, and vary more.
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
trap 'rm -f "$dir"/*.raw "$dir"/*.qcow2 "$dir"/chunk.* "$dir"/times.* "$dir"/qbest' EXIT

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

runs=${BENCH_CONVERT_RUNS:-5}
runs_c=${BENCH_CONVERT_RUNS_C:-2}
cache=${BENCH_CONVERT_CACHE:-cold}
if [ "$cache" = cold ] && ! [ -w /proc/sys/vm/drop_caches ]; then
	echo "bench: cannot drop the page cache (not root): runs are warm"
	cache=warm
fi

# cpu FILE: the user + system seconds in FILE, the output of "times" (its
# second line: the children's).
cpu() {
	awk 'NR == 2 { t = 0; for (i = 1; i <= 2; i++) { split($i, a, "m"); t += a[1] * 60 + a[2] }
		printf "%.6f", t }' "$1"
}

# timed OUT CMD...: run CMD (writing OUT, removed first) and print its
# seconds, wall:cpu (CPU: user + system, the process's threads and io_uring
# workers alike; steadier than the wall time when the machine is shared).
# Untimed before it: the previous outputs' dirty pages are written back, so
# that no tool's time includes writing back the other's data, and with
# cache=cold the page cache is dropped.
timed() {
	out=$1
	shift
	rm -f "$out"
	sync
	if [ "$cache" = cold ]; then
		echo 3 >/proc/sys/vm/drop_caches
	fi
	times >"$dir/times.a" # here, not in a subshell: the children of this one
	a=$(now)
	"$@" "$out"
	b=$(now)
	times >"$dir/times.b"
	c=$(cpu "$dir/times.a")
	d=$(cpu "$dir/times.b")
	awk -v a="$a" -v b="$b" -v c="$c" -v d="$d" 'BEGIN { printf "%.9f:%.6f", b - a, d - c }'
}

# row NAME RUNS SRC_FMT SRC DST_FMT ARGS...: time both tools RUNS times each,
# alternating which goes first, check, print a row.
row() {
	name=$1 n=$2 sfmt=$3 src=$4 dfmt=$5
	shift 5
	qs="" ts=""
	i=0
	while [ "$i" -lt "$n" ]; do
		if [ $((i % 2)) -eq 0 ]; then
			qs="$qs $(timed q.out qemu-img convert -f "$sfmt" -O "$dfmt" "$@" "$src")"
			ts="$ts $(timed t.out "$bin"/tap-img convert -f "$sfmt" -O "$dfmt" "$@" "$src")"
		else
			ts="$ts $(timed t.out "$bin"/tap-img convert -f "$sfmt" -O "$dfmt" "$@" "$src")"
			qs="$qs $(timed q.out qemu-img convert -f "$sfmt" -O "$dfmt" "$@" "$src")"
		fi
		i=$((i + 1))
	done
	same=ok
	qemu-img compare -q -f "$dfmt" -F "$dfmt" q.out t.out || same=DIFFERS
	awk -v n="$name" -v qs="$qs" -v ts="$ts" -v r="$same" -v qbest="$dir/qbest" '
	function sort(a, k,   i, j, x) {
		for (i = 2; i <= k; i++)
			for (j = i; j > 1 && a[j - 1] > a[j]; j--) { x = a[j]; a[j] = a[j - 1]; a[j - 1] = x }
	}
	function med(a, k) { return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2 }
	# split "wall:cpu ..." into w[] and c[], both sorted; the runs in order in *o
	function parse(s, w, c,   a, k, i, x) {
		k = split(s, a, " "); o = ""
		for (i = 1; i <= k; i++) {
			split(a[i], x, ":"); w[i] = x[1]; c[i] = x[2]
			o = o sprintf(" %.2f", x[1])
		}
		sort(w, k); sort(c, k)
		return k
	}
	BEGIN {
		k = parse(qs, qw, qc); ql = o; parse(ts, tw, tc); tl = o
		printf "%.9f\n", qw[1] > qbest
		printf "%-26s %6.2f %6.2f %6.2f %7.2f %6.2f %6.2f %6.2fx  %s   (runs:%s /%s)\n",
			n, qw[1], med(qw, k), med(qc, k), tw[1], med(tw, k), med(tc, k),
			qw[1] / tw[1], r, ql, tl }'
}

printf '\nconvert, %s of mixed data and holes, %s runs (seconds: best and median wall,\n' "$size" "$cache"
printf 'median CPU; ratio = qemu-img / tap-img, best wall)\n'
printf '%-26s %6s %6s %6s %7s %6s %6s %7s  %s\n' case q-best q-med q-cpu t-best t-med t-cpu ratio \
	result
row "raw -> qcow2" "$runs" raw src.raw qcow2
qemu-img convert -f raw -O qcow2 src.raw src.qcow2
row "qcow2 -> raw" "$runs" qcow2 src.qcow2 raw
q2r=$(cat "$dir/qbest")
row "qcow2 -> qcow2 -c deflate" "$runs_c" qcow2 src.qcow2 qcow2 -c
row "qcow2 -> qcow2 -c zstd" "$runs_c" qcow2 src.qcow2 qcow2 -c -o compression_type=zstd

# The floor under qcow2 -> raw: reading the source's clusters once, from a
# dropped cache, with fio at the depth the device likes best (O_DIRECT,
# 2M, QD 32), the better of two.  No convert can beat it; where qemu-img's
# best time is already within 1.2x of it, a 1.2x lead is out of reach.
if command -v fio >/dev/null && command -v jq >/dev/null && [ "$cache" = cold ]; then
	fl=""
	for _ in 1 2; do
		sync
		echo 3 >/proc/sys/vm/drop_caches
		t=$(fio --name=floor --filename=src.qcow2 --direct=1 --ioengine=libaio --rw=read \
			--bs=2M --iodepth=32 --output-format=json 2>/dev/null |
			jq -r '.jobs[0].read | if .bw_bytes > 0 then .io_bytes / .bw_bytes else 0 end')
		fl="$fl $t"
	done
	echo "$fl $q2r" | awk '{ f = ($1 < $2) ? $1 : $2
		printf "floor: fio reads the qcow2 source once (O_DIRECT, 2M, QD 32) in %.2f s;", f
		printf " the best qcow2 -> raw ratio possible over qemu-img is %.2fx\n",
			(f > 0) ? $3 / f : 0 }'
fi
