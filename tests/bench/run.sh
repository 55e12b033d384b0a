#!/bin/sh
# SPDX-License-Identifier: MIT
#
# make bench: benchmarks, printed, never pass/fail.  Every table runs its
# peers in the same run on the same file: fio (libaio, O_DIRECT) on the raw
# file is the physical limit, and each row prints its ratio to it.
#
# Env: BENCH_SECONDS per measurement (default 5), BENCH_SIZE image size
# (default 2G), BENCH_ONLY the sections to run (default all: "raw qcow2
# nbd ring convert").  Files live under BUILD/bench (tmpfs refuses O_DIRECT).
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
only=${BENCH_ONLY:-raw qcow2 nbd ring convert}
for s in $only; do
	case $s in raw | qcow2 | nbd | ring | convert) ;;
	*) echo "bench: BENCH_ONLY: no section '$s' (raw qcow2 nbd ring convert)"; exit 1 ;;
	esac
done
want() { case " $only " in *" $1 "*) return 0 ;; esac; return 1; }

# Images are made through the page cache (tap-img and qemu-img create write
# buffered), and an O_DIRECT request on a file with cached or dirty pages
# pays for coherence (writeback, invalidation, io_uring punting it to a
# worker): every peer starts on a written-back, uncached file.  Root drops
# the whole cache; otherwise each file's own pages are dropped.
settle() { # FILE...
	sync
	if ! { echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; then
		for f in "$@"; do
			dd if="$f" iflag=nocache count=0 status=none 2>/dev/null || true
		done
	fi
}

# best A B -> whichever "iops mib_s" has more IOPS (best of two runs: a
# run that met a noisy neighbour does not decide a ratio)
best() {
	echo "$1 $2" | awk '{ if ($3 > $1) print $3, $4; else print $1, $2 }'
}

if want raw; then
img=$dir/raw.img
rm -f "$img"
"$bin"/tap-img create -f raw -o preallocation=full "$img" "$size" >/dev/null
settle "$img"

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
fi

# ---- qcow2 ---------------------------------------------------------------------------
# The qcow2 driver against the raw driver on the same file system (the
# goal: an allocated image within 10 % of raw), on a fully allocated image
# and on a fresh one (every write allocates), with QEMU's qcow2 behind
# qemu-nbd, driven by fio's nbd engine, as the rival on the allocated image.
if want qcow2; then
raw=$dir/q-raw.img
alloc=$dir/alloc.qcow2
fresh=$dir/fresh.qcow2
sock=$dir/qemu-nbd.sock
rm -f "$raw" "$alloc"
"$bin"/tap-img create -f raw -o preallocation=full "$raw" "$size" >/dev/null
qemu-img create -q -f qcow2 -o preallocation=full "$alloc" "$size"
settle "$raw" "$alloc"

tapimg_fmt() { # FMT FILE RW BS DEPTH
	"$bin"/tap-img bench -f "$1" -i io_uring --rw "$3" -s "$4" -d "$5" --time "$secs" \
		--output=json "$2" | jq -r '(.iops | tostring) + " " + (.mib_s | tostring)'
}

qemu_nbd_run() { # RW BS DEPTH
	rm -f "$sock"
	qemu-nbd -t -f qcow2 --cache=none --aio=native -k "$sock" "$alloc" &
	qpid=$!
	i=0
	while [ ! -S "$sock" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
	fio --name=b --ioengine=nbd --uri="nbd+unix:///?socket=$sock" --rw="$1" --bs="$2" \
		--iodepth="$3" --runtime="$secs" --time_based=1 --size="$size" \
		--randrepeat=0 --norandommap=1 --output-format=json --output="$dir/fio.json" \
		>/dev/null 2>&1 || true
	jq -r '.jobs[0] | (.read.iops + .write.iops | tostring) + " " +
		((.read.bw + .write.bw) / 1024 | tostring)' "$dir/fio.json" 2>/dev/null || echo "0 0"
	rm -f "$dir/fio.json"
	kill $qpid 2>/dev/null || true
	wait $qpid 2>/dev/null || true
}

row() { # RW BS QD NAME RESULT BASE
	ratio=$(echo "${5% *} ${6% *}" | awk '{ printf "%.2f", ($2 > 0) ? $1 / $2 : 0 }')
	printf '%-10s %5s %3s  %-16s %10.0f %9.1f %8s\n' "$1" "$2" "$3" "$4" "${5% *}" "${5#* }" \
		"$ratio"
}

printf '\nqcow2 driver vs the raw driver on the same file system (%ss each, io_uring,\n' "$secs"
printf 'raw and qcow2-allocated alternate, best of two each)\n' 
printf '%-10s %5s %3s  %-16s %10s %9s %8s\n' rw bs qd image IOPS MiB/s vs-raw
for spec in "randread 4k 1" "randread 4k 32" "randwrite 4k 1" "randwrite 4k 32" \
	"read 1M 8" "write 1M 8"; do
	# shellcheck disable=SC2086
	set -- $spec
	r1=$(tapimg_fmt raw "$raw" "$1" "$2" "$3")
	a1=$(tapimg_fmt qcow2 "$alloc" "$1" "$2" "$3")
	r2=$(tapimg_fmt raw "$raw" "$1" "$2" "$3")
	a2=$(tapimg_fmt qcow2 "$alloc" "$1" "$2" "$3")
	base=$(best "$r1" "$r2")
	row "$1" "$2" "$3" raw "$base" "$base"
	row "$1" "$2" "$3" qcow2-allocated "$(best "$a1" "$a2")" "$base"
	case $1 in *write*)
		rm -f "$fresh"
		qemu-img create -q -f qcow2 "$fresh" "$size"
		settle "$fresh"
		row "$1" "$2" "$3" qcow2-fresh "$(tapimg_fmt qcow2 "$fresh" "$1" "$2" "$3")" "$base"
		;;
	esac
	if command -v qemu-nbd >/dev/null; then
		row "$1" "$2" "$3" "qemu-nbd+fio" "$(qemu_nbd_run "$1" "$2" "$3")" "$base"
	fi
done
rm -f "$raw" "$alloc" "$fresh" "$sock"
fi

# ---- NBD: tapdisk vs qemu-nbd through fio's nbd engine (tests/bench/nbd.sh) -------------
! want nbd || BUILD=$BUILD sh "$top/tests/bench/nbd.sh"

# ---- the blkif ring ------------------------------------------------------------------
! want ring || . "$top/tests/bench/ring.sh"

# ---- tap-img convert against qemu-img convert ------------------------------------------
! want convert || BUILD=$BUILD sh "$top/tests/bench/convert.sh"
