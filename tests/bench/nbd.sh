#!/bin/sh
# SPDX-License-Identifier: MIT
#
# NBD: tapdisk against qemu-nbd (--cache=none --aio=native), both driven by
# fio's nbd engine over a unix socket, on the same qcow2 image in the same
# run (one server at a time), printed, never pass/fail.
#
# Fair to both: each row runs qtap, then qemu-nbd, back to back, each on a
# server started afresh on a file with nothing of it in the page cache
# (synced first: dropping the cache keeps dirty pages).  The allocated
# image holds data, not zeros: qtap answers a read of zeros with a hole
# chunk and qemu-nbd (which looks at block status, not at the bytes) with
# the data, and the write rows of the server measured first would have
# left the other one reading data where the first had read zeros.
#
# The matrix: 4k, 64k and 1M; random and sequential; read and write;
# iodepth 8 and 32; on a fully allocated image, and writes again on a fresh
# one (every write allocates).  Each row prints both servers' IOPS, MiB/s,
# p99 completion latency, the qtap/qemu-nbd throughput ratio, and each
# server's CPU (user + system, all its threads) per GiB moved and per
# request, with the CPU ratio.
#
# Env: BENCH_SECONDS per measurement (default 5), NBD_BENCH_SIZE (default
# 1G), NBD_BENCH_QUEUES tapdisk's queue threads (default 2), NBD_BENCH_ONLY
# a pattern the row's " rw bs qd image " must contain to run (with the
# spaces: " 4k 32 " selects the 4k QD32 rows).
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$top/$BUILD ;; esac
bin=$BUILD/bin
dir=$BUILD/bench/nbd
secs=${BENCH_SECONDS:-5}
size=${NBD_BENCH_SIZE:-1G}
queues=${NBD_BENCH_QUEUES:-2}
only=${NBD_BENCH_ONLY:-}
for c in fio jq qemu-img qemu-io qemu-nbd awk; do
	command -v $c >/dev/null || { echo "bench nbd: $c is not installed (make deps)"; exit 1; }
done
fio --enghelp 2>/dev/null | grep -qx '[[:space:]]*nbd' || {
	echo "bench nbd: this fio has no nbd engine"
	exit 1
}
mkdir -p "$dir"
alloc=$dir/alloc.qcow2
fresh=$dir/fresh.qcow2
sock=$dir/nbd.sock
tck=$(getconf CLK_TCK)
pid=""
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -f "$alloc" "$fresh" "$sock"' EXIT

# Page cache left by qemu-img (it writes through it) makes every O_DIRECT
# write pay for coherence, and io_uring hand each one to a worker thread:
# both servers start on an uncached file.  Only clean pages can be
# dropped, so the file is synced first.
drop_cache() {
	sync "$1"
	dd if="$1" iflag=nocache count=0 status=none 2>/dev/null || true
}

start_server() { # qtap|qemu IMAGE
	drop_cache "$2"
	rm -f "$sock"
	if [ "$1" = qtap ]; then
		"$bin"/tapdisk -f -a "qcow2:$2" -q "$queues" --nbd "unix:$sock" 2>>"$dir/tapdisk.log" &
	else
		qemu-nbd -t -f qcow2 --cache=none --aio=native -k "$sock" "$2" 2>>"$dir/qemu.log" &
	fi
	pid=$!
	i=0
	while [ ! -S "$sock" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
}

stop_server() {
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	pid=""
}

cpu_ticks() {
	awk '{ print $14 + $15 }' "/proc/$pid/stat"
}

# run RW BS QD -> "iops mib_s p99_us cpu_s_per_gib cpu_us_per_req"
run() {
	c0=$(cpu_ticks)
	fio --name=b --ioengine=nbd --uri="nbd+unix:///?socket=$sock" --rw="$1" --bs="$2" \
		--iodepth="$3" --runtime="$secs" --time_based=1 --size="$size" --randrepeat=0 \
		--norandommap=1 --output-format=json --output="$dir/fio.json" >/dev/null 2>&1 || true
	c1=$(cpu_ticks)
	jq -r '.jobs[0] | [(.read.iops + .write.iops), ((.read.bw + .write.bw) / 1024),
		((.read.clat_ns.percentile["99.000000"] // 0) +
		 (.write.clat_ns.percentile["99.000000"] // 0)) / 1000,
		(.read.io_bytes + .write.io_bytes) / 1024 / 1024 / 1024,
		(.read.total_ios + .write.total_ios)] | @tsv' "$dir/fio.json" 2>/dev/null |
		awk -v c="$((c1 - c0))" -v tck="$tck" '{
			cpu = c / tck
			printf "%.0f %.1f %.0f %.3f %.1f\n", $1, $2, $3,
				($4 > 0 ? cpu / $4 : 0), ($5 > 0 ? cpu * 1e6 / $5 : 0) }' ||
		echo "0 0 0 0 0"
	rm -f "$dir/fio.json"
}

rows() { # IMAGE-KIND: the specs to run
	for bs in 4k 64k 1M; do
		for rw in randread read randwrite write; do
			if [ "$1" = fresh ]; then
				case $rw in *read) continue ;; esac
			fi
			for qd in 8 32; do
				case " $rw $bs $qd $1 " in *"$only"*) echo "$rw $bs $qd $1" ;; esac
			done
		done
	done
}

measure() { # SERVER RW BS QD IMAGE-KIND -> "result..." of run
	if [ "$5" = fresh ]; then
		rm -f "$fresh"
		qemu-img create -q -f qcow2 "$fresh" "$size"
		start_server "$1" "$fresh"
	else
		start_server "$1" "$alloc"
	fi
	run "$2" "$3" "$4"
	stop_server
}

echo "bench nbd: allocating a $size qcow2 image and filling it with data"
qemu-img create -q -f qcow2 -o preallocation=full "$alloc" "$size"
qemu-io -f qcow2 -t none -c "write -q -P 0x5a 0 $size" "$alloc" >/dev/null
: >"$dir/qtap.rows"
: >"$dir/qemu.rows"
for kind in alloc fresh; do
	rows "$kind" | while read -r rw bs qd k; do
		echo "$rw $bs $qd $k $(measure qtap "$rw" "$bs" "$qd" "$k")" >>"$dir/qtap.rows"
		echo "$rw $bs $qd $k $(measure qemu "$rw" "$bs" "$qd" "$k")" >>"$dir/qemu.rows"
	done
done

printf '\nNBD through fio (nbd engine, one connection): tapdisk -q %s vs qemu-nbd --cache=none --aio=native (%ss each)\n' \
	"$queues" "$secs"
printf 'provisional figures: other work shares this machine\n'
printf '%-9s %4s %3s %-5s | %8s %8s %7s | %8s %8s %7s | %5s | %8s %8s %6s %6s %5s\n' \
	rw bs qd image qtapIOPS MiB/s p99us qemuIOPS MiB/s p99us ratio \
	qtCPUs/G qeCPUs/G qtus/r qeus/r cpu-r
paste -d' ' "$dir/qtap.rows" "$dir/qemu.rows" | awk '{
	ratio = ($14 > 0) ? $5 / $14 : 0
	cpur = ($18 > 0) ? $9 / $18 : 0
	printf "%-9s %4s %3s %-5s | %8d %8.1f %7d | %8d %8.1f %7d | %5.2f | %8.3f %8.3f %6.1f %6.1f %5.2f\n",
		$1, $2, $3, $4, $5, $6, $7, $14, $15, $16, ratio, $8, $17, $9, $18, cpur }'
rm -f "$dir/qtap.rows" "$dir/qemu.rows"
