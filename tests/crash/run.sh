#!/bin/sh
# SPDX-License-Identifier: MIT
#
# The crash-state harness: for each workload, make an image with qemu-img,
# run the workload through the driver with every write recorded
# (crash-run), then build and check post-crash states from the log
# (crash-replay), and print a table.
#
# Usage: BUILD=dir tests/crash/run.sh [-n STATES] [-q EVERY] [-o OPS] [-s SEED] [WORKLOAD...]
#   -n  states per workload (default 1000)
#   -q  also run qemu-img check on every EVERY-th state (default 25)
#   -o  guest requests per workload run (default 300)
#   -s  the first workload's seed, the next ones count up (default 1)
# Env: CRASH_VG     a prefix for the programs (valgrind)
#      CRASH_DIR    where the images and logs go (default $BUILD/tmp/crash)
#      CRASH_BIN    where crash-run and crash-replay are ($BUILD/tests/bin)
# Exits 1 when a state failed a check, 2 when a workload could not run.
set -eu

top=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$top/$BUILD ;; esac
bin=${CRASH_BIN:-$BUILD/tests/bin}
dir=${CRASH_DIR:-$BUILD/tmp/crash}
vg=${CRASH_VG:-}
states=1000 every=25 ops=300 seed=1
while getopts n:q:o:s: opt; do
	case $opt in
	n) states=$OPTARG ;;
	q) every=$OPTARG ;;
	o) ops=$OPTARG ;;
	s) seed=$OPTARG ;;
	*) exit 2 ;;
	esac
done
shift $((OPTIND - 1))

all="alloc cow-backing discard zeroes sparse-refcount snapshot bitmap extended-l2 lazy compressed libaio"
all="$all lazy-reopen resized multiqueue tapdisk-nbd tapdisk-ring tapimg-resize tapimg-shrink tapimg-repair"
mkdir -p "$dir"

# make_source FILE SIZE: a raw file whose sectors all differ (numbers as
# text) for its first three quarters, then a hole.
make_source() {
	seq 10000000 19999999 | head -c $(($2 / 4 * 3)) >"$1"
	truncate -s "$2" "$1"
}

# make_leaks IMG: every cluster inside IMG's file (64 KiB clusters, 16-bit
# refcounts, one refcount block) with refcount 0 gets refcount 1: leaks.
make_leaks() {
	rt=$(od -An -tx1 -j48 -N8 "$1" | tr -d ' \n')
	rb=$(od -An -tx1 -j$((0x$rt)) -N8 "$1" | tr -d ' \n')
	n=$(($(stat -c %s "$1") / 65536))
	c=0
	while [ $c -lt $n ]; do
		e=$((0x$rb + c * 2))
		if [ "$(od -An -tx2 -j$e -N2 "$1" | tr -d ' ')" = 0000 ]; then
			printf '\000\001' | dd of="$1" bs=1 seek=$e conv=notrunc status=none
		fi
		c=$((c + 1))
	done
}

