#!/bin/sh
# SPDX-License-Identifier: MIT
#
# tap-front's verified loads through tapdisk's rings, on a raw image and on
# a qcow2 image over a raw backing file: every ABI, indirect requests,
# multi-page rings and two queues, thousands of random requests each, each
# run in a region of its own whose unwritten blocks must read as the
# backing file's bytes.  Then a last sequential pass writes the whole disk
# through the ring, and QEMU must read back exactly what tap-front --raw
# wrote into a plain file with the same seed (qemu-img compare), with
# qemu-img check clean on the qcow2 image.
#
# All of it twice: with the I/O on tap-front's frames (the default on the
# local transport), and with tapdisk --ring-copy (through tapdisk's own
# pages), each on images of its own; a paused disk holding a load's
# requests shows which path they took (info's mapped and copied).
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/ring-functions.sh"
requires qemu-img qemu-io python3 jq

ops=$(scaled 2000)
base=$(mktmp base.raw)
img=$(mktmp vm.qcow2)
raw=$(mktmp plain.raw)
img_copy=$(mktmp vm-copy.qcow2)
raw_copy=$(mktmp plain-copy.raw)
ref=$(mktmp ref.raw)

# Wrong command lines are refused, naming the fault.
refused() { # expected-message, args...
	want=$1
	shift
	out=$($BIN/tap-front "$@" 2>&1) && die "tap-front $* was accepted"
	echo "$out" | grep -qF -- "$want" || die "tap-front $*: message was: $out"
}
refused "exactly one of --ctl SOCKET" --rw read
refused "invalid --rw 'sideways'" --raw "$raw" --rw sideways
refused "invalid --ring-order '5'" --ctl x --ring-order 5
refused "invalid --abi 'arm'" --ctl x --abi arm
refused "exclude each other" --ctl x --ops 5 --runtime 1
refused "for rings, not --raw" --raw "$raw" --indirect 8
refused "needs --queues 2" --ctl x --hostile prod-overrun
refused "cannot connect to tapdisk's control socket" --ctl "$TEST_DIR/none.sock"
$BIN/tap-front --help | grep -q -- "--hostile MODE" || die "--help does not describe --hostile"

qemu-img create -q -f raw "$base" 64M
qemu-io -f raw -c 'write -P 0x5a 0 64M' "$base" >/dev/null
qemu-img create -q -f qcow2 -b "$base" -F raw "$img"
qemu-img create -q -f qcow2 -b "$base" -F raw "$img_copy"
cp "$base" "$raw"
cp "$base" "$raw_copy"

# The verified runs: each in its own 8 MiB, over the 0x5a of the backing file.
runs() {
	front --abi native --rw randrw --qd 16 --ops "$ops" --offset 0 --span 8M \
		--verify --fill 0x5a --seed 1 || die "$1: native run failed"
	front --abi x86_32 --rw randrw --bs 8k --qd 8 --ops "$ops" --offset 8M --span 8M \
		--verify --fill 0x5a --seed 2 || die "$1: x86_32 run failed"
	front --abi x86_64 --rw randrw --bs 64k --indirect 16 --ring-order 2 --qd 8 \
		--ops "$ops" --offset 16M --span 8M --verify --fill 0x5a --seed 3 ||
		die "$1: indirect multi-page run failed"
	front --abi x86_32 --rw randrw --queues 2 --ring-order 4 --qd 32 --ops "$ops" \
		--offset 24M --span 8M --verify --fill 0x5a --seed 4 || die "$1: 2-queue run failed"
	front --rw write --bs 1M --indirect 256 --qd 4 --ops 8 --offset 32M --span 8M \
		--verify --fill 0x5a --flush --seed 5 || die "$1: 1M indirect write run failed"
	front --rw randread --bs 4k --qd 4 --ops "$ops" --offset 40M --span 24M --verify \
		--fill 0x5a --seed 6 || die "$1: read-only run over the untouched part failed"
}

# The whole disk once, sequentially, through the ring and into the reference.
last_pass() { # name
	front --rw write --bs 64k --indirect 16 --queues 2 --qd 8 --ops 1024 --verify \
		--seed 77 || die "$1: the last pass failed"
}

# Eight reads held by the paused disk: which path did they take?  (jq filter on a queue)
path_is() { # what-it-should-be filter
	$CTL "$td_sock" pause >/dev/null || die "pause failed"
	front --rw randread --qd 8 --ops 8 --offset 56M --span 8M >"$TEST_DIR/path.out" 2>&1 &
	fpid=$!
	on_exit "kill -9 $fpid 2>/dev/null"
	deadline=$(($(date +%s) + 20))
	until $CTL "$td_sock" info >"$TEST_DIR/info.json" &&
		jq -e '.result.frontends[0].queues[0].inflight == 8' "$TEST_DIR/info.json" >/dev/null; do
		[ "$(date +%s)" -lt "$deadline" ] || die "the paused disk never held 8 requests"
		sleep 0.05
	done
	jq -e ".result.frontends[0].queues[0] | $2" "$TEST_DIR/info.json" >/dev/null ||
		die "the requests were not $1: $(cat "$TEST_DIR/info.json")"
	$CTL "$td_sock" resume >/dev/null || die "resume failed"
	wait "$fpid" || die "the reads across the pause failed: $(cat "$TEST_DIR/path.out")"
}

# the qcow2 image's queue threads poll (adaptive, up to 50 us) before sleeping
for spec in "raw:$raw" "qcow2:$img" "raw:$raw_copy --ring-copy" "qcow2:$img_copy --ring-copy"; do
	poll=""
	case $spec in qcow2:*) poll="--poll-us 50" ;; esac
	# shellcheck disable=SC2086
	start_tapdisk td ${spec%% *} -q 2 $poll ${spec#"${spec%% *}"}
	case $spec in
	*--ring-copy) path_is copied '.copied == 8 and .mapped == 0' ;;
	*) path_is mapped '.mapped == 8 and .copied == 0' ;;
	esac
	runs "$spec"
	last_pass "$spec"
	stop_tapdisk
done

qemu-img create -q -f raw "$ref" 64M
$TAPFRONT --raw "$ref" --rw write --bs 64k --queues 2 --qd 8 --ops 1024 --verify --seed 77 \
	>/dev/null || die "the reference pass failed"
for i in "$img" "$img_copy"; do
	qemu-img check -q "$i" || die "qemu-img check failed on $i"
	qemu-img compare -q -f qcow2 -F raw "$i" "$ref" || die "$i differs from the reference"
done
for i in "$raw" "$raw_copy"; do
	qemu-img compare -q -f raw -F raw "$i" "$ref" || die "$i differs from the reference"
done
echo PASS
