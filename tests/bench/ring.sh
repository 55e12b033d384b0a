# SPDX-License-Identifier: MIT
#
# Sourced by run.sh (make bench), whose $bin $dir $secs $size it uses.
# The blkif ring against the physical limit (printed, never pass/fail):
# tap-front through tapdisk's rings over the local transport vs tap-front
# --raw (libaio, O_DIRECT) on the same raw file, fio on it as a
# cross-check, for 4K random reads and writes at QD 1 and 32 and
# 1M sequential reads and writes at QD 8, on a raw image, a fully allocated
# qcow2 image and a fresh one (every write allocates), with 1 queue and 2
# (the same depth per queue, so 2 queues can double what 1 does where the
# device is not the limit).  Ratios are to tap-front --raw runs alternated
# with the row's own (paired).  Every row but the fresh image's is the
# better of two runs.  The ring rows run the I/O
# on tap-front's frames (the local transport maps them) but one, "copy",
# under tapdisk --ring-copy (data copied through tapdisk's pages, as grant
# copy on Xen).
poll=${BENCH_RING_POLL_US:-50} # tapdisk --poll-us for the QD 1 rows' extra line; 0: none
raw=$dir/ring-raw.img
alloc=$dir/ring-alloc.qcow2
fresh=$dir/ring-fresh.qcow2
sock=$dir/ring-td.sock
pidf=$dir/ring-td.pid
td_pid=""

stop_td() {
	[ -n "$td_pid" ] || return 0
	kill "$td_pid" 2>/dev/null || true
	while kill -0 "$td_pid" 2>/dev/null; do sleep 0.05; done
	td_pid=""
}
trap 'stop_td' EXIT

start_td() { # SPEC [TAPDISK OPTION...]
	stop_td
	spec=$1
	shift
	"$bin"/tapdisk -a "$spec" -q 2 --ctl "$sock" --pid-file "$pidf" "$@"
	td_pid=$(cat "$pidf")
}

# tap-front's JSON as "iops mib_s"
tf_json() {
	jq -r '(.iops | tostring) + " " + (.mib_s | tostring)' 2>/dev/null || echo "0 0"
}

ring_opts() { # BS -> the ring options a request of that size needs
	case $1 in
	1M) echo "--indirect 256 --ring-order 2" ;;
	*) echo "" ;;
	esac
}

ring_run() { # RW BS QD QUEUES
	# shellcheck disable=SC2046
	"$bin"/tap-front --ctl "$sock" --rw "$1" --bs "$2" --qd "$3" --queues "$4" \
		--runtime "$secs" --json $(ring_opts "$2") | tf_json
}

raw_run() { # RW BS QD
	"$bin"/tap-front --raw "$raw" --rw "$1" --bs "$2" --qd "$3" --runtime "$secs" --json | tf_json
}

fio_run() { # RW BS QD
	fio --name=b --filename="$raw" --direct=1 --ioengine=libaio --rw="$1" --bs="$2" \
		--iodepth="$3" --runtime="$secs" --time_based=1 --size="$size" \
		--randrepeat=0 --norandommap=1 --output-format=json 2>/dev/null |
		jq -r '.jobs[0] | (.read.iops + .write.iops | tostring) + " " +
			((.read.bw + .write.bw) / 1024 | tostring)'
}

row() { # RW BS QD NAME RESULT BASE
	ratio=$(echo "${5% *} ${6% *}" | awk '{ printf "%.2f", ($2 > 0) ? $1 / $2 : 0 }')
	printf '%-10s %5s %3s  %-22s %10.0f %9.1f %8s\n' "$1" "$2" "$3" "$4" "${5% *}" "${5#* }" \
		"$ratio"
}

"$bin"/tap-img create -f raw -o preallocation=full "$raw" "$size" >/dev/null
qemu-img create -q -f qcow2 -o preallocation=full "$alloc" "$size"
settle "$raw" "$alloc"

twice() { # COMMAND... -> the better of two runs
	best "$("$@")" "$("$@")"
}