# setup WORKLOAD IMG: make the image; prints crash-run and crash-replay options.
setup() {
	w=$1 img=$2
	rm -f "$img" "$img".*
	case $w in
	alloc)
		qemu-img create -q -f qcow2 "$img" 64M
		echo "-m w40,a5,f10 -r 16M|"
		;;
	cow-backing)
		make_source "$img.src" 16777216
		qemu-img convert -q -O qcow2 "$img.src" "$img.base"
		qemu-img create -q -f qcow2 -b "$img.base" -F qcow2 "$img" 16M
		echo "-m p40,w15,a5,f10|"
		;;
	discard)
		qemu-img create -q -f qcow2 "$img" 16M
		echo "-m w25,p10,d25,f10|"
		;;
	zeroes)
		make_source "$img.src" 16777216
		qemu-img convert -q -O qcow2 "$img.src" "$img.base"
		qemu-img create -q -f qcow2 -b "$img.base" -F qcow2 "$img" 16M
		echo "-m w20,p10,z20,u20,f10|"
		;;
	sparse-refcount)
		# 512-byte clusters with 64-bit refcounts: a refcount block covers
		# 64 clusters, an L2 table 32 KiB of guest, and one cluster of
		# refcount table 2 MiB of file.  Filled to just under that, then a
		# write per 256 KiB allocates L2 tables and refcount blocks and
		# grows the refcount table.
		qemu-img create -q -f qcow2 -o cluster_size=512,refcount_bits=64 "$img" 1G
		qemu-io -f qcow2 -c "write -P 0x33 0 1600k" "$img" >/dev/null
		echo "-m w40,p10,a5,f10 -S 256k|"
		;;
	snapshot)
		qemu-img create -q -f qcow2 "$img" 16M
		qemu-io -f qcow2 -c "write -P 0x11 0 16M" "$img" >/dev/null
		qemu-img snapshot -c before "$img"
		echo "-m w30,p30,d5,f10|"
		;;
	bitmap)
		qemu-img create -q -f qcow2 "$img" 16M
		qemu-img bitmap --add "$img" b0
		qemu-img bitmap --add -g 4k "$img" b1
		echo "-m w30,p30,z5,f10|"
		;;
	extended-l2)
		make_source "$img.src" 16777216
		qemu-img convert -q -O qcow2 "$img.src" "$img.base"
		qemu-img create -q -f qcow2 -o extended_l2=on -b "$img.base" -F qcow2 "$img" 16M
		echo "-m p40,w10,z10,u5,d5,f10|"
		;;
	lazy)
		make_source "$img.src" 16777216
		qemu-img convert -q -O qcow2 "$img.src" "$img.base"
		qemu-img create -q -f qcow2 -o lazy_refcounts=on -b "$img.base" -F qcow2 "$img" 16M
		echo "-m w30,p20,d5,f10|-L"
		;;
	lazy-reopen)
		# left dirty by a writer that died: the recorded run's open
		# repairs the refcounts first, and a crash may cut that short
		make_source "$img.src" 16777216
		qemu-img convert -q -O qcow2 "$img.src" "$img.base"
		qemu-img create -q -f qcow2 -o lazy_refcounts=on -b "$img.base" -F qcow2 "$img" 16M
		$vg "$bin/crash-run" -K -n 100 -m w30,p20,d5,f10 "$img" "$img.pre" >/dev/null 2>&1 ||
			return 2
		rm -f "$img.pre" "$img.pre".*
		echo "-m w30,p20,d5,f10|-L"
		;;
	compressed)
		qemu-img create -q -f qcow2 "$img" 64M
		echo "-m c40,w5,p10,f10|"
		;;
	libaio)
		make_source "$img.src" 16777216
		qemu-img convert -q -O qcow2 "$img.src" "$img.base"
		qemu-img create -q -f qcow2 -b "$img.base" -F qcow2 "$img" 16M
		echo "-m w20,p20,z5,d5,a5,f10 -e libaio|"
		;;
	resized)
		# L1 grown by a resize (qemu-img's) before the run: 4 KiB clusters,
		# so 16 MiB has 8 L1 entries and 4 GiB 2048 (16 KiB: the table moves).
		qemu-img create -q -f qcow2 -o cluster_size=4096 "$img" 16M
		qemu-io -f qcow2 -c "write -P 0x22 0 4M" "$img" >/dev/null
		qemu-img resize -q "$img" 4G
		echo "-m w30,p20,z5,d5,f10 -S 2M|"
		;;
	multiqueue)
		# three queue threads sharing the image's metadata, as tapdisk -q 3
		make_source "$img.src" 16777216
		qemu-img convert -q -O qcow2 "$img.src" "$img.base"
		qemu-img create -q -f qcow2 -b "$img.base" -F qcow2 "$img" 16M
		echo "-m w20,p25,z5,u5,d5,a5,f10 -q 3 -d 12|"
		;;
	tapdisk-nbd)
		make_source "$img.src" 16777216
		qemu-img convert -q -O qcow2 "$img.src" "$img.base"
		qemu-img create -q -f qcow2 -b "$img.base" -F qcow2 "$img" 16M
		echo "tapdisk|"
		;;
	tapdisk-ring)
		make_source "$img.src" 16777216
		qemu-img convert -q -O qcow2 "$img.src" "$img.base"
		qemu-img create -q -f qcow2 -b "$img.base" -F qcow2 "$img" 16M
		echo "ring|"
		;;
	tapimg-resize)
		# tap-img resize growing L1 (512-byte clusters: 1 MiB has 32 L1
		# entries, 16 MiB 512, 8 clusters: the table moves), recorded
		# between two crash-runs on the image; every crash point inside
		# the resize is checked, and a state's size is the old or the new
		qemu-img create -q -f qcow2 -o cluster_size=512 "$img" 1M
		echo "tap-img resize -q -f qcow2 @ 16M%-r 1M -m w30,p20,a5,f10|-P tap-img"
		;;
	tapimg-shrink)
		# tap-img resize --shrink from 16 MiB to 4 MiB on 512-byte
		# clusters, the image filled first: L2 tables and data clusters
		# freed, the file cut (ftruncate, recorded); crash-runs on the
		# first 2 MiB before and after
		qemu-img create -q -f qcow2 -o cluster_size=512 "$img" 16M
		qemu-io -f qcow2 -c "write -P 0x55 0 16M" "$img" >/dev/null
		echo "tap-img resize -q --shrink -f qcow2 @ 4M%-r 2M -m w30,p20,a5,f10|-P tap-img"
		;;
	tapimg-repair)
		# tap-img check -r all freeing leaked clusters (refcount 1, no
		# reference), recorded between two crash-runs: no crash inside the
		# repair may leave more than leaks, or lose data
		qemu-img create -q -f qcow2 "$img" 16M
		qemu-io -f qcow2 -c "write -P 0x44 0 12M" -c "discard 2M 3M" -c "discard 8M 1M" \
			"$img" >/dev/null
		make_leaks "$img"
		echo "tap-img check -q -r all -f qcow2 @%-r 8M -m w30,p20,d5,f10|-P tap-img"
		;;
	*)
		echo "unknown workload $w" >&2
		return 2
		;;
	esac
}

