#!/bin/sh
# SPDX-License-Identifier: MIT
#
# tap-front --hostile against a real tapdisk, every mode, each mixed into a
# verified load on the same ring and beside one on a second ring: every bad
# request gets its error status, the good ones keep being served (and
# verify), a ring whose producer index overran is halted while the other
# goes on, and afterwards the disk beyond what the loads and the changed
# requests may write still holds the bytes it had (qemu-io).  tapdisk must
# still answer on its control socket, and a new frontend attaches and runs.
# Mode data (frames rewritten under the I/O, which runs on them) runs once
# more on a qcow2 image whose writes all allocate, and once under
# tapdisk --ring-copy: qemu-img check must find the image consistent.
# Under make check-asan, tapdisk and tap-front run with ASan and UBSan.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/ring-functions.sh"
requires qemu-img qemu-io python3 jq

ops=$(scaled 2000)
img=$(mktmp disk.raw)
qimg=$(mktmp data.qcow2)
qemu-img create -q -f raw "$img" 64M
qemu-io -f raw -c 'write -P 0x5a 0 64M' "$img" >/dev/null

start_tapdisk td "raw:$img" -q 2
# Mode i loads [6i M, 6i M + 4M), whose unwritten blocks must still read
# 0x5a; its changed requests may also write the 16K after that.
i=0
sentinel=""
for mode in segments nr-segments past-end ops storm change data prod-overrun; do
	front --hostile "$mode" --queues 2 --qd 8 --rw randrw --ops "$ops" \
		--offset $((i * 6))M --span 4M --verify --fill 0x5a --seed 3 --json \
		>"$TEST_DIR/$mode.json" || die "--hostile $mode failed: $(cat "$TEST_DIR/$mode.json")"
	jq -e '.hostile.sent > 0 and .hostile.unexpected == 0 and .hostile.answered ==
		.hostile.sent and .errors == 0 and .verify.errors == 0' "$TEST_DIR/$mode.json" \
		>/dev/null || die "--hostile $mode: $(cat "$TEST_DIR/$mode.json")"
	kill -0 "$td_pid" || die "tapdisk died during --hostile $mode"
	sentinel="$sentinel -c 'read -P 0x5a $((i * 6144 + 4112))k 2032k'"
	i=$((i + 1))
done

# Detached, all of them; tapdisk still serves, also a new ring.
$CTL "$td_sock" info >"$TEST_DIR/info.json" || die "info failed after the hostile runs"
jq -e '.result.frontends | length == 0' "$TEST_DIR/info.json" >/dev/null ||
	die "rings left attached: $(cat "$TEST_DIR/info.json")"
front --rw randrw --qd 4 --ops "$ops" --span 4M --verify --seed 9 >/dev/null ||
	die "a well-behaved frontend failed after the hostile ones"
stop_tapdisk

# Nothing past what the requests could reach changed.
out=$(eval "qemu-io -f raw $sentinel -c 'read -P 0x5a 48M 16M' '$img'")
[ "$(echo "$out" | grep -c '^read ')" = 9 ] && ! echo "$out" | grep -q 'Pattern verification failed' ||
	die "something was written outside the requests' ranges: $out"

# data on a fresh qcow2 image (every first write allocates, with COW of the
# cluster around it), mapped and copied; then the metadata must be sound.
qemu-img create -q -f qcow2 -o cluster_size=64k "$qimg" 16M
for copy in "" --ring-copy; do
	# shellcheck disable=SC2086
	start_tapdisk tdq "qcow2:$qimg" $copy
	front --hostile data --qd 8 --rw randrw --bs 8k --ops "$ops" --span 12M --verify \
		--fill 0 --seed 11 --json >"$TEST_DIR/qdata.json" ||
		die "--hostile data on qcow2 $copy failed: $(cat "$TEST_DIR/qdata.json")"
	jq -e '.hostile.sent > 0 and .hostile.unexpected == 0 and .errors == 0 and
		.verify.errors == 0' "$TEST_DIR/qdata.json" >/dev/null ||
		die "--hostile data on qcow2 $copy: $(cat "$TEST_DIR/qdata.json")"
	stop_tapdisk
	qemu-img check -q "$qimg" || die "qemu-img check failed after --hostile data $copy"
	out=$(qemu-io -f qcow2 -c 'read -P 0 12304k 4080k' "$qimg")
	echo "$out" | grep -q '^read 4177920/4177920' &&
		! echo "$out" | grep -q 'Pattern verification failed' ||
		die "data $copy wrote outside its range: $out"
	rm -f "$qimg"
	qemu-img create -q -f qcow2 -o cluster_size=64k "$qimg" 16M
done
echo PASS