# paired RW BS QD NAME COMMAND...: COMMAND and tap-front --raw alternate,
# twice, and the row's ratio is the better ring run to the better raw run
# around it: the device's throughput drifts from minute to minute on a
# shared machine, and a baseline taken a minute earlier would carry that
# drift into the ratio.
paired() {
	_rw=$1 _bs=$2 _qd=$3 _name=$4
	shift 4
	_b1=$(raw_run "$_rw" "$_bs" "$_qd")
	_r1=$("$@")
	_b2=$(raw_run "$_rw" "$_bs" "$_qd")
	_r2=$("$@")
	row "$_rw" "$_bs" "$_qd" "$_name" "$(best "$_r1" "$_r2")" "$(best "$_b1" "$_b2")"
}

printf '\nblkif ring (local transport) vs tap-front --raw on the same file (%ss each;\n' "$secs"
printf 'each row: the better of two runs alternated with two raw runs, ratio to the better raw)\n'
printf '%-10s %5s %3s  %-22s %10s %9s %8s\n' rw bs qd path IOPS MiB/s vs-raw
for spec in "randread 4k 1" "randread 4k 32" "randwrite 4k 1" "randwrite 4k 32" \
	"read 1M 8" "write 1M 8"; do
	# shellcheck disable=SC2086
	set -- $spec
	base=$(twice raw_run "$1" "$2" "$3")
	row "$1" "$2" "$3" "tap-front --raw" "$base" "$base"
	paired "$1" "$2" "$3" "fio libaio" fio_run "$1" "$2" "$3"
	start_td "raw:$raw"
	paired "$1" "$2" "$3" "ring raw 1q" ring_run "$1" "$2" "$3" 1
	paired "$1" "$2" "$3" "ring raw 2q" ring_run "$1" "$2" "$3" 2
	start_td "qcow2:$alloc"
	paired "$1" "$2" "$3" "ring qcow2-alloc 1q" ring_run "$1" "$2" "$3" 1
	paired "$1" "$2" "$3" "ring qcow2-alloc 2q" ring_run "$1" "$2" "$3" 2
	# the rows above run the I/O on tap-front's frames; this one copies, as Xen does
	start_td "qcow2:$alloc" --ring-copy
	paired "$1" "$2" "$3" "ring qcow2-alloc 1q copy" ring_run "$1" "$2" "$3" 1
	if [ "$3" = 1 ] && [ "$poll" -gt 0 ]; then
		# one request at a time: the wake-ups are the ring's cost, polling saves them
		start_td "qcow2:$alloc" --poll-us "$poll"
		paired "$1" "$2" "$3" "ring qcow2-alloc 1q poll" ring_run "$1" "$2" "$3" 1
	fi
	case $1 in *write*)
		for q in 1 2; do
			stop_td
			rm -f "$fresh"
			qemu-img create -q -f qcow2 "$fresh" "$size"
			settle "$fresh"
			start_td "qcow2:$fresh"
			# one run: a second would find the image allocated
			fb=$(raw_run "$1" "$2" "$3")
			row "$1" "$2" "$3" "ring qcow2-fresh ${q}q" "$(ring_run "$1" "$2" "$3" $q)" "$fb"
		done
		;;
	esac
	stop_td
done
rm -f "$raw" "$alloc" "$fresh"

# Queue scaling where the device is not the limit: a raw image in memory
# (tmpfs; tapdisk serves it through the page cache), 4K random reads at
# QD 32 per queue, 1 queue against 2.  The file-backed rows above show the
# device's ceiling instead.
shm=${BENCH_SHM:-/dev/shm}
mem=""
if [ -d "$shm" ] && [ -w "$shm" ]; then
	mem=$(mktemp -d "$shm/qtap-bench.XXXXXX")
fi
if [ -n "$mem" ]; then
	raw=$mem/ring-mem.img
	sock=$mem/td.sock
	pidf=$mem/td.pid
	head -c 1G /dev/urandom >"$raw"
	printf '\nqueue scaling with the device out of the way (raw image on %s, %ss each)\n' \
		"$shm" "$secs"
	printf '%-10s %5s %3s  %-22s %10s %9s %8s\n' rw bs qd path IOPS MiB/s vs-1q
	start_td "raw:$raw"
	for rw in randread randwrite; do
		one=$(twice ring_run "$rw" 4k 32 1)
		row "$rw" 4k 32 "ring mem 1q" "$one" "$one"
		row "$rw" 4k 32 "ring mem 2q" "$(twice ring_run "$rw" 4k 32 2)" "$one"
	done
	stop_td
	rm -rf "$mem"
else
	printf '\nqueue scaling in memory skipped: %s is not a writable directory\n' "$shm"
fi