# io_script N SEED: qemu-io commands, batches of asynchronous writes, zero
# writes and discards on distinct 64 KiB clusters, each batch ended by a
# flush (some by a FUA write); data from per-request patterns.
io_script() {
	awk -v n="$1" -v seed="$2" 'BEGIN {
		srand(seed);
		for (i = 0; i < n; ) {
			delete used;
			for (b = 0; b < 6 && i < n; b++) {
				do c = int(rand() * 256); while (c in used);
				used[c] = 1;
				off = c * 65536; i++;
				r = rand();
				if (r < 0.5) {
					s = int(rand() * 120); l = 1 + int(rand() * (128 - s));
					printf "aio_write -P %d %d %d\n", 1 + int(rand() * 254), off + s * 512, l * 512;
				} else if (r < 0.75) {
					printf "aio_write -P %d %d 65536\n", 1 + int(rand() * 254), off;
				} else if (r < 0.85) {
					printf "aio_write -z %d 65536\n", off;
				} else {
					printf "discard %d 65536\n", off;
				}
			}
			print "aio_flush";
			if (rand() < 0.3) printf "write -f -P 7 %d 4096\n", int(rand() * 4096) * 4096;
			print "flush";
		}
	}'
}

# run_tapimg IMG LOG SPEC: SPEC is "TAP-IMG ARGS%CRASH-RUN OPTIONS", @ in the
# arguments the image: a crash-run, then the tap-img command recorded in
# the same log (QTAP_RECORD=+LOG), then another crash-run (-A).
run_tapimg() {
	targs=${3%%%*} copts=${3#*%}
	half=$((ops / 2 + 1))
	# shellcheck disable=SC2086 # the options are words
	$vg "$bin/crash-run" -n "$half" -s "$seed" $copts "$1" "$2" || return 1
	set -f
	# shellcheck disable=SC2046,SC2086
	QTAP_RECORD=+$2 $vg "$BUILD/bin/tap-img" $(echo $targs | sed "s|@|$1|; s/^tap-img //") ||
		return 1
	set +f
	# shellcheck disable=SC2086
	$vg "$bin/crash-run" -A -n "$half" -s $((seed + 1000)) $copts "$1" "$2"
}

# run_tapdisk IMG LOG: the workload through tapdisk, qemu-io its NBD client.
run_tapdisk() {
	sock=$dir/td.$$.sock pidf=$dir/td.$$.pid
	rm -f "$sock" "$pidf"
	QTAP_RECORD=$2 $vg "$BUILD/bin/tapdisk" -a "qcow2:$1" --nbd "unix:$sock" \
		--pid-file "$pidf" || return 1
	io_script "$ops" "$seed" >"$dir/io.cmds"
	rc_io=0
	# shellcheck disable=SC2046 # one -c per line
	(IFS='
'
	set -f
	exec qemu-io -f raw $(sed 's/^/-c\n/' "$dir/io.cmds") "nbd+unix:///?socket=$sock") \
		>/dev/null || rc_io=1
	pid=$(cat "$pidf")
	kill -TERM "$pid"
	i=0
	while kill -0 "$pid" 2>/dev/null && [ $i -lt 300 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	return $rc_io
}

# run_ring IMG LOG: the workload through tapdisk's blkif rings (the local
# transport), tap-front the frontend: rounds of random writes of one size
# each (--verify: never two in flight on a block), each ended by a FLUSH.
run_ring() {
	sock=$dir/td.$$.ctl pidf=$dir/td.$$.pid
	rm -f "$sock" "$pidf"
	QTAP_RECORD=$2 $vg "$BUILD/bin/tapdisk" -a "qcow2:$1" --ctl "$sock" \
		--pid-file "$pidf" || return 1
	rc_io=0 r=0
	for bs in 4k 512 32k 8k 4k; do
		r=$((r + 1))
		$vg "$BUILD/bin/tap-front" --ctl "$sock" --rw randwrite --bs $bs --qd 8 \
			--ops $((ops / 5 + 1)) --verify --seed $((seed * 10 + r)) --flush \
			>/dev/null || rc_io=1
	done
	pid=$(cat "$pidf")
	kill -TERM "$pid"
	i=0
	while kill -0 "$pid" 2>/dev/null && [ $i -lt 300 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	return $rc_io
}

[ $# -gt 0 ] || set -- $all
rc=0
total_s=0 total_c=0 total_l=0 total_t=0
printf '%-16s %7s %11s %19s %11s %6s\n' workload states corruptions "lost flushed writes" \
	"stale reads" "secs"
for w in "$@"; do
	img=$dir/$w.qcow2
	log=$dir/$w.log
	start=$(date +%s)
	opts=$(setup "$w" "$img") || exit 2
	run_opts=${opts%%|*} replay_opts=${opts#*|}
	if [ "$run_opts" = tapdisk ]; then
		run_tapdisk "$img" "$log" >"$dir/$w.run.out" 2>"$dir/$w.run.err" || {
			echo "$w: the tapdisk run failed:" >&2
			cat "$dir/$w.run.err" >&2
			exit 2
		}
	elif [ "$run_opts" = ring ]; then
		run_ring "$img" "$log" >"$dir/$w.run.out" 2>"$dir/$w.run.err" || {
			echo "$w: the ring run failed:" >&2
			cat "$dir/$w.run.err" >&2
			exit 2
		}
	elif [ "${run_opts#tap-img }" != "$run_opts" ]; then
		run_tapimg "$img" "$log" "$run_opts" >"$dir/$w.run.out" 2>"$dir/$w.run.err" || {
			echo "$w: the tap-img run failed:" >&2
			cat "$dir/$w.run.err" >&2
			exit 2
		}
	# shellcheck disable=SC2086 # the options are words
	elif ! $vg "$bin/crash-run" -n "$ops" -s "$seed" $run_opts "$img" "$log" \
		>"$dir/$w.run.out" 2>"$dir/$w.run.err"; then
		echo "$w: crash-run failed:" >&2
		cat "$dir/$w.run.err" >&2
		exit 2
	fi
	rrc=0
	# shellcheck disable=SC2086
	$vg "$bin/crash-replay" -n "$states" -q "$every" -s "$seed" $replay_opts -w "$w" "$log" \
		>"$dir/$w.out" 2>"$dir/$w.err" || rrc=$?
	line=$(grep "^$w states" "$dir/$w.out" || true)
	if [ -z "$line" ] || [ "$rrc" -gt 1 ]; then
		echo "$w: crash-replay did not finish (exit $rrc):" >&2
		tail -n 20 "$dir/$w.err" >&2
		exit 2
	fi
	set -- $line
	s=$3 c=$5 l=$7 t=$9
	printf '%-16s %7s %11s %19s %11s %6s\n' "$w" "$s" "$c" "$l" "$t" $(($(date +%s) - start))
	if [ "$c" != 0 ] || [ "$l" != 0 ] || [ "$t" != 0 ]; then
		rc=1
		grep -m 5 "crash point" "$dir/$w.err" | sed 's/^/    /' >&2 || true
	fi
	total_s=$((total_s + s)) total_c=$((total_c + c)) total_l=$((total_l + l))
	total_t=$((total_t + t))
	seed=$((seed + 1))
	rm -f "$log" "$log".*
done
printf '%-16s %7s %11s %19s %11s\n' total "$total_s" "$total_c" "$total_l" "$total_t"
exit $rc
