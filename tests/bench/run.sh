#!/bin/sh
# SPDX-License-Identifier: MIT
#
# make bench: benchmarks, printed, never pass/fail.  Every table runs its
# peers in the same run on the same file: fio (libaio, O_DIRECT) on the raw
# file is the physical limit, and each row prints its ratio to it.
#
# Env: BENCH_SECONDS per measurement (default 5), BENCH_SIZE image size
# (default 2G).  Files live under BUILD/bench (tmpfs refuses O_DIRECT).
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$top/$BUILD ;; esac
bin=$BUILD/bin
dir=$BUILD/bench
secs=${BENCH_SECONDS:-5}
size=${BENCH_SIZE:-2G}
for c in fio jq; do
	command -v $c >/dev/null || { echo "bench: $c is not installed (make deps)"; exit 1; }
done
mkdir -p "$dir"
img=$dir/raw.img
rm -f "$img"
"$bin"/tap-img create -f raw -o preallocation=full "$img" "$size" >/dev/null

# fio_iops RW BS DEPTH -> "iops mib_s"
fio_run() {
	fio --name=b --filename="$img" --direct=1 --ioengine=libaio --rw="$1" --bs="$2" \
		--iodepth="$3" --runtime="$secs" --time_based=1 --size="$size" \
		--randrepeat=0 --norandommap=1 --output-format=json 2>/dev/null |
		jq -r '.jobs[0] | (.read.iops + .write.iops | tostring) + " " +
			((.read.bw + .write.bw) / 1024 | tostring)'
}

tapimg_run() { # ENGINE RW BS DEPTH
	"$bin"/tap-img bench -f raw -i "$1" --rw "$2" -s "$3" -d "$4" --time "$secs" \
		--output=json "$img" | jq -r '(.iops | tostring) + " " + (.mib_s | tostring)'
}

printf '\nraw driver through tap-img bench vs fio on the same file (%ss each)\n' "$secs"
printf '%-10s %5s %3s  %-9s %10s %9s %8s\n' rw bs qd engine IOPS MiB/s vs-fio
for spec in "randread 4k 1" "randread 4k 32" "randwrite 4k 32" "read 1M 8" "write 1M 8"; do
	# shellcheck disable=SC2086
	set -- $spec
	base=$(fio_run "$1" "$2" "$3")
	printf '%-10s %5s %3s  %-9s %10.0f %9.1f %8s\n' "$1" "$2" "$3" fio \
		"${base% *}" "${base#* }" 1.00
	for engine in io_uring libaio sync; do
		r=$(tapimg_run "$engine" "$1" "$2" "$3")
		ratio=$(echo "${r% *} ${base% *}" | awk '{ printf "%.2f", ($2 > 0) ? $1 / $2 : 0 }')
		printf '%-10s %5s %3s  %-9s %10.0f %9.1f %8s\n' "$1" "$2" "$3" "$engine" \
			"${r% *}" "${r#* }" "$ratio"
	done
done
rm -f "$img"
